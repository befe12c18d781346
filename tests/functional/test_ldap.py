"""LDAP sign-in against a real slapd (tests/slapd.py), through npm login (the couchdb
PUT), HTTP Basic and the panel's form, on both database backends."""
from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from gati_private_registry.storage.models import AuditEvent, Token, User
from gati_private_registry.testing import ModuleSpec

from ..slapd import Slapd, free_port, ldap_settings, seed_ldif
from .driver import Registry, b64


@pytest.fixture
def settings_overrides(slapd: Slapd) -> dict[str, Any]:
    return ldap_settings(slapd.uri)


def npm_login(registry: Registry, name: str, password: str) -> Any:
    return registry.client.put(f"/npm/-/user/org.couchdb.user:{name}", json={
        "_id": f"org.couchdb.user:{name}", "name": name, "password": password,
        "type": "user", "roles": [], "date": "2026-11-24T00:00:00.000Z"})


def whoami(registry: Registry, token: str) -> Any:
    return registry.client.get("/npm/-/whoami", headers=registry.headers(token))


def events(registry: Registry, action: str) -> list[AuditEvent]:
    with registry.services.db.read() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)
                              .order_by(AuditEvent.id)).all())


def teams_of(registry: Registry, username: str) -> set[str]:
    return {t.name for t in registry.services.teams.list() if username in t.members}


def test_npm_login_with_directory_credentials(registry: Registry) -> None:
    resp = npm_login(registry, "bob", "bob-pw")
    assert resp.status_code == 201, resp.data
    assert whoami(registry, resp.json["token"]).json == {"username": "bob"}
    user = registry.services.accounts.get_user("bob")
    # nested: bob is in payments-devs, which is inside engineering (→ publisher)
    assert (user.source, user.role, user.password_hash) == ("ldap", "publisher", None)
    assert (user.email, user.display_name) == ("bob@example.org", "Bob Payer")
    assert teams_of(registry, "bob") == {"payments"}
    [ok] = events(registry, "login.success")
    assert (ok.actor, ok.details["via"]) == ("bob", "npm")
    # the token it got publishes
    assert registry.publish(ModuleSpec("@payments/ledger"), resp.json["token"]).status_code == 201


def test_roles_and_teams_come_from_groups(registry: Registry) -> None:
    assert npm_login(registry, "alice", "alice-pw").status_code == 201
    assert npm_login(registry, "carol", "carol-pw").status_code == 201
    assert registry.services.accounts.get_user("alice").role == "admin"
    assert registry.services.accounts.get_user("carol").role == "publisher"
    # a rule may name the group by its DN too (search-devs)
    assert teams_of(registry, "alice") == {"payments"}
    assert teams_of(registry, "carol") == {"search"}


def test_wrong_password_is_refused_and_recorded(registry: Registry) -> None:
    resp = npm_login(registry, "bob", "not-bobs")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    with registry.services.db.read() as s:
        assert s.scalar(select(User).where(User.username == "bob")) is None
        assert s.scalars(select(Token)).all() == []
    [fail] = events(registry, "login.failure")
    assert fail.actor == "bob"


def test_user_outside_the_allowed_groups_is_refused(registry: Registry) -> None:
    resp = npm_login(registry, "dave", "dave-pw")  # right password, only in "sales"
    assert resp.status_code == 403
    assert "not in a group allowed" in resp.json["error"]
    with registry.services.db.read() as s:
        assert s.scalar(select(User).where(User.username == "dave")) is None
        assert s.scalars(select(Token)).all() == []
    assert events(registry, "login.failure")[0].details["reason"] == "not in an allowed group"


def test_group_change_takes_effect_at_the_next_login(registry: Registry, slapd: Slapd) -> None:
    assert npm_login(registry, "erin", "erin-pw").status_code == 201
    assert teams_of(registry, "erin") == {"search"}
    token = npm_login(registry, "erin", "erin-pw").json["token"]
    slapd.set_member("search-devs", "erin", False)
    slapd.set_member("payments-devs", "erin", True)
    slapd.set_member("registry-admins", "erin", True)
    try:
        assert npm_login(registry, "erin", "erin-pw").status_code == 201
        assert teams_of(registry, "erin") == {"payments"}
        assert registry.services.accounts.get_user("erin").role == "admin"
        assert registry.publish(ModuleSpec("@payments/erin"), token).status_code == 201
        # and back: leaving the admin group takes the role away at the next login,
        # for the tokens she already holds as well
        slapd.set_member("registry-admins", "erin", False)
        assert npm_login(registry, "erin", "erin-pw").status_code == 201
        assert registry.services.accounts.get_user("erin").role == "publisher"
        admin_only = registry.client.get("/api/audit", headers=registry.headers(token))
        assert admin_only.status_code == 403
    finally:
        for group, present in (("search-devs", True), ("payments-devs", False),
                               ("registry-admins", False)):
            try:
                slapd.set_member(group, "erin", present)
            except Exception:  # already in that state after a failed assertion
                pass
    changes = events(registry, "user.role.change")
    assert [(e.details["old"], e.details["new"]) for e in changes] == [
        ("publisher", "admin"), ("admin", "publisher")]
    removed = events(registry, "team.member.remove")
    assert [(e.subject, e.details["user"]) for e in removed] == [("search", "erin")]


@pytest.mark.parametrize("username", [
    "*", "al*", "*)(uid=*", "alice)(uid=*", "*)(|(uid=*", "alice)(|(objectClass=*)",
    "alice\\2a", "alice\x00", "cn=admin,dc=example,dc=org", "(uid=alice)"])
