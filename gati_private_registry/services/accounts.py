"""Users, passwords, tokens, and the npm login flows."""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..storage.db import aware as _aware
from ..domain import ROLE_MAX_SCOPE, Origin, Principal, Role, Scope
from ..errors import (Conflict, FieldError, Forbidden, NotFound, Unauthenticated, Unavailable,
                      ValidationFailed)
from ..settings import Settings
from ..storage.changes import Generation
from ..storage.db import Database
from ..storage.models import Token, User, WebLogin
from . import audit
from .signon import SignOnService
from .teams import PACKAGE_PATTERN
from .validation import validate_package_name

log = logging.getLogger(__name__)

TOKEN_PREFIX = "gati_"
WEB_LOGIN_TTL = timedelta(minutes=10)
#: how long a cached token lookup is trusted without asking the database, for changes
#: made on other machines (this machine's writes invalidate at once via the generation)
TOKEN_CACHE_SECONDS = 5.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never the secret)."""

    id: int
    key: str
    prefix: str
    name: str
    scope: Scope
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    cidr: list[str] | None
    packages: list[str] | None = None


@dataclass(frozen=True)
class NewToken:
    """A freshly created token: ``secret`` is shown once and never stored."""

    secret: str
    info: TokenInfo


@dataclass
class _CachedPrincipal:
    principal: Principal
    expires_at: datetime | None
    cidr: list[str] | None
    generation: int
    checked: float


def _info(row: Token) -> TokenInfo:
    return TokenInfo(id=row.id, key=row.key, prefix=row.prefix, name=row.name,
                     scope=Scope(row.scope), created_at=_aware(row.created_at),
                     expires_at=_aware(row.expires_at), last_used_at=_aware(row.last_used_at),
                     cidr=row.cidr, packages=row.packages)


class AccountService:
    """Decides who someone is and what their credentials allow."""

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
            self._cache[key] = _CachedPrincipal(principal, None, None, gen, now_mono)
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

    # -- tokens ------------------------------------------------------------------------

    def _new_token_row(self, s: Session, user: User, scope: Scope, name: str,
                       expires_days: int | None, cidr: list[str] | None,
                       packages: list[str] | None = None) -> tuple[str, Token]:
        role_max = ROLE_MAX_SCOPE[Role(user.role)]
        if not role_max.allows(scope):
            raise Forbidden(f"a {user.role} cannot hold a {scope.value} token")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = _now()
        row = Token(key=secrets.token_hex(16), digest=token_digest(secret), prefix=secret[:10],
                    user_id=user.id, name=name[:200], scope=scope.value, cidr=cidr or None,
                    packages=packages or None, created_at=now,
                    expires_at=now + timedelta(days=expires_days) if expires_days else None)
        s.add(row)
        s.flush()
        return secret, row

    def create_token(self, actor: Principal | None, username: str, scope: Scope | str,
                     name: str = "", expires_days: int | None = None,
                     cidr: list[str] | None = None, origin: Origin | None = None,
                     packages: list[str] | None = None) -> NewToken:
        """Create a token for ``username``, optionally limited to CIDR ranges and to
        package-name patterns (``@payments/*``).

        ``actor`` None means the local operator (the ``gati-registry`` command). A user
        may create tokens for themselves with a publish or admin token; admins for anyone.
        Raises :class:`ValidationFailed`, :class:`Forbidden`, :class:`NotFound`.
        """
        errors: list[FieldError] = []
        try:
            scope_v = Scope(scope)
        except ValueError:
            errors.append(FieldError("scope", "must be one of read, publish, approve, admin"))
        if expires_days is not None and expires_days < 0:
            errors.append(FieldError("expires", "must be a positive number of days"))
        for c in cidr or []:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError:
                errors.append(FieldError("cidr_whitelist", f"not a CIDR range: {c}"))
        for p in packages or []:
            if not isinstance(p, str) or not PACKAGE_PATTERN.match(p):
                errors.append(FieldError("packages", f"not a package pattern: {p}"))
        if errors:
            raise ValidationFailed("invalid token request", details=errors)
        if actor is not None:
            if actor.username != username and not actor.is_admin:
                raise Forbidden("only admins may create tokens for other users")
            if not actor.can(Scope.PUBLISH):
                raise Forbidden("creating tokens needs a publish or admin token")
            if not actor.scope.allows(scope_v) and not actor.is_admin:
                raise Forbidden("a token cannot create a token with more power than itself")
            if actor.packages and not (packages and all(
                    any(fnmatchcase(p, mine) for mine in actor.packages) for p in packages)):
                raise Forbidden("a token limited to packages can only create tokens limited "
                                "to the same packages")
        with self.db.write() as s:
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFound(f"no user {username}")
            secret, row = self._new_token_row(s, user, scope_v, name, expires_days, cidr,
                                              packages)
            audit.record(s, actor or "system", "token.create", username, origin,
                         token=row.key, scope=scope_v.value, packages=packages or [],
                         cidr=cidr or [])
            return NewToken(secret=secret, info=_info(row))

    def login_token(self, user: User, origin: Origin | None, how: str) -> str:
        """A publish-scope token (read for readers) for a user who just proved who they are."""
        scope = min(ROLE_MAX_SCOPE[Role(user.role)], Scope.PUBLISH, key=lambda x: x.rank)
        with self.db.write() as s:
            row_user = s.get(User, user.id)
            assert row_user is not None
            secret, row = self._new_token_row(
                s, row_user, scope, f"{how} login", self.settings.auth.login_token_days or None,
                None)
            audit.record(s, user.username, "login.success", user.username, origin, via=how,
                         token=row.key)
        return secret

    def list_tokens(self, actor: Principal) -> list[TokenInfo]:
        with self.db.read() as s:
            rows = s.scalars(select(Token).where(Token.user_id == actor.user_id,
                                                 Token.revoked_at.is_(None))
                             .order_by(Token.id)).all()
        now = _now()
        return [_info(r) for r in rows if not (r.expires_at and _aware(r.expires_at) <= now)]

    def revoke_token(self, actor: Principal, key_or_secret: str, origin: Origin | None = None,
                     require_scope: bool = True) -> None:
        """Revoke by public key, key prefix (as npm sends it) or the secret itself.

        Raises :class:`NotFound` when nothing of the actor's matches and
        :class:`Forbidden` when the actor's token may not revoke."""
        if require_scope and not actor.can(Scope.PUBLISH):
            raise Forbidden("revoking tokens needs a publish or admin token")
        with self.db.write() as s:
            row = s.scalar(select(Token).where(Token.digest == token_digest(key_or_secret)))
            if row is None and len(key_or_secret) >= 6:
                row = s.scalar(select(Token).where(Token.key.startswith(key_or_secret, autoescape=True),
                                                   Token.revoked_at.is_(None)))
            if row is None or (row.user_id != actor.user_id and not actor.is_admin):
                raise NotFound("no such token")
            if row.revoked_at is None:
                row.revoked_at = _now()
                audit.record(s, actor, "token.revoke", row.user.username, origin, token=row.key)
        # every process (gunicorn workers) drops its cached view of this token now
        self._auth_generation.bump()
        self._cache.clear()

    def authenticate_token(self, secret: str, ip: str = "") -> Principal:
        """The principal a bearer token stands for.

        Raises :class:`Unauthenticated` for unknown, revoked or expired tokens and
        :class:`Forbidden` for a request from outside the token's CIDR ranges.
        Cached per process: a hit costs one sha256 and a dict lookup."""
        digest = token_digest(secret)
        gen = self._generation()
        now_mono = time.monotonic()
        hit = self._cache.get(digest)
        if hit is None or hit.generation != gen or now_mono - hit.checked > TOKEN_CACHE_SECONDS:
            hit = self._load_token(digest, gen, now_mono)
        if hit.expires_at is not None and hit.expires_at <= _now():
            raise Unauthenticated("token expired")
        if hit.cidr and not _ip_in(ip, hit.cidr):
            raise Forbidden("this token may not be used from this address")
        return hit.principal

    def _load_token(self, digest: str, gen: int, now_mono: float) -> _CachedPrincipal:
        with self.db.read() as s:
            row = s.scalar(select(Token).where(Token.digest == digest))
            if row is None or row.revoked_at is not None or row.user.disabled:
                self._cache.pop(digest, None)
                raise Unauthenticated("invalid or revoked token")
            user = row.user
            principal = Principal(user_id=user.id, username=user.username, role=Role(user.role),
                                  scope=Scope(row.scope), token_id=row.id,
                                  packages=tuple(row.packages or ()))
            stale_use = row.last_used_at is None or \
                _now() - _aware(row.last_used_at) > timedelta(minutes=1)
            entry = _CachedPrincipal(principal, _aware(row.expires_at), row.cidr, gen, now_mono)
        if stale_use:
            # last use is informational: updated at most once a minute per token
            with self.db.engine.begin() as conn:
                conn.execute(update(Token).where(Token.id == principal.token_id)
                             .values(last_used_at=_now()))
        with self._lock:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[digest] = entry
        return entry

    # -- npm login flows ---------------------------------------------------------------

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
        if not exists and self.signon.directory is None:
            if not (allow_create and self.settings.allow_signup):
                # same message as a wrong password: do not reveal which names exist
                self.check_password(username, password, origin)
            self.create_user(None, username, password, Role.PUBLISHER, email, origin)
        user = self.check_password(username, password, origin)
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


def _ip_in(ip: str, cidrs: list[str]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(c, strict=False) for c in cidrs)


@functools.cache
def _dummy_hash() -> str:
    return PasswordHasher().hash("not a real password")
