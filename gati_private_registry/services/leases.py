"""Leases on background jobs that follow the changes feed.

A row in ``worker_leases`` names the process that runs a job now and how far the job got
(``cursor``, a changes-feed ``seq``). Any process, on any replica, takes a lease that is
free or expired with one compare-and-set UPDATE, so exactly one runs the job at a time
and another takes over within :data:`LEASE` when it stops.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..storage.db import aware
from ..storage.db import Database
from ..storage.models import WorkerLease

log = logging.getLogger(__name__)

#: how long a lease lasts without renewal; the holder renews when half of it is left
LEASE = timedelta(seconds=30)


class Lease:
    """One named lease, held (or wanted) by ``holder``."""

    def __init__(self, db: Database, name: str, holder: str,
                 initial_cursor: Callable[[Session], int] = lambda s: 0) -> None:
        self.db = db
        self.name = name
        self.holder = holder[:200]
        self._initial_cursor = initial_cursor
        self.current_holder = ""

    def _create(self) -> None:
        try:
            with self.db.write() as s:
                if s.get(WorkerLease, self.name) is not None:
                    return
                s.add(WorkerLease(name=self.name, holder="", expires_at=None,
                                  cursor=self._initial_cursor(s)))
        except IntegrityError:
            pass  # another process created it at the same moment (PostgreSQL)

    def acquire(self, now: datetime) -> bool:
        """Take the lease when it is free or expired, or renew ours; True when held."""
        with self.db.read() as s:
            row = s.get(WorkerLease, self.name)
        if row is None:
            self._create()
            with self.db.read() as s:
                row = s.get(WorkerLease, self.name)
            assert row is not None
        expires = aware(row.expires_at)
        if row.holder == self.holder and expires is not None and expires - now > LEASE / 2:
            self.current_holder = self.holder
            return True
        if row.holder not in ("", self.holder) and expires is not None and expires > now:
            self.current_holder = row.holder
            return False
        # compare-and-set: of several processes seeing a free lease, one wins
        with self.db.write() as s:
            count: int = s.connection().execute(update(WorkerLease).where(
                WorkerLease.name == self.name,
                or_(WorkerLease.holder == self.holder, WorkerLease.holder == "",
                    WorkerLease.expires_at.is_(None), WorkerLease.expires_at <= now),
            ).values(holder=self.holder, expires_at=now + LEASE)).rowcount
        taken = count == 1
        if taken and self.current_holder != self.holder:
            log.info("%s runs in this process (%s)", self.name, self.holder)
        self.current_holder = self.holder if taken else row.holder
        return taken

    def release(self) -> None:
        """Give the lease up (on shutdown), so another process takes over at once."""
        with self.db.write() as s:
            s.execute(update(WorkerLease).where(WorkerLease.name == self.name,
                                                WorkerLease.holder == self.holder)
                      .values(holder="", expires_at=None))
