"""Run the WSGI app under gunicorn, configured from the settings."""
from __future__ import annotations

import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from ..settings import Settings


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
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
            "errorlog": "-",
            "loglevel": s.log_level.lower(),
            "proc_name": "gati-registry",
            "forwarded_allow_ips": "",
            "limit_request_line": 8190,
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
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # runs in each worker after fork: every worker opens its own connections
        from ..app import create_app
        from ..services import build_services
        from ..services.indexer import start_in_process as start_indexer
        from ..services.popularity import DownloadFlusher
        from ..services.webhook_worker import start_in_process

        # A thread holding the database write lock must not wait out the default 5 ms
        # GIL switch interval behind a thread that is busy validating a tarball: that
        # stretches every write transaction and serialises publishes behind it.
        sys.setswitchinterval(0.0005)

        services = build_services(self.settings)
        app = create_app(self.settings, services)
        # every worker runs the webhook follower; the lease lets one deliver at a time
        start_in_process(self.settings, services.db, services.generation)
        # and the search index follower: the flock on the index directory lets one
        # worker per replica write the index, the others read it
        start_indexer(self.settings, services.indexer, services.generation)
        # download counts: each worker counts in memory and writes in batches
        DownloadFlusher(services.downloads,
                        self.settings.marketplace.download_flush_interval).start()
        return app


def run(settings: Settings) -> None:
    _Gunicorn(settings).run()
