"""The outermost WSGI layer: a request id for every request (``X-Request-Id``, kept from
the client when it is sane), request counters and latency histograms by front door and
route, and one access-log line per request.

It runs on every request, in front of the lean npm read path, so it is kept cheap: the
labelled metric children are looked up once per label set and kept, the request id is
8 random bytes in hex instead of a UUID, and the access line is handed to the logging
handlers without the caller lookup that ``Logger.info`` does (the formatters never show
the caller). See benchmarks/ab_readpath.py for the measurement."""
from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..observability import REQUEST_ID, metrics
from .npm_paths import parse_path

access_log = logging.getLogger("gati.access")

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_OPS = frozenset({"/healthz", "/readyz", "/metrics"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
#: label values that are always allowed whatever the routes are
_FIXED = frozenset({"root", "home", "unknown"})
#: labelled children kept per process; label sets are few (see classify), this only
#: guards against a bug that would make them many
_MAX_CHILDREN = 4096


def known_routes(rules: Iterable[str]) -> dict[str, frozenset[str] | None]:
    """The route label values each of the api and panel doors can have: the first path
    segment (below ``/api/`` for the api door) of the application's URL rules. None for
    a door with a variable first segment (then every value is kept)."""
    found: dict[str, set[str] | None] = {"api": set(), "panel": set()}
    for rule in rules:
        parts = rule.split("/")
        door, seg = ("api", parts[2] if len(parts) > 2 else "") if parts[1:2] == ["api"] \
            else ("panel", parts[1] if len(parts) > 1 else "")
        bucket = found[door]
        if bucket is None:
            continue
        if "<" in seg:
            found[door] = None
        elif seg:
            bucket.add(seg)
    return {door: None if segs is None else frozenset(segs) for door, segs in found.items()}


def classify(path: str, known: Mapping[str, frozenset[str] | None] | None = None) -> tuple[str, str]:
    """(front door, route) with few distinct values, for metric labels. With ``known``
    (from :func:`known_routes`), a first segment no route has is labelled ``unknown``,
    so requests for made-up paths cannot add label sets without end."""
    if path.startswith("/npm/"):
        route = parse_path(path[5:])
        return "npm", route.kind if route is not None else "unknown"
    if path.startswith("/api/"):
        parts = path.split("/", 3)
        door, label = "api", parts[2] if len(parts) > 2 and parts[2] else "root"
    elif path in _OPS:
        return "ops", path[1:]
    elif path.startswith("/static/"):
        return "panel", "static"
    else:
        door, label = "panel", path.strip("/").split("/", 1)[0] or "home"
    if known is not None and label not in _FIXED:
        allowed = known.get(door)
        if allowed is not None and label not in allowed:
            label = "unknown"
    return door, label


class Observe:
    """WSGI middleware: request id, request metrics and the access log (see module doc)."""

    def __init__(self, app: Callable[..., Any], access: bool,
                 known: Mapping[str, frozenset[str] | None] | None = None) -> None:
        self.app = app
        self.access = access
        self.known = known
        self.metrics = metrics()
        # (door, route, method, status) -> (counter child, histogram child)
        self._children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        rid = incoming if incoming and _SANE_ID.match(incoming) else os.urandom(8).hex()
        token = REQUEST_ID.set(rid)
        environ["gati.request_id"] = rid
        started = time.perf_counter()
        status: list[str] = []

        def respond(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[:] = [line[:3]]
            headers.append(("X-Request-Id", rid))
            return start_response(line, headers, exc_info)

        answered = False
        try:
            body = self.app(environ, respond)
            answered = True
        finally:
            if not answered or status:
                self._record(environ, status[0] if status else "500", started)
            REQUEST_ID.reset(token)
        # A body that calls start_response only when iterated (a generator: the mirror's
        # first fetch of a tarball) is counted and logged when the server closes it, with
        # the status it really sent; every other body goes back untouched (gunicorn
        # sends a wsgi.file_wrapper with sendfile only when it gets that very object)
        return _Deferred(body, self, environ, status, started, rid) if not status else body

    def _record(self, environ: dict[str, Any], code: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        path = environ.get("PATH_INFO", "")
        door, route = classify(path, self.known)
        method = environ.get("REQUEST_METHOD", "")
        key = (door, route, method if method in _METHODS else "OTHER", code)
        children = self._children.get(key)
        if children is None:
            children = (self.metrics.requests.labels(*key),
                        self.metrics.latency.labels(door, route))
            if len(self._children) < _MAX_CHILDREN:
                self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        if self.access and access_log.isEnabledFor(logging.INFO):
            # makeRecord + handle is what Logger.info does, less the stack walk to find
            # the caller, which no formatter of ours prints
            access_log.handle(access_log.makeRecord(
                access_log.name, logging.INFO, __file__, 0, "%s %s %s",
                (method, path, code), None, extra={
                    "method": method, "path": path, "status": int(code),
                    "duration_ms": round(elapsed * 1000, 2), "door": door, "route": route,
                    "remote": environ.get("REMOTE_ADDR", "")}))


class _Deferred:
    """A response body whose status is known only once iteration has started."""

    def __init__(self, body: Iterable[bytes], observe: Observe, environ: dict[str, Any],
                 status: list[str], started: float, rid: str) -> None:
        self.body = body
        self.observe = observe
        self.environ = environ
        self.status = status
        self.started = started
        self.rid = rid

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        token = REQUEST_ID.set(self.rid)
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.observe._record(self.environ, self.status[0] if self.status else "500",
                                 self.started)
            REQUEST_ID.reset(token)
