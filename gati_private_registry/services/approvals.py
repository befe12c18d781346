"""The lifecycle of a version after publish: the approvals queue and the decisions of
approvers (approve, reject, quarantine), each recorded with who, when and why."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from .. import hooks
from ..observability import metrics
from ..domain import Origin, Principal, Role, Scope, VersionState
from ..errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from ..storage import changes
from ..storage.db import Database
from ..storage.models import Package, PluginConfig, User, Version, VoteRecord
from . import audit, packuments
from .approvals_records import record_transition
from .ownership import covered_names
from ..settings import ApprovalSettings
from .plugins import PluginHost, RecordedVote, policy_for
from .publish import SignVersion, apply_tag, now
from .teams import TeamService

ACTIONS = {"approve": VersionState.APPROVED, "reject": VersionState.REJECTED,
           "quarantine": VersionState.QUARANTINED}

#: (from, to) → who may: "approver" (approve scope) or "admin" (reversing a decision)
TRANSITIONS: dict[tuple[VersionState, VersionState], str] = {
    (VersionState.PENDING, VersionState.APPROVED): "approver",
    (VersionState.PENDING, VersionState.REJECTED): "approver",
    (VersionState.PENDING, VersionState.QUARANTINED): "approver",
    (VersionState.APPROVED, VersionState.QUARANTINED): "approver",
    (VersionState.REJECTED, VersionState.APPROVED): "admin",
    (VersionState.QUARANTINED, VersionState.APPROVED): "admin",
}


@dataclass(frozen=True)
class ApprovalItem:
    name: str
    version: str
    state: str
    reason: str
    publisher: str
    published_at: datetime
    votes: tuple[RecordedVote, ...]
    stage_id: str = ""
    tag: str = "latest"
    shasum: str = ""
    blob_digest: str = ""
    size: int = 0


class ApprovalService:
    def __init__(self, db: Database, plugins: PluginHost, settings: ApprovalSettings,
                 teams: TeamService, sign: SignVersion | None = None) -> None:
        self.db = db
        self._sign = sign
        self.plugins = plugins
        self.settings = settings
        self.teams = teams

    def approver_team(self, name: str) -> str:
        """The team whose members decide on ``name`` (empty: any approver)."""
        policy = policy_for(self.settings, name)
        return policy.approvers if policy is not None else ""

    def may_decide(self, principal: Principal, name: str) -> bool:
        """Whether ``principal`` may approve, reject or quarantine versions of ``name``:
        an approve-scoped token, and membership of the policy's approver team when it
        names one (admins are never locked out of their own registry); a token limited to
        package patterns decides only on those."""
        if not principal.can(Scope.APPROVE) or not principal.covers(name):
            return False
        team = self.approver_team(name)
        if not team or principal.role is Role.ADMIN:
            return True
        return self.teams.is_member(principal.user_id, team)

    def plugin_configs(self) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Admin-set plugin settings and the disabled plugins."""
        with self.db.read() as s:
            rows = s.scalars(select(PluginConfig)).all()
        return {r.name: dict(r.config) for r in rows}, {r.name for r in rows if not r.enabled}

    def existing_names(self) -> frozenset[str]:
        with self.db.read() as s:
            return frozenset(s.scalars(select(Package.name)).all())

    def why_not_served(self, name: str, version: str | None = None) -> str | None:
        """A sentence for a 404 on ``name`` (or ``name@version``) when versions exist but
        are held back by the approval workflow; None when there is nothing to explain."""
        q = (select(Version.version, Version.state).join(Package, Package.id == Version.package_id)
             .where(Package.name == name, Version.unpublished_at.is_(None),
                    Version.state != VersionState.APPROVED.value))
        if version is not None:
            q = q.where(Version.version == version)
        with self.db.read() as s:
            rows = s.execute(q.limit(20)).all()
        if not rows:
            return None
        held = ", ".join(f"{r.version} ({r.state})" for r in rows)
        return (f"{name} has versions that are not approved for installs: {held}. "
                f"Ask an approver to review them in the registry's approvals queue.")

    def _filter(self, q: Any, principal: Principal, state: str | None, package: str | None,
                stage_id: str | None) -> Any:
        if state is not None and state not in {s.value for s in VersionState}:
            raise ValidationFailed("unknown state", details=[FieldError(
                "state", f"must be one of {', '.join(s.value for s in VersionState)}")])
        q = q.join(Package, Package.id == Version.package_id).where(
            Version.unpublished_at.is_(None))
        if state is not None:
            q = q.where(Version.state == state)
        if package is not None:
            q = q.where(Package.name == package)
        if stage_id is not None:
            q = q.where(Version.stage_id == stage_id)
        if not principal.can(Scope.APPROVE):
            q = q.where(Version.publisher_id == principal.user_id)
        covered = covered_names(principal, Package.name)
        if covered is not None:
            # a token limited to package patterns sees the queue of those only
            q = q.where(covered)
        return q

    def count(self, principal: Principal, state: str | None = "pending", *,
              package: str | None = None) -> int:
        """How many versions :meth:`queue` would list without a limit."""
        q = self._filter(select(func.count()).select_from(Version), principal, state,
                         package, None)
        with self.db.read() as s:
            return int(s.scalar(q) or 0)

    def queue(self, principal: Principal, state: str | None = "pending", *,
              package: str | None = None, stage_id: str | None = None,
              offset: int = 0, limit: int = 1000) -> list[ApprovalItem]:
        """Versions in ``state`` (all states when None), oldest first, ``limit`` from
        ``offset``. Approvers and admins see all; publishers see their own. Raises
        :class:`ValidationFailed` for an unknown state."""
        q = self._filter(
            select(Version.id, Package.name, Version.version, Version.state,
                   Version.state_reason, User.username, Version.published_at,
                   Version.stage_id, Version.tag, Version.shasum, Version.blob_digest,
                   Version.size)
            .select_from(Version), principal, state, package, stage_id)
        q = (q.outerjoin(User, User.id == Version.publisher_id)
             .order_by(Version.published_at, Version.id).offset(offset).limit(limit))
        with self.db.read() as s:
            rows = s.execute(q).all()
            ids = [r.id for r in rows]
            votes: dict[int, list[RecordedVote]] = {}
            if ids:
                for vr in s.scalars(select(VoteRecord).where(VoteRecord.version_id.in_(ids))
                                    .order_by(VoteRecord.id)):
                    votes.setdefault(vr.version_id, []).append(
                        RecordedVote(vr.plugin, hooks.Decision(vr.decision), tuple(vr.reasons)))
        return [ApprovalItem(name=r.name, version=r.version, state=r.state, reason=r.state_reason,
                             publisher=r.username or "", published_at=r.published_at,
                             votes=tuple(votes.get(r.id, ())), stage_id=r.stage_id or "",
                             tag=r.tag, shasum=r.shasum, blob_digest=r.blob_digest,
                             size=r.size) for r in rows]

    def staged(self, principal: Principal, stage_id: str) -> ApprovalItem:
        """The pending version npm's stage commands call ``stage_id``.

        Raises :class:`NotFound` also for ids the caller may not see (approvers see
        all, publishers their own), like the public registry does."""
        if not principal.can(Scope.READ):
            raise NotFound(f"no staged version {stage_id}")
        items = self.queue(principal, "pending", stage_id=stage_id)
        if not items:
            raise NotFound(f"no staged version {stage_id}")
        return items[0]

    def decide_staged(self, principal: Principal, stage_id: str, action: str,
                      origin: Origin | None = None) -> VersionState:
        """``npm stage approve|reject``: :meth:`decide` on the version behind ``stage_id``."""
        item = self.staged(principal, stage_id)
        return self.decide(principal, item.name, item.version, action,
                           f"{action} with npm stage {action}", origin)

    def decide(self, principal: Principal, name: str, version: str, action: str,
               reason: str = "", origin: Origin | None = None) -> VersionState:
        """Move ``name@version`` by ``action`` (approve, reject, quarantine).

        Raises :class:`ValidationFailed` (unknown action, missing reason),
        :class:`Forbidden` (not an approver; reversing needs an admin token),
        :class:`NotFound`, :class:`Conflict` (not a transition from the current state)."""
        target = ACTIONS.get(action)
        errors = []
        if target is None:
            errors.append(FieldError("action", "must be approve, reject or quarantine"))
        reason = (reason or "").strip()
        if target in (VersionState.REJECTED, VersionState.QUARANTINED) and not reason:
            errors.append(FieldError("reason", f"a reason is required to {action}"))
        if len(reason) > 2000:
            errors.append(FieldError("reason", "at most 2000 characters"))
        if errors:
            raise ValidationFailed("invalid decision", details=errors)
        assert target is not None
        if not principal.can(Scope.APPROVE):
            raise Forbidden("deciding on versions needs an approve or admin token")
        if not principal.covers(name):
            raise Forbidden(f"this token is limited to other packages than {name}")
        if not self.may_decide(principal, name):
            raise Forbidden(f"only members of team {self.approver_team(name)} may decide "
                            f"on versions of {name}")
        with self.db.write() as s:
            pkg = packuments.lock_package_row(s, name)
            if pkg is None:
                raise NotFound(f"no package {name}")
            row = s.execute(select(Version.id, Version.state, Version.integrity, Version.tag).where(
                Version.package_id == pkg.id, Version.version == version,
                Version.unpublished_at.is_(None))).first()
            if row is None:
                raise NotFound(f"no version {name}@{version}")
            current = VersionState(row.state)
            who = TRANSITIONS.get((current, target))
            if who is None:
                raise Conflict(f"{name}@{version} is {current.value}; it cannot be {target.value}")
            if who == "admin" and not principal.is_admin:
                raise Forbidden(f"only an admin may move a {current.value} version to {target.value}")
            t = now()
            s.execute(update(Version).where(Version.id == row.id).values(
                state=target.value, state_changed_at=t,
                state_reason=reason or f"{target.value} by {principal.username}"))
            if target is VersionState.APPROVED:
                if self._sign is not None:
                    self._sign(s, row.id, name, version, row.integrity)
                # the dist-tag the publisher asked for moves now, not at publish
                approved = set(s.scalars(select(Version.version).where(
                    Version.package_id == pkg.id, Version.unpublished_at.is_(None),
                    Version.state == VersionState.APPROVED.value)))
                apply_tag(s.connection(), pkg.id, packuments.dist_tags(s, pkg.id), row.tag,
                          version, approved)
            record_transition(s.connection(), row.id, current.value, target.value,
                              principal.username, reason, t)
            packuments.render(s, packuments.touch(s, pkg))
            changes.append(s, "version.state", package=name, version=version,
                           old=current.value, new=target.value, actor=principal.username,
                           reason=reason)
            audit.record(s, principal, f"version.{action}", f"{name}@{version}", origin,
                         old=current.value, new=target.value, reason=reason)
        self.plugins.state_changed(hooks.StateChange(name, version, current.value, target.value,
                                                     principal.username, reason),
                                   disabled=self.plugin_configs()[1])
        metrics().decisions.labels(target.value).inc()
        return target
