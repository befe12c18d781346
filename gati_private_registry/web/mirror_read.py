"""The mirror's part of the npm read path: packuments and first fetches of tarballs for
names an upstream serves (see services/upstream). Called by :mod:`.npm_read`."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from ..errors import NotFound, RegistryError
from ..services import Services
from ..services.upstream.tarballs import TarballRefused
from ..services.packuments import Representation

#: RFC 7234 warning 110 on metadata served from the cache because the upstream failed
STALE_WARNING = ("Warning", '110 gati-registry "Response is Stale"')


def mirror_packument(services: Services, name: str, base: str,
                     abbreviated: bool) -> tuple[Representation, bool] | None:
    """(document, stale) when the mirror answers for ``name``, else None. Raises
    :class:`NotFound` / :class:`Unavailable` as the mirror does."""
    mirror = services.mirror
    if not mirror.enabled:
        return None
    rule = mirror.route(name)
    if rule is None:
        return None
    return mirror.packument(name, rule, base, abbreviated)


def mirror_tarball(services: Services, name: str, filename: str, environ: dict[str, Any],
                   start_response: Callable[..., Any],
                   on_error: Callable[[RegistryError, Callable[..., Any]], list[bytes]]
                   ) -> Iterable[bytes] | None:
    """Stream a tarball fetched from an upstream on first request; None when the mirror
    does not answer for ``name`` (the caller's NotFound stands)."""
    mirror = services.mirror
    if not mirror.enabled:
        return None
    rule = mirror.route(name)
    if rule is None:
        return None
    headers = [("Content-Type", "application/octet-stream"), ("Cache-Control", "private, no-cache")]
    if environ["REQUEST_METHOD"] == "HEAD":
        # a HEAD fetches nothing: it says whether a GET would serve the tarball
        mirror.tarball_offered(name, rule, filename)
        start_response("200 OK", headers)
        return []
    length, body = mirror.tarball(name, rule, filename)
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return _respond(body, headers, start_response, on_error)


def _respond(body: Iterable[bytes], headers: list[tuple[str, str]],
             start_response: Callable[..., Any],
             on_error: Callable[[RegistryError, Callable[..., Any]], list[bytes]]
             ) -> Iterator[bytes]:
    # The status is sent with the first chunk (WSGI allows start_response this late), so
    # a tarball refused before any byte went out (a small one is a single chunk) gets a
    # clean 404 instead of a dropped connection
    chunks = iter(body)
    try:
        first = next(chunks, b"")
    except TarballRefused as exc:
        yield from on_error(NotFound(f"refused the upstream's tarball: {exc}"), start_response)
        return
    start_response("200 OK", headers)
    yield first
    yield from chunks
