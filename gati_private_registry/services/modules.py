"""Module pages: everything the marketplace shows about one package, read together.

The README is the one published with the version shown (never a pending version's);
the changelog and the API reference come from the tarball (``CHANGELOG.md`` and the
``.d.ts`` files), read once per tarball digest and kept in memory.
"""
from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select

from ..domain import Origin, Principal, Scope, VersionState
from ..errors import FieldError, Forbidden, NotFound, ValidationFailed
from ..storage import changes
from ..storage.blobs import BlobStore
from ..storage.db import Database
from ..storage.models import (DistTag, Maintainer, Package, SigningKey, TrustMark, User,
                              Version, VersionSignature)
from . import audit, markdown
from .packuments import readme_of
from .popularity import Metrics, PopularityService
from .publish import now
from .search import SearchService
from .search_docs import author_of, category_of, contracts_of, keywords_of
from .validation import version_sort_key

#: most bytes read from one tarball member for the page (changelog, type definitions)
MEMBER_LIMIT = 256 * 1024
_EXPORT = re.compile(r"^\s*export\s+(?:declare\s+)?(?:default\s+)?(?:abstract\s+)?"
                     r"(function|class|interface|type|const|let|enum|namespace)\s+([A-Za-z_$][\w$]*)"
                     r"(.*)$")


@dataclass(frozen=True)
class VersionRow:
    version: str
    state: str
    published_at: datetime
    deprecated: str | None
    publisher: str
    tags: list[str]
    signatures: list[str]
    downloads: int


@dataclass(frozen=True)
class ApiEntry:
    kind: str
    name: str
    signature: str
    file: str


@dataclass(frozen=True)
class ModulePage:
    name: str
    version: str
    description: str
    readme_html: str
    keywords: list[str]
    category: str
    contracts: list[str]
    author: str
    license: str
    homepage: str
    repository: str
    maintainers: list[str]
    dist_tags: dict[str, str]
    versions: list[VersionRow]
    dependencies: dict[str, str]
    dependents: list[str]
    files: list[list[Any]]
    api: list[ApiEntry]
    changelog_html: str
    trust: str
    trusted_mark: str
    metrics: Metrics
    signatures: list[dict[str, str]] = field(default_factory=list)


def _tarball_members(blobs: BlobStore, digest: str) -> dict[str, str]:
    """``CHANGELOG.md`` and the ``.d.ts`` files of a tarball, as text."""
    return dict(_read_members(blobs, digest))


