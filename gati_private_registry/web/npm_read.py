"""The fast path for packument and tarball reads, most of a registry's traffic.

:class:`NpmReadPath` is a plain WSGI layer in front of Flask: one dict lookup and one
memory read for a cached packument, sendfile for a tarball. Everything else falls
through to the Flask blueprint in :mod:`.npm`.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable

from ..domain import Principal
from ..errors import NotFound, RegistryError
from ..services import Services
from ..services.held import encode as encode_document
from ..services.packuments import Representation
from . import auth
from .errors import auth_headers, npm_body, status_for
from .mirror_read import STALE_WARNING, mirror_packument, mirror_tarball
from .npm_paths import parse_path

ABBREVIATED = "application/vnd.npm.install-v1+json"


def error_response(exc: RegistryError, start_response: Callable[..., Any]) -> list[bytes]:
    body = npm_body(exc)
    status = status_for(exc)
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               ("Cache-Control", "no-store")] + auth_headers(exc)
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [body]


_REASONS = {200: "OK", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 409: "Conflict", 413: "Payload Too Large",
            503: "Service Unavailable"}


def _etag_matches(environ: dict[str, Any], etag: str) -> bool:
    inm = environ.get("HTTP_IF_NONE_MATCH")
    if not inm:
        return False
    return any(tag.strip().removeprefix("W/") == etag for tag in inm.split(","))


class NpmReadPath:
    """WSGI middleware answering packument and tarball GETs without Flask."""

    def __init__(self, services: Services, app: Callable[..., Any]) -> None:
        self.services = services
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        if (method == "GET" or method == "HEAD") and path.startswith("/npm/") \
                and not path.startswith("/npm/-/"):
            route = parse_path(path[5:])
            if route is not None and route.kind in ("packument", "tarball"):
                try:
                    who = auth.reader_of(environ, self.services, route.name)
                    if route.kind == "packument":
                        return self._packument(environ, start_response, route.name, who)
                    return self._tarball(environ, start_response, route.name, route.arg)
                except RegistryError as exc:
                    return error_response(exc, start_response)
        return self.app(environ, start_response)  # type: ignore[no-any-return]

    def _packument(self, environ: dict[str, Any], start_response: Callable[..., Any],
                   name: str, who: Principal | None) -> Iterable[bytes]:
        abbreviated = ABBREVIATED in environ.get("HTTP_ACCEPT", "")
        base = auth.base_url(environ, self.services.settings)
        fresh = "write=true" in environ.get("QUERY_STRING", "")
        # the mirror (issue 7) answers for names an upstream serves
        mirrored = mirror_packument(self.services, name, base, abbreviated)
        rep = mirrored[0] if mirrored else self.services.packuments.get(
            name, base, abbreviated, fresh=fresh)
        # `npm view` shows a publisher their own held versions (approvers: all), with
        # their state. Only `npm view`: npm 11 installs read the full document too, and
        # must never resolve to a version whose tarball is refused
        if environ.get("HTTP_NPM_COMMAND") == "view" and not abbreviated \
                and self.services.held.visible_to(who, name):
            assert who is not None
            doc = self.services.held.document(
                name, base, who, None if rep is None else json.loads(rep.body))
            if doc is not None:
                body = encode_document(doc)
                rep = Representation(body, f'"p-{hashlib.sha256(body).hexdigest()[:32]}"')
        if rep is None:
            raise NotFound(self.services.approvals.why_not_served(name)
                           or f"{name} is not in this registry")
        use_gzip = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "") and len(rep.body) > 512
        etag = rep.etag[:-1] + '-gz"' if use_gzip else rep.etag
        private = rep.etag.startswith('"p-')
        headers = [("Content-Type", ABBREVIATED if abbreviated else "application/json"),
                   ("ETag", etag), ("Cache-Control", "private, no-cache" if private else "no-cache"),
                   ("Vary", "Accept, Accept-Encoding, Authorization")]
        if _etag_matches(environ, etag):
            start_response("304 Not Modified", headers)
            return []
        if mirrored and mirrored[1]:
            headers.append(STALE_WARNING)
        body = rep.gzipped() if use_gzip else rep.body
        if use_gzip:
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _tarball(self, environ: dict[str, Any], start_response: Callable[..., Any],
                 name: str, filename: str) -> Iterable[bytes]:
        try:
            ref = self.services.packages.tarball(name, filename)
        except NotFound:
            fetched = mirror_tarball(self.services, name, filename, environ, start_response,
                                     error_response)
            if fetched is not None:
                return fetched
            # blocked means blocked everywhere, and the client is told why
            bare = name.rpartition("/")[2]
            version = filename[len(bare) + 1:-4] if filename.startswith(bare + "-") else None
            why = version and self.services.approvals.why_not_served(name, version)
            if why:
                raise NotFound(why) from None
            raise
        etag = f'"{ref.digest[:40]}"'
        # never Content-Encoding on a .tgz: clients would inflate it and fail the integrity check
        headers = [("Content-Type", "application/octet-stream"), ("ETag", etag),
                   ("Cache-Control", "private, max-age=31536000, immutable"),
                   ("Content-Length", str(ref.size))]
        if _etag_matches(environ, etag):
            start_response("304 Not Modified", headers[1:3])
            return []
        fh = self.services.blobs.open(ref.digest)
        start_response("200 OK", headers)
        if environ["REQUEST_METHOD"] == "HEAD":
            fh.close()
            return []
        # a dict increment: the counts reach the database in batches (services.popularity)
        self.services.downloads.hit(name, ref.version)
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None:
            return wrapper(fh, 256 * 1024)  # type: ignore[no-any-return]
        return iter_file(fh)


def iter_file(fh: Any) -> Iterable[bytes]:
    try:
        while chunk := fh.read(256 * 1024):
            yield chunk
    finally:
        fh.close()
