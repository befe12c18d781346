"""``npm publish``: validate everything first, then store it all in one transaction."""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import bindparam, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain import Origin, Principal, Scope, VersionState, split_name
from ..errors import Conflict, FieldError, Forbidden, TooLarge, ValidationFailed
from ..settings import Settings
from ..storage import changes
from ..storage.blobs import BlobStore
from ..storage.db import Database
from ..storage.models import Blob, DistTag, Maintainer, Package, Version
from .. import hooks
from ..observability import metrics
from . import audit, ownership, packuments
from .approvals_records import record_transition, record_votes, tarball_reader
from .plugins import PluginHost, RecordedVote, decide, mode_for
from .packuments import PackageRow
from .validation import (TarballInfo, check_gati_module, check_manifest_agreement,
                         inspect_tarball, is_valid_tag, parse_version, validate_package_name,
                         version_sort_key)

log = logging.getLogger(__name__)

#: signs an approved version inside the caller's transaction:
#: (session, version id, name, version, integrity)
SignVersion = Callable[[Session, int, str, str, str], None]

#: publish-body keys that describe the transport, not the package
_TRANSPORT_KEYS = {"_attachments", "_rev", "dist", "_npmUser", "_nodeVersion", "_npmVersion",
                   "readme", "readmeFilename", "_id", "_resolved", "_integrity", "_from",
                   "_shasum", "_where", "_requested", "_spec", "_inBundle", "_location",
                   "_phantomChildren", "_requiredBy", "_args", "_development", "_optional"}


@dataclass(frozen=True)
class PublishResult:
    name: str
    version: str
    state: VersionState
    tag: str
    rev: str
    reason: str = ""
    stage_id: str = ""


@dataclass(frozen=True)
class _Candidate:
    name: str
    version: str
    tag: str
    manifest: dict[str, Any]
    tarball: bytes
    info: TarballInfo
    integrity: str
    shasum: str
    readme: str
    readme_filename: str

    @property
    def digest(self) -> str:
        """The sha512 hex digest: the blob's name."""
        return base64.b64decode(self.integrity[len("sha512-"):]).hex()


_INSERT_VERSION = insert(Version)
_INSERT_MAINTAINER = insert(Maintainer)
_INSERT_TAG = insert(DistTag)
_UPDATE_TAG = update(DistTag).where(DistTag.package_id == bindparam("b_package_id"),
                                    DistTag.tag == bindparam("b_tag")).values(
    version=bindparam("b_version"))


def now() -> datetime:
    return datetime.now(timezone.utc)


_IGNORE_DUPLICATE = {
    dialect: {model: insert_(model).on_conflict_do_nothing() for model in (Package, Blob)}
    for dialect, insert_ in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}


def apply_tag(conn: Any, package_id: int, tags: dict[str, str], tag: str, version: str,
              approved: set[str] | None = None) -> None:
    """Point ``tag`` (and ``latest``, when the package has none yet) at ``version``,
    updating ``tags`` in place. With ``approved`` (the versions installs can get), a tag
    already on a higher approved version stays there: a version approved late does not
    take ``latest`` back from a newer one."""
    new_tags = {tag: version}
    if "latest" not in tags or (approved is not None and tags["latest"] not in approved):
        new_tags.setdefault("latest", version)
    for name, target in new_tags.items():
        current = tags.get(name)
        if approved is not None and current in approved and current is not None and \
                version_sort_key(current) > version_sort_key(target):
            continue
        if current is not None:
            conn.execute(_UPDATE_TAG, {"b_package_id": package_id, "b_tag": name,
                                       "b_version": target})
        else:
            conn.execute(_INSERT_TAG, {"package_id": package_id, "tag": name,
                                       "version": target})
        tags[name] = target


def upsert_ignore(session: Session, model: Any, values: dict[str, Any]) -> None:
    """INSERT … ON CONFLICT DO NOTHING on either backend (for packages and blobs)."""
    conn = session.connection()
    conn.execute(_IGNORE_DUPLICATE[conn.dialect.name][model], values)


