"""The audit log: who did what, to what, when, from where. Written by every service
inside its own transaction (:func:`record`); read by admins and auditors
(:class:`AuditLog`); append-only for everyone."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..domain import Origin, Principal
from ..errors import FieldError, Forbidden, ValidationFailed
from ..storage.db import Database
from ..storage.models import AuditEvent


def record(session: Session, actor: Principal | str | None, action: str, subject: str = "",
           origin: Origin | None = None, **details: Any) -> None:
    """Add an audit event to the caller's transaction (never commits), so the event
    exists exactly when the change it describes does."""
    name = actor.username if isinstance(actor, Principal) else (actor or "anonymous")
    origin = origin or Origin()
    session.connection().execute(_INSERT, {
        "at": datetime.now(timezone.utc), "actor": _clean(name)[:214], "action": action,
        "subject": _clean(subject)[:600], "ip": _clean(origin.ip)[:64],
        "user_agent": _clean(origin.user_agent)[:400], "details": details})


def _clean(text: str) -> str:
    # names come from people (a failed sign-in records what was typed): PostgreSQL
    # text cannot hold NUL, and the record must be written whatever was sent
    return text.replace("\x00", "\\x00") if "\x00" in text else text


_INSERT = insert(AuditEvent)


@dataclass(frozen=True)
class AuditFilter:
    """What to look for; every field optional. ``action`` ending in ``*`` is a prefix."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str = ""
    action: str = ""
    subject: str = ""


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    ip: str
    user_agent: str
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": _iso(self.at), "actor": self.actor, "action": self.action,
                "subject": self.subject, "ip": self.ip, "user_agent": self.user_agent,
                "details": self.details}


def _iso(dt: datetime) -> str:
    if dt.tzinfo is None:  # SQLite hands back naive UTC
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_filter(since: str = "", until: str = "", actor: str = "", action: str = "",
                 subject: str = "") -> AuditFilter:
    """A filter from query-string text (ISO 8601 times). Raises :class:`ValidationFailed`
    listing every bad field."""
    errors: list[FieldError] = []
    times: dict[str, datetime | None] = {}
    for name, text in (("since", since), ("until", until)):
        times[name] = None
        if text:
            try:
                value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                errors.append(FieldError(name, "not an ISO 8601 date or time"))
                continue
            times[name] = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    for name, text in (("actor", actor), ("action", action), ("subject", subject)):
        if len(text) > 600 or "\x00" in text:
            errors.append(FieldError(name, "at most 600 characters, no NUL"))
    if errors:
        raise ValidationFailed("invalid audit query", details=errors)
    return AuditFilter(times["since"], times["until"], actor, action, subject)


class AuditLog:
    """Reading the audit log: admins and auditors only. There is no way to change or
    delete an event, here or in the database (triggers refuse it)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _check(principal: Principal) -> None:
        if not principal.can_read_audit:
            raise Forbidden("the audit log is for admins and auditors")

    @staticmethod
    def _where(q: Any, f: AuditFilter) -> Any:
        if f.since is not None:
            q = q.where(AuditEvent.at >= f.since)
        if f.until is not None:
            q = q.where(AuditEvent.at < f.until)
        if f.actor:
            q = q.where(AuditEvent.actor == f.actor)
        if f.action.endswith("*"):
            q = q.where(AuditEvent.action.startswith(f.action[:-1], autoescape=True))
        elif f.action:
            q = q.where(AuditEvent.action == f.action)
        if f.subject:
            q = q.where(AuditEvent.subject == f.subject)
        return q

    def query(self, principal: Principal, f: AuditFilter, offset: int = 0,
              limit: int = 100) -> tuple[list[AuditRecord], int]:
        """Newest first, one page, and the number of all matches. Raises
        :class:`Forbidden`."""
        self._check(principal)
        with self.db.read() as s:
            total = s.scalar(self._where(select(func.count()).select_from(AuditEvent), f)) or 0
            rows = s.scalars(self._where(select(AuditEvent), f)
                             .order_by(AuditEvent.id.desc()).offset(offset).limit(limit)).all()
        return [_record(r) for r in rows], int(total)

    def export(self, principal: Principal, f: AuditFilter, fmt: str,
               origin: Origin | None = None, batch: int = 1000) -> Iterator[AuditRecord]:
        """Every match, oldest first, read in batches (a big log never sits in memory).
        The export itself is audited. Raises :class:`Forbidden`."""
        self._check(principal)
        with self.db.write() as s:
            record(s, principal, "audit.export", fmt, origin,
                   filter={k: (_iso(v) if isinstance(v, datetime) else v)
                           for k, v in f.__dict__.items() if v})
        return self._batches(f, batch)

    def _batches(self, f: AuditFilter, batch: int) -> Iterator[AuditRecord]:
        after = 0
        while True:
            with self.db.read() as s:
                rows = s.scalars(self._where(select(AuditEvent), f).where(AuditEvent.id > after)
                                 .order_by(AuditEvent.id).limit(batch)).all()
            for r in rows:
                yield _record(r)
            if len(rows) < batch:
                return
            after = rows[-1].id


def _record(r: AuditEvent) -> AuditRecord:
    return AuditRecord(id=r.id, at=r.at, actor=r.actor, action=r.action, subject=r.subject,
                       ip=r.ip, user_agent=r.user_agent, details=r.details or {})
