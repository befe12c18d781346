"""The one table from error class to HTTP status, and the renderers per front door."""
from __future__ import annotations

import json
from typing import Any

from ..errors import (Conflict, Forbidden, NotFound, RateLimited, RegistryError, TooLarge,
                      Unauthenticated, Unavailable, ValidationFailed)

STATUS: dict[type[RegistryError], int] = {
    ValidationFailed: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    RateLimited: 429,
    Unavailable: 503,
}


def status_for(exc: RegistryError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def auth_headers(exc: RegistryError) -> list[tuple[str, str]]:
    if isinstance(exc, Unauthenticated):
        # npm prints "Incorrect or missing password" for Basic and "your authentication
        # token seems to be invalid" for Bearer
        realm = 'Basic realm="gati-registry"' if exc.scheme == "Basic" else \
            'Bearer realm="gati-registry"'
        return [("WWW-Authenticate", realm)]
    if isinstance(exc, RateLimited):
        return [("Retry-After", str(exc.retry_after))]
    return []


def npm_body(exc: RegistryError) -> bytes:
    """npm prints only ``error``; yarn prints it as the headline; pnpm the raw body. So
    everything a person needs goes into ``error``."""
    body: dict[str, Any] = {"error": str(exc), "reason": exc.code}
    if exc.details:
        body["details"] = [d.as_dict() for d in exc.details]
    return json.dumps(body).encode()


def api_body(exc: RegistryError) -> bytes:
    return json.dumps({"error": {"code": exc.code, "message": exc.message,
                                 "details": [d.as_dict() for d in exc.details]}}).encode()
