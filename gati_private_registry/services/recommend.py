"""Recommendations: "used together with", "similar modules" and "for your stack".

Co-occurrence comes from two places: the dependency lists of the packages in the
registry (read from the index), and the projects people asked about (a ``package.json``
sent by ``gati module search --for-project`` or uploaded in the panel: only the names of
registry packages it uses are kept, deduplicated by their digest, never the file).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..domain import Origin, Principal
from ..errors import FieldError, ValidationFailed
from ..storage.db import Database
from ..storage.models import Package, ProjectProfile
from . import audit
from .publish import now
from .search import SearchHit, SearchService

#: projects read per recommendation (the most recently seen)
PROFILES = 2000
MAX_DEPENDENCIES = 2000


@dataclass(frozen=True)
class Suggestion:
    hit: SearchHit
    weight: float
    why: str


def _lockfile_names(lock: dict[str, Any]) -> list[str]:
    """Every package a lockfile installs: npm's v2/v3 (and gati-lock.json's) ``packages``
    map keyed by ``node_modules/...`` paths, or v1's nested ``dependencies``."""
    names: list[str] = []
    packages = lock.get("packages")
    if isinstance(packages, dict):
        for path, meta in packages.items():
            if not isinstance(path, str) or "node_modules/" not in path:
                continue  # "" is the project itself; workspaces are not packages
            name = meta.get("name") if isinstance(meta, dict) else None
            names.append(str(name or path.rsplit("node_modules/", 1)[1]))
        return names

    def walk(deps: Any) -> None:
        if isinstance(deps, dict):
            for name, meta in deps.items():
                names.append(str(name))
                if isinstance(meta, dict):
                    walk(meta.get("dependencies"))

    walk(lock.get("dependencies"))
    return names


def project_dependencies(manifest: Any) -> list[str]:
    """The dependency names of a ``package.json`` (all four kinds), or of everything a
    lockfile installs (``package-lock.json`` v1-v3, ``gati-lock.json``): install
    co-occurrence. Raises :class:`ValidationFailed` for anything that is neither."""
    if not isinstance(manifest, dict):
        raise ValidationFailed("not a package.json", details=[
            FieldError("package.json", "must be a JSON object")])
    if "lockfileVersion" in manifest:
        locked = list(dict.fromkeys(_lockfile_names(manifest)))
        if len(locked) > MAX_DEPENDENCIES:
            raise ValidationFailed("too many packages", details=[
                FieldError("packages", f"at most {MAX_DEPENDENCIES}")])
        return locked
    names: list[str] = []
    errors = []
    for key in ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies"):
        value = manifest.get(key, {})
        if not isinstance(value, dict):
            errors.append(FieldError(key, "must be an object of name: range"))
            continue
        names.extend(str(n) for n in value)
    if errors:
        raise ValidationFailed("not a package.json", details=errors)
    if len(names) > MAX_DEPENDENCIES:
        raise ValidationFailed("too many dependencies", details=[
            FieldError("dependencies", f"at most {MAX_DEPENDENCIES}")])
    return list(dict.fromkeys(names))


class RecommendService:
    def __init__(self, db: Database, search: SearchService) -> None:
        self.db = db
        self.search = search

    def _profiles(self, containing: set[str]) -> list[list[str]]:
        with self.db.read() as s:
            rows = s.scalars(select(ProjectProfile.names)
                             .order_by(ProjectProfile.last_seen_at.desc()).limit(PROFILES)).all()
        return [list(r) for r in rows if containing & set(r)]

    def _visible(self, principal: Principal | None, weights: dict[str, float],
                 why: dict[str, str], exclude: set[str], limit: int) -> list[Suggestion]:
        ranked = [n for n in sorted(weights, key=lambda n: (-weights[n], n)) if n not in exclude]
        hits = self.search.summaries(principal, ranked[:limit * 4])
        return [Suggestion(hits[n], weights[n], why.get(n, "")) for n in ranked
                if n in hits][:limit]

    def together(self, principal: Principal | None, name: str, limit: int = 6) -> list[Suggestion]:
        """Packages used with ``name`` in the same dependency lists and projects."""
        counts = self.search.co_dependencies(principal, name)
        for names in self._profiles({name}):
            counts.update(n for n in names if n != name)
        weights = {n: float(c) for n, c in counts.items()}
        return self._visible(principal, weights, {}, {name}, limit)

    def similar(self, principal: Principal | None, name: str, limit: int = 6) -> list[SearchHit]:
        return self.search.similar(principal, name, limit)

    def for_project(self, principal: Principal | None, manifest: Any, limit: int = 10,
                    origin: Origin | None = None, remember: bool = True) -> list[Suggestion]:
        """Suggestions for a project with this ``package.json``: what projects and
        packages with similar dependencies also use. Raises :class:`ValidationFailed`."""
        deps = project_dependencies(manifest)
        have = set(deps)
        weights: defaultdict[str, float] = defaultdict(float)
        why: dict[str, str] = {}
        for neighbour, score, its_deps in self.search.neighbours(principal, deps):
            shared = have & set(its_deps)
            for n in [neighbour, *its_deps]:
                if n not in have:
                    weights[n] += score
                    why.setdefault(n, f"used with {', '.join(sorted(shared)[:3])}")
        for names in self._profiles(have):
            overlap = len(have & set(names)) / max(len(names), 1)
            for n in names:
                if n not in have:
                    weights[n] += overlap * 5
                    why.setdefault(n, "used by projects like yours")
        if remember:
            self._remember(principal, deps, origin)
        return self._visible(principal, weights, why, have, limit)

    def _remember(self, principal: Principal | None, deps: list[str],
                  origin: Origin | None) -> None:
        with self.db.read() as s:
            known = sorted(s.scalars(select(Package.name).where(Package.name.in_(deps))))
        if len(known) < 2:
            return  # nothing co-occurs in a project with fewer than two of ours
        digest = hashlib.sha256("\n".join(known).encode()).hexdigest()
        try:
            with self.db.write() as s:
                moved = s.execute(update(ProjectProfile).where(ProjectProfile.digest == digest)
                                  .values(seen=ProjectProfile.seen + 1, last_seen_at=now()))
                if not moved.rowcount:  # type: ignore[attr-defined]
                    s.add(ProjectProfile(digest=digest, names=known, seen=1, last_seen_at=now()))
                audit.record(s, principal, "project.profile", digest, origin, packages=len(known))
        except IntegrityError:
            pass  # the same project sent twice at once: one row is enough