@lru_cache(maxsize=256)
def _members_cached(path: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    budget = 4 * MEMBER_LIMIT
    with tarfile.open(path, mode="r:gz") as tar:
        for member in tar:
            rel = member.name.partition("/")[2]
            if not member.isfile() or budget <= 0:
                continue
            if rel.lower() in ("changelog.md", "changelog") or rel.endswith(".d.ts"):
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                text = fh.read(min(MEMBER_LIMIT, budget)).decode("utf-8", "replace")
                budget -= len(text)
                out.append((rel, text))
    return tuple(out)


def _read_members(blobs: BlobStore, digest: str) -> tuple[tuple[str, str], ...]:
    path = blobs.path(digest)
    if path is not None:
        try:
            return _members_cached(str(path))
        except (OSError, tarfile.TarError):
            return ()
    try:  # a blob store without local files: read it into memory
        with blobs.open(digest) as fh:
            data = fh.read()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            return tuple((m.name.partition("/")[2], (tar.extractfile(m) or io.BytesIO()).read(
                MEMBER_LIMIT).decode("utf-8", "replace")) for m in tar
                if m.isfile() and m.name.endswith(".d.ts"))
    except (OSError, tarfile.TarError):
        return ()


def api_reference(members: dict[str, str]) -> list[ApiEntry]:
    """The exported declarations of the ``.d.ts`` files, one line each."""
    out = []
    for path, text in sorted(members.items()):
        if not path.endswith(".d.ts"):
            continue
        for line in text.splitlines():
            m = _EXPORT.match(line)
            if m:
                out.append(ApiEntry(kind=m.group(1), name=m.group(2),
                                    signature=line.strip().rstrip("{").strip()[:300], file=path))
    return out[:500]


def _text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("url") or value.get("name")
    return str(value)[:500] if isinstance(value, str) else ""


class ModuleService:
    def __init__(self, db: Database, blobs: BlobStore, search: SearchService,
                 popularity: PopularityService) -> None:
        self.db = db
        self.blobs = blobs
        self.search = search
        self.popularity = popularity

    def page(self, principal: Principal | None, name: str) -> ModulePage:
        """Everything about ``name`` for its page or ``GET /api/modules/<name>``.
        Raises :class:`NotFound` when nothing of it is installable."""
        versions = self.versions(principal, name)
        approved = [v for v in versions if v.state == VersionState.APPROVED.value]
        if not approved:
            raise NotFound(f"no package {name}")
        with self.db.read() as s:
            pkg = s.scalar(select(Package).where(Package.name == name))
            assert pkg is not None
            tags = {t.tag: t.version for t in s.scalars(
                select(DistTag).where(DistTag.package_id == pkg.id))}
            by_version = {v.version: v for v in approved}
            shown_version = tags.get("latest") if tags.get("latest") in by_version else \
                max(by_version, key=version_sort_key)
            row = s.scalar(select(Version).where(Version.package_id == pkg.id,
                                                 Version.version == shown_version))
            assert row is not None
            # the shown (approved) version's own README, never a newer held one's
            readme, _ = readme_of(row.readme, row.readme_filename, row.manifest)
            maintainers = sorted(s.scalars(select(User.username).join(
                Maintainer, Maintainer.user_id == User.id).where(Maintainer.package_id == pkg.id)))
            mark = s.get(TrustMark, pkg.id)
            sigs = [{"keyid": k, "algorithm": a} for k, a in s.execute(
                select(VersionSignature.keyid, SigningKey.algorithm)
                .join(SigningKey, SigningKey.keyid == VersionSignature.keyid)
                .where(VersionSignature.version_id == row.id, SigningKey.revoked_at.is_(None)))]
        manifest = row.manifest if isinstance(row.manifest, dict) else {}
        members = _tarball_members(self.blobs, row.blob_digest)
        changelog = next((t for p, t in members.items() if p.lower().startswith("changelog")), "")
        summary = self.search.summaries(principal, [name]).get(name)
        deps = manifest.get("dependencies")
        return ModulePage(
            name=name, version=row.version, description=str(manifest.get("description") or ""),
            readme_html=markdown.render(readme) if readme else "",
            keywords=keywords_of(manifest), category=category_of(row.gati_module),
            contracts=contracts_of(row.gati_module), author=author_of(manifest),
            license=_text(manifest.get("license")), homepage=_text(manifest.get("homepage")),
            repository=_text(manifest.get("repository")), maintainers=maintainers,
            dist_tags={t: v for t, v in tags.items() if v in by_version},
            versions=versions,
            dependencies={str(k): str(v) for k, v in deps.items()} if isinstance(deps, dict) else {},
            dependents=self.search.dependents(principal, name),
            files=list(row.files or []), api=api_reference(members),
            changelog_html=markdown.render(changelog) if changelog else "",
            trust=summary.trust if summary else "community",
            trusted_mark=mark.marked_by if mark else "",
            metrics=self.popularity.metrics_for(name), signatures=sigs)

    def versions(self, principal: Principal | None, name: str) -> list[VersionRow]:
        """Every version the caller may see, newest first: approved ones, plus held
        ones for their publisher and for approvers. Raises :class:`NotFound`."""
        with self.db.read() as s:
            pkg = s.scalar(select(Package).where(Package.name == name))
            if pkg is None:
                raise NotFound(f"no package {name}")
            rows = s.execute(select(Version, User.username)
                             .outerjoin(User, User.id == Version.publisher_id)
                             .where(Version.package_id == pkg.id,
                                    Version.unpublished_at.is_(None))).all()
            tags: dict[str, list[str]] = {}
            for t in s.scalars(select(DistTag).where(DistTag.package_id == pkg.id)):
                tags.setdefault(t.version, []).append(t.tag)
            signed: dict[int, list[str]] = {}
            for vid, alg in s.execute(select(VersionSignature.version_id, SigningKey.algorithm)
                                      .join(SigningKey, SigningKey.keyid == VersionSignature.keyid)
                                      .join(Version, Version.id == VersionSignature.version_id)
                                      .where(Version.package_id == pkg.id,
                                             SigningKey.revoked_at.is_(None))):
                signed.setdefault(vid, []).append(alg)
        approver = principal is not None and principal.can(Scope.APPROVE)
        uid = principal.user_id if principal is not None else None
        downloads = self.popularity.by_version(name)
        out = [VersionRow(version=v.version, state=v.state, published_at=v.published_at,
                          deprecated=v.deprecated, publisher=username or "",
                          tags=sorted(tags.get(v.version, [])) if v.state == "approved" else [],
                          signatures=sorted(set(signed.get(v.id, []))),
                          downloads=downloads.get(v.version, 0))
               for v, username in rows
               if v.state == VersionState.APPROVED.value
               or (v.state == VersionState.PENDING.value and (approver or v.publisher_id == uid))]
        if not out:
            raise NotFound(f"no package {name}")
        return sorted(out, key=lambda r: version_sort_key(r.version), reverse=True)

    def mark_trusted(self, principal: Principal, name: str, trusted: bool, reason: Any = "",
                     origin: Origin | None = None) -> None:
        """An admin marks ``name`` Trusted (or takes the mark back). Raises
        :class:`Forbidden`, :class:`NotFound`, :class:`ValidationFailed`."""
        if not isinstance(reason, str) or len(reason) > 2000:
            raise ValidationFailed("invalid trust mark", details=[
                FieldError("reason", "a string of at most 2000 characters")])
        if not principal.is_admin:
            raise Forbidden("only admins mark packages as trusted")
        with self.db.write() as s:
            pid = s.scalar(select(Package.id).where(Package.name == name))
            if pid is None:
                raise NotFound(f"no package {name}")
            row = s.get(TrustMark, pid)
            if trusted and row is None:
                s.add(TrustMark(package_id=pid, marked_by=principal.username, reason=reason,
                                at=now()))
            elif not trusted and row is not None:
                s.delete(row)
            else:
                return
            # the index follows this change and gives the package its new badge
            changes.append(s, "package.trust", package=name, trusted=trusted)
            audit.record(s, principal, "package.trust", name, origin, trusted=trusted,
                         reason=reason)
