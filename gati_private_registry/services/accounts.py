"""Users and passwords: local accounts, the directory (LDAP) behind them at sign-in,
and HTTP Basic credentials. Tokens are in :mod:`.tokens`, npm's sign-in flows in
:mod:`.logins`, lockout and directory identities in :mod:`.signon`."""
from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..domain import ROLE_MAX_SCOPE, Origin, Principal, Role, Scope
from ..errors import Conflict, FieldError, Forbidden, NotFound, Unauthenticated, Unavailable, \
    ValidationFailed
from ..settings import Settings
from ..storage.changes import Generation
from ..storage.db import Database
from ..storage.models import User
from . import audit
from .signon import SignOnService
from .validation import validate_package_name

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _CachedPrincipal:
    principal: Principal
    generation: int
    checked: float


class AccountService:
    """Users: creating them, checking their passwords, the principal each one is."""

    def __init__(self, settings: Settings, db: Database, generation: Generation,
                 signon: SignOnService | None = None) -> None:
        self.settings = settings
        self.db = db
        self.signon = signon or SignOnService(settings, db, None, generation.bump)
        self._auth_generation = generation
        self._generation = generation.value
        self._hasher = PasswordHasher()
        self._cache: dict[str, _CachedPrincipal] = {}
        self._lock = threading.Lock()

    # -- users -------------------------------------------------------------------------

    def _validate_new_user(self, username: str, password: str | None, role: str) -> list[FieldError]:
        errors = [FieldError("username", e.message)
                  for e in validate_package_name(username) if not username.startswith("@")]
        if username.startswith("@") or "/" in username:
            errors.append(FieldError("username", "may not contain '@' or '/'"))
        if password is not None and len(password) < self.settings.auth.min_password_length:
            errors.append(FieldError(
                "password", f"must be at least {self.settings.auth.min_password_length} characters"))
        if role not in {r.value for r in Role}:
            errors.append(FieldError("role", f"must be one of {', '.join(r.value for r in Role)}"))
        return errors

    def create_user(self, actor: Principal | None, username: str, password: str | None,
                    role: Role | str, email: str = "", origin: Origin | None = None) -> int:
        """Create a local user; returns its id.

        Raises :class:`ValidationFailed` (bad name, short password, unknown role),
        :class:`Conflict` (name taken), :class:`Forbidden` (actor not an admin).
        """
        role_v = role.value if isinstance(role, Role) else role
        if actor is not None and not actor.is_admin:
            raise Forbidden("only admins may create users")
        errors = self._validate_new_user(username, password, role_v)
        if errors:
            raise ValidationFailed("invalid user", details=errors)
        now = _now()
        try:
            with self.db.write() as s:
                if s.scalar(select(User.id).where(User.username == username)) is not None:
                    raise Conflict(f"user {username} already exists")
                user = User(username=username, email=email, role=role_v,
                            password_hash=self._hasher.hash(password) if password else None,
                            created_at=now, updated_at=now)
                s.add(user)
                s.flush()
                audit.record(s, actor or "system", "user.create", username, origin, role=role_v)
                return user.id
        except IntegrityError:
            raise Conflict(f"user {username} already exists") from None

    def ensure_admin(self) -> str | None:
        """On first start with no users, create ``admin``. Returns the generated password
        when one had to be made up (the caller prints it once), else None."""
        with self.db.read() as s:
            if s.scalar(select(User.id).limit(1)) is not None:
                return None
        password = self.settings.admin_password
        generated = None
        if not password:
            password = generated = secrets.token_urlsafe(18)
        try:
            self.create_user(None, "admin", password, Role.ADMIN)
        except Conflict:  # another worker won the race
            return None
        return generated

    def check_password(self, username: str, password: str, origin: Origin | None = None) -> User:
        """Return the user when ``password`` is right: a local user's own password, or
        else the directory's answer (LDAP, when configured), which also applies the
        sign-on rules (role, teams) at this sign-in.

        Raises :class:`Unauthenticated` (scheme Basic) for an unknown user, a wrong
        password or a disabled account, and records the failure; :class:`RateLimited`
        for a locked name or address; :class:`Unavailable` when the directory cannot be
        asked (never a sign-in); :class:`Forbidden` for a directory user outside the
        allowed groups."""
        if "\x00" in username:  # no name holds NUL (and PostgreSQL cannot compare one)
            self.signon.failed(username, origin, "malformed name")
            raise Unauthenticated("incorrect username or password", scheme="Basic")
        self.signon.guard(username, origin.ip if origin else "")
        with self.db.read() as s:
            user = s.scalar(select(User).where(User.username == username))
        ok = False
        directory = self.signon.directory
        if user is not None and user.password_hash and not user.disabled:
            try:
                ok = self._hasher.verify(user.password_hash, password)
            except (VerificationError, InvalidHashError):
                ok = False
        elif directory is not None and (user is None or user.source == "ldap") and \
                not (user is not None and user.disabled):
            try:
                identity = directory.authenticate(username, password)
            except Unavailable:
                with self.db.write() as s:
                    audit.record(s, username[:214], "login.error", username, origin,
                                 reason="directory unavailable")
                raise
            if identity is not None:
                user = self.signon.provision(identity, origin)
                ok = True
        else:
            # spend the same time as a real check, so names cannot be probed by timing
            try:
                self._hasher.verify(_dummy_hash(), password)
            except (VerificationError, InvalidHashError):
                pass
        if not ok or user is None:
            self.signon.failed(username, origin, "wrong name or password")
            raise Unauthenticated("incorrect username or password", scheme="Basic")
        return user

    def record_sign_in(self, user: User, origin: Origin | None, how: str) -> None:
        """Audit a sign-in that made no token (the panel's session)."""
        with self.db.write() as s:
            audit.record(s, user.username, "login.success", user.username, origin, via=how)

    def authenticate_basic(self, username: str, password: str,
                           origin: Origin | None = None) -> Principal:
        """The principal for HTTP Basic credentials (npm's ``_auth``), which clients send
        on every request. A verified pair is remembered for a minute, by a keyed digest
        (never the password), so reads do not pay a password hash each.

        Raises :class:`Unauthenticated`."""
        key = hashlib.sha256(b"basic\0" + username.encode() + b"\0" + password.encode()).hexdigest()
        gen = self._generation()
        now_mono = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit.generation == gen and now_mono - hit.checked < 60.0:
            return hit.principal
        user = self.check_password(username, password, origin)
        principal = self.principal_for_user(user)
        with self._lock:
            self._cache[key] = _CachedPrincipal(principal, gen, now_mono)
        return principal

    def get_user(self, username: str) -> User:
        with self.db.read() as s:
            user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user {username}")
        return user

    def get_user_by_id(self, user_id: int) -> User:
        """Raises :class:`NotFound`."""
        with self.db.read() as s:
            user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        return user

    def principal_for_user(self, user: User, scope: Scope | None = None) -> Principal:
        role = Role(user.role)
        return Principal(user_id=user.id, username=user.username, role=role,
                         scope=scope or ROLE_MAX_SCOPE[role])


@functools.cache
def _dummy_hash() -> str:
    return PasswordHasher().hash("not a real password")
