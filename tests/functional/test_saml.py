"""SAML sign-on against a real pysaml2 IdP in the test process (tests/saml_idp.py):
signed assertions, audience and time checks, replay, attribute mapping, IdP-initiated
login, single logout and npm's web login through SAML (both backends)."""
from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from gati_private_registry.storage.models import AuditEvent

from ..saml_idp import (DEFAULT_IDENTITY, FakeIdP, authn_response, decode, make_cert,
                        request_from_location)
from .driver import Registry

SP_BASE = "http://localhost"


@pytest.fixture(scope="session")
def idp_entity(tmp_path_factory: pytest.TempPathFactory) -> FakeIdP:
    return FakeIdP(directory=str(tmp_path_factory.mktemp("idp")))


@pytest.fixture(scope="session")
def sp_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_cert(str(tmp_path_factory.mktemp("sp")), "sp")


@pytest.fixture
def settings_overrides(idp_entity: FakeIdP, sp_keys: tuple[str, str]) -> dict[str, Any]:
    return {"saml": {"enabled": True, "idp_metadata_file": idp_entity.metadata_file(),
                     "key_file": sp_keys[0], "cert_file": sp_keys[1]},
            "sso": {"rules": [{"group": "payments-devs", "team": "payments", "role": "publisher"},
                              {"group": "registry-admins", "role": "admin"}]}}


@pytest.fixture
def idp(registry: Registry, idp_entity: FakeIdP) -> Any:
    sp_metadata = registry.client.get("/saml/metadata").text
    return idp_entity.server(sp_metadata)


def start(registry: Registry, next_path: str = "/my/versions") -> tuple[str, str]:
    resp = registry.client.get(f"/saml/login?next={next_path}")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("https://idp.test/sso?")
    return request_from_location(resp.headers["Location"])


def post_acs(registry: Registry, saml_response: str, relay: str = "") -> Any:
    return registry.client.post("/saml/acs", data={"SAMLResponse": saml_response,
                                                   "RelayState": relay})


def signed_in_as(registry: Registry) -> str | None:
    page = registry.client.get("/my/versions")
    if page.status_code != 200:
        return None
    m = re.search(r'<span class="who">([^ ]+) \(', page.text)
    return m.group(1) if m else None


def test_sp_metadata_at_a_stable_url(registry: Registry) -> None:
    resp = registry.client.get("/saml/metadata")
    assert resp.status_code == 200 and resp.mimetype == "application/samlmetadata+xml"
    assert 'entityID="http://localhost/saml/metadata"' in resp.text
    assert 'Location="http://localhost/saml/acs"' in resp.text
    assert "X509Certificate" in resp.text


def test_good_login_maps_attributes_to_user_team_and_role(registry: Registry, idp: Any) -> None:
    request, relay = start(registry)
    saml_response, _ = authn_response(idp, request, DEFAULT_IDENTITY)
    done = post_acs(registry, saml_response, relay)
    assert done.status_code == 302 and done.headers["Location"] == "/my/versions"
    assert signed_in_as(registry) == "alice"
    user = registry.services.accounts.get_user("alice")
    assert (user.source, user.role, user.email, user.display_name) == (
        "saml", "publisher", "alice@example.org", "Alice Example")
    assert [t.name for t in registry.services.teams.list() if "alice" in t.members] == ["payments"]
    with registry.services.db.read() as s:
        ok = s.scalar(select(AuditEvent).where(AuditEvent.action == "login.success"))
    assert ok is not None and ok.details["via"] == "saml"


def test_group_change_takes_effect_at_the_next_login(registry: Registry, idp: Any) -> None:
    request, relay = start(registry)
    post_acs(registry, authn_response(idp, request, DEFAULT_IDENTITY)[0], relay)
    request, relay = start(registry)
    moved = dict(DEFAULT_IDENTITY, groups=["registry-admins"])
    post_acs(registry, authn_response(idp, request, moved)[0], relay)
    assert registry.services.accounts.get_user("alice").role == "admin"
    assert all("alice" not in t.members for t in registry.services.teams.list())


@pytest.mark.parametrize("signing", [
    {"sign_assertion": False, "sign_response": True},
    {"sign_assertion": False, "sign_response": False}], ids=["response-only", "unsigned"])
