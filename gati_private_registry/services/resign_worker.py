"""Re-signing after a key change, in the server: a follower of the changes feed.

``gati-registry keys create|rotate`` re-signs in the foreground and shows progress; when
that command is interrupted, or keys change through another door, the server finishes
the job. The holder of the ``signing`` lease reads the changes feed from its cursor;
when it meets a ``keys.change`` it signs, a batch per transaction, every approved version
the active pair has not signed (:meth:`KeyService.resign`, which is resumable and
idempotent), renewing the lease between batches, and only then moves its cursor past
that change. A process that dies mid-way leaves the cursor before the change, so the
next holder starts again and signs only what is still missing.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import func, select, update

from ..storage.db import Database
from ..storage.models import Change, WorkerLease
from .leases import Lease
from .signing import KeyService

log = logging.getLogger(__name__)

LEASE_NAME = "signing"
#: changes looked at per pass
BATCH = 1000


@dataclass(frozen=True)
class ResignResult:
    held: bool
    signed: int = 0
    cursor: int = 0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ResignFollower:
    def __init__(self, db: Database, keys: KeyService, *, holder: str | None = None) -> None:
        # bookkeeping writes (lease, cursor) change nothing readers cache: no generation bump
        self.db = Database(db.engine, after_commit=None, lock_path=db.lock_path)
        self.keys = keys
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease = Lease(self.db, LEASE_NAME, self.holder)

    def run_once(self, clock: Callable[[], datetime] = _utcnow) -> ResignResult:
        """One pass; see the module docstring. Returns what it did."""
        if not self.lease.acquire(clock()):
            return ResignResult(held=False)
        with self.db.read() as s:
            cursor = int(s.scalar(select(WorkerLease.cursor).where(
                WorkerLease.name == LEASE_NAME)) or 0)
            rows = s.execute(select(Change.seq, Change.kind).where(Change.seq > cursor)
                             .order_by(Change.seq).limit(BATCH)).all()
        if not rows:
            return ResignResult(held=True, cursor=cursor)
        signed = 0
        if any(r.kind == "keys.change" for r in rows):
            def renew(done: int, total: int) -> None:
                self.lease.acquire(clock())  # a long re-signing keeps its lease

            signed = self.keys.resign(progress=renew)
            if signed:
                log.info("re-signed %d approved versions after a key change", signed)
        new_cursor = rows[-1].seq
        with self.db.write() as s:
            s.execute(update(WorkerLease).where(
                WorkerLease.name == LEASE_NAME, WorkerLease.holder == self.holder,
                WorkerLease.cursor == cursor).values(cursor=new_cursor))
        return ResignResult(held=True, signed=signed, cursor=new_cursor)

    def release(self) -> None:
        self.lease.release()

    def caught_up(self) -> bool:
        """Whether the cursor is at the end of the feed (for tests and health)."""
        with self.db.read() as s:
            cursor = s.scalar(select(WorkerLease.cursor).where(WorkerLease.name == LEASE_NAME))
            last = s.scalar(select(func.max(Change.seq)))
        return cursor is not None and (last is None or cursor >= last)
