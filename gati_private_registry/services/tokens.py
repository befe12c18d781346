"""Tokens: made (shown once, stored as a sha256), listed, revoked, and turned back into
the principal they stand for on every request (cached per process)."""
from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from typing import Callable
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..domain import ROLE_MAX_SCOPE, Origin, Principal, Role, Scope
from ..errors import FieldError, Forbidden, NotFound, Unauthenticated, ValidationFailed
from ..storage.changes import Generation
from ..storage.db import Database
from ..storage.db import aware as _aware
from ..storage.models import Token, User
from . import audit
from .directory_sync import Holder
from .teams import PACKAGE_PATTERN

TOKEN_PREFIX = "gati_"
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


#: called with a directory user's details and the caller's address on every use of one
#: of their tokens; raises to refuse the token (:meth:`.directory_sync.DirectorySync.confirm`)
HolderCheck = Callable[[Holder, str], None]


@dataclass
class _CachedPrincipal:
    principal: Principal
    expires_at: datetime | None
    cidr: list[str] | None
    generation: int
    checked: float
    #: set for users from a directory (re-checked), None for local users
    holder: Holder | None = None


def _info(row: Token) -> TokenInfo:
    return TokenInfo(id=row.id, key=row.key, prefix=row.prefix, name=row.name,
                     scope=Scope(row.scope), created_at=_aware(row.created_at),
                     expires_at=_aware(row.expires_at), last_used_at=_aware(row.last_used_at),
                     cidr=row.cidr, packages=row.packages)


class TokenService:
    """Makes, lists, revokes and authenticates tokens."""

    def __init__(self, db: Database, generation: Generation,
                 check_holder: HolderCheck | None = None) -> None:
        self.db = db
        self._check_holder = check_holder
        self._auth_generation = generation
        self._generation = generation.value
        self._cache: dict[str, _CachedPrincipal] = {}
        self._lock = threading.Lock()

    def new_row(self, s: Session, user: User, scope: Scope, name: str,
                expires_days: int | None, cidr: list[str] | None,
                packages: list[str] | None = None) -> tuple[str, Token]:
        """Add a token for ``user`` to the caller's transaction; returns (secret, row).

        Raises :class:`Forbidden` for a scope above the user's role."""
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
            secret, row = self.new_row(s, user, scope_v, name, expires_days, cidr, packages)
            audit.record(s, actor or "system", "token.create", username, origin,
                         token=row.key, scope=scope_v.value, packages=packages or [],
                         cidr=cidr or [])
            return NewToken(secret=secret, info=_info(row))

    def list_tokens(self, actor: Principal) -> list[TokenInfo]:
        """The actor's own live tokens (never their secrets)."""
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
        self.credentials_changed()

    def revoke_all(self, actor: Principal | None, username: str,
                   origin: Origin | None = None) -> int:
        """Revoke every live token of ``username`` (someone who left, a SAML user the
        identity provider dropped: SAML cannot tell us). ``actor`` None is the local
        operator. Returns how many were revoked.

        Raises :class:`Forbidden` (not an admin) and :class:`NotFound` (no such user)."""
        if actor is not None and not actor.is_admin:
            raise Forbidden("only admins may revoke another user's tokens")
        now = _now()
        with self.db.write() as s:
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFound(f"no user {username}")
            rows = s.scalars(select(Token).where(Token.user_id == user.id,
                                                 Token.revoked_at.is_(None))).all()
            for row in rows:
                row.revoked_at = now
                audit.record(s, actor or "system", "token.revoke", username, origin,
                             token=row.key, all=True)
        self.credentials_changed()
        return len(rows)

    def credentials_changed(self) -> None:
        """Some credential lost power: every process drops its cached principals."""
        self._auth_generation.bump()
        with self._lock:
            self._cache.clear()

    def authenticate_token(self, secret: str, ip: str = "") -> Principal:
        """The principal a bearer token stands for.

        Raises :class:`Unauthenticated` for unknown, revoked or expired tokens (and for
        a directory user the directory no longer lets in), :class:`Forbidden` for a
        request from outside the token's CIDR ranges, and :class:`Unavailable` when the
        directory cannot confirm its user for longer than ``[ldap] recheck_grace``.
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
        if hit.holder is not None and self._check_holder is not None:
            self._check_holder(hit.holder, ip)
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
            holder = Holder.of(user) if user.source != "local" else None
            entry = _CachedPrincipal(principal, _aware(row.expires_at), row.cidr, gen, now_mono,
                                     holder)
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


def _ip_in(ip: str, cidrs: list[str]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(c, strict=False) for c in cidrs)
