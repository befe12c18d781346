"""Re-checking directory (LDAP) users between sign-ins.

A token or panel session outlives the sign-in that made it, so the directory is asked
again, with the registry's service account, when such a credential is used and the
user's last sign-in or re-check is older than ``[ldap] recheck_interval``: is the user
still there (still matched by ``user_filter``, which is how a site says "disabled"), and
still in an allowed group? Role and rule-managed teams follow the groups found. A "no"
is remembered on the user (``directory_lost``), audited, and refuses every token and
session of theirs, on every process, until the directory says yes again (a sign-in, a
later re-check, or ``gati-registry user sync``).

When the directory cannot be reached we fail open, but only for a bounded time: its
last answer stands until ``recheck_interval + recheck_grace`` after it, then the user's
credentials are refused with 503 until it answers. Why: a directory restart or a
network blip must not stop every CI install in the organisation, while someone removed
from the directory during a long outage must not keep access for the length of it.
Local accounts (the break-glass admin, CI users) are never re-checked.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from ..domain import Origin, Principal
from ..errors import Forbidden, NotFound, Unauthenticated, Unavailable
from ..settings import Settings
from ..storage.db import Database
from ..storage.db import aware as _aware
from ..storage.models import User
from . import audit
from .signon import SSO_ACTOR, SignOnService

log = logging.getLogger(__name__)

#: after a re-check found the directory unreachable, this process does not ask it again
#: for this long (each attempt can cost the LDAP timeout, twice); the grace rules apply
OUTAGE_BACKOFF_SECONDS = 30.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Holder:
    """The user behind a token or a session, as far as the re-check cares."""

    user_id: int
    username: str
    source: str
    checked_at: datetime | None
    lost: bool

    @classmethod
    def of(cls, user: User) -> "Holder":
        return cls(user.id, user.username, user.source, _aware(user.directory_checked_at),
                   bool(user.directory_lost))


@dataclass(frozen=True)
class SyncResult:
    """What a re-check found: ``allowed`` False with the ``reason`` when the directory
    no longer lets the user in."""

    username: str
    allowed: bool
    reason: str = ""


class DirectorySync:
    """Keeps directory users' access in step with the directory between sign-ins."""

    def __init__(self, settings: Settings, db: Database, signon: SignOnService) -> None:
        self.settings = settings
        self.db = db
        self.signon = signon
        #: user id -> (when, lost): the newest answer this process has had or written,
        #: so a cached token does not re-check on every request until its cache expires
        self._seen: dict[int, tuple[datetime, bool]] = {}
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._busy: set[int] = set()

    # -- on every use of a credential ----------------------------------------------------

    def confirm(self, holder: Holder, origin: Origin | None = None, via: str = "token") -> None:
        """Called whenever a token or a session of ``holder`` is used. Returns when the
        user may go on; re-checks with the directory first when the last answer is older
        than ``recheck_interval``.

        Raises :class:`Unauthenticated` when the directory no longer lets the user in,
        :class:`Unavailable` when it cannot be asked and its last answer is older than
        ``recheck_interval + recheck_grace``."""
        if holder.source != "ldap":
            return
        checked_at, lost = holder.checked_at, holder.lost
        seen = self._seen.get(holder.user_id)
        if seen is not None and (checked_at is None or seen[0] > checked_at):
            checked_at, lost = seen
        directory = self.signon.directory
        now = _now()
        interval = timedelta(seconds=self.settings.ldap.recheck_interval)
        if directory is None or (checked_at is not None and now - checked_at < interval):
            # no directory configured any more: its last word stands
            if lost:
                raise Unauthenticated(_LOST)
            return
        with self._lock:
            # one re-check per user at a time in this process; the others go on with the
            # last answer while it runs (a few milliseconds, normally)
            busy = holder.user_id in self._busy or time.monotonic() < self._down_until
            if not busy:
                self._busy.add(holder.user_id)
        if busy:
            self._last_answer(holder, checked_at, lost, now)
            return
        try:
            result = self._recheck(holder.username, origin, via)
        except Unavailable:
            with self._lock:
                self._down_until = time.monotonic() + OUTAGE_BACKOFF_SECONDS
            self._last_answer(holder, checked_at, lost, now)
            return
        finally:
            with self._lock:
                self._busy.discard(holder.user_id)
        if not result.allowed:
            raise Unauthenticated(_LOST)

    def _last_answer(self, holder: Holder, checked_at: datetime | None, lost: bool,
                     now: datetime) -> None:
        """The directory is not asked now: within the grace period its last answer
        stands; after it, nobody is let in on an answer that old."""
        if lost:
            raise Unauthenticated(_LOST)
        ldap = self.settings.ldap
        limit = timedelta(seconds=ldap.recheck_interval + ldap.recheck_grace)
        if checked_at is not None and now - checked_at < limit:
            return
        log.warning("directory unreachable: refusing the credentials of %s, last confirmed %s",
                    holder.username, checked_at.isoformat() if checked_at else "never")
        raise Unavailable("the sign-in directory (LDAP) cannot be reached to confirm this "
                          "account; try again later")

    # -- asking the directory ------------------------------------------------------------

    def _recheck(self, username: str, origin: Origin | None, via: str) -> SyncResult:
        directory = self.signon.directory
        if directory is None:
            raise Unavailable("no directory is configured (LDAP is not enabled)")
        identity = directory.lookup(username)  # Unavailable propagates: nothing changes
        reason = ""
        if identity is None:
            reason = "not in the directory"
        elif not self.signon.allowed(identity):
            reason = "not in an allowed group"
        now = _now()
        changed = False
        with self.db.write() as s:
            user = s.scalar(select(User).where(User.username == username))
            if user is None or user.source != "ldap":
                raise NotFound(f"no directory user {username}")
            if identity is not None:
                # role and rule-managed teams follow the groups found, allowed or not
                changed = self.signon.apply(s, user, identity, origin)
            if reason and not user.directory_lost:
                user.directory_lost = changed = True
                audit.record(s, SSO_ACTOR, "user.directory.lost", username, origin,
                             reason=reason, via=via)
                log.info("directory user %s lost access (%s)", username, reason)
            elif not reason and user.directory_lost:
                user.directory_lost = False
                changed = True
                audit.record(s, SSO_ACTOR, "user.directory.restored", username, origin,
                             via=via, source="ldap")
            user.directory_checked_at = now
            user_id = user.id
        with self._lock:
            self._seen[user_id] = (now, bool(reason))
        if changed:
            # every process drops its cached view of this user's tokens now (access lost
            # or given back, a lower role, a team left)
            self.signon.credentials_changed()
        return SyncResult(username, not reason, reason)

    # -- the admin's forced re-check -----------------------------------------------------

    def sync(self, actor: Principal | None, username: str,
             origin: Origin | None = None) -> SyncResult:
        """Re-check ``username`` now, whatever the interval (``gati-registry user sync``,
        ``POST /api/users/NAME/sync``). ``actor`` None is the local operator.

        Raises :class:`Forbidden` (not an admin), :class:`NotFound` (no such directory
        user), :class:`Unavailable` (no directory configured, or it cannot answer)."""
        if actor is not None and not actor.is_admin:
            raise Forbidden("only admins may re-check users against the directory")
        with self.db.read() as s:
            user = s.scalar(select(User).where(User.username == username))
        if user is None or user.source != "ldap":
            raise NotFound(f"no directory (LDAP) user {username}")
        return self._recheck(username, origin, "sync")

    def sync_all(self, actor: Principal | None,
                 origin: Origin | None = None) -> list[SyncResult]:
        """:meth:`sync` for every directory user, by name. Stops at the first
        :class:`Unavailable` (what was re-checked before it stays done)."""
        if actor is not None and not actor.is_admin:
            raise Forbidden("only admins may re-check users against the directory")
        with self.db.read() as s:
            names = list(s.scalars(select(User.username).where(User.source == "ldap")
                                   .order_by(User.username)))
        return [self._recheck(name, origin, "sync") for name in names]


_LOST = "this account is no longer allowed by the sign-in directory: sign in again"
