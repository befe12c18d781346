"""Admins' curation of upstream versions: pre-approve a range (``lodash@^4``) or block
versions. A block also quarantines matching versions already approved, so their cached
tarballs stop being served at once."""
from __future__ import annotations

import threading
from typing import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ...domain import Origin, Principal, VersionState
from ...errors import FieldError, Forbidden, NotFound, ValidationFailed
from ...storage import changes
from ...storage.db import Database
from ...storage.models import Package, UpstreamRule, Version
from .. import audit, packuments
from ..approvals_records import record_transition
from ..publish import now
from ..validation import validate_package_name
from .policy import Rule, satisfies, valid_range

ACTIONS = ("approve", "block")


def parse_spec(spec: str) -> tuple[str, str]:
    """``lodash@^4`` → ("lodash", "^4"); ``@scope/x@1.2.3``; a bare name means ``*``.
    Raises :class:`ValidationFailed`."""
    spec = (spec or "").strip()
    at = spec.find("@", 1)
    name, range_ = (spec[:at], spec[at + 1:]) if at > 0 else (spec, "*")
    errors = validate_package_name(name) if name else [FieldError("spec", "a package name is needed")]
    if not valid_range(range_ or "*"):
        errors.append(FieldError("spec", f"{range_!r} is not a semver range"))
    if errors:
        raise ValidationFailed("invalid package spec", details=errors)
    return name, range_ or "*"


class RuleBook:
    def __init__(self, db: Database, generation: Callable[[], int]) -> None:
        self.db = db
        self._generation = generation
        self._cache: dict[str, tuple[int, tuple[Rule, ...]]] = {}
        self._lock = threading.Lock()

    def for_name(self, name: str) -> tuple[Rule, ...]:
        gen = self._generation()
        hit = self._cache.get(name)
        if hit is not None and hit[0] == gen:
            return hit[1]
        with self.db.read() as s:
            rows = s.scalars(select(UpstreamRule).where(UpstreamRule.name == name)
                             .order_by(UpstreamRule.id)).all()
        rules = tuple(Rule(r.id, r.name, r.range, r.action, r.reason, r.created_by,
                           r.created_at) for r in rows)
        with self._lock:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[name] = (gen, rules)
        return rules

    def all(self) -> list[Rule]:
        with self.db.read() as s:
            rows = s.scalars(select(UpstreamRule).order_by(UpstreamRule.name, UpstreamRule.id)).all()
        return [Rule(r.id, r.name, r.range, r.action, r.reason, r.created_by, r.created_at)
                for r in rows]

    def add(self, principal: Principal, spec: str, action: str, reason: str = "",
            origin: Origin | None = None) -> Rule:
        """Add a rule. Raises :class:`Forbidden` (admins only), :class:`ValidationFailed`
        (bad spec or action, a block without a reason)."""
        if not principal.is_admin:
            raise Forbidden("curating upstream versions needs an admin token")
        errors: list[FieldError] = []
        if action not in ACTIONS:
            errors.append(FieldError("action", "must be approve or block"))
        reason = (reason or "").strip()
        if action == "block" and not reason:
            errors.append(FieldError("reason", "a reason is required to block"))
        if len(reason) > 2000:
            errors.append(FieldError("reason", "at most 2000 characters"))
        try:
            name, range_ = parse_spec(spec)
        except ValidationFailed as exc:
            raise ValidationFailed("invalid rule", details=exc.details + errors) from None
        if errors:
            raise ValidationFailed("invalid rule", details=errors)
        t = now()
        with self.db.write() as s:
            row = UpstreamRule(name=name, range=range_, action=action, reason=reason,
                               created_by=principal.username, created_at=t)
            s.add(row)
            s.flush()
            if action == "block":
                self._quarantine(s, principal, name, range_, reason)
            changes.append(s, "mirror.rule", package=name, action=action, range=range_)
            audit.record(s, principal, f"mirror.rule.{action}", f"{name}@{range_}", origin,
                         reason=reason)
            return Rule(row.id, name, range_, action, reason, principal.username, t)

    def _quarantine(self, s: Session, principal: Principal, name: str, range_: str,
                    reason: str) -> None:
        pkg = packuments.lock_package_row(s, name)
        if pkg is None:
            return
        rows = s.execute(select(Version.id, Version.version).where(
            Version.package_id == pkg.id, Version.state == VersionState.APPROVED.value,
            Version.upstream.is_not(None), Version.unpublished_at.is_(None))).all()
        hit = [r for r in rows if satisfies(r.version, range_)]
        t = now()
        for r in hit:
            why = f"blocked by {principal.username}: {reason}"
            s.execute(update(Version).where(Version.id == r.id).values(
                state=VersionState.QUARANTINED.value, state_changed_at=t, state_reason=why))
            record_transition(s.connection(), r.id, VersionState.APPROVED.value,
                              VersionState.QUARANTINED.value, principal.username, why, t)
            changes.append(s, "version.state", package=name, version=r.version,
                           old=VersionState.APPROVED.value, new=VersionState.QUARANTINED.value,
                           actor=principal.username, reason=why)
        if hit:
            packuments.render(s, packuments.touch(s, pkg))

    def remove(self, principal: Principal, rule_id: int, origin: Origin | None = None) -> None:
        """Raises :class:`Forbidden` or :class:`NotFound`."""
        if not principal.is_admin:
            raise Forbidden("curating upstream versions needs an admin token")
        with self.db.write() as s:
            row = s.get(UpstreamRule, rule_id)
            if row is None:
                raise NotFound(f"no rule {rule_id}")
            subject = f"{row.name}@{row.range}"
            action = row.action
            s.execute(delete(UpstreamRule).where(UpstreamRule.id == rule_id))
            changes.append(s, "mirror.rule", package=row.name, action=f"remove-{action}",
                           range=row.range)
            audit.record(s, principal, "mirror.rule.remove", subject, origin, rule_action=action)


def package_names(db: Database) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(Package.name).where(Package.upstream.is_not(None))))
