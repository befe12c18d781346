"""The curated mirror of upstream npm registries (see ``[upstreams]``/``[[packages]]``).

:class:`MirrorService` decides, per name, whether the mirror answers (the first package
pattern names an upstream, and nobody published the name here), serves merged
packuments and upstream tarballs, keeps local publishes off upstream names, and lets
admins curate upstream versions. Data model: an upstream version becomes a ``versions``
row (``upstream`` set) when its tarball is first fetched, so approval, signing, the queue
and the panel treat it like a local one; upstream packuments are cached in
``upstream_packuments``; admin rules in ``upstream_rules``.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from sqlalchemy import select

from ...domain import VersionState, split_name
from ...errors import Forbidden, NotFound, Unavailable
from ...settings import Settings
from ...settings_mirror import PackageSource, source_for
from ...storage.blobs import BlobStore
from ...storage.counters import Counters
from ...storage.db import Database
from ...storage.models import Package, SigningKey, Version, VersionSignature
from ..packuments import BASE_MARKER, Representation
from ..plugins import PluginHost
from ..publish import SignVersion
from .client import HttpUpstreamClient, UpstreamClient
from .merge import LocalVersion, Merged, merge
from .metadata import UpstreamDocuments
from .policy import Offer, Verdict, judge, parse_time
from .prefetch import PrefetchJobs
from .rules import RuleBook
from .store import VersionStore
from .tarballs import UpstreamTarballs

log = logging.getLogger(__name__)

_MARKER_JSON = json.dumps(BASE_MARKER)[1:-1].encode()  # as it appears inside JSON text
KEYS_PATH = "-/npm/v1/keys"


def counter_names(settings: Settings) -> list[str]:
    """The shared counters' layout (the same in every process: from the settings)."""
    names = ["hits", "misses", "stale", "tarball_fetches", "tarballs_refused",
             "upstream_errors", "upstream_requests"]
    for u in settings.upstreams:
        names += [f"{u.name}.requests", f"{u.name}.errors", f"{u.name}.latency_ms",
                  f"{u.name}.last_ok", f"{u.name}.last_error"]
    return names


@dataclass
class _MergedEntry:
    digest: str
    generation: int
    merged: Merged
    rendered: dict[tuple[str, bool], Representation]


