"""Tokens: scoped, limited to package patterns and address ranges, expiring, listed
with last use, revocable, shown once and stored hashed; through /api/tokens, the panel
and the command line (both backends)."""
from __future__ import annotations

import re
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from gati_private_registry.cli.admin import main as admin_cli
from gati_private_registry.settings import Settings
from gati_private_registry.storage.models import AuditEvent, Token
from gati_private_registry.testing import ModuleSpec

from .driver import Registry


def create(registry: Registry, token: str, **body: Any) -> Any:
    return registry.client.post("/api/tokens", json=body, headers=registry.headers(token))


def test_package_limited_token(registry: Registry) -> None:
    registry.add_user("pat", "publisher")
    resp = create(registry, registry.token("pat"), scope="publish", packages=["@payments/*"],
                  name="ci", expires_days=30)
    assert resp.status_code == 201, resp.json
    limited = resp.json["token"]
    assert resp.json["packages"] == ["@payments/*"] and resp.json["expires"] is not None
    assert registry.publish(ModuleSpec("@payments/a"), limited).status_code == 201
    refused = registry.publish(ModuleSpec("@other/a"), limited)
    assert refused.status_code == 403 and "limited to other packages" in refused.json["error"]
    # it cannot mint itself an unlimited token, nor one for other packages
    assert create(registry, limited, scope="publish").status_code == 403
    assert create(registry, limited, scope="publish", packages=["*"]).status_code == 403
    assert create(registry, limited, scope="read", packages=["@payments/core"]).status_code == 201


def test_cidr_limited_token(registry: Registry) -> None:
    outside = create(registry, registry.token(), scope="read", cidr=["10.0.0.0/8"]).json["token"]
    inside = create(registry, registry.token(), scope="read", cidr=["127.0.0.0/8"]).json["token"]
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(outside)).status_code == 403
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(inside)).status_code == 200


def test_listed_with_last_use_never_the_secret_and_stored_hashed(registry: Registry) -> None:
    made = create(registry, registry.token(), scope="read", name="reader").json
    secret = made["token"]
    listed = registry.client.get("/api/tokens", headers=registry.headers(secret)).json["tokens"]
    mine = next(t for t in listed if t["key"] == made["key"])
    assert mine["last_used"] is not None       # this very request used it
    assert secret not in str(listed) and mine["prefix"] == secret[:10]
    with registry.services.db.read() as s:
        row = s.scalar(select(Token).where(Token.key == made["key"]))
        assert row is not None and row.digest != secret and secret not in (row.digest + row.prefix)
    revoke = registry.client.delete(f"/api/tokens/{made['key']}", headers=registry.headers(registry.token()))
    assert revoke.status_code == 200
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(secret)).status_code == 401
    with registry.services.db.read() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("token.%"))).all()
    assert "token.revoke" in actions


def test_invalid_requests_are_refused_with_every_problem(registry: Registry) -> None:
    resp = create(registry, registry.token(), scope="root", packages=["Bad Name"],
                  cidr=["10.0.0.0/99"], expires_days="soon")
    assert resp.status_code == 400
    fields = {d["field"] for d in resp.json["error"]["details"]}
    assert fields == {"expires_days"}     # the shape is checked first ...
    resp = create(registry, registry.token(), scope="root", packages=["Bad Name"],
                  cidr=["10.0.0.0/99"])
    fields = {d["field"] for d in resp.json["error"]["details"]}
    assert fields == {"scope", "packages", "cidr_whitelist"}   # ... then every value
    assert create(registry, registry.token(), scope="read", packages="x,y").status_code == 201
    assert registry.client.post("/api/tokens", data="[]", headers=registry.headers(
        registry.token())).status_code == 400
    with registry.services.db.read() as s:
        assert len(s.scalars(select(Token)).all()) == 2   # the driver's and the good one


def test_no_more_power_than_the_role(registry: Registry) -> None:
    registry.add_user("rita", "reader")
    assert create(registry, registry.token("rita", "read"), scope="publish").status_code == 403
    assert create(registry, registry.token(), scope="admin").status_code == 403  # publish token


def test_panel_token_page(registry: Registry) -> None:
    registry.add_user("pat", "publisher")
    page = registry.client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    registry.client.post("/login", data={"username": "pat", "password": "password-123",
                                         "csrf_token": csrf})
    page = registry.client.get("/tokens")
    assert page.status_code == 200 and "No tokens." in page.text
    # signing in starts a new session, with a new CSRF token
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    assert '<option value="admin"' not in page.text   # a publisher is offered read and publish
    bad = registry.client.post("/tokens", data={"csrf_token": csrf, "scope": "publish",
                                                "packages": "NOT A PATTERN"})
    assert bad.status_code == 400 and "not a package pattern" in bad.text
    assert registry.client.post("/tokens", data={"scope": "read"}).status_code == 400  # no CSRF
    made = registry.client.post("/tokens", data={"csrf_token": csrf, "scope": "publish",
                                                 "packages": "@payments/*", "name": "ci"})
    assert made.status_code == 201
    secret = re.search(r'<pre id="new-secret">([^<]+)</pre>', made.text).group(1)
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(secret)).json == {"username": "pat"}
    listed = registry.client.get("/tokens").text
    assert secret not in listed and "@payments/*" in listed and secret[:10] in listed
    key = re.search(r'id="token-([0-9a-f]+)"', listed).group(1)
    gone = registry.client.post(f"/tokens/{key}/revoke", data={"csrf_token": csrf})
    assert gone.status_code == 200 and "No tokens." in gone.text
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(secret)).status_code == 401


def test_token_create_command_with_limits(settings: Settings, registry: Registry) -> None:
    env = {"GATI_REGISTRY_DATABASE__URL": settings.database_url,
           "GATI_REGISTRY_ADMIN_PASSWORD": "admin-pass-1"}
    out = CliRunner().invoke(admin_cli, ["token", "create", "--user", "admin", "--scope", "publish",
                                         "--package", "@payments/*", "--package", "pay-*",
                                         "--cidr", "127.0.0.1/32", "--data", str(settings.data)],
                             env=env)
    assert out.exit_code == 0, out.output
    secret = out.stdout.strip()
    listed = registry.client.get("/api/tokens", headers=registry.headers(secret)).json["tokens"]
    mine = [t for t in listed if t["prefix"] == secret[:10]]
    assert mine[0]["packages"] == ["@payments/*", "pay-*"] and mine[0]["cidr"] == ["127.0.0.1/32"]
    assert registry.publish(ModuleSpec("pay-x"), secret).status_code == 201
    assert registry.publish(ModuleSpec("other-x"), secret).status_code == 403