def test_unsigned_assertion_is_refused(registry: Registry, idp: Any, signing: dict[str, bool]) -> None:
    request, relay = start(registry)
    saml_response, _ = authn_response(idp, request, DEFAULT_IDENTITY, **signing)
    refused = post_acs(registry, saml_response, relay)
    assert refused.status_code == 401 and "SAML response was refused" in refused.text
    assert signed_in_as(registry) is None


def test_wrongly_signed_assertion_is_refused(registry: Registry, idp_entity: FakeIdP,
                                             tmp_path: Any) -> None:
    rogue_key, rogue_cert = make_cert(str(tmp_path), "rogue")
    rogue = idp_entity.server(registry.client.get("/saml/metadata").text, key=rogue_key,
                              cert=rogue_cert)
    request, relay = start(registry)
    refused = post_acs(registry, authn_response(rogue, request, DEFAULT_IDENTITY)[0], relay)
    assert refused.status_code == 401
    assert signed_in_as(registry) is None


def test_tampered_assertion_is_refused(registry: Registry, idp: Any) -> None:
    import base64

    request, relay = start(registry)
    good = authn_response(idp, request, DEFAULT_IDENTITY)[0]
    xml = base64.b64decode(good).replace(b"payments-devs", b"registry-admins")
    assert post_acs(registry, base64.b64encode(xml).decode(), relay).status_code == 401


def test_expired_assertion_is_refused(registry: Registry, idp_entity: FakeIdP) -> None:
    stale = idp_entity.server(registry.client.get("/saml/metadata").text, lifetime_minutes=-10)
    request, relay = start(registry)
    refused = post_acs(registry, authn_response(stale, request, DEFAULT_IDENTITY)[0], relay)
    assert refused.status_code == 401
    assert signed_in_as(registry) is None


def test_wrong_audience_is_refused(registry: Registry, idp_entity: FakeIdP) -> None:
    # the IdP also serves another application; its assertion is posted to us
    ours = registry.client.get("/saml/metadata").text
    other = ours.replace("http://localhost/saml/metadata", "https://other-app.example/metadata")
    idp = idp_entity.server([ours, other])
    request, relay = start(registry)
    saml_response, _ = authn_response(idp, request, DEFAULT_IDENTITY,
                                      audience="https://other-app.example/metadata")
    assert re.search(r"Audience>https://other-app.example/metadata<", decode(saml_response))
    assert post_acs(registry, saml_response, relay).status_code == 401
    assert signed_in_as(registry) is None


def test_replayed_assertion_is_refused(registry: Registry, idp: Any) -> None:
    request, relay = start(registry)
    saml_response, _ = authn_response(idp, request, DEFAULT_IDENTITY)
    assert post_acs(registry, saml_response, relay).status_code == 302
    registry.client.post("/logout", data={"csrf_token": _csrf(registry)})
    replay = post_acs(registry, saml_response, relay)
    assert replay.status_code == 401
    assert signed_in_as(registry) is None


def test_idp_initiated_login_and_its_replay(registry: Registry, idp: Any) -> None:
    saml_response, _ = authn_response(idp, None, DEFAULT_IDENTITY,
                                      sp_entity_id=f"{SP_BASE}/saml/metadata",
                                      acs_url=f"{SP_BASE}/saml/acs")
    ok = post_acs(registry, saml_response, "/approvals")
    assert ok.status_code == 302 and ok.headers["Location"] == "/approvals"
    assert signed_in_as(registry) == "alice"
    registry.client.post("/logout", data={"csrf_token": _csrf(registry)})
    assert post_acs(registry, saml_response, "/approvals").status_code == 401


def test_relay_state_cannot_redirect_off_site(registry: Registry, idp: Any) -> None:
    request, _ = start(registry)
    done = post_acs(registry, authn_response(idp, request, DEFAULT_IDENTITY)[0],
                    "https://evil.example/")
    assert done.status_code == 302 and done.headers["Location"] == "/"


def _csrf(registry: Registry) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', registry.client.get("/").text).group(1)


