"""The prefetch worker: in every server process, a daemon thread; the holder of the
``prefetch`` lease (one process across workers and replicas, see ``leases.py``) works
through the queued ``prefetch_items`` of the oldest active job, ``[mirror]
prefetch_concurrency`` packages at a time. Each package is resolved through the mirror
(its curation policy included), its tarball fetched, verified and stored like on a first
install, and, for a closure, its dependencies are queued, skipping those the job already
has in a satisfying version. Every outcome is written in its own transaction, so a
process that stops mid-way leaves the unfinished packages queued for the next holder.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import nodesemver
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ...domain import VersionState
from ...errors import RegistryError
from ...storage.changes import Generation
from ...storage.db import Database
from ...storage.models import PrefetchItem, PrefetchJob
from .. import audit
from ..background import Runner
from ..leases import Lease
from . import MirrorService
from .policy import Offer, parse_time, satisfies, valid_range
from .prefetch import ACTIVE, MAX_ERRORS, finish_if_empty
from .tarballs import TarballRefused

log = logging.getLogger(__name__)

LEASE_NAME = "prefetch"
ACTOR = "mirror:prefetch"
#: seconds one pass works before giving the loop back (it comes straight back)
PASS_BUDGET = 20.0
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# RETURNING tells whether the row was new (rowcount is not reliable across drivers)
_INSERT_IGNORE = {
    "postgresql": pg_insert(PrefetchItem).on_conflict_do_nothing().returning(PrefetchItem.id),
    "sqlite": sqlite_insert(PrefetchItem).on_conflict_do_nothing().returning(PrefetchItem.id)}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Outcome:
    item_id: int
    name: str
    spec: str
    status: str
    version: str = ""
    error: str = ""
    dependencies: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PassResult:
    held: bool
    processed: int = 0


def dependencies_of(manifest: dict[str, Any]) -> dict[str, str]:
    """What npm installs with ``manifest``: dependencies, optional dependencies and
    (npm 7+) non-optional peers; bundled ones ship inside the tarball."""
    bundled = manifest.get("bundleDependencies") or manifest.get("bundledDependencies") or []
    bundled = set(bundled) if isinstance(bundled, list) else set()
    peer_meta = manifest.get("peerDependenciesMeta") or {}
    out: dict[str, str] = {}
    for key in ("peerDependencies", "optionalDependencies", "dependencies"):
        deps = manifest.get(key)
        if not isinstance(deps, dict):
            continue
        for name, spec in deps.items():
            if not isinstance(name, str) or not isinstance(spec, str) or name in bundled:
                continue
            if key == "peerDependencies" and isinstance(peer_meta, dict) and \
                    isinstance(peer_meta.get(name), dict) and peer_meta[name].get("optional"):
                continue
            out[name] = spec
    return out


def registry_spec(name: str, spec: str) -> tuple[str, str] | None:
    """(name, range or tag) a registry answers; None for git, file, URL and link specs."""
    spec = spec.strip() or "*"
    if spec.startswith("npm:"):
        target = spec[4:]
        at = target.find("@", 1)
        name, spec = (target[:at], target[at + 1:]) if at > 0 else (target, "latest")
    if valid_range(spec) or (_TAG.match(spec) and "/" not in spec):
        return name, spec
    return None


def resolve(mirror: MirrorService, name: str, spec: str) -> tuple[str, dict[str, Any]]:
    """The version of ``name`` npm would get for ``spec`` through the mirror, and its
    upstream manifest: the dist-tag, else ``latest`` when it satisfies, else the highest
    satisfying version the policy lists; versions held for a person only when nothing
    listed satisfies (prefetching then queues them for approval). Raises
    :class:`NotFound`, :class:`Unavailable`."""
    from ...errors import NotFound

    rule = mirror.route(name)
    if rule is None:
        raise NotFound(f"{name} is a local package: nothing to mirror")
    doc = mirror.docs.get(name, rule.source)
    versions = doc.data.get("versions") or {}
    tags = doc.data.get("dist-tags") or {}
    if spec in versions:
        return spec, versions[spec]
    if not valid_range(spec):
        tagged = tags.get(spec)
        if isinstance(tagged, str) and tagged in versions:
            return tagged, versions[tagged]
        raise NotFound(f"{name} has no dist-tag or version {spec!r}")
    judge = mirror.judge_for(rule, name)
    local = mirror.local_states(name)
    times = doc.data.get("time") or {}
    listed: list[str] = []
    held: list[str] = []
    for v in versions:
        state = local.get(v)
        if state is not None:
            (listed if state == VersionState.APPROVED.value else held).append(v)
            continue
        offer = judge(v, parse_time(times.get(v))).offer
        if offer is Offer.LIST:
            listed.append(v)
        elif offer is Offer.HOLD:
            held.append(v)
    latest = tags.get("latest")
    if isinstance(latest, str) and latest in listed and satisfies(latest, spec):
        return latest, versions[latest]
    for pool in (listed, held):
        best = nodesemver.max_satisfying(pool, spec, loose=True) if pool else None
        if best:
            return str(best), versions[str(best)]
    raise NotFound(f"no version of {name} the mirror offers satisfies {spec!r}")


class PrefetchWorker:
    def __init__(self, mirror: MirrorService, db: Database, concurrency: int, *,
                 holder: str | None = None) -> None:
        # bookkeeping (lease, progress) changes nothing readers cache: no generation bump
        self.db = Database(db.engine, after_commit=None, lock_path=db.lock_path)
        self.mirror = mirror
        self.concurrency = max(1, concurrency)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease = Lease(self.db, LEASE_NAME, self.holder)
        self.stopping = threading.Event()

    def release(self) -> None:
        self.lease.release()

    def run_once(self, clock: Callable[[], datetime] = _utcnow,
                 budget: float = PASS_BUDGET) -> PassResult:
        """Work on the oldest active job for up to ``budget`` seconds (renewing the
        lease between batches); returns how many packages were handled."""
        if not self.lease.acquire(clock()):
            return PassResult(held=False)
        deadline = time.monotonic() + budget
        processed = 0
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="gati-prefetch") as pool:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                job = self._next_job()
                if job is None:
                    break
                job_id, closure = job
                batch = self._queued(job_id, self.concurrency * 2)
                if not batch:
                    finish_if_empty(self.db, job_id)
                    continue
                for outcome in pool.map(lambda item: self._process(job_id, item), batch):
                    self._record(job_id, closure, outcome)
                processed += len(batch)
                finish_if_empty(self.db, job_id)
                if not self.lease.acquire(clock()):
                    break  # another process took over: it continues from the queue
        return PassResult(held=True, processed=processed)

    def _next_job(self) -> tuple[int, bool] | None:
        with self.db.read() as s:
            job = s.execute(select(PrefetchJob.id, PrefetchJob.status, PrefetchJob.closure)
                            .where(PrefetchJob.status.in_(ACTIVE))
                            .order_by(PrefetchJob.id).limit(1)).first()
        if job is None:
            return None
        if job.status == "queued":
            with self.db.write() as s:
                started = s.execute(update(PrefetchJob).where(
                    PrefetchJob.id == job.id, PrefetchJob.status == "queued")
                    .values(status="running")).rowcount  # type: ignore[attr-defined]
                if started:
                    audit.record(s, ACTOR, "mirror.prefetch.start", f"job {job.id}", None,
                                 holder=self.holder)
        return int(job.id), bool(job.closure)

    def _queued(self, job_id: int, limit: int) -> list[tuple[int, str, str]]:
        with self.db.read() as s:
            return [(r.id, r.name, r.spec) for r in s.execute(
                select(PrefetchItem.id, PrefetchItem.name, PrefetchItem.spec)
                .where(PrefetchItem.job_id == job_id, PrefetchItem.status == "queued")
                .order_by(PrefetchItem.id).limit(limit))]

    def _process(self, job_id: int, item: tuple[int, str, str]) -> Outcome:
        item_id, name, spec = item
        with self.db.write() as s:
            s.execute(update(PrefetchJob).where(PrefetchJob.id == job_id)
                      .values(current=f"{name}@{spec}"[:500]))
        version = ""
        try:
            version, manifest = resolve(self.mirror, name, spec)
            rule = self.mirror.route(name)
            assert rule is not None  # resolve() refused local names
            state = self.mirror.fetch(name, version, rule)
        except (RegistryError, TarballRefused) as exc:
            return Outcome(item_id, name, spec, "failed", version, str(exc)[:1000])
        except Exception as exc:  # one bad package must not stop the job
            log.exception("prefetch of %s@%s failed", name, spec)
            return Outcome(item_id, name, spec, "failed", version, f"internal error: {exc}")
        note = "" if state == VersionState.APPROVED.value else \
            f"fetched, {state}: waits for an approver"
        return Outcome(item_id, name, spec, "done", version, note, dependencies_of(manifest))

    def _record(self, job_id: int, closure: bool, out: Outcome) -> None:
        notes = [f"{out.name}@{out.version or out.spec}: {out.error}"] if out.error else []
        with self.db.write() as s:
            s.execute(update(PrefetchItem).where(PrefetchItem.id == out.item_id).values(
                status=out.status, version=out.version, error=out.error))
            job = s.get(PrefetchJob, job_id)
            if job is None or job.status not in ACTIVE:
                return  # cancelled meanwhile: keep what was fetched, queue nothing more
            added = self._enqueue(s, job_id, out.dependencies, notes) if closure else 0
            job.total += added
            job.done += out.status == "done"
            job.failed += out.status == "failed"
            if notes and len(job.errors or []) < MAX_ERRORS:
                job.errors = [*(job.errors or []), *notes][:MAX_ERRORS]

    @staticmethod
    def _enqueue(s: Session, job_id: int, deps: dict[str, str], notes: list[str]) -> int:
        added = 0
        conn = s.connection()
        for dep, raw in sorted(deps.items()):
            spec = registry_spec(dep, raw)
            if spec is None:
                notes.append(f"{dep}@{raw}: not from a registry, skipped")
                continue
            name, range_ = spec
            have = s.execute(select(PrefetchItem.spec, PrefetchItem.version).where(
                PrefetchItem.job_id == job_id, PrefetchItem.name == name)).all()
            if any(r.spec == range_ for r in have) or (valid_range(range_) and any(
                    (r.version or r.spec) and satisfies(r.version or r.spec, range_)
                    for r in have)):
                continue  # the job already has it in a version that does
            added += len(conn.execute(_INSERT_IGNORE[conn.dialect.name], {
                "job_id": job_id, "name": name, "spec": range_, "version": "",
                "status": "queued", "error": ""}).all())
        return added


class PrefetchRunner(Runner):
    """The worker's daemon thread; stopping also ends the pass in progress early."""

    def __init__(self, worker: PrefetchWorker, generation: Generation,
                 poll_interval: float) -> None:
        super().__init__("gati-prefetch", worker.run_once, worker.release, generation,
                         poll_interval)
        self.worker = worker

    def stop(self, timeout: float = 5.0) -> None:
        self.worker.stopping.set()
        super().stop(timeout)
