"""What the panel, the status API and ``/metrics`` show of the mirror."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select

from ...storage.models import Package, UpstreamPackument, Version
from . import MirrorService
from .metadata import MISSING


@dataclass(frozen=True)
class UpstreamStatus:
    name: str
    url: str
    reachable: bool | None
    latency_ms: int
    requests: int
    errors: int
    last_ok: datetime | None
    last_error: datetime | None


@dataclass(frozen=True)
class MirrorStatus:
    offline: bool
    upstreams: tuple[UpstreamStatus, ...]
    cached_packuments: int
    cached_metadata_bytes: int
    mirrored_versions: int
    mirrored_bytes: int
    counters: dict[str, int]
    #: the latest cache fills: (when, what) — packuments and tarballs fetched upstream
    recent_misses: tuple[tuple[datetime, str], ...]


def _stamp(value: int) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value else None


def status(mirror: MirrorService) -> MirrorStatus:
    """What the panel and the status API show. Admins only (checked by the caller)."""
    c = mirror.counters.snapshot()
    ups = []
    for u in mirror.settings.upstreams:
        ok, err = c.get(f"{u.name}.last_ok", 0), c.get(f"{u.name}.last_error", 0)
        ups.append(UpstreamStatus(u.name, u.url, None if not ok and not err else ok >= err,
                                  c.get(f"{u.name}.latency_ms", 0),
                                  c.get(f"{u.name}.requests", 0), c.get(f"{u.name}.errors", 0),
                                  _stamp(ok), _stamp(err)))
    with mirror.db.read() as s:
        docs, doc_bytes = s.execute(select(func.count(), func.coalesce(func.sum(
            func.length(UpstreamPackument.body)), 0)).where(
                UpstreamPackument.digest != MISSING)).one()
        versions, version_bytes = s.execute(select(func.count(), func.coalesce(
            func.sum(Version.size), 0)).where(Version.upstream.is_not(None))).one()
        fills = [(r.created_at, f"metadata {r.name}") for r in s.execute(
            select(UpstreamPackument.name, UpstreamPackument.created_at)
            .where(~UpstreamPackument.name.startswith("-/"), UpstreamPackument.digest != MISSING)
            .order_by(UpstreamPackument.created_at.desc()).limit(20))]
        fills += [(r.state_changed_at, f"tarball {r.name}@{r.version} ({r.state})")
                  for r in s.execute(select(Package.name, Version.version, Version.state,
                                            Version.state_changed_at)
                                     .join(Package, Package.id == Version.package_id)
                                     .where(Version.upstream.is_not(None))
                                     .order_by(Version.id.desc()).limit(20))]
    fills.sort(key=lambda f: f[0] if f[0].tzinfo else f[0].replace(tzinfo=timezone.utc),
               reverse=True)
    return MirrorStatus(mirror.settings.mirror.offline, tuple(ups), int(docs), int(doc_bytes),
                        int(versions), int(version_bytes),
                        {k: v for k, v in c.items() if "." not in k}, tuple(fills[:20]))


def metrics_text(mirror: MirrorService) -> str:
    """Prometheus text format: the mirror's counters on this machine."""
    c = mirror.counters.snapshot()
    lines = []
    for key, help_ in (("hits", "metadata served from the mirror's cache"),
                       ("misses", "metadata and tarballs fetched from an upstream"),
                       ("stale", "metadata served stale because the upstream failed"),
                       ("tarball_fetches", "upstream tarballs verified and kept"),
                       ("tarballs_refused", "upstream tarballs refused (integrity, size)")):
        lines += [f"# HELP gati_mirror_{key}_total {help_}",
                  f"# TYPE gati_mirror_{key}_total counter", f"gati_mirror_{key}_total {c[key]}"]
    for key, help_ in (("requests", "requests to an upstream"),
                       ("errors", "failed requests to an upstream")):
        lines += [f"# HELP gati_upstream_{key}_total {help_}",
                  f"# TYPE gati_upstream_{key}_total counter"]
        lines += [f'gati_upstream_{key}_total{{upstream="{u.name}"}} {c[f"{u.name}.{key}"]}'
                  for u in mirror.settings.upstreams]
    lines += ["# HELP gati_upstream_latency_seconds the last successful request's latency",
              "# TYPE gati_upstream_latency_seconds gauge"]
    lines += [f'gati_upstream_latency_seconds{{upstream="{u.name}"}} '
              f'{c[f"{u.name}.latency_ms"] / 1000:.3f}' for u in mirror.settings.upstreams]
    return "\n".join(lines) + "\n"
