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
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from ..domain import VersionState, tarball_filename
from ..storage.db import Database
from ..storage.models import (DistTag, Maintainer, Package, Packument, SigningKey, User, Version,
                              VersionSignature)
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


def _dist(v: Any, name: str, signatures: list[Any] | None = None) -> dict[str, Any]:
    dist: dict[str, Any] = {"integrity": v.integrity, "shasum": v.shasum,
                            "tarball": f"{BASE_MARKER}/npm/{tarball_path(name, v.version)}",
                            "fileCount": v.file_count, "unpackedSize": v.unpacked_size}
    if signatures:
        # npm verifies every entry of `signatures` with Node's ECDSA verifier and aborts
        # on a key it cannot use, so only the P-256 ones go there; the organisation's
        # Ed25519 signatures, for the gati client, have their own field
        npm_sigs = [{"keyid": s.keyid, "sig": s.sig} for s in signatures if s.algorithm == "ecdsa-p256"]
        org_sigs = [{"keyid": s.keyid, "sig": s.sig} for s in signatures if s.algorithm == "ed25519"]
        if npm_sigs:
            dist["signatures"] = npm_sigs
        if org_sigs:
            dist["gatiSignatures"] = org_sigs
    return dist


def version_document(v: Any, name: str, publisher: Any,
                     signatures: list[Any] | None = None) -> dict[str, Any]:
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
    doc["dist"] = _dist(v, name, signatures)
    return doc


@dataclass(frozen=True)
class PackageRow:
    """The package columns a write needs, read with Core (no ORM identity map)."""

    id: int
    name: str
    rev: int
    created_at: datetime
    modified_at: datetime
    description: str
    readme: str
    readme_filename: str


PACKAGE_COLUMNS = (Package.id, Package.name, Package.rev, Package.created_at,
                   Package.modified_at, Package.description, Package.readme,
                   Package.readme_filename)

# Statements built once: a publish runs a dozen of them inside the write lock, and
# building and caching a fresh statement object costs more than running it.
_LOCK_PACKAGE = select(*PACKAGE_COLUMNS).where(Package.name == bindparam("name")).with_for_update()
_TOUCH = update(Package).where(Package.id == bindparam("pid")).values(
    rev=bindparam("b_rev"), modified_at=bindparam("b_modified_at"))
_SET_TEXT = update(Package).where(Package.id == bindparam("pid")).values(
    description=bindparam("b_description"), readme=bindparam("b_readme"),
    readme_filename=bindparam("b_readme_filename"))
_VERSION_README = select(Version.readme, Version.readme_filename).where(
    Version.id == bindparam("vid"))
_VERSIONS = select(Version.id, Version.version, Version.manifest, Version.publisher_id,
                   Version.deprecated, Version.integrity, Version.shasum,
                   Version.file_count, Version.unpacked_size, Version.published_at).where(
    Version.package_id == bindparam("pid"), Version.state == VersionState.APPROVED.value,
    Version.unpublished_at.is_(None))
_SIGNATURES = (select(VersionSignature.version_id, VersionSignature.keyid, VersionSignature.sig,
                      SigningKey.algorithm)
               .join(SigningKey, SigningKey.keyid == VersionSignature.keyid)
               .join(Version, Version.id == VersionSignature.version_id)
               .where(Version.package_id == bindparam("pid"), SigningKey.revoked_at.is_(None))
               .order_by(VersionSignature.created_at, VersionSignature.keyid))
_MAINTAINERS = select(Maintainer.user_id).where(Maintainer.package_id == bindparam("pid"))
_USERS = select(User.id, User.username, User.email).where(
    User.id.in_(bindparam("ids", expanding=True)))
_TAGS = select(DistTag.tag, DistTag.version).where(DistTag.package_id == bindparam("pid"))
_PACKUMENT_FIELDS = ("name", "visible", "full", "abbreviated", "etag", "modified_at")
_UPDATE_PACKUMENT = update(Packument).where(Packument.package_id == bindparam("pid")).values(
    **{f: bindparam("b_" + f) for f in _PACKUMENT_FIELDS})
_INSERT_PACKUMENT = insert(Packument)


def lock_package_row(session: Session, name: str) -> PackageRow | None:
    """The package, locked until the transaction ends (``FOR UPDATE`` on PostgreSQL;
    SQLite's single writer lock is already held), so writes to one package are
    serialised: its packument is rebuilt from all of its versions."""
    row = session.connection().execute(_LOCK_PACKAGE, {"name": name}).first()
    return None if row is None else PackageRow(*row)


def maintainer_ids(session: Session, package_id: int) -> list[int]:
    return list(session.connection().execute(_MAINTAINERS, {"pid": package_id}).scalars())


def dist_tags(session: Session, package_id: int) -> dict[str, str]:
    return {tag: version for tag, version in session.connection().execute(_TAGS, {"pid": package_id})}


def touch(session: Session, package: PackageRow) -> PackageRow:
    """Bump the package's revision and modification time. (Its description and README
    are not set here: :func:`render` derives them from the version at ``latest``.)"""
    t = datetime.now(timezone.utc)
    session.connection().execute(_TOUCH, {"pid": package.id, "b_rev": package.rev + 1,
                                          "b_modified_at": t})
    return replace(package, rev=package.rev + 1, modified_at=t)


