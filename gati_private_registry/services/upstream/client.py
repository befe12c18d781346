"""HTTP to an upstream npm registry: TLS from the configured CA file or the system store,
proxies from the usual environment variables (urllib reads them), one deadline per
request, retries with backoff, a cap on requests in flight, conditional requests.

:class:`UpstreamClient` is the contract; :class:`HttpUpstreamClient` the real one (tests
use it against a real ``gati-registry serve``).
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

from ...settings_mirror import UpstreamSettings

log = logging.getLogger(__name__)

USER_AGENT = "gati-registry (mirror)"
#: a packument larger than this is refused (the public @types/node is about 10 MB)
MAX_PACKUMENT = 128 * 1024 * 1024
CHUNK = 64 * 1024


class UpstreamUnavailable(Exception):
    """The upstream gave no usable answer (connection, TLS, timeout, 5xx, refusal)."""


@dataclass(frozen=True)
class Fetched:
    """A packument answer: 200 with ``body``, 304 (our copy is current) or 404."""

    status: int
    body: bytes = b""
    etag: str = ""
    last_modified: str = ""


class TarballStream(Protocol):
    #: bytes announced by the upstream (Content-Length), None when not announced
    length: int | None

    def chunks(self) -> Iterator[bytes]:
        """The body, chunk by chunk; raises :class:`UpstreamUnavailable` when it breaks."""

    def close(self) -> None: ...


class UpstreamClient(Protocol):
    name: str

    def packument(self, name: str, *, etag: str = "", last_modified: str = "",
                  timeout: float | None = None) -> Fetched:
        """GET the full packument of ``name``. Raises :class:`UpstreamUnavailable`."""

    def document(self, path: str, *, etag: str = "", last_modified: str = "",
                 timeout: float | None = None) -> Fetched:
        """GET ``<upstream url><path>`` (JSON: keys, attestations) like :meth:`packument`."""

    def tarball(self, url: str) -> TarballStream:
        """Start a tarball GET. Raises :class:`UpstreamUnavailable` (a 404 too)."""


def packument_url(base: str, name: str) -> str:
    """``@scope/name`` → ``<base>@scope%2fname`` (what npm sends)."""
    return base + urllib.parse.quote(name, safe="@").replace("/", "%2f")


class _NoRedirectToOtherSchemes(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        if not newurl.startswith(("http://", "https://")):
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


Stats = Callable[[str, bool, float], None]


class _HttpTarball:
    def __init__(self, resp: Any, timeout: float, on_error: Callable[[], None]) -> None:
        self._resp = resp
        self._timeout = timeout
        self._on_error = on_error
        length = resp.headers.get("Content-Length")
        self.length = int(length) if length and length.isdigit() else None

    def chunks(self) -> Iterator[bytes]:
        try:
            while True:
                chunk = self._resp.read(CHUNK)
                if not chunk:
                    return
                yield chunk
        except (OSError, ValueError) as exc:  # reset, timeout (socket.timeout is OSError)
            self._on_error()
            raise UpstreamUnavailable(f"tarball download broke: {exc}") from None

    def close(self) -> None:
        self._resp.close()


class HttpUpstreamClient:
    """The real client. ``stats(upstream, ok, seconds)`` is told about every attempt."""

    def __init__(self, settings: UpstreamSettings, stats: Stats | None = None) -> None:
        self.settings = settings
        self.name = settings.name
        self._stats = stats or (lambda _n, _ok, _s: None)
        # the CA file from the settings, else the system store (OpenSSL's default paths):
        # never a bundled one, so an intercepting corporate CA is trusted as the OS is
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler(),  # http_proxy/https_proxy/no_proxy
            urllib.request.HTTPSHandler(context=context), _NoRedirectToOtherSchemes())
        self._slots = threading.BoundedSemaphore(settings.max_concurrent)
        self._host = urllib.parse.urlsplit(settings.url).netloc

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
        # like npm: credentials go only to the registry's own host
        if self.settings.token and urllib.parse.urlsplit(url).netloc == self._host:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        return headers

    def _open(self, url: str, headers: dict[str, str], deadline: float) -> Any:
        """The response (any status < 500 except 3xx handled by urllib), retrying
        connection errors and 5xx until ``deadline``."""
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise UpstreamUnavailable(f"{self.name}: no answer in time for {url}")
            start = time.monotonic()
            req = urllib.request.Request(url, headers=headers)
            error: str
            try:
                if not self._slots.acquire(timeout=left):
                    raise UpstreamUnavailable(f"{self.name}: too many requests in flight")
                try:
                    resp = self._opener.open(req, timeout=max(left, 0.05))
                finally:
                    self._slots.release()
                self._stats(self.name, True, time.monotonic() - start)
                return resp
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    self._stats(self.name, True, time.monotonic() - start)
                    return exc
                exc.close()
                error = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                error = str(getattr(exc, "reason", exc))
            self._stats(self.name, False, time.monotonic() - start)
            attempt += 1
            if attempt > self.settings.retries:
                raise UpstreamUnavailable(f"{self.name}: {url}: {error}")
            time.sleep(min(0.2 * 2 ** (attempt - 1), max(deadline - time.monotonic(), 0)))

    def packument(self, name: str, *, etag: str = "", last_modified: str = "",
                  timeout: float | None = None) -> Fetched:
        return self._json(packument_url(self.settings.base, name), etag, last_modified, timeout)

    def document(self, path: str, *, etag: str = "", last_modified: str = "",
                 timeout: float | None = None) -> Fetched:
        return self._json(self.settings.base + path.lstrip("/"), etag, last_modified, timeout)

    def _json(self, url: str, etag: str, last_modified: str, timeout: float | None) -> Fetched:
        headers = self._headers(url)
        # the full document: installs need `time`, which abbreviated documents lack
        headers["Accept"] = "application/json"
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = time.monotonic() + (timeout or self.settings.timeout)
        resp = self._open(url, headers, deadline)
        try:
            status = resp.status if hasattr(resp, "status") else resp.code
            if status == 304:
                return Fetched(304)
            if status == 404:
                return Fetched(404)
            if status != 200:
                self._stats(self.name, False, 0.0)
                raise UpstreamUnavailable(f"{self.name}: {url}: HTTP {status}")
            body = self._read_all(resp, deadline)
            if resp.headers.get("Content-Encoding", "").lower() == "gzip":
                body = _gunzip(body)
            return Fetched(200, body, resp.headers.get("ETag", "") or "",
                           resp.headers.get("Last-Modified", "") or "")
        finally:
            resp.close()

    def _read_all(self, resp: Any, deadline: float) -> bytes:
        parts: list[bytes] = []
        total = 0
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UpstreamUnavailable(f"{self.name}: the answer is too slow")
                # a trickling upstream must not hold a client past the deadline
                _set_timeout(resp, left)
                chunk = resp.read(CHUNK)
                if not chunk:
                    return b"".join(parts)
                total += len(chunk)
                if total > MAX_PACKUMENT:
                    raise UpstreamUnavailable(f"{self.name}: packument larger than {MAX_PACKUMENT}")
                parts.append(chunk)
        except (OSError, ValueError) as exc:
            self._stats(self.name, False, 0.0)
            raise UpstreamUnavailable(f"{self.name}: reading the answer failed: {exc}") from None

    def tarball(self, url: str) -> TarballStream:
        headers = self._headers(url)
        headers["Accept-Encoding"] = "identity"  # the bytes the integrity covers
        resp = self._open(url, headers, time.monotonic() + self.settings.timeout)
        status = resp.status if hasattr(resp, "status") else resp.code
        if status != 200:
            resp.close()
            raise UpstreamUnavailable(f"{self.name}: {url}: HTTP {status}")
        _set_timeout(resp, self.settings.timeout)
        return _HttpTarball(resp, self.settings.timeout,
                            lambda: self._stats(self.name, False, 0.0))


def _set_timeout(resp: Any, seconds: float) -> None:
    sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
    if isinstance(sock, (socket.socket, ssl.SSLSocket)):
        sock.settimeout(max(seconds, 0.05))


def _gunzip(body: bytes) -> bytes:
    # bounded: a hostile upstream's gzip bomb stops at MAX_PACKUMENT
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, MAX_PACKUMENT + 1)
    except zlib.error as exc:
        raise UpstreamUnavailable(f"bad gzip from the upstream: {exc}") from None
    if len(out) > MAX_PACKUMENT or inflater.unconsumed_tail:
        raise UpstreamUnavailable(f"packument larger than {MAX_PACKUMENT} once inflated")
    return out