class MirrorService:
    def __init__(self, settings: Settings, db: Database, blobs: BlobStore, plugins: PluginHost,
                 plugin_state: Callable[[], tuple[dict[str, dict[str, Any]], set[str]]],
                 existing_names: Callable[[], frozenset[str]], sign: SignVersion | None,
                 generation: Callable[[], int], counters: Counters,
                 clients: dict[str, UpstreamClient] | None = None) -> None:
        self.settings = settings
        self.db = db
        self.counters = counters
        self._generation = generation
        self.clients: dict[str, UpstreamClient] = clients if clients is not None else {
            u.name: HttpUpstreamClient(u, self._stat) for u in settings.upstreams}
        self.docs = UpstreamDocuments(db, settings, self.clients, self._count)
        self.store = VersionStore(db, blobs, plugins, sign)
        self.rules = RuleBook(db, generation)
        self.prefetch = PrefetchJobs(db)
        self.tarballs = UpstreamTarballs(settings, blobs, plugins, self.store, self.clients,
                                         plugin_state, existing_names, self._count)
        self._merged: dict[str, _MergedEntry] = {}
        self._local: dict[str, tuple[int, bool]] = {}
        self._keys_failed: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- bookkeeping -------------------------------------------------------------------

    def _count(self, name: str, delta: int) -> None:
        self.counters.add(name, delta)

    def _stat(self, upstream: str, ok: bool, seconds: float) -> None:
        self.counters.add("upstream_requests")
        self.counters.add(f"{upstream}.requests")
        stamp = int(time.time())
        if ok:
            self.counters.set(f"{upstream}.latency_ms", int(seconds * 1000))
            self.counters.set(f"{upstream}.last_ok", stamp)
        else:
            self.counters.add("upstream_errors")
            self.counters.add(f"{upstream}.errors")
            self.counters.set(f"{upstream}.last_error", stamp)

    # -- routing -----------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return bool(self.settings.packages)

    def _is_local(self, name: str) -> bool:
        gen = self._generation()
        hit = self._local.get(name)
        if hit is not None and hit[0] == gen:
            return hit[1]
        with self.db.read() as s:
            row = s.execute(select(Package.upstream).where(Package.name == name)).first()
        local = row is not None and row[0] is None
        with self._lock:
            if len(self._local) > 100_000:
                self._local.clear()
            self._local[name] = (gen, local)
        return local

    def route(self, name: str) -> PackageSource | None:
        """The pattern under which the mirror answers for ``name``; None when local
        storage answers (no pattern, a ``local`` pattern, or a name published here).
        Raises :class:`NotFound` for a denied name."""
        rule = source_for(self.settings.packages, name)
        if rule is None or rule.source == "local":
            return None
        if rule.source == "deny":
            raise NotFound(f"{name} is not available: the registry's package rules deny it")
        if self._is_local(name):
            return None
        return rule

    def check_publish(self, name: str) -> None:
        """Refuse a local publish to a name an upstream serves (dependency confusion),
        unless a pattern makes the name local. Raises :class:`Forbidden`, or
        :class:`Unavailable` when the upstream cannot tell whether it has the name."""
        rule = source_for(self.settings.packages, name)
        if rule is None or rule.source == "local":
            return
        if rule.source == "deny":
            raise Forbidden(f"{name} matches {rule.pattern!r}, which the registry's package "
                            f"rules deny")
        with self.db.read() as s:
            exists, origin = self.store.package_origin(s, name)
        if exists and origin is None:
            return  # published here before the patterns said otherwise: stays local
        if exists:
            raise Forbidden(f"{name} is mirrored from the upstream {origin}; publish under a "
                            f"name that a local package pattern covers")
        try:
            self.docs.get(name, rule.source)
        except NotFound:
            if self.settings.mirror.offline:
                raise Unavailable(f"offline: cannot check whether {name} exists upstream; "
                                  f"publish under a name a local package pattern covers") from None
            return
        raise Forbidden(f"{name} exists in the upstream registry {rule.source}; publish under "
                        f"a name that a local package pattern covers (for example @corp/*)")

    # -- packuments --------------------------------------------------------------------

    def _judge(self, rule: PackageSource, name: str) -> Callable[[str, datetime | None], Verdict]:
        rules = self.rules.for_name(name)
        now = datetime.now(timezone.utc)
        approvals = self.settings.approvals
        return lambda version, published: judge(rule, approvals, rules, name, version,
                                                published, now)

    def _local_versions(self, name: str) -> dict[str, LocalVersion]:
        with self.db.read() as s:
            rows = s.execute(select(Version.id, Version.version, Version.state,
                                    Version.published_at)
                             .join(Package, Package.id == Version.package_id)
                             .where(Package.name == name,
                                    Version.unpublished_at.is_(None))).all()
            sigs: dict[int, list[tuple[str, str, str]]] = {}
            ids = [r.id for r in rows if r.state == VersionState.APPROVED.value]
            if ids:
                for sig in s.execute(select(VersionSignature.version_id, VersionSignature.keyid,
                                            VersionSignature.sig, SigningKey.algorithm)
                                     .join(SigningKey, SigningKey.keyid == VersionSignature.keyid)
                                     .where(VersionSignature.version_id.in_(ids),
                                            SigningKey.revoked_at.is_(None))):
                    sigs.setdefault(sig.version_id, []).append((sig.keyid, sig.sig, sig.algorithm))
        return {r.version: LocalVersion(r.state, r.published_at, tuple(sigs.get(r.id, ())))
                for r in rows}

    def judge_for(self, rule: PackageSource,
                  name: str) -> Callable[[str, datetime | None], Verdict]:
        """What the curation policy offers of each upstream version of ``name``."""
        return self._judge(rule, name)

    def local_states(self, name: str) -> dict[str, str]:
        """version → state of the rows this registry keeps for ``name``."""
        return {v: lv.state for v, lv in self._local_versions(name).items()}

    def upstream_keyids(self, upstream: str) -> frozenset[str]:
        return frozenset(str(k["keyid"]) for k in self.upstream_keys(upstream))

    def upstream_keys(self, upstream: str | None = None) -> list[dict[str, Any]]:
        """The upstreams' npm signing keys (served beside ours at /-/npm/v1/keys)."""
        out: list[dict[str, Any]] = []
        for name in ([upstream] if upstream else [u.name for u in self.settings.upstreams]):
            if time.monotonic() < self._keys_failed.get(name, 0.0):
                continue
            try:
                keys = self.docs.get(KEYS_PATH, name, packument=False).data.get("keys")
            except (NotFound, Unavailable):
                self._keys_failed[name] = time.monotonic() + 60.0
                continue
            out += [k for k in keys or [] if isinstance(k, dict) and k.get("keyid")]
        return out

    def attestations(self, spec: str) -> bytes:
        """The upstream's sigstore bundles for ``name@version`` (npm and pnpm verify
        them against the upstream's keys). Raises :class:`NotFound`, :class:`Unavailable`."""
        name, _, version = spec.rpartition("@")
        rule = self.route(name) if name and self.enabled else None
        if rule is None:
            raise NotFound(f"no attestations for {spec}")
        local = self._local_versions(name).get(version)
        if local is not None and local.state != VersionState.APPROVED.value:
            raise NotFound(f"no attestations for {spec}")
        doc = self.docs.get(f"-/npm/v1/attestations/{name}@{version}", rule.source,
                            packument=False)
        return json.dumps(doc.data).encode()

    def packument(self, name: str, rule: PackageSource, base: str,
                  abbreviated: bool) -> tuple[Representation, bool]:
        """The merged document for ``name`` and whether it is stale. Raises
        :class:`NotFound` (no listed version: the reason says why) or :class:`Unavailable`."""
        doc = self.docs.get(name, rule.source)
        gen = self._generation()
        entry = self._merged.get(name)
        if entry is None or entry.digest != doc.digest or entry.generation != gen:
            merged = merge(doc.data, name, self._local_versions(name), self._judge(rule, name),
                           self.upstream_keyids(rule.source))
            entry = _MergedEntry(doc.digest, gen, merged, {})
            with self._lock:
                if len(self._merged) > 2000:
                    self._merged.clear()
                self._merged[name] = entry
        if not entry.merged.listed:
            raise NotFound(self._nothing_listed(name, rule, doc.data))
        key = (base, abbreviated)
        rep = entry.rendered.get(key)
        if rep is None:
            body = (entry.merged.abbreviated if abbreviated else entry.merged.full).replace(
                _MARKER_JSON, base.rstrip("/").encode())
            rep = Representation(body, f'"m-{entry.merged.etag}-{int(abbreviated)}-'
                                       f'{abs(hash(base)) % 10**8}"')
            entry.rendered[key] = rep
        return rep, doc.stale

    def _nothing_listed(self, name: str, rule: PackageSource, data: dict[str, Any]) -> str:
        latest = (data.get("dist-tags") or {}).get("latest")
        if isinstance(latest, str) and latest in (data.get("versions") or {}):
            try:
                self.fetch(name, latest, rule)  # approve on first request: queue it
            except (NotFound, Unavailable, Forbidden) as exc:
                log.info("could not queue %s@%s for approval: %s", name, latest, exc)
        with self.db.read() as s:
            held = s.execute(select(Version.version, Version.state, Version.state_reason)
                             .join(Package, Package.id == Version.package_id)
                             .where(Package.name == name).limit(10)).all()
        states = ", ".join(f"{r.version} ({r.state}: {r.state_reason})" for r in held)
        return (f"{name} comes from the upstream {rule.source} but no version is approved for "
                f"installs{': ' + states if states else ''}. Ask an approver to review it.")

    # -- tarballs ----------------------------------------------------------------------

    def _offered_tarball(self, name: str, rule: PackageSource,
                         filename: str) -> tuple[str, dict[str, Any], Verdict, datetime | None]:
        """(version, manifest, verdict, published) of an uncached tarball the mirror may
        fetch. Raises :class:`NotFound` (unknown, held locally, blocked, offline) or
        :class:`Unavailable`."""
        bare = split_name(name)[1]
        if not (filename.startswith(bare + "-") and filename.endswith(".tgz")):
            raise NotFound(f"no tarball {name}/-/{filename}")
        version = filename[len(bare) + 1:-4]
        doc = self.docs.get(name, rule.source)
        manifest = (doc.data.get("versions") or {}).get(version)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("dist"), dict):
            raise NotFound(f"{name}@{version} is not in the upstream registry {rule.source}")
        local = self._local_versions(name).get(version)
        if local is not None:
            raise NotFound(f"{name}@{version} is {local.state}: not approved for installs")
        published = parse_time((doc.data.get("time") or {}).get(version))
        verdict = self._judge(rule, name)(version, published)
        if verdict.offer is Offer.BLOCK:
            raise NotFound(f"{name}@{version}: {verdict.reason}")
        if self.settings.mirror.offline:
            raise NotFound(f"{name}@{version} is not cached, and this mirror is offline")
        return version, manifest, verdict, published

    def tarball_offered(self, name: str, rule: PackageSource, filename: str) -> None:
        """For HEAD: whether a GET would fetch and serve this uncached tarball, without
        fetching, storing or queueing anything. Raises :class:`NotFound` (including a
        version that would wait for a person) or :class:`Unavailable`."""
        version, _, verdict, _ = self._offered_tarball(name, rule, filename)
        if verdict.offer is Offer.HOLD:
            raise NotFound(f"{name}@{version} is not approved for installs: {verdict.reason}")

    def tarball(self, name: str, rule: PackageSource,
                filename: str) -> tuple[int | None, Iterator[bytes]]:
        """Fetch a tarball not cached yet: the announced length and the streamed body.
        Raises :class:`NotFound` (unknown, held, blocked, rejected) or :class:`Unavailable`."""
        version, manifest, verdict, published = self._offered_tarball(name, rule, filename)
        if verdict.offer is Offer.HOLD:
            self.fetch(name, version, rule)
            raise NotFound(f"{name}@{version} is queued for approval: {verdict.reason}")
        self._count("misses", 1)
        return self.tarballs.open(name, version, rule.source, manifest, verdict, published,
                                  deliver=True)

    def fetch(self, name: str, version: str, rule: PackageSource) -> str:
        """Fetch, check and store ``name@version`` without serving it (prefetch, and
        versions queued for a person); returns its state. Raises :class:`NotFound`,
        :class:`Unavailable`."""
        local = self._local_versions(name).get(version)
        if local is not None:
            return local.state
        doc = self.docs.get(name, rule.source)
        manifest = (doc.data.get("versions") or {}).get(version)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("dist"), dict):
            raise NotFound(f"{name}@{version} is not in the upstream registry {rule.source}")
        published = parse_time((doc.data.get("time") or {}).get(version))
        verdict = self._judge(rule, name)(version, published)
        if verdict.offer is Offer.BLOCK:
            raise NotFound(f"{name}@{version}: {verdict.reason}")
        _, body = self.tarballs.open(name, version, rule.source, manifest, verdict, published,
                                     deliver=False)
        for _ in body:
            pass
        state = self._local_versions(name).get(version)
        return state.state if state else VersionState.PENDING.value

