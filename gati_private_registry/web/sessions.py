"""Panel sessions with Flask-Login: signed, HttpOnly, SameSite=Lax cookies (Secure when
the registry is served over TLS), the user reloaded from the database on every request
so a role change or a disabled account takes effect at once. A directory (LDAP) user is
re-checked like their tokens are (services/directory_sync.py); a session from a SAML
sign-in ends after ``[saml] session_lifetime``."""
from __future__ import annotations

import time
from typing import Any

from flask import Flask, current_app, g, request, session
from flask_login import LoginManager, UserMixin, login_user, logout_user

from ..domain import Origin
from ..errors import NotFound, Unauthenticated
from ..services import Services
from ..services.directory_sync import Holder
from ..storage.models import User
from . import auth


class PanelUser(UserMixin):  # type: ignore[misc]
    """The signed-in person, as Flask-Login wants it; ``row`` is the database user."""

    def __init__(self, row: User) -> None:
        self.row = row

    def get_id(self) -> str:
        return str(self.row.id)


def init_app(app: Flask, services: Services) -> None:
    secure = services.settings.public_url.startswith("https://")
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
    )
    manager = LoginManager()
    manager.login_view = "panel.login"
    # "strong": a session cookie replayed from another client (other address or user
    # agent) is dropped, the person signs in again
    manager.session_protection = "strong"
    manager.init_app(app)

    def _load(user_id: str) -> PanelUser | None:
        try:
            row = services.accounts.get_user_by_id(int(user_id))
        except (NotFound, ValueError):
            return None
        if row.disabled or _expired(services, row):
            session.clear()
            return None
        try:
            # a directory user is re-checked like their tokens are; Unavailable (the
            # directory down past the grace period) goes on to the error page, a 503
            services.directory_sync.confirm(
                Holder.of(row), auth.origin(request.environ, services.settings), "session")
        except Unauthenticated:
            session.clear()
            return None
        return PanelUser(row)

    manager.user_loader(_load)

    @app.before_request
    def _current() -> None:
        from flask_login import current_user

        # g.user: the database row, for views and templates (None when signed out)
        g.user = current_user.row if current_user.is_authenticated else None


def _expired(services: Services, row: User) -> bool:
    """A session started by a SAML sign-in ends ``[saml] session_lifetime`` after it:
    the identity provider cannot tell us later that the person left."""
    if session.get("via") != "saml":
        return False
    started = session.get("signed_in_at")
    return not isinstance(started, (int, float)) or \
        time.time() - started > services.settings.saml.session_lifetime


def sign_in(row: User, origin: Origin, how: str) -> None:
    """Start a fresh session for ``row`` (never reusing the old one's contents) and
    audit the sign-in."""
    services: Services = current_app.extensions["gati"]
    session.clear()
    login_user(PanelUser(row))
    session["via"] = how
    session["signed_in_at"] = time.time()
    g.user = row
    services.accounts.record_sign_in(row, origin, how)


def sign_out() -> dict[str, Any]:
    """End the session; returns what it held (for SAML single logout)."""
    held = dict(session)
    logout_user()
    session.clear()
    g.user = None
    return held
