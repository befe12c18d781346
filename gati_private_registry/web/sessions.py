"""Panel sessions with Flask-Login: signed, HttpOnly, SameSite=Lax cookies (Secure when
the registry is served over TLS), the user reloaded from the database on every request
so a role change or a disabled account takes effect at once."""
from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, session
from flask_login import LoginManager, UserMixin, login_user, logout_user

from ..domain import Origin
from ..errors import NotFound
from ..services import Services
from ..storage.models import User


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
        if row.disabled:
            return None
        return PanelUser(row)

    manager.user_loader(_load)

    @app.before_request
    def _current() -> None:
        from flask_login import current_user

        # g.user: the database row, for views and templates (None when signed out)
        g.user = current_user.row if current_user.is_authenticated else None


def sign_in(row: User, origin: Origin, how: str) -> None:
    """Start a fresh session for ``row`` (never reusing the old one's contents) and
    audit the sign-in."""
    services: Services = current_app.extensions["gati"]
    session.clear()
    login_user(PanelUser(row))
    g.user = row
    services.accounts.record_sign_in(row, origin, how)


def sign_out() -> dict[str, Any]:
    """End the session; returns what it held (for SAML single logout)."""
    held = dict(session)
    logout_user()
    session.clear()
    g.user = None
    return held
