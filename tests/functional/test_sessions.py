"""Panel sessions (Flask-Login): cookie flags, CSRF, and sign-in protection: lockout
after repeated failures, a per-address limit, every attempt audited (both backends)."""
from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select, update

from gati_private_registry.storage.models import AuditEvent, User

from .driver import Registry


def csrf_of(registry: Registry, path: str = "/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"',
                     registry.client.get(path).text).group(1)


def post_login(registry: Registry, username: str, password: str, csrf: str | None = None) -> Any:
    return registry.client.post("/login", data={"username": username, "password": password,
                                                "csrf_token": csrf or csrf_of(registry)})


def test_session_cookie_flags_and_csrf(registry: Registry) -> None:
    assert registry.client.post("/login", data={"username": "admin",
                                                "password": "admin-pass-1"}).status_code == 400
    ok = post_login(registry, "admin", "admin-pass-1")
    assert ok.status_code == 302
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert registry.client.get("/admin/audit").status_code == 200
    # signing out needs the CSRF token too, and ends the session
    assert registry.client.post("/logout").status_code == 400
    assert registry.client.post("/logout", data={"csrf_token": csrf_of(registry, "/")}).status_code == 302
    assert registry.client.get("/admin/audit").status_code == 302


@pytest.mark.parametrize("settings_overrides", [{"public_url": "https://registry.example"}])
def test_cookies_are_secure_behind_tls(registry: Registry) -> None:
    ok = post_login(registry, "admin", "admin-pass-1")
    assert "Secure" in ok.headers["Set-Cookie"]


def test_lockout_after_repeated_failures(registry: Registry) -> None:
    for _ in range(5):
        assert post_login(registry, "admin", "wrong-password").status_code == 401
    locked = post_login(registry, "admin", "admin-pass-1")
    assert locked.status_code == 429 and "too many failed sign-ins" in locked.text
    # npm and Basic auth are locked the same way
    npm = registry.client.put("/npm/-/user/org.couchdb.user:admin",
                              json={"name": "admin", "password": "admin-pass-1"})
    assert npm.status_code == 429 and npm.headers["Retry-After"] == "900"
    with registry.services.db.read() as s:
        failures = s.scalars(select(AuditEvent).where(AuditEvent.action == "login.failure")).all()
    assert len(failures) == 5 and all(f.ip == "127.0.0.1" for f in failures)


def test_the_lock_expires(registry: Registry) -> None:
    for _ in range(5):
        post_login(registry, "admin", "wrong-password")
    assert post_login(registry, "admin", "admin-pass-1").status_code == 429
    # the audit log is append-only, so age the lock through the clock instead: a
    # lockout window of 0 minutes has nothing in it
    object.__setattr__(registry.services.settings.sso, "lockout_minutes", 0)
    assert post_login(registry, "admin", "admin-pass-1").status_code == 302


def test_a_success_starts_the_count_again(registry: Registry) -> None:
    for _ in range(4):
        post_login(registry, "admin", "wrong-password")
    assert post_login(registry, "admin", "admin-pass-1").status_code == 302
    for _ in range(4):
        post_login(registry, "admin", "wrong-password")
    assert post_login(registry, "admin", "admin-pass-1").status_code == 302


@pytest.mark.parametrize("settings_overrides", [{"sso": {"max_failures_per_ip": 3}}])
def test_failures_from_one_address_are_limited(registry: Registry) -> None:
    for name in ("a1", "a2", "a3"):
        assert post_login(registry, name, "guess").status_code == 401
    limited = post_login(registry, "admin", "admin-pass-1")
    assert limited.status_code == 429 and "your address" in limited.text


def test_the_user_is_reloaded_on_every_request(registry: Registry) -> None:
    registry.add_user("ann", "admin")
    post_login(registry, "ann", "password-123")
    assert registry.client.get("/admin/audit").status_code == 200
    with registry.services.db.write() as s:
        s.execute(update(User).where(User.username == "ann").values(role="publisher"))
    assert registry.client.get("/admin/audit").status_code == 403
    with registry.services.db.write() as s:
        s.execute(update(User).where(User.username == "ann").values(disabled=True))
    assert registry.client.get("/admin/audit").status_code == 302  # signed out