def test_single_logout_both_ways(registry: Registry, idp: Any) -> None:
    from saml2 import BINDING_HTTP_REDIRECT
    from saml2.ident import decode

    request, relay = start(registry)
    post_acs(registry, authn_response(idp, request, DEFAULT_IDENTITY)[0], relay)
    # SP-initiated: signing out sends the browser to the IdP's logout service
    out = registry.client.post("/logout", data={"csrf_token": _csrf(registry)})
    assert out.status_code == 302 and out.headers["Location"].startswith("https://idp.test/slo?SAMLRequest=")
    assert signed_in_as(registry) is None
    slo_request = request_from_location(out.headers["Location"])[0]
    parsed = idp.parse_logout_request(slo_request, BINDING_HTTP_REDIRECT)
    assert parsed.message.name_id.text
    # IdP-initiated: the IdP's LogoutRequest ends our session and is answered
    request, relay = start(registry)
    post_acs(registry, authn_response(idp, request, DEFAULT_IDENTITY)[0], relay)
    assert signed_in_as(registry) == "alice"
    user = registry.services.accounts.get_user("alice")
    assert user is not None
    reqid, logout = idp.create_logout_request(f"{SP_BASE}/saml/slo", f"{SP_BASE}/saml/metadata",
                                              name_id=parsed.message.name_id, sign=False)
    info = idp.apply_binding(BINDING_HTTP_REDIRECT, str(logout), f"{SP_BASE}/saml/slo")
    location = dict(info["headers"])["Location"]
    answered = registry.client.get(location.replace(SP_BASE, ""))
    assert answered.status_code == 302
    assert answered.headers["Location"].startswith("https://idp.test/slo?SAMLResponse=")
    assert signed_in_as(registry) is None
    _ = decode


def test_npm_web_login_completes_through_saml(registry: Registry, idp: Any) -> None:
    started = registry.client.post("/npm/-/v1/login", json={}).json
    login_path = started["loginUrl"].replace(SP_BASE, "")
    done_path = started["doneUrl"].replace(SP_BASE, "")
    page = registry.client.get(login_path)
    sso = re.search(r'id="sso-login" href="([^"]+)"', page.text).group(1)
    to_idp = registry.client.get(sso.replace("&amp;", "&"))
    request, relay = request_from_location(to_idp.headers["Location"])
    assert relay == login_path
    back = post_acs(registry, authn_response(idp, request, DEFAULT_IDENTITY)[0], relay)
    assert back.headers["Location"] == login_path
    confirm = registry.client.get(login_path)
    assert "alice" in confirm.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text).group(1)
    assert registry.client.get(done_path).status_code == 202
    assert registry.client.post(login_path, data={"csrf_token": csrf}).status_code == 200
    token = registry.client.get(done_path).json["token"]
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(token)).json == {"username": "alice"}


def test_saml_sessions_end_after_their_lifetime_and_tokens_are_revoked_by_admins(
        registry: Registry, idp: Any) -> None:
    # SAML has no back channel: the IdP cannot tell us alice left. Her session ends by
    # [saml] session_lifetime (8 hours by default), counted from the sign-in ...
    request, relay = start(registry)
    post_acs(registry, authn_response(idp, request, DEFAULT_IDENTITY)[0], relay)
    assert signed_in_as(registry) == "alice"
    with registry.client.session_transaction() as sess:
        assert sess["via"] == "saml"
        sess["signed_in_at"] -= 7.9 * 3600
    assert signed_in_as(registry) == "alice"
    with registry.client.session_transaction() as sess:
        sess["signed_in_at"] -= 0.2 * 3600
    assert signed_in_as(registry) is None
    assert registry.client.get("/my/versions").status_code == 302
    # ... and an admin revokes her tokens, all at once
    tokens = [registry.services.tokens.create_token(None, "alice", "read").secret
              for _ in range(2)]
    admin = registry.headers(registry.token("admin", "admin"))
    assert registry.client.delete("/api/users/alice/tokens",
                                  headers=registry.headers(tokens[0])).status_code == 403
    gone = registry.client.delete("/api/users/alice/tokens", headers=admin)
    assert gone.status_code == 200 and gone.json == {"username": "alice", "revoked": 2}
    for token in tokens:
        assert registry.client.get("/npm/-/whoami",
                                   headers=registry.headers(token)).status_code == 401
    assert registry.client.delete("/api/users/nobody/tokens", headers=admin).status_code == 404
    with registry.services.db.read() as s:
        revoked = s.scalars(select(AuditEvent).where(AuditEvent.action == "token.revoke")).all()
    assert [(e.actor, e.subject) for e in revoked] == [("admin", "alice")] * 2


@pytest.mark.parametrize("settings_overrides", [{}])
def test_saml_endpoints_are_absent_unless_enabled(registry: Registry) -> None:
    assert registry.client.get("/saml/metadata").status_code == 404
    assert registry.client.get("/saml/login").status_code == 404
    assert "sso-login" not in registry.client.get("/login").text
