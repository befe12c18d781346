"""Versions held back from installs (pending, rejected, quarantined), as the people
entitled to see them read them: their publisher and approvers.

Installs never see these, and the tarball of a held version answers 404 to everyone.
The packument that ``npm view`` reads (npm says so in its ``npm-command`` header)
gains the held versions for a publisher's own token and for approvers, each with a
``gati`` block saying its state and why, so ``npm view NAME@VERSION gati`` tells a
publisher what became of their version.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import bindparam, select

from ..domain import Principal, Scope, VersionState
from ..storage.db import Database
from ..storage.models import Package, User, Version
from .packuments import BASE_MARKER, iso, readme_of, version_document
from .validation.names import version_sort_key

_HELD = (select(Version.version, Version.publisher_id)
         .join(Package, Package.id == Version.package_id)
         .where(Package.name == bindparam("name"), Version.unpublished_at.is_(None),
                Version.state != VersionState.APPROVED.value))

_HELD_ROWS = (select(Version.version, Version.manifest, Version.publisher_id,
                     Version.deprecated, Version.integrity, Version.shasum,
                     Version.file_count, Version.unpacked_size, Version.published_at,
                     Version.state, Version.state_reason, Version.state_changed_at, Version.tag,
                     Version.readme, Version.readme_filename,
                     Package.created_at, Package.modified_at)
              .join(Package, Package.id == Version.package_id)
              .where(Package.name == bindparam("name"), Version.unpublished_at.is_(None),
                     Version.state != VersionState.APPROVED.value))


@dataclass(frozen=True)
class _Held:
    generation: int
    #: version -> publisher user id
    publishers: tuple[tuple[str, int | None], ...]


class HeldVersions:
    """Answers "may this reader see held versions of NAME?" from memory (validated by the
    generation counter, like the packument cache) and builds their view."""

    def __init__(self, db: Database, generation: Callable[[], int],
                 max_entries: int = 10_000) -> None:
        self.db = db
        self._generation = generation
        self._cache: OrderedDict[str, _Held] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def _held(self, name: str) -> _Held:
        gen = self._generation()
        hit = self._cache.get(name)
        if hit is not None and hit.generation == gen:
            return hit
        with self.db.read() as s:
            rows = s.execute(_HELD, {"name": name}).all()
        held = _Held(gen, tuple((r.version, r.publisher_id) for r in rows))
        with self._lock:
            self._cache[name] = held
            self._cache.move_to_end(name)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return held

    def visible_to(self, principal: Principal | None, name: str) -> bool:
        """Whether ``principal`` would see any held version of ``name``."""
        if principal is None or not principal.can(Scope.READ):
            return False
        held = self._held(name).publishers
        if not held:
            return False
        if principal.can(Scope.APPROVE):
            return True
        return any(pid == principal.user_id for _, pid in held)

    def document(self, name: str, base: str, principal: Principal,
                 public: dict[str, Any] | None) -> dict[str, Any] | None:
        """The full packument of ``name`` as ``principal`` sees it: ``public`` (the
        installable document, or None when nothing is approved) plus the held versions
        they may see. Dist-tags, description and README are left as installs see them
        (a held version's README is in its own entry only); a package with nothing
        approved gets the tags its publishers asked for, and the description and README
        of the held version its ``latest`` names, so ``npm view NAME`` shows what waits.
        None when there is nothing to show."""
        with self.db.read() as s:
            rows = s.execute(_HELD_ROWS, {"name": name}).all()
            mine = [r for r in rows
                    if principal.can(Scope.APPROVE) or r.publisher_id == principal.user_id]
            ids = sorted({r.publisher_id for r in mine if r.publisher_id})
            users = {u.id: u for u in s.execute(select(User.id, User.username, User.email)
                                                .where(User.id.in_(ids)))} if ids else {}
        if not mine:
            return public
        doc: dict[str, Any] = public if public is not None else {
            "_id": name, "name": name, "dist-tags": {}, "versions": {}, "maintainers": [],
            "time": {"created": iso(mine[0].created_at), "modified": iso(mine[0].modified_at)}}
        prefix = base.rstrip("/")
        for r in mine:
            entry = version_document(r, name, users.get(r.publisher_id or -1))
            entry["dist"]["tarball"] = entry["dist"]["tarball"].replace(BASE_MARKER, prefix)
            entry["gati"] = {"state": r.state, "reason": r.state_reason,
                             "stateChangedAt": iso(r.state_changed_at)}
            readme, readme_filename = readme_of(r.readme, r.readme_filename, r.manifest)
            if readme:
                entry["readme"], entry["readmeFilename"] = readme, readme_filename
            doc["versions"][r.version] = entry
            doc["time"][r.version] = iso(r.published_at)
        if public is None:
            for r in sorted(mine, key=lambda r: version_sort_key(r.version)):
                doc["dist-tags"][r.tag] = r.version
            shown = doc["versions"].get(doc["dist-tags"].get("latest")) or \
                doc["versions"][max(doc["versions"], key=version_sort_key)]
            doc["description"] = str(shown.get("description") or "")
            doc["readme"] = shown.get("readme", "")
            doc["readmeFilename"] = shown.get("readmeFilename", "")
        return doc


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
