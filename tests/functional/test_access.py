"""Who may read and write: tokens, scopes, roles, anonymous read, ownership."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from gati_private_registry.storage.models import Token
from gati_private_registry.testing import ModuleSpec

from .driver import Registry, b64


def test_reads_need_a_token_by_default(registry: Registry) -> None:
    registry.publish(ModuleSpec("private-read", "1.0.0"))
    anon = registry.client.get("/npm/private-read")
    assert anon.status_code == 401
    assert anon.headers["WWW-Authenticate"].startswith("Bearer")
    assert registry.client.get("/npm/private-read/-/private-read-1.0.0.tgz").status_code == 401
    assert registry.client.get("/npm/-/v1/search?text=x").status_code == 401
    assert registry.packument("private-read").status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"anonymous_read": True}])
def test_anonymous_read_when_configured(registry: Registry) -> None:
    registry.publish(ModuleSpec("public-read", "1.0.0"))
    assert registry.client.get("/npm/public-read").status_code == 200
    assert registry.client.get("/npm/public-read/-/public-read-1.0.0.tgz").status_code == 200
    # anonymous read does not mean anonymous write
    assert registry.client.put("/npm/public-read", json={}).status_code == 401


def test_bad_tokens_are_refused_not_treated_as_anonymous(registry: Registry) -> None:
    resp = registry.client.get("/npm/-/whoami", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert "token" in resp.json["error"]


def test_read_token_cannot_publish(registry: Registry) -> None:
    resp = registry.publish(ModuleSpec("ro", "1.0.0"), token=registry.token("admin", "read"))
    assert resp.status_code == 403
    assert registry.packument("ro").status_code == 404


def test_reader_role_cannot_get_publish_token(registry: Registry) -> None:
    registry.add_user("rita", "reader")
    from gati_private_registry.errors import Forbidden
    with pytest.raises(Forbidden):
        registry.services.tokens.create_token(None, "rita", "publish")


def test_only_maintainers_and_admins_change_a_package(registry: Registry) -> None:
    registry.add_user("alice")
    registry.add_user("bob")
    alice, bob = registry.token("alice"), registry.token("bob")
    assert registry.publish(ModuleSpec("alices", "1.0.0"), token=alice).status_code == 201
    # bob may not publish a new version of alice's package, move its tags or unpublish
    assert registry.publish(ModuleSpec("alices", "1.1.0"), token=bob).status_code == 403
    resp = registry.client.put("/npm/-/package/alices/dist-tags/beta", json="1.0.0",
                               headers=registry.headers(bob))
    assert resp.status_code == 403
    assert registry.client.delete("/npm/alices/-rev/1-x", headers=registry.headers(bob)).status_code == 403
    # an admin's publish token is not enough: admin powers need an admin token
    assert registry.publish(ModuleSpec("alices", "1.1.0")).status_code == 403
    assert registry.publish(ModuleSpec("alices", "1.1.0"),
                            token=registry.token("admin", "admin")).status_code == 201
    assert registry.client.get("/npm/alices", headers=registry.headers(bob)).status_code == 200


def test_expired_and_revoked_tokens(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    from gati_private_registry.services import tokens

    token = registry.services.tokens.create_token(None, "admin", "publish", expires_days=1).secret
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(token)).json == {"username": "admin"}
    later = datetime.now(timezone.utc) + timedelta(days=1, seconds=5)
    with monkeypatch.context() as m:
        m.setattr(tokens, "_now", lambda: later)
        expired = registry.client.get("/npm/-/whoami", headers=registry.headers(token))
        assert expired.status_code == 401 and "expired" in expired.json["error"]
    other = registry.services.tokens.create_token(None, "admin", "publish").secret
    resp = registry.client.delete(f"/npm/-/user/token/{other}", headers=registry.headers(other))
    assert resp.status_code == 200
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(other)).status_code == 401


def test_tokens_are_stored_hashed(registry: Registry) -> None:
    secret = registry.token("admin", "read")
    with registry.services.db.read() as s:
        rows = s.scalars(select(Token)).all()
    assert rows
    for row in rows:
        assert secret not in (row.digest, row.key, row.prefix)
        assert len(row.digest) == 64


def test_basic_auth_with_password(registry: Registry) -> None:
    ok = registry.client.get("/npm/-/whoami", headers={"Authorization": "Basic " + b64("admin:admin-pass-1")})
    assert ok.json == {"username": "admin"}
    bad = registry.client.get("/npm/-/whoami", headers={"Authorization": "Basic " + b64("admin:wrong")})
    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": ("127.0.0.1",)}])
def test_forwarded_headers_from_trusted_proxy(registry: Registry) -> None:
    registry.publish(ModuleSpec("behind-proxy", "1.0.0"))
    resp = registry.packument("behind-proxy", **{"X-Forwarded-Proto": "https",
                                                 "X-Forwarded-Host": "registry.corp"})
    url = json.loads(resp.data)["versions"]["1.0.0"]["dist"]["tarball"]
    assert url == "https://registry.corp/npm/behind-proxy/-/behind-proxy-1.0.0.tgz"


def test_forwarded_headers_ignored_from_untrusted_peer(registry: Registry) -> None:
    registry.publish(ModuleSpec("not-behind-proxy", "1.0.0"))
    resp = registry.packument("not-behind-proxy", **{"X-Forwarded-Proto": "https",
                                                     "X-Forwarded-Host": "evil.example"})
    url = json.loads(resp.data)["versions"]["1.0.0"]["dist"]["tarball"]
    assert url.startswith("http://localhost/npm/")
