"""Webhooks: admins register URLs that receive a signed JSON event for every change of
the kinds they subscribe to. This module keeps the registrations and the delivery log;
``webhook_worker`` follows the changes feed and delivers."""
from __future__ import annotations

import builtins
import re
import secrets
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..storage.db import aware
from ..domain import Origin, Principal
from ..errors import FieldError, Forbidden, NotFound, ValidationFailed
from ..storage.db import Database
from ..storage.models import Webhook, WebhookDelivery
from . import audit

#: every change kind a webhook may subscribe to (what ``changes.append`` writes for
#: packages and versions)
EVENT_KINDS: tuple[str, ...] = (
    "version.publish", "version.state", "version.deprecate", "version.unpublish",
    "package.unpublish", "dist-tag.set", "dist-tag.remove")
DEFAULT_EVENTS: tuple[str, ...] = ("version.publish", "version.state")
DELIVERY_STATUSES = ("pending", "delivered", "failed")

MAX_URL = 2000
MIN_SECRET, MAX_SECRET = 16, 200
MAX_PATTERN = 214
MAX_DESCRIPTION = 1000
MAX_PER_PAGE = 200
UPDATABLE = frozenset({"url", "events", "pattern", "active", "description"})

_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class WebhookInfo:
    """A registration as admins see it (never the secret)."""

    id: int
    url: str
    events: tuple[str, ...]
    pattern: str
    description: str
    active: bool
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class NewWebhook:
    """A created webhook and its secret, which is shown this once."""

    webhook: WebhookInfo
    secret: str


@dataclass(frozen=True)
class DeliveryInfo:
    """One entry of a delivery log."""

    id: int
    webhook_id: int
    change_seq: int
    event: str
    package: str | None
    version: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str
    duration_ms: int | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class DeliveryPage:
    """One page of a webhook's delivery log, newest first."""

    items: tuple[DeliveryInfo, ...]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _info(row: Webhook) -> WebhookInfo:
    created = aware(row.created_at)
    assert created is not None
    return WebhookInfo(id=row.id, url=row.url, events=tuple(row.events or ()),
                       pattern=row.pattern, description=row.description, active=row.active,
                       created_at=created, created_by=row.created_by)


def _delivery(row: WebhookDelivery) -> DeliveryInfo:
    payload = row.payload or {}
    created = aware(row.created_at)
    assert created is not None
    return DeliveryInfo(
        id=row.id, webhook_id=row.webhook_id, change_seq=row.change_seq, event=row.event,
        package=payload.get("package"), version=payload.get("version"), status=row.status,
        attempts=row.attempts, next_attempt_at=aware(row.next_attempt_at),
        last_status=row.last_status, last_error=row.last_error, duration_ms=row.duration_ms,
        created_at=created, delivered_at=aware(row.delivered_at))


# -- validation --------------------------------------------------------------------------


def _check_url(value: Any, errors: list[FieldError]) -> str:
    if not isinstance(value, str) or not value.strip():
        errors.append(FieldError("url", "required: an http or https URL"))
        return ""
    url = value.strip()
    if len(url) > MAX_URL:
        errors.append(FieldError("url", f"at most {MAX_URL} characters"))
        return url
    if _CONTROL.search(url):
        errors.append(FieldError("url", "must not contain spaces or control characters"))
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises for a port that is not a number or out of range
    except ValueError:
        errors.append(FieldError("url", "not a valid URL"))
        return url
    if parts.scheme.lower() not in ("http", "https"):
        errors.append(FieldError("url", "must start with http:// or https://"))
    elif not parts.hostname:
        errors.append(FieldError("url", "must name a host"))
    elif parts.username is not None or parts.password is not None:
        # they would be shown in the panel and the log; receivers verify the signature
        errors.append(FieldError("url", "must not contain credentials (user:password@)"))
    elif port == 0:
        errors.append(FieldError("url", "port 0 is not a valid port"))
    return url


def _check_events(value: Any, errors: list[FieldError]) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        errors.append(FieldError("events", f"a non-empty list of: {', '.join(EVENT_KINDS)}"))
        return []
    unknown = [e for e in value if not isinstance(e, str) or e not in EVENT_KINDS]
    if unknown:
        errors.append(FieldError("events", f"unknown event {', '.join(map(str, unknown))}; "
                                           f"known: {', '.join(EVENT_KINDS)}"))
        return []
    return [e for e in EVENT_KINDS if e in value]  # canonical order, no duplicates