def readme_of(readme: str, readme_filename: str, manifest: Any) -> tuple[str, str]:
    """A version's README and its file name: the stored one, else (versions mirrored
    before READMEs were kept per version) a ``readme`` the manifest carries."""
    if readme:
        return readme, readme_filename
    if isinstance(manifest, dict) and isinstance(manifest.get("readme"), str):
        name = manifest.get("readmeFilename")
        return manifest["readme"], name if isinstance(name, str) else ""
    return "", ""


def _shown_text(session: Session, package: PackageRow, shown: Any) -> PackageRow:
    """``package`` with the description and README of ``shown`` (the version at
    ``latest`` among approved versions; None when there is none: then empty), stored on
    the package row when they differ. Held versions never get here, so a pending or
    rejected version's text never reaches the public document, the marketplace or
    search, and moving ``latest`` (approval, dist-tag, unpublish) moves the text with it."""
    if shown is None:
        text = ("", "", "")
    else:
        manifest = shown.manifest if isinstance(shown.manifest, dict) else {}
        row = session.connection().execute(_VERSION_README, {"vid": shown.id}).one()
        readme, filename = readme_of(row.readme, row.readme_filename, manifest)
        text = (str(manifest.get("description") or ""), readme, filename)
    if text == (package.description, package.readme, package.readme_filename):
        return package
    session.connection().execute(_SET_TEXT, {"pid": package.id, "b_description": text[0],
                                             "b_readme": text[1], "b_readme_filename": text[2]})
    return replace(package, description=text[0], readme=text[1], readme_filename=text[2])


def render(session: Session, package: PackageRow, *, maintainers: list[int] | None = None,
           tags: dict[str, str] | None = None) -> str:
    """Rebuild and store the documents of ``package`` in the caller's transaction (and
    the package's description and README, from the version now at ``latest``); returns
    the new ETag. ``maintainers`` and ``tags``, when the caller already has them
    as they now are, save two queries."""
    conn = session.connection()
    # only the columns a packument shows: never the file lists, which can be large
    versions = sorted(conn.execute(_VERSIONS, {"pid": package.id}).all(),
                      key=lambda v: version_sort_key(v.version))
    maintainer_list = maintainers if maintainers is not None else maintainer_ids(session, package.id)
    user_ids = {v.publisher_id for v in versions if v.publisher_id} | set(maintainer_list)
    users = {row.id: row for row in conn.execute(_USERS, {"ids": sorted(user_ids)})}
    live = {v.version for v in versions}
    all_tags = tags if tags is not None else dist_tags(session, package.id)
    tags = {tag: version for tag, version in all_tags.items() if version in live}
    if versions and "latest" not in tags:
        tags["latest"] = highest_version(live) or versions[-1].version
    package = _shown_text(session, package,
                          next((v for v in versions if v.version == tags.get("latest")), None))
    name = package.name
    time_map: dict[str, str] = {"created": iso(package.created_at),
                                "modified": iso(package.modified_at)}
    full_versions: dict[str, Any] = {}
    abbrev_versions: dict[str, Any] = {}
    signatures: dict[int, list[Any]] = {}
    for sig in conn.execute(_SIGNATURES, {"pid": package.id}):
        signatures.setdefault(sig.version_id, []).append(sig)
    for v in versions:
        doc = version_document(v, name, users.get(v.publisher_id or -1), signatures.get(v.id))
        full_versions[v.version] = doc
        abbrev_versions[v.version] = {k: doc[k] for k in ABBREVIATED_FIELDS if k in doc}
        time_map[v.version] = iso(v.published_at)
    people = [{"name": users[i].username, "email": users[i].email}
              for i in maintainer_list if i in users]
    rev = f"{package.rev}-{hashlib.md5(f'{name}:{package.rev}'.encode()).hexdigest()}"
    full: dict[str, Any] = {
        "_id": name, "_rev": rev, "name": name, "description": package.description,
        "dist-tags": tags, "versions": full_versions, "time": time_map,
        "maintainers": people, "readme": package.readme,
        "readmeFilename": package.readme_filename, "users": {},
    }
    abbreviated = {"name": name, "modified": time_map["modified"], "dist-tags": tags,
                   "versions": abbrev_versions, "time": time_map}
    full_bytes = json.dumps(full, separators=(",", ":"), ensure_ascii=False).encode()
    abbrev_bytes = json.dumps(abbreviated, separators=(",", ":"), ensure_ascii=False).encode()
    etag = hashlib.sha256(full_bytes).hexdigest()[:32]
    values = {"name": name, "visible": bool(versions), "full": full_bytes,
              "abbreviated": abbrev_bytes, "etag": etag, "modified_at": package.modified_at}
    # an UPDATE, not a load-and-modify: the old documents are never read back
    done = conn.execute(_UPDATE_PACKUMENT, {"pid": package.id,
                                            **{"b_" + k: v for k, v in values.items()}})
    if done.rowcount == 0:
        conn.execute(_INSERT_PACKUMENT, {"package_id": package.id, **values})
    return etag


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
