"""Who is calling, and from where: read from the WSGI environ so the lean read path
and the Flask views share one implementation."""
from __future__ import annotations

import base64
import binascii
import ipaddress
from functools import lru_cache
from typing import Any, Mapping

from ..domain import Origin, Principal, Scope
from ..errors import Unauthenticated
from ..services import Services
from ..services.ownership import check_readable
from ..settings import Settings


@lru_cache(maxsize=64)
def _networks(proxies: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(environ: Mapping[str, Any], settings: Settings) -> bool:
    if not settings.trusted_proxies:
        return False
    try:
        addr = ipaddress.ip_address(environ.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(addr in net for net in _networks(settings.trusted_proxies))


def _forwarded(environ: Mapping[str, Any]) -> dict[str, str]:
    """The first element of an RFC 7239 ``Forwarded`` header."""
    raw = environ.get("HTTP_FORWARDED", "")
    out: dict[str, str] = {}
    for pair in raw.split(",")[0].split(";"):
        key, _, value = pair.strip().partition("=")
        if value:
            out[key.lower()] = value.strip('"')
    return out


def client_ip(environ: Mapping[str, Any], settings: Settings) -> str:
    if _trusted(environ, settings):
        fwd = _forwarded(environ).get("for")
        xff = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")[0].strip()
        ip = fwd or xff
        if ip:
            return ip.strip("[]")
    return str(environ.get("REMOTE_ADDR", ""))


def base_url(environ: Mapping[str, Any], settings: Settings) -> str:
    """The external ``scheme://host[:port]`` (plus any path prefix of ``public_url``),
    built from the request unless ``public_url`` is set. Proxy headers count only from
    ``trusted_proxies``."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    prefix = ""
    if _trusted(environ, settings):
        fwd = _forwarded(environ)
        scheme = fwd.get("proto") or environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip() or scheme
        host = fwd.get("host") or environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip() or host
        prefix = environ.get("HTTP_X_FORWARDED_PREFIX", "").rstrip("/")
    return f"{scheme}://{host}{prefix}"


def origin(environ: Mapping[str, Any], settings: Settings) -> Origin:
    return Origin(ip=client_ip(environ, settings),
                  user_agent=str(environ.get("HTTP_USER_AGENT", ""))[:400])


def basic_credentials(environ: Mapping[str, Any]) -> tuple[str, str] | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    if not header[:6].lower() == "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password) if sep else None


def principal(environ: Mapping[str, Any], services: Services) -> Principal | None:
    """The caller, or None when the request carries no credentials.

    Raises :class:`Unauthenticated` for credentials that are wrong, so a bad token is
    never silently treated as anonymous."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    if header[:7].lower() == "bearer ":
        return services.tokens.authenticate_token(
            header[7:].strip(), client_ip(environ, services.settings))
    creds = basic_credentials(environ)
    if creds is not None:
        return services.accounts.authenticate_basic(creds[0], creds[1],
                                                    origin(environ, services.settings))
    raise Unauthenticated("unsupported Authorization header")


def reader(environ: Mapping[str, Any], services: Services) -> Principal | None:
    """The caller of a read: anyone when ``anonymous_read`` is on, else a token holder.

    Raises :class:`Unauthenticated`."""
    who = principal(environ, services)
    if who is None and not services.settings.anonymous_read:
        raise Unauthenticated("this registry needs a token to read: run npm login")
    if who is not None and not who.can(Scope.READ):
        raise Unauthenticated("token cannot read")
    return who


def reader_of(environ: Mapping[str, Any], services: Services, name: str) -> Principal | None:
    """The caller of a read of package ``name``: :func:`reader`, and a token limited to
    package patterns reads only those (any other name is a 404, like a missing one).

    Raises :class:`Unauthenticated`, :class:`NotFound`."""
    who = reader(environ, services)
    check_readable(who, name)
    return who
