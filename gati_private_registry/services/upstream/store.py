"""A fetched upstream version becomes a ``versions`` row, in one transaction with its
votes, first transition, signatures (when approved), the package's re-rendered
document, a changes-feed row and an audit event."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ... import hooks
from ...domain import VersionState, split_name
from ...errors import Conflict
from ...storage import changes
from ...storage.blobs import BlobStore
from ...storage.db import Database
from ...storage.models import Blob, Package, Version
from .. import audit, packuments
from ..approvals_records import record_transition, record_votes
from ..plugins import PluginHost, RecordedVote
from ..publish import SignVersion, now, upsert_ignore
from ..validation import TarballInfo

#: the manifest keys that describe the upstream's transport, not the package
_TRANSPORT = {"dist", "_attachments", "_rev", "_resolved", "_integrity", "_from", "_shasum",
              "_where", "_requested", "_spec", "_inBundle", "_location", "_phantomChildren",
              "_requiredBy", "_args", "_development", "_optional"}


@dataclass(frozen=True)
class MirroredVersion:
    name: str
    version: str
    upstream: str
    manifest: dict[str, Any]
    info: TarballInfo
    digest: str
    integrity: str
    shasum: str
    size: int
    published_at: datetime
    state: str
    reason: str
    votes: tuple[RecordedVote, ...] = ()


def actor(upstream: str) -> str:
    """Who the audit log and transitions name for what the mirror does on its own."""
    return f"upstream:{upstream}"


class VersionStore:
    def __init__(self, db: Database, blobs: BlobStore, plugins: PluginHost,
                 sign: SignVersion | None) -> None:
        self.db = db
        self.blobs = blobs
        self.plugins = plugins
        self._sign = sign

    def package_origin(self, s: Session, name: str) -> tuple[bool, str | None]:
        """(exists, upstream) of the package ``name``."""
        row = s.execute(select(Package.upstream).where(Package.name == name)).first()
        return (row is not None, row[0] if row is not None else None)

    def add(self, mv: MirroredVersion, disabled: set[str]) -> MirroredVersion:
        """Store ``mv`` (its blob is already in the store). When another process stored
        the same version first, returns that one's state. Raises :class:`Conflict` when
        ``mv.name`` belongs to a locally published package (never mixed)."""
        try:
            stored = self._insert(mv)
        except IntegrityError:
            with self.db.read() as s:
                row = s.execute(select(Version.state, Version.state_reason)
                                .join(Package, Package.id == Version.package_id)
                                .where(Package.name == mv.name,
                                       Version.version == mv.version)).first()
            if row is None:
                raise
            return replace(mv, state=row.state, reason=row.state_reason)
        except BaseException:
            self._drop_unreferenced(mv.digest)
            raise
        self.plugins.state_changed(hooks.StateChange(mv.name, mv.version, None, stored.state,
                                                     actor(mv.upstream), stored.reason),
                                   disabled=disabled)
        return stored

    def _drop_unreferenced(self, digest: str) -> None:
        with self.db.read() as s:
            if s.get(Blob, digest) is None:
                self.blobs.delete(digest)

    def _insert(self, mv: MirroredVersion) -> MirroredVersion:
        with self.db.write() as s:
            t = now()
            scope, _ = split_name(mv.name)
            upsert_ignore(s, Package, {"name": mv.name, "scope": scope, "description": "",
                                       "readme": "", "readme_filename": "", "rev": 0,
                                       "created_at": t, "modified_at": t,
                                       "upstream": mv.upstream})
            pkg = packuments.lock_package_row(s, mv.name)
            assert pkg is not None
            _, origin = self.package_origin(s, mv.name)
            if origin is None:
                # dependency confusion: a name published here is never filled from outside
                raise Conflict(f"{mv.name} is published in this registry; it is never "
                               f"fetched from an upstream")
            conn = s.connection()
            upsert_ignore(s, Blob, {"digest": mv.digest, "size": mv.size, "created_at": t})
            manifest = {k: v for k, v in mv.manifest.items() if k not in _TRANSPORT}
            upstream_dist = {k: v for k, v in (mv.manifest.get("dist") or {}).items()
                             if k in ("signatures", "attestations", "integrity", "shasum",
                                      "tarball")}
            inserted = conn.execute(insert(Version), {
                "package_id": pkg.id, "version": mv.version, "state": mv.state,
                "manifest": manifest, "gati_module": mv.info.gati_module,
                "blob_digest": mv.digest, "integrity": mv.integrity, "shasum": mv.shasum,
                "size": mv.size, "file_count": mv.info.file_count,
                "unpacked_size": mv.info.unpacked_size,
                "files": [[f.path, f.size] for f in mv.info.files],
                "publisher_id": None, "published_at": mv.published_at,
                "state_changed_at": t, "state_reason": mv.reason, "deprecated": None,
                "unpublished_at": None, "stage_id": str(uuid.uuid4()), "tag": "latest",
                "upstream": mv.upstream, "upstream_dist": upstream_dist})
            version_id = inserted.inserted_primary_key[0]  # type: ignore[index]
            record_votes(conn, version_id, list(mv.votes), t)
            if mv.state == VersionState.APPROVED.value and self._sign is not None:
                self._sign(s, version_id, mv.name, mv.version, mv.integrity)
            record_transition(conn, version_id, None, mv.state, actor(mv.upstream), mv.reason, t)
            # the package's description follows `latest` among approved versions (render
            # sets it): a quarantined or pending upstream version's text shows nowhere
            packuments.render(s, packuments.touch(s, pkg))
            changes.append(s, "version.mirror", package=mv.name, version=mv.version,
                           state=mv.state, upstream=mv.upstream)
            audit.record(s, actor(mv.upstream), "version.mirror", f"{mv.name}@{mv.version}",
                         None, state=mv.state, integrity=mv.integrity, reason=mv.reason)
        return mv


def local_versions(s: Session, name: str) -> dict[str, tuple[int, str, datetime]]:
    """version → (id, state, published_at) of every live row of ``name``."""
    rows = s.execute(select(Version.id, Version.version, Version.state, Version.published_at)
                     .join(Package, Package.id == Version.package_id)
                     .where(Package.name == name, Version.unpublished_at.is_(None))).all()
    return {r.version: (r.id, r.state, r.published_at) for r in rows}


Clock = Callable[[], datetime]
