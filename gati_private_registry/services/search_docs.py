"""What the search index holds about a package, read from the database.

One document per package. Its text comes from the version people get: the ``latest``
tag's approved version (or the highest approved one). A package with nothing approved
yet is indexed from its highest pending version, marked not visible, so that only its
publishers (and approvers) find it. Trust levels are decided here too.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..storage.db import aware
from ..domain import VersionState
from ..storage.models import (DistTag, Maintainer, Package, Team, TeamMember, Transition,
                              TrustMark, User, Version)
from ..storage.search_index import summary_json
from .packuments import iso, readme_of
from .validation import highest_version, version_sort_key

#: README text indexed per package (the rest adds little to ranking)
README_LIMIT = 64 * 1024


class Trust(str, enum.Enum):
    """Badges: Verified (published by an official team), Trusted (approved by several
    approvers, or marked by an admin), Community (everything else)."""

    VERIFIED = "verified"
    TRUSTED = "trusted"
    COMMUNITY = "community"


@dataclass(frozen=True)
class TrustRules:
    official_teams: tuple[str, ...] = ()
    trusted_approvers: int = 2


def category_of(gati_module: Any) -> str:
    """``gati.type`` from ``gati-module.json`` (empty when absent)."""
    if isinstance(gati_module, dict) and isinstance(gati_module.get("type"), str):
        return str(gati_module["type"]).strip().lower()[:64]
    return ""


def contracts_of(gati_module: Any) -> list[str]:
    """Contract ids: strings, or objects with an ``id`` (see the gati-contract plugin)."""
    if not isinstance(gati_module, dict) or not isinstance(gati_module.get("contracts"), list):
        return []
    out = []
    for c in gati_module["contracts"]:
        cid = c.get("id") if isinstance(c, dict) else c
        if isinstance(cid, str) and cid.strip():
            out.append(cid.strip().lower()[:100])
    return out


def keywords_of(manifest: dict[str, Any]) -> list[str]:
    kw = manifest.get("keywords") or []
    if isinstance(kw, str):
        kw = kw.replace(",", " ").split()
    return [str(k).strip().lower()[:64] for k in kw if isinstance(k, (str, int)) and str(k).strip()][:50]


def author_of(manifest: dict[str, Any]) -> str:
    author = manifest.get("author")
    if isinstance(author, dict):
        author = author.get("name")
    return str(author)[:200] if isinstance(author, str) else ""


def dependencies_of(manifest: dict[str, Any]) -> list[str]:
    deps = manifest.get("dependencies")
    return sorted(str(d) for d in deps)[:500] if isinstance(deps, dict) else []


@dataclass(frozen=True)
class _Pkg:
    id: int
    name: str
    modified_at: datetime


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def official_members(s: Session, rules: TrustRules) -> set[int]:
    if not rules.official_teams:
        return set()
    return set(s.scalars(select(TeamMember.user_id).join(Team, Team.id == TeamMember.team_id)
                         .where(Team.name.in_(rules.official_teams))))


def trust_level(publisher_id: int | None, approvers: int, marked: bool, official: set[int],
                rules: TrustRules) -> Trust:
    if publisher_id is not None and publisher_id in official:
        return Trust.VERIFIED
    if marked or (rules.trusted_approvers > 0 and approvers >= rules.trusted_approvers):
        return Trust.TRUSTED
    return Trust.COMMUNITY


def build_documents(s: Session, names: Iterable[str] | None, rules: TrustRules
                    ) -> tuple[list[dict[str, Any]], list[str]]:
    """Index documents for ``names`` (every package when None), and the names that
    should have none (nothing approved or pending any more, or no such package)."""
    wanted = None if names is None else sorted(set(names))
    q = select(Package.id, Package.name, Package.modified_at)
    pkgs: list[_Pkg] = []
    if wanted is None:
        pkgs = [_Pkg(*r) for r in s.execute(q.order_by(Package.id))]
    else:
        for chunk in _chunks(wanted):
            pkgs.extend(_Pkg(*r) for r in s.execute(q.where(Package.name.in_(chunk))))
    found = {p.name for p in pkgs}
    deleted = [n for n in (wanted or []) if n not in found]
    official = official_members(s, rules)
    docs: list[dict[str, Any]] = []
    for chunk in _chunks(pkgs):
        docs_chunk, gone = _documents(s, list(chunk), rules, official)
        docs.extend(docs_chunk)
        deleted.extend(gone)
    return docs, deleted


def _documents(s: Session, pkgs: list[_Pkg], rules: TrustRules, official: set[int]
               ) -> tuple[list[dict[str, Any]], list[str]]:
    ids = [p.id for p in pkgs]
    versions: dict[int, list[Any]] = {}
    for v in s.execute(select(Version.id, Version.package_id, Version.version, Version.state,
                              Version.manifest, Version.gati_module, Version.publisher_id,
                              Version.published_at, Version.deprecated)
                       .where(Version.package_id.in_(ids), Version.unpublished_at.is_(None),
                              Version.state.in_((VersionState.APPROVED.value,
                                                 VersionState.PENDING.value)))):
        versions.setdefault(v.package_id, []).append(v)
    latest = dict(s.execute(select(DistTag.package_id, DistTag.version).where(
        DistTag.package_id.in_(ids), DistTag.tag == "latest")).all())
    people: dict[int, list[str]] = {}
    for pid, username in s.execute(select(Maintainer.package_id, User.username)
                                   .join(User, User.id == Maintainer.user_id)
                                   .where(Maintainer.package_id.in_(ids))):
        people.setdefault(pid, []).append(username)
    marked = set(s.scalars(select(TrustMark.package_id).where(TrustMark.package_id.in_(ids))))
    # people who moved a pending version to approved (auto-approval at publish has no
    # old state and does not count)
    approvers = dict(s.execute(
        select(Version.package_id, func.count(func.distinct(Transition.actor)))
        .join(Transition, Transition.version_id == Version.id)
        .where(Version.package_id.in_(ids), Transition.new_state == VersionState.APPROVED.value,
               Transition.old_state.is_not(None))
        .group_by(Version.package_id)).all())
    publisher_ids = {v.publisher_id for vs in versions.values() for v in vs if v.publisher_id}
    usernames = dict(s.execute(select(User.id, User.username).where(
        User.id.in_(publisher_ids))).all()) if publisher_ids else {}
    docs: list[dict[str, Any]] = []
    gone: list[str] = []
    # (package, approved by version, pending, the version whose text is indexed)
    chosen: list[tuple[_Pkg, dict[str, Any], list[Any], Any]] = []
    for p in pkgs:
        vs = versions.get(p.id, [])
        approved = {v.version: v for v in vs if v.state == VersionState.APPROVED.value}
        pending = [v for v in vs if v.state == VersionState.PENDING.value]
        if approved:
            tag = latest.get(p.id)
            shown = approved[tag] if tag in approved else approved[highest_version(approved) or
                                                                   max(approved, key=version_sort_key)]
        elif pending:
            shown = max(pending, key=lambda v: version_sort_key(v.version))
        else:
            gone.append(p.name)
            continue
        chosen.append((p, approved, pending, shown))
    # the shown version's own README (a pending one's only in a document marked not
    # visible, which only its publishers find): never the text of a newer held version
    readmes = {r.id: (r.readme, r.readme_filename) for r in s.execute(
        select(Version.id, Version.readme, Version.readme_filename).where(
            Version.id.in_([c[3].id for c in chosen])))} if chosen else {}
    for p, approved, pending, shown in chosen:
        manifest = shown.manifest if isinstance(shown.manifest, dict) else {}
        readme, _ = readme_of(*readmes[shown.id], manifest)
        description = str(manifest.get("description") or "")[:2000]
        keywords = keywords_of(manifest)
        category = category_of(shown.gati_module)
        contracts = contracts_of(shown.gati_module)
        maintainers = sorted(people.get(p.id, []))
        trust = trust_level(shown.publisher_id, approvers.get(p.id, 0), p.id in marked,
                            official, rules)
        modified = aware(max([aware(v.published_at) for v in (approved.values() or pending)]
                             + ([aware(p.modified_at)] if approved else [])))
        bare = p.name.partition("/")[2] if p.name.startswith("@") else p.name
        summary = {"name": p.name, "version": shown.version, "description": description,
                   "keywords": keywords, "category": category, "contracts": contracts,
                   "author": author_of(manifest), "maintainers": maintainers,
                   "publisher": usernames.get(shown.publisher_id or -1, ""),
                   "trust": trust.value, "modified": iso(modified),
                   "state": "approved" if approved else "pending",
                   "deprecated": bool(shown.deprecated),
                   "dependencies": dependencies_of(manifest)}
        docs.append({
            "name": p.name, "bare": bare, "name_parts": p.name,
            "description": description, "keywords": ",".join(keywords),
            "readme": readme[:README_LIMIT], "category": category,
            "contracts": ",".join(contracts), "author": author_of(manifest),
            "maintainers": ",".join(maintainers),
            "deps": ",".join(dependencies_of(manifest)),
            "trust": trust.value, "visible": "1" if approved else "0",
            "pending": "1" if pending else "0",
            "pending_for": ",".join(sorted({str(v.publisher_id) for v in pending
                                            if v.publisher_id is not None})),
            "modified": int(modified.timestamp() * 1000),
            "summary": summary_json(summary),
        })
    return docs, gone
