"""CPU time per request of the packument and tarball reads through the whole WSGI stack
(Observe, the npm read path, the services), in one process, without HTTP.

The numbers move much less with the machine's load than req/s do, so this is the quick
way to see what a change to the read path costs: run it against two source trees.
Metrics are in multiprocess mode and the JSON access log goes to a file, as under
``gati-registry serve``. ``--profile`` adds a cProfile table per path.

    PYTHONPATH=. python benchmarks/profile_readpath.py [--requests 14000] [--no-access-log] [--profile]

Prints, per path, the minimum and median CPU microseconds per request over 7 batches.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=14000)
    ap.add_argument("--no-access-log", action="store_true")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gati-profile-"))
    (tmp / "metrics").mkdir()
    # before prometheus_client is imported: the multiprocess values, as under gunicorn
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "metrics")
    from gati_private_registry import observability
    from gati_private_registry.app import create_app, prepare
    from gati_private_registry.settings import Settings
    from gati_private_registry.testing import ModuleSpec, publish_body

    settings = Settings.for_tests(tmp / "data", anonymous_read=True,
                                  access_log=not a.no_access_log,
                                  approvals={"default_mode": "auto"})
    observability.configure_logging("INFO", "json")
    log = open(tmp / "server.log", "w")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log)
    services, _ = prepare(settings)
    try:
        app = create_app(settings, services)
        client = app.test_client()
        token = services.accounts.create_token(None, "admin", "publish", name="profile").secret
        for n in range(1, 6):
            body = publish_body(ModuleSpec("@ab/pkg-1", f"1.{n}.0", keywords=["ab"]))
            resp = client.put("/npm/@ab%2fpkg-1", json=body,
                              headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code in (200, 201), resp.data

        def one(path: str) -> None:
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
                       "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
                       "HTTP_HOST": "127.0.0.1:8080", "wsgi.url_scheme": "http",
                       "REMOTE_ADDR": "127.0.0.1", "HTTP_ACCEPT": "application/json",
                       "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
                       "SERVER_PROTOCOL": "HTTP/1.1"}

            def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
                assert status.startswith("200"), status

            body = app(environ, start_response)
            for _ in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

        paths = {"packument": "/npm/@ab/pkg-1", "tarball": "/npm/@ab/pkg-1/-/pkg-1-1.5.0.tgz"}
        batch = max(1, a.requests // 7)
        for kind, path in paths.items():
            for _ in range(500):
                one(path)
            per: list[float] = []
            for _ in range(7):
                started = time.process_time()
                for _ in range(batch):
                    one(path)
                per.append((time.process_time() - started) / batch * 1e6)
            per.sort()
            print(f"{kind:10} min {per[0]:6.1f}  median {per[3]:6.1f} us CPU/request")
        if a.profile:
            for kind, path in paths.items():
                prof = cProfile.Profile()
                prof.enable()
                for _ in range(batch):
                    one(path)
                prof.disable()
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
                print(f"===== {kind}\n{out.getvalue()}")
    finally:
        services.close()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