def _check_pattern(value: Any, errors: list[FieldError]) -> str:
    if not isinstance(value, str) or not value.strip():
        errors.append(FieldError("pattern", "required: a package name pattern such as * or @corp/*"))
        return ""
    if len(value) > MAX_PATTERN or _CONTROL.search(value):
        errors.append(FieldError("pattern", f"at most {MAX_PATTERN} characters, no spaces"))
    return value


def _check_description(value: Any, errors: list[FieldError]) -> str:
    if not isinstance(value, str):
        errors.append(FieldError("description", "must be a string"))
        return ""
    if len(value) > MAX_DESCRIPTION:
        errors.append(FieldError("description", f"at most {MAX_DESCRIPTION} characters"))
    return value.strip()


def _check_active(value: Any, errors: list[FieldError]) -> bool:
    if not isinstance(value, bool):
        errors.append(FieldError("active", "must be true or false"))
        return False
    return value


def _check_secret(value: Any, errors: list[FieldError]) -> str:
    if value is None or value == "":
        return secrets.token_urlsafe(32)
    if not isinstance(value, str) or not MIN_SECRET <= len(value) <= MAX_SECRET \
            or _CONTROL.search(value):
        errors.append(FieldError("secret", f"{MIN_SECRET} to {MAX_SECRET} characters without "
                                           "spaces, or leave it out to get a generated one"))
        return ""
    return value


def _check_page(page: Any, per_page: Any) -> tuple[int, int]:
    errors = []
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        errors.append(FieldError("page", "must be a whole number from 1"))
    if not isinstance(per_page, int) or isinstance(per_page, bool) or \
            not 1 <= per_page <= MAX_PER_PAGE:
        errors.append(FieldError("per_page", f"must be a whole number from 1 to {MAX_PER_PAGE}"))
    if errors:
        raise ValidationFailed("invalid page", details=errors)
    return page, per_page


# -- the service -------------------------------------------------------------------------


