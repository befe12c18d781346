"""The Gati REST API under ``/api/`` (JSON, bearer tokens). This part: approvals."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from ..errors import FieldError, NotFound, ValidationFailed
from ..services.packuments import iso
from . import auth
from .common import services as _services, json_response as _json, api_principal as _who

bp = Blueprint("api", __name__, url_prefix="/api")


def _item(item: Any) -> dict[str, Any]:
    return {"name": item.name, "version": item.version, "state": item.state,
            "reason": item.reason, "publisher": item.publisher,
            "published_at": iso(item.published_at),
            "votes": [{"plugin": v.plugin, "decision": v.decision.value,
                       "reasons": list(v.reasons)} for v in item.votes]}


@bp.route("/approvals")
def approvals() -> Response:
    """The queue: ``?state=pending`` (default), any state, or ``all``; paged with
    ``?offset=`` and ``?limit=`` (at most 1000); ``total`` counts every match."""
    state = request.args.get("state", "pending")
    try:
        offset = max(0, int(request.args.get("offset", 0)))
        limit = max(1, min(1000, int(request.args.get("limit", 100))))
    except ValueError:
        raise ValidationFailed("offset and limit must be numbers",
                               details=[FieldError("offset", "not a number")]) from None
    who, approvals = _who(), _services().approvals
    wanted = None if state == "all" else state
    items = approvals.queue(who, wanted, offset=offset, limit=limit)
    return _json({"items": [_item(i) for i in items], "total": approvals.count(who, wanted),
                  "offset": offset, "limit": limit})


def decide(rest: str) -> Response:
    """``POST /api/modules/<name>/<version>/approve|reject|quarantine`` with
    ``{"reason": "..."}``. (Routed by :mod:`.api_modules`, which answers every method
    under ``/api/modules/``.)"""
    parts = rest.split("/")
    if len(parts) < 3 or parts[-1] not in ("approve", "reject", "quarantine"):
        raise NotFound(f"no such endpoint: POST /api/modules/{rest}")
    name, version, action = "/".join(parts[:-2]), parts[-2], parts[-1]
    body = request.get_json(silent=True) if request.content_length else {}
    if body is None or not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object",
                               details=[FieldError("body", "not a JSON object")])
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ValidationFailed("reason must be a string", details=[FieldError("reason", "not a string")])
    state = _services().approvals.decide(_who(), name, version, action, reason,
                                         auth.origin(request.environ, _services().settings))
    return _json({"name": name, "version": version, "state": state.value})


@bp.route("/keys")
def keys() -> Response:
    """The organisation's public keys (both algorithms), with validity and revocation.
    Public: no token needed, so a client can pin them before it signs in."""
    return _json({"keys": [{
        "keyid": k.keyid, "algorithm": k.algorithm, "key": k.public_key,
        "fingerprint": k.fingerprint, "pair": k.pair, "active": k.active,
        "valid_from": iso(k.valid_from),
        "valid_until": iso(k.expires_at) if k.expires_at else None,
        "revoked": k.revoked_at is not None,
        "revoked_at": iso(k.revoked_at) if k.revoked_at else None,
        "revoked_reason": k.revoked_reason or None,
    } for k in _services().keys.all()]})
