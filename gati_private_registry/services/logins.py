"""npm's sign-in flows: the legacy couchdb user PUT (``npm login --auth-type=legacy``,
``npm adduser``) and the web login (``/-/v1/login``: a browser confirms, npm polls).
Both end in a new token for the person who proved who they are."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import ROLE_MAX_SCOPE, Origin, Role, Scope
from ..errors import FieldError, NotFound, ValidationFailed
from ..settings import Settings
from ..storage.db import Database
from ..storage.db import aware as _aware
from ..storage.models import User, WebLogin
from . import audit
from .accounts import AccountService
from .tokens import TokenService, token_digest

WEB_LOGIN_TTL = timedelta(minutes=10)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class LoginService:
    """Signs people in from npm and hands them a token."""

    def __init__(self, settings: Settings, db: Database, accounts: AccountService,
                 tokens: TokenService) -> None:
        self.settings = settings
        self.db = db
        self.accounts = accounts
        self.tokens = tokens

    def login_token(self, user: User, origin: Origin | None, how: str) -> str:
        """A publish-scope token (read for readers) for a user who just proved who they are."""
        scope = min(ROLE_MAX_SCOPE[Role(user.role)], Scope.PUBLISH, key=lambda x: x.rank)
        with self.db.write() as s:
            row_user = s.get(User, user.id)
            assert row_user is not None
            secret, row = self.tokens.new_row(
                s, row_user, scope, f"{how} login", self.settings.auth.login_token_days or None,
                None)
            audit.record(s, user.username, "login.success", user.username, origin, via=how,
                         token=row.key)
        return secret

    def couch_login(self, username: str, password: str, email: str = "",
                    origin: Origin | None = None, allow_create: bool = True) -> str:
        """``PUT /-/user/org.couchdb.user:NAME``: sign in (or sign up, when the settings
        allow it) and return a new token.

        Raises :class:`Unauthenticated` for a wrong password, :class:`Forbidden` when the
        user does not exist and sign-up is off, :class:`ValidationFailed` for bad input."""
        if not username or not password:
            raise ValidationFailed("username and password are required", details=[
                FieldError("name" if not username else "password", "required")])
        with self.db.read() as s:
            exists = s.scalar(select(User.id).where(User.username == username)) is not None
        # with a directory, an unknown name is asked of the directory (check_password
        # provisions the user); sign-up makes local accounts only without one
        if not exists and self.accounts.signon.directory is None:
            if not (allow_create and self.settings.allow_signup):
                # same message as a wrong password: do not reveal which names exist
                self.accounts.check_password(username, password, origin)
            self.accounts.create_user(None, username, password, Role.PUBLISHER, email, origin)
        user = self.accounts.check_password(username, password, origin)
        return self.login_token(user, origin, "npm")

    def start_web_login(self, create: bool = False) -> str:
        """Begin a web login; returns the random session id for the login and done URLs."""
        sid = secrets.token_urlsafe(32)
        now = _now()
        with self.db.write() as s:
            s.add(WebLogin(digest=token_digest(sid), created_at=now,
                           expires_at=now + WEB_LOGIN_TTL, create_user=create))
        return sid

    def _web_login(self, s: Session, sid: str) -> WebLogin:
        row = s.get(WebLogin, token_digest(sid))
        if row is None or row.consumed or _aware(row.expires_at) <= _now():
            raise NotFound("this login link has expired or was already used")
        return row

    def check_web_login(self, sid: str) -> None:
        """Raise :class:`NotFound` when ``sid`` is not a live web-login session."""
        with self.db.read() as s:
            self._web_login(s, sid)

    def confirm_web_login(self, sid: str, user: User, origin: Origin | None = None) -> None:
        """A signed-in person approved the npm session ``sid``."""
        with self.db.write() as s:
            row = self._web_login(s, sid)
            row.user_id = user.id
            audit.record(s, user.username, "login.web.confirm", user.username, origin)

    def poll_web_login(self, sid: str, origin: Origin | None = None) -> str | None:
        """None while nobody has confirmed; the token, exactly once, after.

        Raises :class:`NotFound` for an unknown, expired or used session."""
        with self.db.read() as s:
            row = self._web_login(s, sid)
            if row.user_id is None:
                return None
        with self.db.write() as s:
            row = self._web_login(s, sid)
            row.consumed = True
            user = s.get(User, row.user_id)
            assert user is not None
        return self.login_token(user, origin, "web")