class WebhookService:
    """Registrations and the delivery log. Every method is for admins only."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def require_admin(principal: Principal) -> None:
        """Raises :class:`Forbidden` unless ``principal`` is an admin (with admin scope),
        so callers can refuse before they even parse a request."""
        if not principal.is_admin:
            raise Forbidden("webhooks are managed by admins (with an admin token)")

    @staticmethod
    def _row(s: Session, webhook_id: int) -> Webhook:
        row = s.get(Webhook, webhook_id) if isinstance(webhook_id, int) else None
        if row is None:
            raise NotFound(f"no webhook {webhook_id}")
        return row

    def create(self, principal: Principal, url: Any, *, events: Any = None, pattern: Any = "*",
               description: Any = "", secret: Any = None, active: Any = True,
               origin: Origin | None = None) -> NewWebhook:
        """Register a webhook. It gets the changes from now on, not the history. The secret
        (generated unless given) is in the result and never shown again.

        Raises :class:`Forbidden` (not an admin) and :class:`ValidationFailed` listing
        every bad field."""
        self.require_admin(principal)
        errors: list[FieldError] = []
        clean_url = _check_url(url, errors)
        clean_events = _check_events(list(DEFAULT_EVENTS) if events is None else events, errors)
        clean_pattern = _check_pattern(pattern, errors)
        clean_description = _check_description(description, errors)
        clean_secret = _check_secret(secret, errors)
        clean_active = _check_active(active, errors)
        if errors:
            raise ValidationFailed("invalid webhook", details=errors)
        with self.db.write() as s:
            row = Webhook(url=clean_url, secret=clean_secret, events=clean_events,
                          pattern=clean_pattern, description=clean_description,
                          active=clean_active, created_at=_now(), created_by=principal.username)
            s.add(row)
            s.flush()
            audit.record(s, principal, "webhook.create", f"webhook {row.id}", origin,
                         url=clean_url, events=clean_events, pattern=clean_pattern,
                         active=clean_active)
            info = _info(row)
        return NewWebhook(info, clean_secret)

    def list(self, principal: Principal) -> builtins.list[WebhookInfo]:
        """Every webhook, oldest first. Raises :class:`Forbidden`."""
        self.require_admin(principal)
        with self.db.read() as s:
            return [_info(r) for r in s.scalars(select(Webhook).order_by(Webhook.id))]

    def get(self, principal: Principal, webhook_id: int) -> WebhookInfo:
        """Raises :class:`Forbidden`, :class:`NotFound`."""
        self.require_admin(principal)
        with self.db.read() as s:
            return _info(self._row(s, webhook_id))

    def update(self, principal: Principal, webhook_id: int, changes: Mapping[str, Any],
               origin: Origin | None = None) -> WebhookInfo:
        """Change some of ``url``, ``events``, ``pattern``, ``active``, ``description``.

        Raises :class:`Forbidden`, :class:`ValidationFailed` (unknown or bad fields,
        nothing to change), :class:`NotFound`."""
        self.require_admin(principal)
        errors: list[FieldError] = []
        unknown = sorted(set(changes) - UPDATABLE)
        for key in unknown:
            errors.append(FieldError(str(key), f"cannot be changed; fields: {', '.join(sorted(UPDATABLE))}"))
        if not changes:
            errors.append(FieldError("body", f"nothing to change; fields: {', '.join(sorted(UPDATABLE))}"))
        checks = {"url": _check_url, "events": _check_events, "pattern": _check_pattern,
                  "active": _check_active, "description": _check_description}
        values = {key: checks[key](value, errors) for key, value in changes.items()
                  if key in UPDATABLE}
        if errors:
            raise ValidationFailed("invalid webhook change", details=errors)
        with self.db.write() as s:
            row = self._row(s, webhook_id)
            before = {key: getattr(row, key) for key in values}
            for key, value in values.items():
                setattr(row, key, value)
            s.flush()
            audit.record(s, principal, "webhook.update", f"webhook {row.id}", origin,
                         before=before, after=values)
            return _info(row)

    def delete(self, principal: Principal, webhook_id: int, origin: Origin | None = None) -> None:
        """Remove a webhook and its delivery log. Raises :class:`Forbidden`, :class:`NotFound`."""
        self.require_admin(principal)
        with self.db.write() as s:
            row = self._row(s, webhook_id)
            url = row.url
            # the log goes with it (the foreign key cascades too; this keeps SQLite
            # databases without enforced foreign keys clean as well)
            s.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
            s.execute(delete(Webhook).where(Webhook.id == webhook_id))
            audit.record(s, principal, "webhook.delete", f"webhook {webhook_id}", origin, url=url)

    def deliveries(self, principal: Principal, webhook_id: int, page: int = 1,
                   per_page: int = 50) -> DeliveryPage:
        """One page of the webhook's delivery log, newest first.

        Raises :class:`Forbidden`, :class:`ValidationFailed` (bad page), :class:`NotFound`."""
        self.require_admin(principal)
        page, per_page = _check_page(page, per_page)
        with self.db.read() as s:
            self._row(s, webhook_id)
            total = s.scalar(select(func.count()).select_from(WebhookDelivery)
                             .where(WebhookDelivery.webhook_id == webhook_id)) or 0
            rows = s.scalars(select(WebhookDelivery)
                             .where(WebhookDelivery.webhook_id == webhook_id)
                             .order_by(WebhookDelivery.id.desc())
                             .offset((page - 1) * per_page).limit(per_page)).all()
            return DeliveryPage(tuple(_delivery(r) for r in rows), total, page, per_page)

    def delivery(self, principal: Principal, webhook_id: int, delivery_id: int) -> DeliveryInfo:
        """Raises :class:`Forbidden`, :class:`NotFound`."""
        self.require_admin(principal)
        with self.db.read() as s:
            row = s.get(WebhookDelivery, delivery_id) if isinstance(delivery_id, int) else None
            if row is None or row.webhook_id != webhook_id:
                raise NotFound(f"no delivery {delivery_id} of webhook {webhook_id}")
            return _delivery(row)

    def redeliver(self, principal: Principal, webhook_id: int, delivery_id: int,
                  origin: Origin | None = None) -> DeliveryInfo:
        """Queue a delivery again (whatever its status): the worker sends it on its next
        pass, with a fresh set of attempts.

        Raises :class:`Forbidden`, :class:`NotFound`."""
        self.require_admin(principal)
        with self.db.write() as s:
            row = s.get(WebhookDelivery, delivery_id) if isinstance(delivery_id, int) else None
            if row is None or row.webhook_id != webhook_id:
                raise NotFound(f"no delivery {delivery_id} of webhook {webhook_id}")
            previous = row.status
            row.status, row.attempts, row.next_attempt_at = "pending", 0, _now()
            s.flush()
            audit.record(s, principal, "webhook.redeliver", f"webhook {webhook_id}", origin,
                         delivery=delivery_id, event=row.event, previous=previous)
            return _delivery(row)
