"""Keeping the data whole: ``fsck`` (blobs against rows), ``backup`` and ``restore``.

A backup directory holds the database (SQLite's online backup API, or ``pg_dump`` in its
custom format), every blob, the signing keys and the session secret, and a
``manifest.json`` with a digest of each; ``restore`` checks every digest before it
writes anything, and writes only into an empty data directory (and an empty database).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from sqlalchemy import delete, inspect, select

from ..errors import Conflict, FieldError, NotFound, Unavailable, ValidationFailed
from ..settings import Settings
from ..storage.blobs import BlobStore, open_blob_store
from ..storage.db import Database
from ..storage.models import Blob, Package, Version

FORMAT = "gati-registry-backup/1"
#: temporary files younger than this may belong to a publish in progress
TEMP_GRACE_SECONDS = 600


@dataclass
class FsckReport:
    """What :func:`fsck` found (and, with ``repair``, what it cleaned up)."""

    versions: int = 0
    blobs: int = 0
    #: "name@version: why" for versions whose tarball is missing or damaged (not repairable)
    broken_versions: list[str] = field(default_factory=list)
    #: blob files no row knows (left by a crash between the file and the row)
    orphan_files: list[str] = field(default_factory=list)
    #: blob rows no version uses and with no file
    orphan_rows: list[str] = field(default_factory=list)
    damaged_files: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return (len(self.broken_versions) + len(self.orphan_files) + len(self.orphan_rows)
                + len(self.damaged_files) + len(self.temp_files))

    @property
    def unrepairable(self) -> int:
        return len(self.broken_versions)


def _sha512_file(path: Path) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _sha512_blob(blobs: BlobStore, digest: str) -> str:
    h = hashlib.sha512()
    fh = blobs.open(digest)
    try:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    finally:
        fh.close()
    return h.hexdigest()


def fsck(db: Database, blobs: BlobStore, *, repair: bool = False, verify: bool = True,
         now: float | None = None) -> FsckReport:
    """Check that every version's blob exists with the right digest and size and that
    every blob is referenced. With ``repair``: delete orphan files, orphan rows, damaged
    unreferenced files and stale temporary files. Versions without a good tarball are
    reported, never "repaired" (their rows are the audit trail)."""
    report = FsckReport()
    clock = now if now is not None else time.time()
    with db.read() as s:
        versions = s.execute(select(Version.id, Version.version, Version.blob_digest,
                                    Version.size, Version.package_id)).all()
        rows = {b.digest: b.size for b in s.scalars(select(Blob))}
        names = dict(s.execute(select(Package.id, Package.name)).all())
    report.versions = len(versions)
    files = set(blobs.digests())
    report.blobs = len(files)
    used = {v.blob_digest for v in versions}
    damaged: set[str] = set()
    if verify:
        for digest in sorted(files):
            if _sha512_blob(blobs, digest) != digest:
                damaged.add(digest)
                if digest not in used:  # a used one is reported with its version
                    report.damaged_files.append(digest)
    for v in versions:
        label = f"{names.get(v.package_id, '?')}@{v.version}"
        if v.blob_digest not in files:
            report.broken_versions.append(f"{label}: tarball {v.blob_digest[:16]}… is missing")
        elif v.blob_digest in damaged:
            report.broken_versions.append(f"{label}: tarball {v.blob_digest[:16]}… is damaged")
        elif blobs.size(v.blob_digest) != v.size:
            report.broken_versions.append(f"{label}: tarball size differs from the record")
    report.orphan_files = sorted(files - set(rows) - used)
    report.orphan_rows = sorted(d for d in set(rows) - used if d not in files)
    stale = [p for p in blobs.stray_temp_files() if clock - p.stat().st_mtime > TEMP_GRACE_SECONDS]
    report.temp_files = [str(p) for p in stale]
    if repair:
        for digest in report.orphan_files:
            blobs.delete(digest)
            report.repaired.append(f"deleted orphan blob file {digest[:16]}…")
        for digest in sorted(damaged - used):
            blobs.delete(digest)
            report.repaired.append(f"deleted damaged unreferenced blob {digest[:16]}…")
        if report.orphan_rows:
            with db.write() as s:
                s.execute(delete(Blob).where(Blob.digest.in_(report.orphan_rows),
                                             ~Blob.digest.in_(select(Version.blob_digest))))
            report.repaired += [f"deleted orphan blob row {d[:16]}…" for d in report.orphan_rows]
        for p in stale:
            p.unlink(missing_ok=True)
            report.repaired.append(f"deleted stale temporary file {p.name}")
    return report


# -- backup ------------------------------------------------------------------------------

def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    """libpq connection arguments for ``pg_dump``/``pg_restore`` from a SQLAlchemy URL
    (the password goes through the environment, never the command line)."""
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    args = ["--host", parts.hostname or "localhost", "--port", str(parts.port or 5432),
            "--dbname", unquote(parts.path.lstrip("/"))]
    if parts.username:
        args += ["--username", unquote(parts.username)]
    env = {**os.environ}
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    return args, env


def _run(cmd: list[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise Unavailable(f"{cmd[0]} is not installed: install the PostgreSQL client "
                          f"(Debian: postgresql-client) of your server's major version") from None
    if done.returncode != 0:
        raise Unavailable(f"{cmd[0]} failed: {done.stderr.strip()[-800:]}")


def backup(settings: Settings, db: Database, blobs: BlobStore, target: Path,
           progress: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Write a consistent backup into ``target`` (new or empty). The database is copied
    first: blobs are never deleted before their rows, so every version in the copy has
    its blob when the blobs are copied after. Returns the manifest. Raises
    :class:`Conflict` when ``target`` is not empty, :class:`Unavailable` when a tool fails."""
    if target.exists() and any(target.iterdir()):
        raise Conflict(f"{target} is not empty: back up into a new directory")
    (target / "blobs").mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": FORMAT,
                                   "created_at": datetime.now(timezone.utc).isoformat(),
                                   "backend": "sqlite" if db.is_sqlite else "postgresql"}
    if db.is_sqlite:
        progress("copying the SQLite database (online backup API)")
        source_path = db.engine.url.database
        assert source_path
        src = sqlite3.connect(source_path)
        dst = sqlite3.connect(target / "registry.db")
        try:
            with dst:
                src.backup(dst)
        finally:
            dst.close()
            src.close()
        manifest["database"] = {"file": "registry.db", "sha256": _sha256_file(target / "registry.db")}
    else:
        progress("dumping the PostgreSQL database (pg_dump, custom format)")
        args, env = _pg_args(settings.database_url)
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
              "--file", str(target / "database.pgdump"), *args], env)
        manifest["database"] = {"file": "database.pgdump",
                                "sha256": _sha256_file(target / "database.pgdump")}
    digests = sorted(blobs.digests())
    progress(f"copying {len(digests)} blobs")
    copied: dict[str, int] = {}
    for digest in digests:
        dest = target / "blobs" / digest
        stream = blobs.open(digest)
        try:
            with open(dest, "wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
        finally:
            stream.close()
        if _sha512_file(dest) != digest:  # copy what is right, or say so
            raise Unavailable(f"blob {digest[:16]}… is damaged in the store: run gati-registry fsck")
        copied[digest] = dest.stat().st_size
    manifest["blobs"] = copied
    secrets: dict[str, str] = {}
    key_files = sorted(p.name for p in settings.keys_dir.glob("*")
                       if p.is_file() and not p.name.startswith("."))
    for rel in ["secret_key", *(f"keys/{name}" for name in key_files)]:
        source = settings.data / rel if rel == "secret_key" else settings.keys_dir / rel[5:]
        if source.is_file():
            dest = target / rel
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
            os.chmod(dest, 0o600)
            secrets[rel] = _sha256_file(dest)
    manifest["files"] = secrets
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def verify_backup(source: Path) -> dict[str, Any]:
    """Check every digest in ``source``'s manifest. Returns the manifest; raises
    :class:`ValidationFailed` listing every problem."""
    try:
        manifest: dict[str, Any] = json.loads((source / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise NotFound(f"{source} has no readable manifest.json: {exc}") from None
    errors: list[FieldError] = []
    if manifest.get("format") != FORMAT:
        errors.append(FieldError("format", f"not a {FORMAT} backup"))
    database = manifest.get("database") or {}
    db_file = source / str(database.get("file", ""))
    if not db_file.is_file() or _sha256_file(db_file) != database.get("sha256"):
        errors.append(FieldError("database", f"{db_file.name} is missing or does not match"))
    for digest, size in (manifest.get("blobs") or {}).items():
        path = source / "blobs" / digest
        if not path.is_file() or path.stat().st_size != size or _sha512_file(path) != digest:
            errors.append(FieldError(f"blobs.{digest[:16]}", "missing or does not match"))
    for rel, sha in (manifest.get("files") or {}).items():
        path = source / rel
        if not path.is_file() or _sha256_file(path) != sha:
            errors.append(FieldError(f"files.{rel}", "missing or does not match"))
    if errors:
        raise ValidationFailed("the backup does not verify", details=errors)
    return manifest


def restore(settings: Settings, source: Path,
            progress: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Restore ``source`` into the configured (empty) data directory and database, after
    verifying every digest. Raises :class:`ValidationFailed` (the backup does not
    verify, or the backends differ) and :class:`Conflict` (the target is not empty)."""
    manifest = verify_backup(source)
    data = settings.data
    if data.exists() and any(p.name not in ("metrics",) for p in data.iterdir()):
        raise Conflict(f"{data} is not empty: restore into an empty data directory")
    sqlite_target = settings.database_url.startswith("sqlite")
    if (manifest["backend"] == "sqlite") != sqlite_target:
        raise ValidationFailed("backend mismatch", details=[FieldError(
            "database.url", f"the backup is of a {manifest['backend']} database")])
    data.mkdir(parents=True, exist_ok=True)
    database = manifest["database"]
    assert isinstance(database, dict)
    if sqlite_target:
        progress("restoring the SQLite database")
        target = Path(settings.database_url.split("sqlite:///", 1)[1])
        if target.exists():
            raise Conflict(f"{target} exists: restore into an empty data directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / database["file"], target)
    else:
        from sqlalchemy import create_engine

        engine = create_engine(settings.database_url)
        try:
            if inspect(engine).get_table_names():
                raise Conflict("the database is not empty: restore into an empty database")
        finally:
            engine.dispose()
        progress("restoring the PostgreSQL database (pg_restore)")
        args, env = _pg_args(settings.database_url)
        _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", *args,
              str(source / database["file"])], env)
    store = open_blob_store(settings.blobs, settings.data / "blobs")
    blobs = manifest.get("blobs") or {}
    assert isinstance(blobs, dict)
    progress(f"restoring {len(blobs)} blobs")
    for digest in blobs:
        store.put((source / "blobs" / digest).read_bytes())
    files = manifest.get("files") or {}
    assert isinstance(files, dict)
    for rel in files:
        dest = data / rel if rel == "secret_key" else settings.keys_dir / rel[5:]
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(source / rel, dest)
        os.chmod(dest, 0o600)
    return manifest
