"""Packuments: rendered once per change, stored as bytes, served from memory.

The stored bytes hold :data:`BASE_MARKER` where the external base URL goes, because
``dist.tarball`` must be absolute and the base depends on how the client reached us.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import VersionState, tarball_filename
from ..storage.db import Database
from ..storage.models import DistTag, Maintainer, Package, Packument, User, Version
from .validation import highest_version, version_sort_key

BASE_MARKER = "\u0000GATI-BASE\u0000"
_MARKER_JSON = json.dumps(BASE_MARKER)[1:-1].encode()  # as it appears inside JSON text

#: per-version fields kept in the abbreviated document (npm's list, plus _npmUser for pnpm)
ABBREVIATED_FIELDS = (
    "name", "version", "deprecated", "dependencies", "optionalDependencies",
    "devDependencies", "peerDependencies", "peerDependenciesMeta", "bundleDependencies",
    "bundledDependencies", "acceptDependencies", "bin", "directories", "dist", "engines",
    "_hasShrinkwrap", "hasInstallScript", "funding", "cpu", "os", "libc", "_npmUser",
)

#: how long a cached packument is served without asking the database whether another
#: machine changed it (this machine's writes invalidate it at once)
REVALIDATE_SECONDS = 1.0


def iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{dt.microsecond // 1000:03d}Z"


def tarball_path(name: str, version: str) -> str:
    """The canonical tarball path under the registry URL."""
    return f"{name}/-/{tarball_filename(name, version)}"


def _dist(v: Version, name: str) -> dict[str, Any]:
    return {"integrity": v.integrity, "shasum": v.shasum,
            "tarball": f"{BASE_MARKER}/npm/{tarball_path(name, v.version)}",
            "fileCount": v.file_count, "unpackedSize": v.unpacked_size}


def version_document(v: Version, name: str, publisher: User | None) -> dict[str, Any]:
    """The manifest of one version as served in the full packument."""
    doc = dict(v.manifest)
    doc["name"] = name
    doc["version"] = v.version
    doc["_id"] = f"{name}@{v.version}"
    if publisher is not None:
        doc["_npmUser"] = {"name": publisher.username, "email": publisher.email}
    if v.deprecated:
        doc["deprecated"] = v.deprecated
    else:
        doc.pop("deprecated", None)
    doc["dist"] = _dist(v, name)
    return doc


def render(session: Session, package: Package) -> Packument:
    """Rebuild and store the documents of ``package`` in the caller's transaction."""
    versions = session.scalars(
        select(Version).where(Version.package_id == package.id,
                              Version.state == VersionState.APPROVED.value,
                              Version.unpublished_at.is_(None))).all()
    versions = sorted(versions, key=lambda v: version_sort_key(v.version))
    users = {u.id: u for u in session.scalars(
        select(User).where(User.id.in_({v.publisher_id for v in versions if v.publisher_id}
                                       | set(session.scalars(select(Maintainer.user_id).where(
                                           Maintainer.package_id == package.id)).all()))))}
    maintainer_ids = session.scalars(select(Maintainer.user_id).where(
        Maintainer.package_id == package.id)).all()
    live = {v.version for v in versions}
    tags = {t.tag: t.version for t in session.scalars(
        select(DistTag).where(DistTag.package_id == package.id)).all() if t.version in live}
    if versions and "latest" not in tags:
        tags["latest"] = highest_version(live) or versions[-1].version
    name = package.name
    time_map: dict[str, str] = {"created": iso(package.created_at),
                                "modified": iso(package.modified_at)}
    full_versions: dict[str, Any] = {}
    abbrev_versions: dict[str, Any] = {}
    for v in versions:
        doc = version_document(v, name, users.get(v.publisher_id or -1))
        full_versions[v.version] = doc
        abbrev_versions[v.version] = {k: doc[k] for k in ABBREVIATED_FIELDS if k in doc}
        time_map[v.version] = iso(v.published_at)
    maintainers = [{"name": users[i].username, "email": users[i].email}
                   for i in maintainer_ids if i in users]
    rev = f"{package.rev}-{hashlib.md5(f'{name}:{package.rev}'.encode()).hexdigest()}"
    full: dict[str, Any] = {
        "_id": name, "_rev": rev, "name": name, "description": package.description,
        "dist-tags": tags, "versions": full_versions, "time": time_map,
        "maintainers": maintainers, "readme": package.readme,
        "readmeFilename": package.readme_filename, "users": {},
    }
    abbreviated = {"name": name, "modified": time_map["modified"], "dist-tags": tags,
                   "versions": abbrev_versions, "time": time_map}
    full_bytes = json.dumps(full, separators=(",", ":"), ensure_ascii=False).encode()
    abbrev_bytes = json.dumps(abbreviated, separators=(",", ":"), ensure_ascii=False).encode()
    row = session.get(Packument, package.id)
    if row is None:
        row = Packument(package_id=package.id, name=name)
        session.add(row)
    row.visible = bool(versions)
    row.full = full_bytes
    row.abbreviated = abbrev_bytes
    row.etag = hashlib.sha256(full_bytes).hexdigest()[:32]
    row.modified_at = package.modified_at
    return row


