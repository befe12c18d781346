"""Webhook delivery: a follower of the changes feed.

One process at a time (across gunicorn workers and replicas) holds the ``webhooks``
lease in ``worker_leases``. The holder turns new changes into ``webhook_deliveries`` rows
and moves the lease's cursor in the same transaction, then POSTs the due deliveries
outside any transaction, retrying failures with exponential backoff. Everything is in the
database, so any process can take over where another stopped.

Each request carries ``X-Gati-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the exact
body bytes keyed with the webhook's secret (see ``webhook_http``).
"""
from __future__ import annotations

import atexit
import fnmatch
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..settings import Settings, WebhookSettings
from ..storage.changes import Generation
from ..storage.db import Database
from ..storage.models import Change, Webhook, WebhookDelivery, WorkerLease
from .background import Runner
from .leases import Lease
from .packuments import iso
from .webhook_http import USER_AGENT, Outcome, Transport, body_of, post, sign
from ..storage.db import aware

log = logging.getLogger(__name__)

LEASE_NAME = "webhooks"
#: changes read per transaction, and transactions per pass
BATCH, MAX_BATCHES = 200, 50
#: deliveries sent per pass
SEND_BATCH = 50
#: a gap in the feed older than this is taken to be a rolled-back transaction
GAP_GRACE = timedelta(seconds=60)
MAX_BACKOFF = 3600.0


class _LeaseLost(Exception):
    """Another process moved the cursor or took the lease: roll back this batch."""


@dataclass(frozen=True)
class PassResult:
    """What one :meth:`WebhookWorker.run_once` did."""

    held: bool
    holder: str
    enqueued: int = 0
    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def event_payload(change: Change, registry: str | None) -> dict[str, Any]:
    """The body of the event for ``change`` (without the delivery id)."""
    return {"event": change.kind, "seq": change.seq, "occurredAt": iso(change.at),
            "package": change.package, "version": change.version,
            "change": dict(change.payload or {}), "registry": registry}


def matches(hook: Webhook, change: Change) -> bool:
    """Whether ``hook`` subscribes to ``change``. A webhook gets the changes made after
    it was created, never the history."""
    created, at = aware(hook.created_at), aware(change.at)
    assert created is not None and at is not None
    return (change.kind in (hook.events or ()) and at >= created
            and fnmatch.fnmatchcase(change.package or "", hook.pattern))