class PublishService:
    def __init__(self, settings: Settings, db: Database, blobs: BlobStore,
                 plugins: PluginHost, approvals_config: Callable[[], tuple[dict[str, dict[str, Any]], set[str]]],
                 existing_names: Callable[[], frozenset[str]],
                 sign: SignVersion | None = None,
                 check_name: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        #: the mirror's dependency-confusion check (raises for names upstreams serve)
        self._check_name = check_name
        self._sign = sign
        self.db = db
        self.blobs = blobs
        self.plugins = plugins
        self._approvals_config = approvals_config
        self._existing_names = existing_names

    def review(self, principal: Principal, cand: _Candidate) -> tuple[list[RecordedVote], VersionState, str]:
        """Ask the policy plugins, then the configured policy, which state ``cand``
        starts in. Runs outside any transaction: plugins may be slow."""
        configs, disabled = self._approvals_config()
        candidate = hooks.Candidate(
            name=cand.name, version=cand.version, manifest=cand.manifest,
            gati_module=cand.info.gati_module,
            files=tuple(hooks.CandidateFile(f.path, f.size) for f in cand.info.files),
            publisher=principal.username, source="local",
            read_file=tarball_reader(cand.tarball, cand.info.root),
            existing_names=self._existing_names)
        votes = self.plugins.review(candidate, configs, disabled)
        state, reason = decide(mode_for(self.settings.approvals, cand.name), votes)
        return votes, state, reason

    # -- validation (no side effects) --------------------------------------------------

    def parse(self, url_name: str, body: Any) -> _Candidate:
        """Check a publish body completely; every problem is reported at once.

        Raises :class:`ValidationFailed` or :class:`TooLarge`."""
        errors: list[FieldError] = []
        if not isinstance(body, dict):
            raise ValidationFailed("publish body must be a JSON object",
                                   details=[FieldError("body", "not an object")])
        name = body.get("name") or body.get("_id")
        if name != url_name:
            errors.append(FieldError("name", f"body names {name!r} but the URL names {url_name!r}"))
        errors += validate_package_name(url_name)
        versions = body.get("versions")
        attachments = body.get("_attachments")
        tags = body.get("dist-tags") or {}
        if not isinstance(versions, dict) or len(versions) != 1:
            errors.append(FieldError("versions", "must hold exactly one version"))
        tarballs = {k: v for k, v in (attachments or {}).items()
                    if isinstance(v, dict) and not k.endswith(".sigstore")} \
            if isinstance(attachments, dict) else {}
        if len(tarballs) != 1:
            errors.append(FieldError("_attachments", "must hold exactly one tarball"))
        if not isinstance(tags, dict) or len(tags) > 1:
            errors.append(FieldError("dist-tags", "must hold at most one tag"))
        if errors:
            raise ValidationFailed("invalid publish request", details=errors)
        (version_key, manifest), = versions.items()  # type: ignore[union-attr]
        (_att_name, att), = tarballs.items()
        tag, tag_version = next(iter(tags.items())) if tags else ("latest", version_key)
        if not isinstance(manifest, dict):
            raise ValidationFailed("invalid publish request",
                                   details=[FieldError("versions", "version entry must be an object")])
        try:
            version = parse_version(version_key)
        except ValidationFailed as exc:
            errors += exc.details
            version = version_key
        if manifest.get("version") != version_key or version != version_key:
            errors.append(FieldError("version", f"{manifest.get('version')!r} is not a clean "
                                     f"semver version matching the key {version_key!r}"))
        if manifest.get("name") != url_name:
            errors.append(FieldError("name", f"version entry names {manifest.get('name')!r}"))
        if not isinstance(tag, str) or not is_valid_tag(tag):
            errors.append(FieldError("dist-tags", f"{tag!r} is not a valid tag name"))
        if tag_version != version_key:
            errors.append(FieldError("dist-tags", "the tag must point at the published version"))
        data_b64 = att.get("data")
        if not isinstance(data_b64, str):
            raise ValidationFailed("invalid publish request", details=errors + [
                FieldError("_attachments", "tarball data missing")])
        limits = self.settings.limits
        if len(data_b64) * 3 // 4 > limits.max_tarball_size + 3:
            raise TooLarge(f"tarball is larger than {limits.max_tarball_size} bytes")
        try:
            tarball = base64.b64decode(data_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationFailed("invalid publish request", details=errors + [
                FieldError("_attachments", "tarball data is not base64")]) from None
        length = att.get("length")
        if length is not None and length != len(tarball):
            errors.append(FieldError("_attachments", f"length says {length} bytes, data has {len(tarball)}"))
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
        shasum = hashlib.sha1(tarball).hexdigest()
        dist = manifest.get("dist") or {}
        if dist.get("integrity") and dist["integrity"] != integrity:
            errors.append(FieldError("dist.integrity", "does not match the tarball"))
        if dist.get("shasum") and dist["shasum"] != shasum:
            errors.append(FieldError("dist.shasum", "does not match the tarball"))
        info = inspect_tarball(tarball, max_compressed=limits.max_tarball_size,
                               max_unpacked=limits.max_unpacked_size, max_files=limits.max_files)
        errors += check_manifest_agreement(manifest, info.package_json)
        if info.gati_module is not None:
            errors += check_gati_module(info.gati_module, name=url_name, version=version_key)
        if errors:
            raise ValidationFailed("invalid publish request", details=errors)
        readme = manifest.get("readme") if isinstance(manifest.get("readme"), str) else None
        if not readme or readme.startswith("ERROR: No README data found"):
            readme = body.get("readme") if isinstance(body.get("readme"), str) else None
        if not readme or readme.startswith("ERROR: No README data found"):
            readme = info.readme or ""
        clean = {k: v for k, v in manifest.items() if k not in _TRANSPORT_KEYS}
        return _Candidate(name=url_name, version=version_key, tag=tag, manifest=clean,
                          tarball=tarball, info=info, integrity=integrity, shasum=shasum,
                          readme=readme[: 1024 * 1024],
                          readme_filename=str(manifest.get("readmeFilename") or "README.md"))

    # -- the write ---------------------------------------------------------------------

    def publish(self, principal: Principal, url_name: str, body: Any,
                origin: Origin | None = None, *, staged: bool = False) -> PublishResult:
        """Validate and store a new version.

        Raises :class:`Forbidden` (token scope, not a maintainer), :class:`Conflict`
        (the version number was ever used), :class:`ValidationFailed`,
        :class:`TooLarge`. On any error nothing is stored."""
        if not principal.can(Scope.PUBLISH):
            raise Forbidden("publishing needs a publish token")
        cand = self.parse(url_name, body)
        if self._check_name is not None:
            self._check_name(cand.name)
        votes, state, reason = self.review(principal, cand)
        if staged and state is not VersionState.REJECTED:
            # npm stage publish: nothing is installable until someone approves it
            state, reason = VersionState.PENDING, "staged: waiting for npm stage approve"
        blob_existed = self.blobs.exists(cand.digest)
        digest = self.blobs.put(cand.tarball)
        try:
            result = self._store(principal, cand, digest, origin, votes, state, reason)
        except BaseException:
            if not blob_existed:
                self._drop_unreferenced_blob(digest)
            raise
        self.plugins.state_changed(hooks.StateChange(cand.name, cand.version, None,
                                                     state.value, principal.username, reason),
                                   disabled=self._approvals_config()[1])
        metrics().publishes.labels(state.value).inc()
        return result

    def _drop_unreferenced_blob(self, digest: str) -> None:
        with self.db.read() as s:
            if s.get(Blob, digest) is None:
                self.blobs.delete(digest)

    def lock_package(self, s: Session, name: str, create: bool) -> PackageRow | None:
        """The package row, locked for the rest of the transaction; created first when
        ``create`` and missing (concurrent creators both succeed: ON CONFLICT DO NOTHING)."""
        found = packuments.lock_package_row(s, name)
        if found is not None or not create:
            return found
        t = now()
        scope, _ = split_name(name)
        upsert_ignore(s, Package, {"name": name, "scope": scope, "description": "",
                                   "readme": "", "readme_filename": "", "rev": 0,
                                   "created_at": t, "modified_at": t})
        return packuments.lock_package_row(s, name)

    def _store(self, principal: Principal, cand: _Candidate, digest: str,
               origin: Origin | None, votes: list[RecordedVote], state: VersionState,
               reason: str) -> PublishResult:
        try:
            with self.db.write() as s:
                pkg = self.lock_package(s, cand.name, create=True)
                assert pkg is not None
                conn = s.connection()
                maintainers = packuments.maintainer_ids(s, pkg.id)
                ownership.check_may_publish(s, principal, cand.name, maintainers)
                # a version number that was ever used (even unpublished) is refused by
                # the unique constraint on (package, version): see the except below
                t = now()
                stage_id = str(uuid.uuid4())
                upsert_ignore(s, Blob, {"digest": digest, "size": len(cand.tarball),
                                        "created_at": t})
                inserted = conn.execute(_INSERT_VERSION, {
                    "package_id": pkg.id, "version": cand.version, "state": state.value,
                    "manifest": cand.manifest, "gati_module": cand.info.gati_module,
                    "blob_digest": digest, "integrity": cand.integrity, "shasum": cand.shasum,
                    "size": len(cand.tarball), "file_count": cand.info.file_count,
                    "unpacked_size": cand.info.unpacked_size,
                    "files": [[f.path, f.size] for f in cand.info.files],
                    "publisher_id": principal.user_id, "published_at": t,
                    "state_changed_at": t, "state_reason": reason,
                    "deprecated": None, "unpublished_at": None,
                    "stage_id": stage_id, "tag": cand.tag, "readme": cand.readme,
                    "readme_filename": cand.readme_filename if cand.readme else ""})
                version_id = inserted.inserted_primary_key[0]  # type: ignore[index]
                record_votes(conn, version_id, votes, t)
                if state is VersionState.APPROVED and self._sign is not None:
                    self._sign(s, version_id, cand.name, cand.version, cand.integrity)
                record_transition(conn, version_id, None, state.value, principal.username,
                                  reason, t)
                if principal.user_id not in maintainers:
                    conn.execute(_INSERT_MAINTAINER, {"package_id": pkg.id,
                                                      "user_id": principal.user_id})
                    maintainers.append(principal.user_id)
                tags = packuments.dist_tags(s, pkg.id)
                # a held version moves no tag: installs keep what they had until it is
                # approved (then ApprovalService applies the tag it asked for)
                if state is VersionState.APPROVED:
                    apply_tag(conn, pkg.id, tags, cand.tag, cand.version)
                # the package's description and README follow `latest` (render sets
                # them): a held version's text stays on its own row until approved
                pkg = packuments.touch(s, pkg)
                packuments.render(s, pkg, maintainers=maintainers, tags=tags)
                changes.append(s, "version.publish", package=cand.name, version=cand.version,
                               state=state.value, tag=cand.tag)
                audit.record(s, principal, "version.publish", f"{cand.name}@{cand.version}",
                             origin, state=state.value, integrity=cand.integrity)
                return PublishResult(name=cand.name, version=cand.version, state=state,
                                     tag=cand.tag, rev=f"{pkg.rev}", reason=reason,
                                     stage_id=stage_id)
        except IntegrityError as exc:
            # the (package, version) unique constraint: this number was used before, or a
            # concurrent publish of the same version committed first (PostgreSQL)
            raise Conflict(f"cannot publish over the previously published version "
                           f"{cand.version} of {cand.name}") from exc
