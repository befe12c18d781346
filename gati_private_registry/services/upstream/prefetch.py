"""Prefetch jobs: an admin warms the mirror from a ``package-lock.json`` or a list of
``name@range``. Submitting validates the input and stores the job with one
``prefetch_items`` row per package; the holder of the ``prefetch`` lease works through
the queued rows in the background (see :mod:`.prefetch_worker`), so a restarted server
resumes where the last one stopped. Progress (done/total/failed, the current item, the
first errors) is read from the job row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import func, insert, select, update

from ...domain import Origin, Principal
from ...errors import FieldError, Forbidden, NotFound, ValidationFailed
from ...storage.db import Database
from ...storage.models import PrefetchItem, PrefetchJob
from .. import audit
from ..publish import now
from .policy import valid_range

#: packages one job may list (a lockfile of a large monorepo has a few thousand)
MAX_SPECS = 20_000
#: problems kept on the job row for the panel
MAX_ERRORS = 50
ACTIVE = ("queued", "running")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# what public registries hold, legacy names included (capitals, core module names like
# ``util``): stricter publish-time rules would refuse real dependencies
_NAME = re.compile(r"^(?:@[A-Za-z0-9~-][\w.~-]*/)?[A-Za-z0-9~-][\w.~-]*$")


@dataclass(frozen=True)
class JobView:
    id: int
    status: str
    source: str
    closure: bool
    total: int
    done: int
    failed: int
    current: str
    errors: tuple[str, ...]
    created_by: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def percent(self) -> int:
        return int(100 * (self.done + self.failed) / self.total) if self.total else 0


def _view(job: PrefetchJob) -> JobView:
    return JobView(job.id, job.status, job.source, job.closure, job.total, job.done, job.failed,
                   job.current, tuple(job.errors or ()), job.created_by, job.created_at,
                   job.finished_at)


def _check_spec(name: str, spec: str, where: str) -> list[FieldError]:
    problems = [] if len(name) <= 214 and _NAME.match(name) else \
        [FieldError(where, f"{name[:100]!r} is not an npm package name")]
    if not (valid_range(spec) or _TAG.match(spec)):
        problems.append(FieldError(where, f"{name}@{spec}: not a version, range or dist-tag"))
    return problems


def parse_list(entries: Iterable[Any]) -> list[tuple[str, str]]:
    """``["express@^4", "@types/node", "lodash@latest"]`` → [(name, spec)]; a bare name
    means ``latest``. Raises :class:`ValidationFailed` naming every bad entry."""
    out: list[tuple[str, str]] = []
    errors: list[FieldError] = []
    for i, entry in enumerate(entries):
        where = f"packages[{i}]"
        if not isinstance(entry, str) or not entry.strip():
            errors.append(FieldError(where, "must be a non-empty string like name@range"))
            continue
        text = entry.strip()
        at = text.find("@", 1)
        name, spec = (text[:at], text[at + 1:].strip()) if at > 0 else (text, "latest")
        found = _check_spec(name, spec or "latest", where)
        errors += found
        if not found:
            out.append((name, spec or "latest"))
    if errors:
        raise ValidationFailed("invalid package list", details=errors[:100])
    return out


def _alias(name: str, version: str) -> tuple[str, str]:
    # "npm:real-name@1.2.3" (an aliased dependency) is really real-name@1.2.3
    if version.startswith("npm:"):
        target = version[4:]
        at = target.find("@", 1)
        return (target[:at], target[at + 1:]) if at > 0 else (target, "latest")
    return name, version


def _registry_entry(entry: dict[str, Any]) -> bool:
    resolved = entry.get("resolved")
    # links, bundled copies, git and file dependencies are not the registry's to serve
    return not (entry.get("link") or entry.get("inBundle") or entry.get("bundled")
                or (isinstance(resolved, str) and resolved
                    and not resolved.startswith(("http://", "https://"))))


def parse_lockfile(lock: Any) -> list[tuple[str, str]]:
    """The exact ``(name, version)`` pairs of an npm ``package-lock.json``: the v2/v3
    ``packages`` map, or v1's nested ``dependencies``. Raises :class:`ValidationFailed`."""
    if not isinstance(lock, dict):
        raise ValidationFailed("the lockfile must be a JSON object",
                               details=[FieldError("lockfile", "not an object")])
    pairs: list[tuple[str, str]] = []
    packages = lock.get("packages")
    if isinstance(packages, dict) and packages:
        for path, entry in packages.items():
            if not path or not isinstance(entry, dict) or "node_modules/" not in path:
                continue  # the root project and workspace folders
            if not _registry_entry(entry):
                continue
            version = entry.get("version")
            if not isinstance(version, str):
                continue
            name = entry.get("name") if isinstance(entry.get("name"), str) else \
                path.rsplit("node_modules/", 1)[1]
            pairs.append(_alias(str(name), version))
    elif isinstance(lock.get("dependencies"), dict):
        todo: list[dict[str, Any]] = [lock["dependencies"]]
        while todo:
            for name, entry in todo.pop().items():
                if not isinstance(entry, dict):
                    continue
                if isinstance(entry.get("dependencies"), dict):
                    todo.append(entry["dependencies"])
                version = entry.get("version")
                if isinstance(version, str) and _registry_entry(entry):
                    pairs.append(_alias(name, version))
    else:
        raise ValidationFailed("not an npm lockfile", details=[FieldError(
            "lockfile", "needs a packages map (lockfileVersion 2 or 3) or dependencies (v1)")])
    errors: list[FieldError] = []
    for name, version in pairs:
        errors += _check_spec(name, version, "lockfile")
    if errors:
        raise ValidationFailed("the lockfile names invalid packages", details=errors[:100])
    if not pairs:
        raise ValidationFailed("the lockfile lists no registry packages",
                               details=[FieldError("lockfile", "no packages to fetch")])
    return pairs


