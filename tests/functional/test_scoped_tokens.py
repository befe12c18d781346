"""Tokens: scoped, limited to package patterns and address ranges, expiring, listed
with last use, revocable, shown once and stored hashed; through /api/tokens, the panel
and the command line (both backends)."""
from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gati_private_registry.cli.admin import main as admin_cli
from gati_private_registry.settings import Settings
from gati_private_registry.storage.models import AuditEvent, Token
from gati_private_registry.testing import ModuleSpec, publish_body

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


def _hidden(resp: Any, name: str) -> bool:
    """A 404 that reads exactly like the one for a name that does not exist (npm's
    error body is a string, the API's an object)."""
    err = (resp.json or {}).get("error")
    message = err["message"] if isinstance(err, dict) else err
    return bool(resp.status_code == 404 and message == f"{name} is not in this registry")


def test_package_patterns_limit_reads_too(registry: Registry) -> None:
    for name in ("@payments/ledger", "@other/secret"):
        spec = ModuleSpec(name, "1.0.0", description="ledger of secrets")
        assert registry.publish(spec).status_code == 201
    registry.services.indexer.run_once()
    made = create(registry, registry.token(), scope="read", packages=["@payments/*"]).json
    limited = registry.headers(made["token"])
    get = registry.client.get
    # inside the patterns: everything as usual
    assert registry.packument("@payments/ledger", made["token"]).status_code == 200
    assert registry.packument("@payments/ledger", made["token"], abbreviated=True).status_code == 200
    assert registry.tarball("@payments/ledger", "1.0.0", made["token"]).status_code == 200
    assert get("/api/modules/@payments/ledger", headers=limited).status_code == 200
    # outside: the same 404 as a name that does not exist, on every read of a package
    for name in ("@other/secret", "@other/missing"):
        bare = name.split("/")[1]
        assert registry.packument(name, made["token"]).json == get(
            f"/npm/{name}", headers=limited).json
        for url in (f"/npm/{name}", f"/npm/{name.replace('/', '%2f')}", f"/npm/{name}/1.0.0",
                    f"/npm/-/package/{name}/dist-tags", f"/npm/-/package/{name}/dist-tags/latest",
                    f"/api/modules/{name}", f"/api/modules/{name}/versions",
                    f"/api/modules/{name}/1.0.0/download", f"/api/modules/{name}/stats",
                    f"/api/modules/{name}/reviews", f"/api/modules/{name}/similar",
                    f"/npm/-/npm/v1/attestations/{name}@1.0.0"):
            assert _hidden(get(url, headers=limited), name), url
        assert _hidden(registry.tarball(name, "1.0.0", made["token"]), name)
        assert _hidden(registry.packument(name, made["token"], abbreviated=True), name)
        assert _hidden(get(f"/npm/{name}/-/{bare}-1.0.0.tgz", headers=limited), name)
    # search finds only what the patterns cover, in the count as well
    for url, key in (("/npm/-/v1/search?text=ledger&size=20", "objects"),
                     ("/api/search?q=&per_page=50", "results")):
        found = get(url, headers=limited).json
        names = [o["package"]["name"] if key == "objects" else o["name"] for o in found[key]]
        assert names == ["@payments/ledger"], (url, found)
        everything = get(url, headers=registry.headers(registry.token("admin", "read"))).json
        assert {"@payments/ledger", "@other/secret"} <= {
            o["package"]["name"] if key == "objects" else o["name"] for o in everything[key]}
    assert get("/api/search?q=ledger", headers=limited).json["total"] == 1
    # an unlimited token of the same user still reads everything
    assert registry.packument("@other/secret", registry.token("admin", "read")).status_code == 200


@pytest.mark.parametrize("approval_mode", ["manual"])
def test_package_patterns_limit_the_stage_queue(registry: Registry) -> None:
    ids = {}
    for name in ("@payments/staged", "@other/staged"):
        resp = registry.client.post(f"/npm/-/stage/package/{name}",
                                    json=publish_body(ModuleSpec(name, "1.0.0")),
                                    headers=registry.headers(registry.token()))
        assert resp.status_code == 201, resp.json
        ids[name] = resp.json["stageId"]
    limited = registry.headers(create(registry, registry.token("admin", "admin"), scope="approve",
                                      packages=["@payments/*"]).json["token"])
    listed = registry.client.get("/npm/-/stage", headers=limited).json
    assert listed["total"] == 1 and [i["packageName"] for i in listed["items"]] == ["@payments/staged"]
    assert registry.client.get(f"/npm/-/stage/{ids['@payments/staged']}",
                               headers=limited).status_code == 200
    for path in (f"/npm/-/stage/{ids['@other/staged']}",
                 f"/npm/-/stage/{ids['@other/staged']}/tarball"):
        assert registry.client.get(path, headers=limited).status_code == 404, path
    queue = registry.client.get("/api/approvals?state=pending", headers=limited).json
    assert [i["name"] for i in queue["items"]] == ["@payments/staged"]
    unlimited = registry.headers(registry.token("admin", "admin"))
    assert registry.client.get("/npm/-/stage", headers=unlimited).json["total"] == 2


def test_token_revoke_command_revokes_every_token_of_a_user(settings: Settings,
                                                            registry: Registry) -> None:
    registry.add_user("leaver", "publisher")
    tokens = [registry.token("leaver", scope) for scope in ("read", "publish")]
    keep = registry.token("admin", "read")
    env = {"GATI_REGISTRY_DATABASE__URL": settings.database_url,
           "GATI_REGISTRY_ADMIN_PASSWORD": "admin-pass-1"}
    out = CliRunner().invoke(admin_cli, ["token", "revoke", "--user", "leaver",
                                         "--data", str(settings.data)], env=env)
    assert out.exit_code == 0, out.output
    assert "revoked 2 token(s) of leaver" in out.stderr
    for token in tokens:
        assert registry.client.get("/npm/-/whoami",
                                   headers=registry.headers(token)).status_code == 401
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(keep)).status_code == 200
    missing = CliRunner().invoke(admin_cli, ["token", "revoke", "--user", "nobody",
                                             "--data", str(settings.data)], env=env)
    assert missing.exit_code == 1 and "no user nobody" in missing.output