def backoff(attempts: int, base: float) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: base, 2 x base, 4 x base ... 1 h."""
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class WebhookWorker:
    """One follower of the changes feed for webhooks. Drive it with :meth:`run_once`
    (the thread in :class:`WebhookRunner`, the CLI and tests do)."""

    def __init__(self, settings: Settings, db: Database, *, holder: str | None = None,
                 transport: Transport | None = None) -> None:
        self.config: WebhookSettings = settings.webhooks
        self.registry = settings.public_url.rstrip("/") or None
        # the bookkeeping writes (lease, cursor, delivery status) change nothing readers
        # cache, so they do not bump the data generation: a bump would invalidate every
        # packument cache and wake this loop again (same engine and write lock as
        # build_services)
        self.db = Database(db.engine, after_commit=None, lock_path=settings.data / "write.lock")
        self.holder = (holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}")[:200]
        self.transport: Transport = transport or post
        self.lease = Lease(self.db, LEASE_NAME, self.holder, self._initial_cursor)
        self._gaps: dict[int, datetime] = {}

    # -- the lease (see leases.py) ----------------------------------------------------

    @staticmethod
    def _initial_cursor(s: Session) -> int:
        # start where the oldest webhook starts: earlier changes go to nobody
        first = s.scalar(select(func.min(Webhook.created_at)))
        q = select(func.max(Change.seq))
        if first is not None:
            q = q.where(Change.at < first)
        return s.scalar(q) or 0

    @property
    def current_holder(self) -> str:
        return self.lease.current_holder

    def acquire(self, now: datetime) -> bool:
        """Take the lease when it is free or expired, or renew ours; True when held."""
        return self.lease.acquire(now)

    def release(self) -> None:
        """Give the lease up (on shutdown), so another process takes over at once."""
        self.lease.release()

    # -- changes → deliveries ------------------------------------------------------------

    def _ready(self, cursor: int, changes: Sequence[Change], now: datetime) -> list[Change]:
        """The changes that can be handled now, in order. On PostgreSQL a sequence number
        is taken at insert but seen at commit, so a missing number may still be an open
        transaction that commits later: stop there, unless the gap is older than
        GAP_GRACE (then it was rolled back; SQLite never has gaps)."""
        out: list[Change] = []
        expected = cursor + 1
        for change in changes:
            if change.seq != expected:
                first_seen = self._gaps.setdefault(expected, now)
                at = aware(change.at)
                assert at is not None
                if now - first_seen < GAP_GRACE and now - at < GAP_GRACE:
                    break
                log.warning("changes feed: skipping missing seq %d-%d (rolled back)",
                            expected, change.seq - 1)
            out.append(change)
            expected = change.seq + 1
        return out

    def _enqueue_batch(self, now: datetime) -> tuple[int, bool]:
        with self.db.read() as s:
            lease = s.get(WorkerLease, LEASE_NAME)
            assert lease is not None
            cursor = lease.cursor
            hooks = s.scalars(select(Webhook).where(Webhook.active.is_(True))).all()
            if hooks:
                changes = s.scalars(select(Change).where(Change.seq > cursor)
                                    .order_by(Change.seq).limit(BATCH)).all()
                ready = self._ready(cursor, changes, now)
                new_cursor = ready[-1].seq if ready else cursor
                more = len(changes) == BATCH and len(ready) == len(changes)
            else:
                # nobody listens: jump to the end (a webhook created later starts later)
                ready, new_cursor, more = [], s.scalar(select(func.max(Change.seq))) or 0, False
        if new_cursor <= cursor:
            return 0, False
        rows = [{"webhook_id": h.id, "change_seq": c.seq, "event": c.kind,
                 "payload": event_payload(c, self.registry), "status": "pending",
                 "attempts": 0, "next_attempt_at": now, "last_status": None, "last_error": "",
                 "duration_ms": None, "created_at": now, "delivered_at": None}
                for c in ready for h in hooks if matches(h, c)]
        with self.db.write() as s:
            # the cursor moves with the rows it produced, and only from where we read it:
            # a second process that got here too rolls back instead of queueing twice
            # (the unique (webhook_id, change_seq) constraint is the last guard)
            moved = s.connection().execute(update(WorkerLease).where(
                WorkerLease.name == LEASE_NAME, WorkerLease.holder == self.holder,
                WorkerLease.cursor == cursor).values(cursor=new_cursor)).rowcount
            if moved != 1:
                raise _LeaseLost()
            if rows:
                s.execute(insert(WebhookDelivery), rows)
        for seq in [k for k in self._gaps if k <= new_cursor]:
            del self._gaps[seq]
        return len(rows), more

    def enqueue(self, now: datetime) -> int:
        """Queue deliveries for the changes after the cursor; returns how many."""
        total = 0
        for _ in range(MAX_BATCHES):
            try:
                count, more = self._enqueue_batch(now)
            except _LeaseLost:
                log.info("webhooks: another process advanced the feed; this pass stops")
                break
            except IntegrityError as exc:
                # a webhook deleted since we read it (or a double): rolled back, and the
                # next pass reads again
                log.info("webhooks: batch not queued, retrying next pass (%s)",
                         exc.__class__.__name__)
                break
            total += count
            if not more:
                break
        return total

    # -- sending -------------------------------------------------------------------------

    def _claim(self, delivery_id: int, attempts: int, now: datetime) -> bool:
        # push the due time past this attempt, so that a process that takes the lease
        # meanwhile does not send it too; after a crash it is simply retried then
        hold = now + timedelta(seconds=self.config.timeout + 60)
        with self.db.write() as s:
            claimed: int = s.connection().execute(update(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == attempts, WebhookDelivery.next_attempt_at <= now,
            ).values(next_attempt_at=hold)).rowcount
        return claimed == 1

    def _record(self, delivery_id: int, attempts: int, outcome: Outcome, now: datetime) -> str:
        values: dict[str, Any] = {"last_status": outcome.status, "last_error": outcome.error,
                                  "duration_ms": outcome.duration_ms, "attempts": attempts + 1}
        if outcome.ok:
            status = "delivered"
            values.update(status=status, delivered_at=now, next_attempt_at=None)
        elif attempts + 1 >= self.config.max_attempts:
            status = "failed"
            values.update(status=status, next_attempt_at=None)
        else:
            status = "pending"
            values.update(next_attempt_at=now + backoff(attempts + 1, self.config.retry_base))
        with self.db.write() as s:
            # unless an admin queued it again meanwhile (redeliver resets the attempts)
            s.execute(update(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.attempts == attempts,
                WebhookDelivery.status == "pending").values(**values))
        return status

    def send_due(self, clock: Callable[[], datetime]) -> dict[str, int]:
        """POST the deliveries that are due (of active webhooks), one after the other,
        outside any transaction; returns counts by outcome."""
        counts = {"attempted": 0, "delivered": 0, "retrying": 0, "failed": 0}
        now = clock()
        with self.db.read() as s:
            due = s.execute(
                select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.event,
                       WebhookDelivery.payload, Webhook.url, Webhook.secret)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                       Webhook.active.is_(True))
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(SEND_BATCH)).all()
        for d in due:
            now = clock()
            if not self.acquire(now):
                break  # the lease went to another process while we were sending
            if not self._claim(d.id, d.attempts, now):
                continue
            body = body_of(d.id, d.payload)
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                       "X-Gati-Event": d.event, "X-Gati-Delivery": str(d.id),
                       "X-Gati-Signature-256": sign(d.secret, body)}
            try:
                outcome = self.transport(d.url, body, headers, self.config.timeout)
            except Exception as exc:  # counted as a failed attempt, never retried forever
                log.exception("webhooks: sending delivery %d failed unexpectedly", d.id)
                outcome = Outcome(None, f"{exc.__class__.__name__}: {exc}"[:300], 0)
            status = self._record(d.id, d.attempts, outcome, clock())
            counts["attempted"] += 1
            counts["retrying" if status == "pending" else status] += 1
            if status == "failed":
                log.warning("webhook delivery %d to %s failed for good after %d attempts: %s",
                            d.id, d.url, d.attempts + 1, outcome.error)
        return counts

    def run_once(self, now: datetime | None = None) -> PassResult:
        """One pass: take or renew the lease and, when held, queue deliveries for new
        changes and send the due ones. ``now`` fixes the clock (for tests)."""
        clock: Callable[[], datetime] = (lambda: now) if now is not None else _utcnow
        if not self.acquire(clock()):
            return PassResult(held=False, holder=self.current_holder)
        enqueued = self.enqueue(clock())
        return PassResult(held=True, holder=self.holder, enqueued=enqueued,
                          **self.send_due(clock))


class WebhookRunner(Runner):
    """The daemon thread that runs :meth:`WebhookWorker.run_once` in a server process."""

    def __init__(self, worker: WebhookWorker, generation: Generation,
                 poll_interval: float) -> None:
        super().__init__("gati-webhooks", worker.run_once, worker.release, generation,
                         poll_interval)
        self.worker = worker


def start_in_process(settings: Settings, db: Database,
                     generation: Generation) -> WebhookRunner | None:
    """Start the delivery thread in this server process (when ``webhooks.enabled``) and
    stop it when the process exits."""
    if not settings.webhooks.enabled:
        return None
    runner = WebhookRunner(WebhookWorker(settings, db), generation,
                           settings.webhooks.poll_interval)
    runner.start()
    atexit.register(runner.stop)
    return runner
