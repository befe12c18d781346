"""Logs and metrics, for every layer (no Flask here).

- Logs: one JSON object per line (``log_format = "json"``, the default under
  ``gati-registry serve``), each with the request id of the request being served.
- Metrics: prometheus-client objects, made on first use (never at import, because the
  multiprocess mode under gunicorn must be chosen by the environment before that), and
  rendered for ``/metrics`` together with gauges read from the database at scrape time.
"""
from __future__ import annotations

import contextvars
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from .services import Services

#: the id of the request this thread serves ("" outside requests)
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("gati_request_id", default="")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


#: one encoder for every line (``json.dumps`` with options builds a new one per call)
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", ...extra}`` on one line."""

    _SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (second, its "YYYY-MM-DDTHH:MM:SS"): one strftime per second, not per line;
        # a tuple, replaced whole, because handlers may share this formatter
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second, prefix = self._second
        if int(record.created) != second:
            second = int(record.created)
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        out: dict[str, Any] = {
            "ts": f"{prefix}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        rid = REQUEST_ID.get()
        if rid:
            out["request_id"] = rid
        skip = self._SKIP
        for key, value in vars(record).items():
            if key not in skip and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _encode(out)


def configure_logging(level: str, fmt: str) -> None:
    """Route the root logger to stderr as JSON lines (``fmt == "json"``) or plain text."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # gunicorn's own logger keeps its handler; make it speak the same format
    for name in ("gunicorn.error",):
        lg = logging.getLogger(name)
        for h in lg.handlers:
            h.setFormatter(handler.formatter)


# -- metrics ---------------------------------------------------------------------------------

def prepare_multiprocess() -> Path:
    """Before gunicorn forks: an empty directory for this server's worker metric files,
    named in the environment so every worker's prometheus-client writes there. Private
    to this server (replicas sharing a data directory must not mix their counters);
    ``PROMETHEUS_MULTIPROC_DIR`` set by the operator is used (and emptied) instead."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
    else:
        # removed by gunicorn's on_exit in the master (not atexit: forked workers
        # inherit atexit handlers and would delete it under their siblings)
        directory = Path(tempfile.mkdtemp(prefix="gati-metrics-"))
        os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def worker_exited(pid: int) -> None:
    """gunicorn's ``child_exit``: drop a dead worker's live gauges."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Metrics:
    """The registry's metric objects (see docs/operations.md for what each means)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter("gati_http_requests_total", "HTTP requests answered",
                                ["door", "route", "method", "status"])
        self.latency = Histogram(
            "gati_http_request_duration_seconds", "Time to answer, by front door and route",
            ["door", "route"],
            buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.publishes = Counter("gati_publishes_total", "Versions published, by starting state",
                                 ["state"])
        self.decisions = Counter("gati_approval_decisions_total",
                                 "Approval decisions, by resulting state", ["state"])


_metrics: Metrics | None = None
_lock = threading.Lock()


def metrics() -> Metrics:
    """The process's metrics, made on first use."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = Metrics()
    return _metrics


class _StateCollector:
    """Gauges read from the database when scraped (the same from every worker)."""

    def __init__(self, services: "Services") -> None:
        self.services = services

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily
        from sqlalchemy import func, select

        from .storage.models import Blob, Change, Version, WorkerLease

        with self.services.db.read() as s:
            blob_bytes = s.scalar(select(func.coalesce(func.sum(Blob.size), 0))) or 0
            blob_count = s.scalar(select(func.count()).select_from(Blob)) or 0
            states = s.execute(select(Version.state, func.count()).where(
                Version.unpublished_at.is_(None)).group_by(Version.state)).all()
            last = s.scalar(select(func.max(Change.seq))) or 0
            leases = s.execute(select(WorkerLease.name, WorkerLease.cursor)).all()
        g = GaugeMetricFamily("gati_blob_store_bytes", "Bytes of tarballs in the blob store")
        g.add_metric([], float(blob_bytes))
        yield g
        g = GaugeMetricFamily("gati_blob_store_blobs", "Tarballs in the blob store")
        g.add_metric([], float(blob_count))
        yield g
        g = GaugeMetricFamily("gati_versions", "Versions by lifecycle state", labels=["state"])
        for state, count in states:
            g.add_metric([state], float(count))
        yield g
        g = GaugeMetricFamily("gati_changes_feed_seq", "Newest changes-feed sequence number")
        g.add_metric([], float(last))
        yield g
        g = GaugeMetricFamily("gati_follower_lag_changes",
                              "Changes a background follower has not handled yet",
                              labels=["follower"])
        for name, cursor in leases:
            g.add_metric([name], float(max(0, last - (cursor or 0))))
        yield g


class _Forward:
    """This process's default registry, inside the registry we render."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        yield from self.source.collect()


def render(services: "Services") -> tuple[bytes, str]:
    """The ``/metrics`` body and content type: every worker's counters (multiprocess
    mode) or this process's, plus the database gauges."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    metrics()  # make sure the metric families exist even before the first request
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    registry.register(_StateCollector(services))
    return generate_latest(registry), CONTENT_TYPE_LATEST
