"""Run the WSGI app under gunicorn, configured from the settings."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from .. import observability
from ..settings import Settings


class _NoAccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, without gunicorn's own access log: the registry writes one line
    per request itself (web/observe.py, with the request id). Once a logging config is
    given (``logconfig_dict``, for JSON lines), gunicorn builds an access line for every
    request, a dict of every header and environ entry, even though no handler prints it;
    that cost about a tenth of a packument read."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, metrics_dir: Path | None = None) -> None:
        self.settings = settings
        self.metrics_dir = metrics_dir
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": f"[{s.host}]:{s.port}" if ":" in s.host else f"{s.host}:{s.port}",
            "workers": s.workers,
            "threads": s.threads,
            # gthread: keep-alive connections and a thread pool per process; fits an I/O
            # bound registry without monkey-patching psycopg (see ENVIRONMENT.md)
            "worker_class": "gthread",
            "keepalive": 30,
            "timeout": 120,
            "graceful_timeout": 30,
            "accesslog": None,
            "logger_class": _NoAccessLogger,
            "errorlog": "-",
            "loglevel": s.log_level.lower(),
            "proc_name": "gati-registry",
            "forwarded_allow_ips": "",
            "limit_request_line": 8190,
            # a dead worker's live gauges leave the metrics (prometheus multiprocess mode)
            "child_exit": lambda _arbiter, worker: observability.worker_exited(worker.pid),
            "on_exit": lambda _arbiter: self._remove_metrics_dir(),
        }
        # gunicorn >= 25 opens a control socket, by default one per user in $HOME, so
        # two registries on one machine would share it: keep it in the data directory
        # (or go without when that path is too long for a Unix socket)
        if "control_socket" in self.cfg.settings:
            ctl = (s.data / "gunicorn.ctl").resolve()
            if len(str(ctl)) < 100:
                options["control_socket"] = str(ctl)
            else:
                options["control_socket_disable"] = True
        if s.log_format == "json":
            # gunicorn's own lines (start, workers, errors) in the same JSON format
            options["logconfig_dict"] = {
                "version": 1, "disable_existing_loggers": False,
                "formatters": {"json": {"()": "gati_private_registry.observability.JsonFormatter"}},
                "handlers": {name: {"class": "logging.StreamHandler", "formatter": "json",
                                    "stream": "ext://sys.stderr"}
                             for name in ("console", "error_console")},
                "root": {"level": s.log_level, "handlers": ["console"]},
                "loggers": {"gunicorn.error": {"level": s.log_level, "handlers": ["error_console"],
                                               "propagate": False}},
            }
        for key, value in options.items():
            self.cfg.set(key, value)

    def _remove_metrics_dir(self) -> None:
        if self.metrics_dir is not None and self.metrics_dir.name.startswith("gati-metrics-"):
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def load(self) -> Any:
        # runs in each worker after fork: every worker opens its own connections
        from ..app import create_app
        from ..services import build_services
        from ..services.background import start_background

        # A thread holding the database write lock must not wait out the default 5 ms
        # GIL switch interval behind a thread that is busy validating a tarball: that
        # stretches every write transaction and serialises publishes behind it.
        sys.setswitchinterval(0.0005)

        services = build_services(self.settings)
        app = create_app(self.settings, services)
        # every worker runs the followers of the changes feed (webhooks, re-signing);
        # a lease per job lets one of them work at a time
        start_background(services)
        return app


#: mallopt() parameter number of M_ARENA_MAX in glibc's malloc.h
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas for this process and the workers it forks; returns
    whether the cap was set. Nothing is done for ``arenas <= 0``, when the operator set
    ``MALLOC_ARENA_MAX`` (glibc read it at start), or off glibc (musl has no arenas)."""
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(_M_ARENA_MAX, arenas) != 1:
        logging.getLogger(__name__).warning("could not limit malloc arenas to %d", arenas)
        return False
    return True


def run(settings: Settings) -> None:
    """Serve until stopped. Before the workers fork: the malloc arena cap, the log
    format, and an empty directory in which every worker keeps its metrics, so
    ``/metrics`` adds them up."""
    # before any worker thread exists: each thread that finds the arenas busy would
    # otherwise make a new one (up to 8 per core), and memory freed across many arenas
    # is seldom returned, so a server with 16 threads a worker creeps up for hours
    limit_malloc_arenas(settings.malloc_arenas)
    observability.configure_logging(settings.log_level, settings.log_format)
    metrics_dir = observability.prepare_multiprocess()
    _Gunicorn(settings, metrics_dir).run()