class PrefetchJobs:
    def __init__(self, db: Database) -> None:
        self.db = db

    def submit(self, principal: Principal, specs: list[tuple[str, str]], *, source: str,
               closure: bool = True, origin: Origin | None = None) -> JobView:
        """Queue a job for ``specs`` (from :func:`parse_list` or :func:`parse_lockfile`).
        Raises :class:`Forbidden` (admins only) and :class:`ValidationFailed` (empty or
        too long)."""
        if not principal.is_admin:
            raise Forbidden("prefetching into the mirror needs an admin token")
        unique = list(dict.fromkeys(specs))
        if not unique:
            raise ValidationFailed("nothing to prefetch",
                                   details=[FieldError("packages", "list at least one package")])
        if len(unique) > MAX_SPECS:
            raise ValidationFailed("too many packages", details=[FieldError(
                "packages", f"at most {MAX_SPECS} packages per job ({len(unique)} given)")])
        with self.db.write() as s:
            job = PrefetchJob(status="queued", specs=[list(p) for p in unique], closure=closure,
                              total=len(unique), done=0, failed=0, errors=[],
                              created_by=principal.username, created_at=now(), current="",
                              source=source)
            s.add(job)
            s.flush()
            s.connection().execute(insert(PrefetchItem), [
                {"job_id": job.id, "name": name, "spec": spec, "version": "",
                 "status": "queued", "error": ""} for name, spec in unique])
            audit.record(s, principal, "mirror.prefetch", f"job {job.id}", origin,
                         source=source, closure=closure, packages=len(unique))
            view = _view(job)
        return view

    def cancel(self, principal: Principal, job_id: int, origin: Origin | None = None) -> JobView:
        """Stop a queued or running job (what was fetched stays cached). Raises
        :class:`Forbidden`, :class:`NotFound`, :class:`ValidationFailed` (already over)."""
        if not principal.is_admin:
            raise Forbidden("prefetch jobs are for admins")
        with self.db.write() as s:
            job = s.get(PrefetchJob, job_id)
            if job is None:
                raise NotFound(f"no prefetch job {job_id}")
            if job.status not in ACTIVE:
                raise ValidationFailed("the job is over", details=[
                    FieldError("status", f"job {job_id} is already {job.status}")])
            job.status, job.finished_at, job.current = "cancelled", now(), ""
            audit.record(s, principal, "mirror.prefetch.cancel", f"job {job_id}", origin,
                         done=job.done, failed=job.failed, total=job.total)
            view = _view(job)
        return view

    def get(self, job_id: int) -> JobView:
        """One job's progress. Raises :class:`NotFound`."""
        with self.db.read() as s:
            job = s.get(PrefetchJob, job_id)
            if job is None:
                raise NotFound(f"no prefetch job {job_id}")
            return _view(job)

    def recent(self, limit: int = 20) -> list[JobView]:
        with self.db.read() as s:
            return [_view(j) for j in s.scalars(select(PrefetchJob)
                                                .order_by(PrefetchJob.id.desc()).limit(limit))]

    def items(self, job_id: int, status: str | None = None,
              limit: int = 1000) -> list[tuple[str, str, str, str, str]]:
        """(name, spec, version, status, error) of a job's packages, in queue order."""
        q = select(PrefetchItem.name, PrefetchItem.spec, PrefetchItem.version,
                   PrefetchItem.status, PrefetchItem.error).where(PrefetchItem.job_id == job_id)
        if status:
            q = q.where(PrefetchItem.status == status)
        with self.db.read() as s:
            return [tuple(r) for r in s.execute(q.order_by(PrefetchItem.id).limit(limit))]  # type: ignore[misc]


def finish_if_empty(db: Database, job_id: int) -> bool:
    """Mark ``job_id`` done when no item is queued (in one transaction with an audit
    event); True when it is over."""
    with db.write() as s:
        job = s.get(PrefetchJob, job_id)
        if job is None or job.status not in ACTIVE:
            return True
        left = s.scalar(select(func.count()).select_from(PrefetchItem).where(
            PrefetchItem.job_id == job_id, PrefetchItem.status == "queued"))
        if left:
            return False
        s.execute(update(PrefetchJob).where(PrefetchJob.id == job_id).values(
            status="done", finished_at=now(), current=""))
        audit.record(s, "mirror:prefetch", "mirror.prefetch.done", f"job {job_id}", None,
                     done=job.done, failed=job.failed, total=job.total)
    return True
