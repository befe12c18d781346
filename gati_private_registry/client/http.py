"""HTTP to the registry: kept-alive connections (one per thread and host), the token sent
only to the registry's own host, JSON in and out, and server errors turned into
:class:`~.errors.ClientError` with a hint.

http.client rather than urllib: urllib opens a new connection per request, and an
install asks for many small documents.
"""
from __future__ import annotations

import gzip
import http.client
import json
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from .errors import (AuthProblem, ClientError, FieldProblem, InvalidInput, NetworkProblem,
                     NotFoundProblem)

USER_AGENT = "gati/0.1 (Gati Private Registry client)"
ABBREVIATED = "application/vnd.npm.install-v1+json"


def escape_name(name: str) -> str:
    """A package name as one path segment (``@scope%2fname``), the way npm sends it."""
    return quote(name, safe="@")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    url: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ClientError(f"the registry answered {self.url} with something that is not "
                              f"JSON (HTTP {self.status})",
                              hint="check that the registry URL points at a Gati registry"
                              ) from None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def _server_message(resp: Response) -> tuple[str, list[FieldProblem]]:
    """The error text of an npm-style (``{"error": "..."}``) or API-style
    (``{"error": {"message", "details"}}``) body."""
    try:
        data = json.loads(resp.body)
    except ValueError:
        return resp.body.decode("utf-8", "replace")[:300].strip(), []
    details: list[FieldProblem] = []
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            for d in err.get("details") or []:
                if isinstance(d, dict):
                    details.append(FieldProblem(str(d.get("field", "")), str(d.get("message", ""))))
            return str(err.get("message") or err.get("code") or ""), details
        if isinstance(err, str):
            return err, details
        if isinstance(data.get("reason"), str):
            return data["reason"], details
    return "", details


@dataclass
class Http:
    """Requests to one registry (``root`` as normalised by :mod:`.config`)."""

    root: str
    token: str | None = None
    timeout: float = 60.0
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def npm_url(self) -> str:
        return self.root + "/npm/"

    def npm(self, path: str) -> str:
        return self.root + "/npm/" + path.lstrip("/")

    def package_url(self, name: str) -> str:
        return self.npm(escape_name(name))

    def api(self, path: str) -> str:
        return self.root + "/api/" + path.lstrip("/")

    # ---- transport

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get((scheme, netloc))
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=self.timeout,
                                                   context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(netloc, timeout=self.timeout)
            pool[(scheme, netloc)] = conn
        return conn

    def _drop(self, scheme: str, netloc: str) -> None:
        pool = getattr(self._local, "pool", {})
        conn = pool.pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in getattr(self._local, "pool", {}).values():
            conn.close()
        self._local.pool = {}

    def send(self, method: str, url: str, *, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None, auth: bool = True,
             token: str | None = None) -> Response:
        """One request; returns any status. Raises :class:`NetworkProblem` when the server
        cannot be reached."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ClientError(f"refusing a non-http URL from the registry: {url}")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        hdrs = {"User-Agent": USER_AGENT, "Accept": "application/json",
                "Accept-Encoding": "gzip"}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        bearer = token or self.token
        # the token goes only to the registry's own host (npm's rule for tarball URLs too)
        if auth and bearer and parts.netloc == urlsplit(self.root).netloc:
            hdrs["Authorization"] = f"Bearer {bearer}"
        hdrs.update(headers or {})
        for attempt in (1, 2):
            conn = self._connection(parts.scheme, parts.netloc)
            try:
                conn.request(method, path or "/", body=data, headers=hdrs)
                resp = conn.getresponse()
                payload = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.BadStatusLine) as exc:
                # a kept-alive connection the server closed meanwhile: retry once, fresh
                self._drop(parts.scheme, parts.netloc)
                if attempt == 1:
                    continue
                raise self._unreachable(url, exc) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(parts.scheme, parts.netloc)
                raise self._unreachable(url, exc) from None
            if resp.will_close:
                self._drop(parts.scheme, parts.netloc)
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp_headers.get("content-encoding") == "gzip":
                payload = gzip.decompress(payload)
            return Response(resp.status, resp_headers, payload, url)
        raise AssertionError("unreachable")

    def _unreachable(self, url: str, exc: BaseException) -> NetworkProblem:
        host = urlsplit(url).netloc
        return NetworkProblem(f"cannot reach the registry at {host}: {exc}",
                              hint="check the registry URL (--registry, GATI_REGISTRY) and "
                                   "that the server is running")

    # ---- checked requests

    def check(self, resp: Response, what: str) -> Response:
        """``resp`` when it is a 2xx; else the matching :class:`ClientError`."""
        if 200 <= resp.status < 300:
            return resp
        message, details = _server_message(resp)
        text = f"{what}: {message}" if message else f"{what}: HTTP {resp.status}"
        if resp.status == 401:
            raise AuthProblem(text, hint=f"sign in: gati registry login --registry {self.root}")
        if resp.status == 403:
            raise AuthProblem(text, hint="your token lacks the permission for this; ask an "
                                         "admin, or sign in as a user who has it")
        if resp.status == 404:
            raise NotFoundProblem(text)
        if resp.status in (400, 413, 422):
            raise InvalidInput(text, details=details)
        raise ClientError(text, hint="the registry refused the request" if resp.status < 500
                          else "the registry failed; try again, or tell its administrators")

    def get_json(self, url: str, what: str, headers: dict[str, str] | None = None) -> Any:
        return self.check(self.send("GET", url, headers=headers), what).json()