def test_ldap_injection_in_the_username(registry: Registry, username: str) -> None:
    # with the real password of alice, of the service account, and a wildcard
    for password in ("alice-pw", "service-pw", "*"):
        resp = registry.client.get("/npm/-/whoami", headers={
            "Authorization": "Basic " + b64(f"{username}:{password}")})
        assert resp.status_code == 401, (username, password)
    with registry.services.db.read() as s:
        assert s.scalars(select(User.username).where(User.source == "ldap")).all() == []


def test_empty_password_is_never_an_anonymous_bind(registry: Registry) -> None:
    resp = registry.client.get("/npm/-/whoami", headers={"Authorization": "Basic " + b64("alice:")})
    assert resp.status_code == 401
    assert npm_login(registry, "alice", "").status_code == 400


def test_panel_sign_in_with_directory_credentials(registry: Registry) -> None:
    page = registry.client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    bad = registry.client.post("/login", data={"username": "carol", "password": "x",
                                               "csrf_token": csrf})
    assert bad.status_code == 401 and "Incorrect username or password" in bad.text
    ok = registry.client.post("/login?next=/my/versions",
                              data={"username": "carol", "password": "carol-pw", "csrf_token": csrf})
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/my/versions")
    assert "carol (publisher)" in registry.client.get("/my/versions").text
    [ok_event] = events(registry, "login.success")
    assert ok_event.details["via"] == "panel"


def test_local_accounts_stay_local(registry: Registry) -> None:
    # break-glass: a local user's own password, whatever the directory says
    registry.add_user("bob", "reader", "local-bob-pw")
    assert npm_login(registry, "bob", "bob-pw").status_code == 401
    assert npm_login(registry, "bob", "local-bob-pw").status_code == 201
    assert registry.services.accounts.get_user("bob").source == "local"


def test_lockout_after_repeated_failures(registry: Registry) -> None:
    for _ in range(5):
        assert npm_login(registry, "carol", "wrong").status_code == 401
    locked = npm_login(registry, "carol", "carol-pw")
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) == 15 * 60
    # other names are not locked
    assert npm_login(registry, "bob", "bob-pw").status_code == 201


@pytest.fixture
def own_slapd() -> Any:
    server = Slapd().start()
    server.load(seed_ldif())
    yield server
    server.stop()


@pytest.mark.parametrize("settings_overrides", [ldap_settings(f"ldap://127.0.0.1:{free_port()}")])
def test_directory_down_is_a_clear_error_never_a_sign_in(registry: Registry) -> None:
    resp = npm_login(registry, "bob", "bob-pw")
    assert resp.status_code == 503
    assert "directory (LDAP) cannot be reached" in resp.json["error"]
    with registry.services.db.read() as s:
        assert s.scalars(select(Token)).all() == []
    assert events(registry, "login.error")[0].details["reason"] == "directory unavailable"
    # the local break-glass admin still signs in
    assert npm_login(registry, "admin", "admin-pass-1").status_code == 201


def test_directory_going_down_after_use(registry: Registry, own_slapd: Slapd,
                                        services: Any) -> None:
    from gati_private_registry.services.directory import LdapDirectory
    from gati_private_registry.settings import LdapSettings

    services.signon.directory = LdapDirectory(LdapSettings(**ldap_settings(own_slapd.uri)["ldap"]))
    assert npm_login(registry, "bob", "bob-pw").status_code == 201  # pooled connection now
    own_slapd.stop()
    resp = npm_login(registry, "bob", "bob-pw")
    assert resp.status_code == 503
    page = registry.client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    panel = registry.client.post("/login", data={"username": "bob", "password": "bob-pw",
                                                 "csrf_token": csrf})
    assert panel.status_code == 503 and "cannot be reached" in panel.text
    assert registry.client.get("/my/versions").status_code == 302  # not signed in


@pytest.fixture(scope="module")
def tls_slapd() -> Any:
    server = Slapd(tls=True).start()
    server.load(seed_ldif())
    yield server
    server.stop()


def _tls_settings(server: Slapd, **ldap: Any) -> dict[str, Any]:
    base = ldap_settings(server.uri)
    base["ldap"].update(ldap)
    return base


def _directory(settings: dict[str, Any]) -> Any:
    from gati_private_registry.services.directory import LdapDirectory
    from gati_private_registry.settings import LdapSettings

    return LdapDirectory(LdapSettings(**settings["ldap"]))


def test_ldaps_and_starttls_with_a_ca_file(tls_slapd: Slapd, tmp_path: Any) -> None:
    from gati_private_registry.errors import Unavailable

    from ..slapd import make_tls_files

    ldaps = _directory(_tls_settings(tls_slapd, url=tls_slapd.ldaps_uri, ca_file=tls_slapd.ca_file))
    starttls = _directory(_tls_settings(tls_slapd, start_tls=True, ca_file=tls_slapd.ca_file))
    for directory in (ldaps, starttls):
        found = directory.authenticate("bob", "bob-pw")
        assert found is not None and "payments-devs" in found.groups
        assert directory.authenticate("bob", "wrong") is None
        directory.close()
    # a certificate from a CA we were not told to trust is an outage, never a sign-in
    other_ca = make_tls_files(str(tmp_path))[0]
    for settings in (_tls_settings(tls_slapd, url=tls_slapd.ldaps_uri, ca_file=other_ca),
                     _tls_settings(tls_slapd, start_tls=True, ca_file=other_ca)):
        with pytest.raises(Unavailable):
            _directory(settings).authenticate("bob", "bob-pw")
