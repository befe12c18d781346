"""The audit log: who did what, to what, when, from where."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from ..domain import Origin, Principal
from ..storage.models import AuditEvent


def record(session: Session, actor: Principal | str | None, action: str, subject: str = "",
           origin: Origin | None = None, **details: Any) -> None:
    """Add an audit event to the caller's transaction (never commits), so the event
    exists exactly when the change it describes does."""
    name = actor.username if isinstance(actor, Principal) else (actor or "anonymous")
    origin = origin or Origin()
    session.connection().execute(_INSERT, {
        "at": datetime.now(timezone.utc), "actor": name, "action": action,
        "subject": subject[:600], "ip": origin.ip[:64], "user_agent": origin.user_agent[:400],
        "details": details})


_INSERT = insert(AuditEvent)
