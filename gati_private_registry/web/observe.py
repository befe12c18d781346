"""The outermost WSGI layer: a request id for every request (``X-Request-Id``, kept from
the client when it is sane), request counters and latency histograms by front door and
route, and one access-log line per request."""
from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, Callable, Iterable

from ..observability import REQUEST_ID, metrics
from .npm_paths import parse_path

access_log = logging.getLogger("gati.access")

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_OPS = frozenset({"/healthz", "/readyz", "/metrics"})


def classify(path: str) -> tuple[str, str]:
    """(front door, route) with few distinct values, for metric labels."""
    if path.startswith("/npm/"):
        route = parse_path(path[5:])
        return "npm", route.kind if route is not None else "unknown"
    if path.startswith("/api/"):
        parts = path.split("/")
        return "api", parts[2] if len(parts) > 2 and parts[2] else "root"
    if path in _OPS:
        return "ops", path[1:]
    if path.startswith("/static/"):
        return "panel", "static"
    first = path.strip("/").split("/", 1)[0]
    return "panel", first or "home"


class Observe:
    def __init__(self, app: Callable[..., Any], access: bool) -> None:
        self.app = app
        self.access = access
        self.metrics = metrics()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        rid = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex[:16]
        token = REQUEST_ID.set(rid)
        environ["gati.request_id"] = rid
        started = time.perf_counter()
        status = ["500"]

        def respond(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = line[:3]
            headers.append(("X-Request-Id", rid))
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, respond)  # type: ignore[no-any-return]
        finally:
            elapsed = time.perf_counter() - started
            path = environ.get("PATH_INFO", "")
            door, route = classify(path)
            method = environ.get("REQUEST_METHOD", "")
            self.metrics.requests.labels(door, route, method, status[0]).inc()
            self.metrics.latency.labels(door, route).observe(elapsed)
            if self.access:
                access_log.info("%s %s %s", method, path, status[0], extra={
                    "method": method, "path": path, "status": int(status[0]),
                    "duration_ms": round(elapsed * 1000, 2), "door": door, "route": route,
                    "remote": environ.get("REMOTE_ADDR", "")})
            REQUEST_ID.reset(token)
