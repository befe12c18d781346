"""npm login flows and tokens through the npm protocol."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from gati_private_registry.storage.models import AuditEvent

from .driver import Registry


def couch_put(registry: Registry, name: str, password: str, **extra: str):
    return registry.client.put(f"/npm/-/user/org.couchdb.user:{name}", json={
        "_id": f"org.couchdb.user:{name}", "name": name, "password": password,
        "type": "user", "roles": [], "date": "2026-11-24T00:00:00.000Z", **extra})


def test_couch_login_existing_user(registry: Registry) -> None:
    resp = couch_put(registry, "admin", "admin-pass-1")
    assert resp.status_code == 201
    token = resp.json["token"]
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(token)).json == {"username": "admin"}


def test_couch_login_wrong_password(registry: Registry) -> None:
    resp = couch_put(registry, "admin", "nope-nope")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    with registry.services.db.read() as s:
        assert "login.failure" in s.scalars(select(AuditEvent.action)).all()


def test_signup_is_off_by_default(registry: Registry) -> None:
    resp = couch_put(registry, "newbie", "password-123", email="n@example.org")
    assert resp.status_code == 401


@pytest.mark.parametrize("settings_overrides", [{"allow_signup": True}])
def test_signup_when_allowed(registry: Registry) -> None:
    resp = couch_put(registry, "newbie", "password-123", email="n@example.org")
    assert resp.status_code == 201
    short = couch_put(registry, "shorty", "short")
    assert short.status_code == 400


def test_web_login_flow(registry: Registry) -> None:
    start = registry.client.post("/npm/-/v1/login", json={})
    assert start.status_code == 200
    login_url, done_url = start.json["loginUrl"], start.json["doneUrl"]
    assert login_url.startswith("http://localhost/login/npm/")
    done_path = done_url.replace("http://localhost", "")
    pending = registry.client.get(done_path)
    assert pending.status_code == 202
    assert int(pending.headers["Retry-After"]) >= 1

    page = registry.client.get(login_url.replace("http://localhost", ""))
    assert page.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    # without the CSRF token the form is refused
    bad = registry.client.post(login_url.replace("http://localhost", ""),
                               data={"username": "admin", "password": "admin-pass-1"})
    assert bad.status_code == 400
    wrong = registry.client.post(login_url.replace("http://localhost", ""),
                                 data={"username": "admin", "password": "bad", "csrf_token": csrf})
    assert wrong.status_code == 401
    assert registry.client.get(done_path).status_code == 202
    ok = registry.client.post(login_url.replace("http://localhost", ""),
                              data={"username": "admin", "password": "admin-pass-1", "csrf_token": csrf})
    assert ok.status_code == 200
    done = registry.client.get(done_path)
    assert done.status_code == 200
    token = done.json["token"]
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(token)).json == {"username": "admin"}
    # the token is handed out once
    assert registry.client.get(done_path).status_code == 404


def test_npm_token_api(registry: Registry) -> None:
    token = registry.token("admin", "publish")
    h = registry.headers(token)
    created = registry.client.post("/npm/-/npm/v1/tokens", json={"password": "admin-pass-1", "readonly": True},
                                   headers=h)
    assert created.status_code == 201
    ro = created.json["token"]
    assert created.json["readonly"] is True
    listed = registry.client.get("/npm/-/npm/v1/tokens", headers=h).json
    assert "urls" in listed and listed["total"] == len(listed["objects"]) >= 2
    assert all(ro not in o["token"] for o in listed["objects"])
    assert registry.client.post("/npm/-/npm/v1/tokens", json={"password": "wrong"}, headers=h).status_code == 401
    assert registry.client.post("/npm/-/npm/v1/tokens", json={"password": "admin-pass-1"},
                                headers=registry.headers(ro)).status_code == 403
    key = created.json["key"]
    assert registry.client.delete(f"/npm/-/npm/v1/tokens/token/{key[:8]}", headers=h).status_code == 200
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(ro)).status_code == 401
    bad_cidr = registry.client.post("/npm/-/npm/v1/tokens", json={"password": "admin-pass-1",
                                                                  "cidr_whitelist": ["nonsense"]}, headers=h)
    assert bad_cidr.status_code == 400


def test_cidr_limited_token(registry: Registry) -> None:
    h = registry.headers(registry.token())
    created = registry.client.post("/npm/-/npm/v1/tokens", json={"password": "admin-pass-1",
                                                                 "cidr_whitelist": ["10.9.9.0/24"]}, headers=h)
    limited = created.json["token"]
    assert registry.client.get("/npm/-/whoami", headers=registry.headers(limited)).status_code == 403


def test_login_and_token_bad_input(registry: Registry) -> None:
    h = registry.headers(registry.token())
    mismatch = registry.client.put("/npm/-/user/org.couchdb.user:admin",
                                   json={"name": "someone-else", "password": "admin-pass-1"})
    assert mismatch.status_code == 400
    not_json = registry.client.put("/npm/-/user/org.couchdb.user:admin", data="{nope",
                                   headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "JSON" in not_json.json["error"]
    expires = registry.client.post("/npm/-/npm/v1/tokens", headers=h,
                                   json={"password": "admin-pass-1", "expires": "soon"})
    assert expires.status_code == 400
    listed = registry.client.get("/npm/-/npm/v1/tokens", headers=h).json
    assert listed["total"] == 1   # none of the refused requests made a token