@dataclass
class Representation:
    """Bytes ready to send, with their ETag."""

    body: bytes
    etag: str
    gz: bytes | None = None

    def gzipped(self) -> bytes:
        if self.gz is None:
            self.gz = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self.gz


@dataclass
class _Entry:
    etag: str
    visible: bool
    full: bytes
    abbreviated: bytes
    generation: int
    checked: float
    rendered: dict[tuple[str, bool], Representation] = field(default_factory=dict)
    size: int = 0


class PackumentCache:
    """Process-local LRU of packuments, validated against the generation counter."""

    def __init__(self, db: Database, generation: Callable[[], int],
                 max_bytes: int = 256 * 1024 * 1024) -> None:
        self.db = db
        self._generation = generation
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, name: str, base: str, abbreviated: bool,
            fresh: bool = False) -> Representation | None:
        """The representation for ``name`` with tarball URLs under ``base``, or None
        when there is no visible packument. ``fresh`` asks the database first (npm's
        ``?write=true`` before a write)."""
        gen = self._generation()
        now = time.monotonic()
        entry = self._entries.get(name)
        if entry is None or fresh or entry.generation != gen or \
                now - entry.checked > REVALIDATE_SECONDS:
            entry = self._refresh(name, entry, gen, now)
            if entry is None:
                return None
        if not entry.visible:
            return None
        key = (base, abbreviated)
        rep = entry.rendered.get(key)
        if rep is None:
            template = entry.abbreviated if abbreviated else entry.full
            body = template.replace(_MARKER_JSON, base.rstrip("/").encode())
            tag = hashlib.sha256(f"{entry.etag}|{base}|{int(abbreviated)}".encode()).hexdigest()[:32]
            rep = Representation(body=body, etag=f'"{tag}"')
            entry.rendered[key] = rep
        return rep

    def _refresh(self, name: str, entry: _Entry | None, gen: int, now: float) -> _Entry | None:
        with self.db.read() as s:
            if entry is not None:
                row_etag = s.scalar(select(Packument.etag).where(Packument.name == name))
                if row_etag == entry.etag:
                    entry.generation, entry.checked = gen, now
                    return entry
            row = s.scalar(select(Packument).where(Packument.name == name))
        with self._lock:
            old = self._entries.pop(name, None)
            if old is not None:
                self._bytes -= old.size
            if row is None:
                return None
            new = _Entry(etag=row.etag, visible=row.visible, full=row.full,
                         abbreviated=row.abbreviated, generation=gen, checked=now,
                         size=2 * (len(row.full) + len(row.abbreviated)))
            self._entries[name] = new
            self._bytes += new.size
            while self._bytes > self._max and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.size
            return new

    def get_document(self, name: str, base: str) -> dict[str, Any] | None:
        rep = self.get(name, base, abbreviated=False)
        return None if rep is None else json.loads(rep.body)
