"""Read-only queries behind the panel's review pages: everything an approver needs to
judge one version (manifest, files, votes, history, diff against the previous version)
and a publisher's own versions. Nothing here writes."""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..domain import Principal, Scope, VersionState
from ..errors import Forbidden, NotFound
from ..storage.db import Database
from ..storage.models import Package, Transition, User, Version, VoteRecord
from .approvals import ACTIONS, TRANSITIONS, ApprovalItem
from .validation.names import version_sort_key


@dataclass(frozen=True)
class VoteView:
    plugin: str
    decision: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class TransitionView:
    old: str | None
    new: str
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class VersionDiff:
    """How a version differs from ``previous``: ``package.json`` as unified diff lines
    and the file list changes (``changed`` holds (path, old size, new size))."""

    previous: str
    manifest_diff: tuple[str, ...]
    added: tuple[tuple[str, int], ...]
    removed: tuple[tuple[str, int], ...]
    changed: tuple[tuple[str, int, int], ...]

    @property
    def empty(self) -> bool:
        return not (self.manifest_diff or self.added or self.removed or self.changed)


@dataclass(frozen=True)
class VersionReview:
    name: str
    version: str
    state: str
    state_reason: str
    publisher: str
    published_at: datetime
    manifest: dict[str, Any]
    gati_module: dict[str, Any] | None
    files: tuple[tuple[str, int], ...]
    votes: tuple[VoteView, ...]
    transitions: tuple[TransitionView, ...]
    #: None when there is no earlier (not unpublished) version of the package
    diff: VersionDiff | None


@dataclass(frozen=True)
class OwnVersion:
    name: str
    version: str
    state: str
    state_reason: str
    published_at: datetime
    state_changed_at: datetime


def _files(raw: list[Any]) -> tuple[tuple[str, int], ...]:
    return tuple((str(p), int(size)) for p, size in raw)


def _pretty(manifest: dict[str, Any]) -> list[str]:
    return json.dumps(manifest, indent=2, sort_keys=True).splitlines()


def diff_versions(previous: str, old_manifest: dict[str, Any], new_manifest: dict[str, Any],
                  old_files: tuple[tuple[str, int], ...],
                  new_files: tuple[tuple[str, int], ...], name: str = "package") -> VersionDiff:
    """The difference between two versions' manifests and file lists."""
    lines = difflib.unified_diff(_pretty(old_manifest), _pretty(new_manifest),
                                 fromfile=f"{name}@{previous}/package.json",
                                 tofile=f"{name}/package.json", lineterm="")
    old, new = dict(old_files), dict(new_files)
    return VersionDiff(
        previous=previous,
        manifest_diff=tuple(lines),
        added=tuple(sorted((p, s) for p, s in new.items() if p not in old)),
        removed=tuple(sorted((p, s) for p, s in old.items() if p not in new)),
        changed=tuple(sorted((p, old[p], s) for p, s in new.items()
                             if p in old and old[p] != s)),
    )


def version_review(db: Database, viewer: Principal, name: str, version: str) -> VersionReview:
    """Everything about ``name@version`` for its review page, whatever its state.

    Approvers and admins see every version, others only approved ones and their own
    (the same rule as the queue). The previous version is the highest lower version of
    the same package that is not unpublished (any state). Raises :class:`NotFound` when
    the package or version does not exist or was unpublished, :class:`Forbidden` when
    ``viewer`` may not see it."""
    with db.read() as s:
        pkg_id = s.scalar(select(Package.id).where(Package.name == name))
        if pkg_id is None:
            raise NotFound(f"no package {name}")
        rows = s.execute(
            select(Version, User.username)
            .outerjoin(User, User.id == Version.publisher_id)
            .where(Version.package_id == pkg_id, Version.unpublished_at.is_(None))).all()
        by_version = {r[0].version: (r[0], r[1]) for r in rows}
        if version not in by_version:
            raise NotFound(f"no version {name}@{version}")
        row, publisher = by_version[version]
        if not (viewer.can(Scope.APPROVE) or row.publisher_id == viewer.user_id
                or row.state == VersionState.APPROVED.value):
            raise Forbidden(f"{name}@{version} is {row.state}; only approvers and its "
                            f"publisher may review it")
        key = version_sort_key(version)
        lower = [v for v in by_version if version_sort_key(v) < key]
        votes = tuple(VoteView(v.plugin, v.decision, tuple(v.reasons)) for v in s.scalars(
            select(VoteRecord).where(VoteRecord.version_id == row.id).order_by(VoteRecord.id)))
        transitions = tuple(TransitionView(t.old_state, t.new_state, t.actor, t.reason, t.at)
                            for t in s.scalars(select(Transition)
                                               .where(Transition.version_id == row.id)
                                               .order_by(Transition.id)))
        files = _files(row.files)
        diff = None
        if lower:
            prev = by_version[max(lower, key=version_sort_key)][0]
            diff = diff_versions(prev.version, dict(prev.manifest), dict(row.manifest),
                                 _files(prev.files), files, name)
        return VersionReview(
            name=name, version=row.version, state=row.state, state_reason=row.state_reason,
            publisher=publisher or "", published_at=row.published_at,
            manifest=dict(row.manifest), gati_module=row.gati_module, files=files,
            votes=votes, transitions=transitions, diff=diff)


def own_versions(db: Database, user_id: int) -> list[OwnVersion]:
    """The versions ``user_id`` published, in every state, newest first (unpublished
    ones left out)."""
    q = (select(Package.name, Version.version, Version.state, Version.state_reason,
                Version.published_at, Version.state_changed_at)
         .join(Package, Package.id == Version.package_id)
         .where(Version.publisher_id == user_id, Version.unpublished_at.is_(None))
         .order_by(Version.published_at.desc(), Version.id.desc()).limit(1000))
    with db.read() as s:
        return [OwnVersion(r.name, r.version, r.state, r.state_reason, r.published_at,
                           r.state_changed_at) for r in s.execute(q)]


def allowed_actions(principal: Principal, state: str) -> list[str]:
    """The decisions ``principal`` may take on a version in ``state`` (the forms the
    review page offers; :meth:`ApprovalService.decide` still checks everything)."""
    if not principal.can(Scope.APPROVE) or state not in {s.value for s in VersionState}:
        return []
    current = VersionState(state)
    out = []
    for action, target in ACTIONS.items():
        who = TRANSITIONS.get((current, target))
        if who == "approver" or (who == "admin" and principal.is_admin):
            out.append(action)
    return out


def matching(items: list[ApprovalItem], query: str) -> list[ApprovalItem]:
    """The queue items whose name contains ``query`` (case-insensitive)."""
    q = query.strip().lower()
    return [i for i in items if q in i.name.lower()] if q else items
