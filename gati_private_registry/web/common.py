"""Small helpers every front door shares: the services of this app, a JSON answer that
is never cached, and the caller of a token-authenticated API."""
from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, request

from ..domain import Principal
from ..errors import Unauthenticated
from ..services import Services
from . import auth


def services() -> Services:
    return current_app.extensions["gati"]  # type: ignore[no-any-return]


def json_response(data: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """``data`` as JSON with ``Cache-Control: no-store`` (API answers are per caller)."""
    resp = Response(json.dumps(data), status=status, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def api_principal() -> Principal:
    """The bearer token's principal. Raises :class:`Unauthenticated` without one."""
    who = auth.principal(request.environ, services())
    if who is None:
        raise Unauthenticated("send a token: Authorization: Bearer <token>")
    return who
