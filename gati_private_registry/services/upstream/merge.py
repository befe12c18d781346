"""An upstream packument merged with local state: only the versions installs may get
(approved here, or offered by the curation policy), tarball URLs pointing at us, our
signatures beside the upstream's, and a ``time`` map pnpm and yarn accept.

Rendered with :data:`BASE_MARKER` where our external base URL goes, like local
packuments, so one rendering serves every base.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from ...domain import VersionState
from ..packuments import ABBREVIATED_FIELDS, BASE_MARKER, iso, tarball_path
from ..validation import highest_version, version_sort_key
from .policy import Offer, Verdict, parse_time


@dataclass(frozen=True)
class LocalVersion:
    """What this registry knows of a mirrored version."""

    state: str
    published_at: datetime
    #: our signatures: (keyid, sig, algorithm)
    signatures: tuple[tuple[str, str, str], ...] = ()


@dataclass
class Merged:
    full: bytes
    abbreviated: bytes
    etag: str
    #: version → offer, for versions listed without a local row (fetched on request)
    offered: dict[str, Verdict] = field(default_factory=dict)
    listed: tuple[str, ...] = ()


def _dist(name: str, version: str, upstream_dist: dict[str, Any], local: LocalVersion | None,
          upstream_keys: frozenset[str]) -> dict[str, Any]:
    dist: dict[str, Any] = {k: v for k, v in upstream_dist.items()
                            if k in ("integrity", "shasum", "fileCount", "unpackedSize")}
    dist["tarball"] = f"{BASE_MARKER}/npm/{tarball_path(name, version)}"
    # npm aborts `audit signatures` on a keyid it cannot find, so the upstream's
    # signatures pass only when its key is served by our /-/npm/v1/keys beside ours
    sigs = [s for s in upstream_dist.get("signatures") or []
            if isinstance(s, dict) and s.get("keyid") in upstream_keys]
    org: list[dict[str, str]] = []
    for keyid, sig, algorithm in (local.signatures if local else ()):
        if algorithm == "ecdsa-p256":
            sigs.append({"keyid": keyid, "sig": sig})
        elif algorithm == "ed25519":
            org.append({"keyid": keyid, "sig": sig})
    if sigs:
        dist["signatures"] = sigs
    if org:
        dist["gatiSignatures"] = org
    att = upstream_dist.get("attestations")
    if isinstance(att, dict):
        dist["attestations"] = {
            **att, "url": f"{BASE_MARKER}/npm/-/npm/v1/attestations/{name}@{version}"}
    return dist


def merge(doc: dict[str, Any], name: str, local: dict[str, LocalVersion],
          judge: Callable[[str, datetime | None], Verdict],
          upstream_keys: frozenset[str] = frozenset()) -> Merged:
    """The documents installs read (see the module docstring)."""
    versions = doc.get("versions") if isinstance(doc.get("versions"), dict) else {}
    times = doc.get("time") if isinstance(doc.get("time"), dict) else {}
    assert isinstance(versions, dict) and isinstance(times, dict)
    full_versions: dict[str, Any] = {}
    abbrev_versions: dict[str, Any] = {}
    time_map: dict[str, str] = {}
    offered: dict[str, Verdict] = {}
    known_times = [t for t in (parse_time(v) for k, v in times.items()
                               if k not in ("created", "modified")) if t is not None]
    newest = max(known_times) if known_times else None
    for version in sorted(versions, key=version_sort_key):
        manifest = versions[version]
        if not isinstance(manifest, dict) or not isinstance(manifest.get("dist"), dict):
            continue
        row = local.get(version)
        published = parse_time(times.get(version))
        if row is not None:
            if row.state != VersionState.APPROVED.value:
                continue
        else:
            verdict = judge(version, published)
            if verdict.offer is not Offer.LIST:
                continue
            offered[version] = verdict
        entry = dict(manifest)
        entry["name"], entry["version"], entry["_id"] = name, version, f"{name}@{version}"
        entry["dist"] = _dist(name, version, manifest["dist"], row, upstream_keys)
        full_versions[version] = entry
        abbrev_versions[version] = {k: entry[k] for k in ABBREVIATED_FIELDS if k in entry}
        # pnpm drops a `time` that lacks any version and yarn hides versions it cannot
        # date; trimmed upstreams leave gaps. Fill them with a date no earlier than the
        # truth (when we first fetched it, else the newest date known), so age gates
        # never let a version through early
        when = published or (row.published_at if row else None) or newest
        if when is not None:
            time_map[version] = iso(when)
    listed = tuple(full_versions)
    tags = {t: v for t, v in (doc.get("dist-tags") or {}).items()
            if isinstance(v, str) and v in full_versions}
    if listed and "latest" not in tags:
        tags["latest"] = highest_version(listed) or listed[-1]
    dated = sorted(time_map.values())
    created = times.get("created") if isinstance(times.get("created"), str) else None
    if dated:
        time_map["created"] = min(created, dated[0]) if created else dated[0]
        time_map["modified"] = dated[-1]
    full: dict[str, Any] = {k: v for k, v in doc.items()
                            if k not in ("versions", "time", "dist-tags", "_attachments",
                                         "_rev", "users", "_id", "name")}
    body_hash = hashlib.sha256(json.dumps([listed, tags, time_map], sort_keys=True).encode())
    full.update({"_id": name, "_rev": f"1-{body_hash.hexdigest()[:32]}", "name": name,
                 "dist-tags": tags, "versions": full_versions, "time": time_map})
    abbreviated = {"name": name, "modified": time_map.get("modified", ""), "dist-tags": tags,
                   "versions": abbrev_versions, "time": time_map}
    full_bytes = json.dumps(full, separators=(",", ":"), ensure_ascii=False).encode()
    abbrev_bytes = json.dumps(abbreviated, separators=(",", ":"), ensure_ascii=False).encode()
    return Merged(full_bytes, abbrev_bytes, hashlib.sha256(full_bytes).hexdigest()[:32],
                  offered, listed)
