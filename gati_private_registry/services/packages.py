"""Everything done to a package after publish: dist-tags, deprecation, unpublish,
tarball lookup. (Search is the index's job: see ``search``.)"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import Origin, Principal, Scope, VersionState, split_name
from ..errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from ..storage import changes
from ..storage.db import Database
from ..storage.models import DistTag, Package, Version
from . import audit, ownership, packuments
from .packuments import PackageRow
from .publish import PublishService, now
from .validation import highest_version, is_valid_tag


@dataclass(frozen=True)
class TarballRef:
    """Where a servable tarball's bytes are."""

    digest: str
    size: int
    integrity: str
    version: str


class PackageService:
    def __init__(self, db: Database, publisher: PublishService,
                 generation: Callable[[], int]) -> None:
        self.db = db
        self._publisher = publisher
        self._generation = generation
        self._tarballs: dict[tuple[str, str], tuple[TarballRef | None, int, float]] = {}
        self._lock = threading.Lock()

    # -- helpers -----------------------------------------------------------------------

    def _owned(self, s: Session, principal: Principal, name: str) -> PackageRow:
        """The locked package when ``principal`` may change it.

        Raises :class:`NotFound`, or :class:`Forbidden` (403, never 404: npm unpublish
        reports a 404 as success)."""
        pkg = self._publisher.lock_package(s, name, create=False)
        if pkg is None:
            raise NotFound(f"no package {name}")
        if not principal.can(Scope.PUBLISH):
            raise Forbidden("this needs a publish token")
        ownership.check_owner(s, principal, pkg.id, name)
        return pkg

    def check_owner(self, principal: Principal, name: str) -> None:
        """Raises :class:`NotFound` or :class:`Forbidden` unless ``principal`` owns ``name``."""
        with self.db.read() as s:
            pkg = s.scalar(select(Package).where(Package.name == name))
            if pkg is None:
                raise NotFound(f"no package {name}")
            if not principal.can(Scope.PUBLISH):
                raise Forbidden(f"only the owners of {name} and admins may do this")
            ownership.check_owner(s, principal, pkg.id, name)

    def _live(self, s: Session, pkg: PackageRow | Package) -> dict[str, Version]:
        rows = s.scalars(select(Version).where(
            Version.package_id == pkg.id, Version.state == VersionState.APPROVED.value,
            Version.unpublished_at.is_(None))).all()
        return {v.version: v for v in rows}

    def _commit_change(self, s: Session, pkg: PackageRow, kind: str, principal: Principal,
                       subject: str, origin: Origin | None, version: str | None = None,
                       **details: Any) -> None:
        s.flush()
        pkg = packuments.touch(s, pkg)
        packuments.render(s, pkg)
        changes.append(s, kind, package=pkg.name, version=version, **details)
        audit.record(s, principal, kind, subject, origin, **details)

    # -- dist-tags ---------------------------------------------------------------------

    def dist_tags(self, name: str) -> dict[str, str]:
        """Raises :class:`NotFound`."""
        with self.db.read() as s:
            pkg = s.scalar(select(Package).where(Package.name == name))
            if pkg is None:
                raise NotFound(f"no package {name}")
            live = self._live(s, pkg)
            if not live:
                raise NotFound(f"no package {name}")
            tags = {t.tag: t.version for t in s.scalars(
                select(DistTag).where(DistTag.package_id == pkg.id)) if t.version in live}
        if "latest" not in tags:
            tags["latest"] = highest_version(live) or ""
        return tags

    def set_tag(self, principal: Principal, name: str, tag: str, version: Any,
                origin: Origin | None = None) -> None:
        """Point ``tag`` at ``version``. Raises :class:`ValidationFailed`,
        :class:`NotFound`, :class:`Forbidden`."""
        errors = []
        if not is_valid_tag(tag):
            errors.append(FieldError("tag", f"{tag!r} is not a valid tag (it must not be a semver range)"))
        if not isinstance(version, str) or not version:
            errors.append(FieldError("version", "the body must be a JSON string naming a version"))
        if errors:
            raise ValidationFailed("invalid dist-tag", details=errors)
        with self.db.write() as s:
            pkg = self._owned(s, principal, name)
            if version not in self._live(s, pkg):
                raise NotFound(f"{name}@{version} is not published")
            row = s.get(DistTag, (pkg.id, tag))
            if row is None:
                s.add(DistTag(package_id=pkg.id, tag=tag, version=version))
            else:
                row.version = version
            self._commit_change(s, pkg, "dist-tag.set", principal, f"{name}@{tag}", origin,
                                version=version, tag=tag)

    def remove_tag(self, principal: Principal, name: str, tag: str,
                   origin: Origin | None = None) -> None:
        """Raises :class:`ValidationFailed` for ``latest``, :class:`NotFound`, :class:`Forbidden`."""
        if tag == "latest":
            raise ValidationFailed("the latest tag cannot be removed",
                                   details=[FieldError("tag", "latest cannot be removed")])
        with self.db.write() as s:
            pkg = self._owned(s, principal, name)
            row = s.get(DistTag, (pkg.id, tag))
            if row is None:
                raise NotFound(f"{name} has no tag {tag}")
            s.delete(row)
            self._commit_change(s, pkg, "dist-tag.remove", principal, f"{name}@{tag}", origin,
                                tag=tag)

    # -- packument writes from npm (deprecate, unpublish) ------------------------------

    def update_from_document(self, principal: Principal, name: str, body: Any,
                             origin: Origin | None = None, *, removal: bool,
                             rev: str | None = None) -> str:
        """Apply a packument PUT without attachments: npm deprecate (versions carry a
        changed ``deprecated``), npm unpublish of versions (``removal``: versions missing
        from the body go), owner changes (no ``versions`` key: nothing to do here).
        Client-sent dist, times and signatures are never taken. Returns what was done.

        ``rev`` is the document revision the client read (npm unpublish PUTs to
        ``/-rev/REV``). A removal against an older revision is refused: the body cannot
        list versions approved since, and would unpublish them.

        Raises :class:`ValidationFailed`, :class:`NotFound`, :class:`Forbidden`,
        :class:`Conflict` (``rev`` is not the current revision)."""
        if not isinstance(body, dict):
            raise ValidationFailed("body must be a JSON object", details=[FieldError("body", "not an object")])
        versions = body.get("versions")
        if versions is None:
            if "maintainers" in body or "users" in body:
                return "nothing"  # owner/star changes: not supported yet, and harmless
            raise ValidationFailed("nothing to change", details=[FieldError("versions", "missing")])
        if not isinstance(versions, dict):
            raise ValidationFailed("invalid document", details=[FieldError("versions", "must be an object")])
        with self.db.write() as s:
            pkg = self._owned(s, principal, name)
            live = self._live(s, pkg)
            done = []
            if removal and rev is not None and rev.split("-", 1)[0] != str(pkg.rev):
                raise Conflict(f"{name} changed since it was read (revision {rev.split('-', 1)[0]}, "
                               f"now {pkg.rev}): read it again and retry")
            if removal:
                gone = [v for v in live if v not in versions]
                if gone and len(gone) == len(live):
                    pass  # npm sends a DELETE for the last version; a PUT leaving none is the same
                t = now()
                for v in gone:
                    live[v].unpublished_at = t
                    done.append(f"unpublished {v}")
                if gone:
                    s.flush()
                    remaining = [v for v in live if v not in gone]
                    for tag in s.scalars(select(DistTag).where(DistTag.package_id == pkg.id)).all():
                        if tag.version in gone:
                            if tag.tag == "latest" and remaining:
                                tag.version = highest_version(remaining) or remaining[-1]
                            else:
                                s.delete(tag)
                    self._commit_change(s, pkg, "version.unpublish", principal,
                                        f"{name}@{','.join(gone)}", origin, versions=gone)
                    return "; ".join(done)
            for v, doc in versions.items():
                if v not in live or not isinstance(doc, dict) or "deprecated" not in doc:
                    continue
                message = doc["deprecated"]
                if message is not None and not isinstance(message, str):
                    raise ValidationFailed("invalid deprecation", details=[
                        FieldError(f"versions.{v}.deprecated", "must be a string")])
                new = message or None  # "" un-deprecates
                if live[v].deprecated != new:
                    live[v].deprecated = new
                    done.append(f"{'deprecated' if new else 'undeprecated'} {v}")
            if done:
                self._commit_change(s, pkg, "version.deprecate", principal, name, origin,
                                    changes=done)
            return "; ".join(done) or "nothing"

    def unpublish_package(self, principal: Principal, name: str,
                          origin: Origin | None = None) -> None:
        """Unpublish every version. The numbers stay used forever.

        Raises :class:`NotFound`, :class:`Forbidden`."""
        with self.db.write() as s:
            pkg = self._owned(s, principal, name)
            live = self._live(s, pkg)
            t = now()
            for v in live.values():
                v.unpublished_at = t
            for tag in s.scalars(select(DistTag).where(DistTag.package_id == pkg.id)).all():
                s.delete(tag)
            self._commit_change(s, pkg, "package.unpublish", principal, name, origin,
                                versions=sorted(live))

    # -- tarballs ----------------------------------------------------------------------

    def tarball(self, name: str, filename: str) -> TarballRef:
        """The blob behind ``<name>/-/<filename>`` when that version may be installed.

        Raises :class:`NotFound` (also for versions that are not approved)."""
        key = (name, filename)
        gen = self._generation()
        hit = self._tarballs.get(key)
        mono = time.monotonic()
        if hit is not None and hit[1] == gen and mono - hit[2] < packuments.REVALIDATE_SECONDS:
            ref = hit[0]
        else:
            ref = self._load_tarball(name, filename)
            with self._lock:
                if len(self._tarballs) > 100_000:
                    self._tarballs.clear()
                self._tarballs[key] = (ref, gen, mono)
        if ref is None:
            raise NotFound(f"no tarball {name}/-/{filename}")
        return ref

    def _load_tarball(self, name: str, filename: str) -> TarballRef | None:
        bare = split_name(name)[1]
        if not (filename.startswith(bare + "-") and filename.endswith(".tgz")):
            return None
        version = filename[len(bare) + 1:-4]
        with self.db.read() as s:
            row = s.execute(
                select(Version.blob_digest, Version.size, Version.integrity)
                .join(Package, Package.id == Version.package_id)
                .where(Package.name == name, Version.version == version,
                       Version.state == VersionState.APPROVED.value,
                       Version.unpublished_at.is_(None))).first()
        if row is None:
            return None
        return TarballRef(digest=row[0], size=row[1], integrity=row[2], version=version)
