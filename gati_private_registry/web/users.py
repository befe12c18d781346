"""Users under ``/api/users`` (admins): re-check a directory user now, and revoke every
token of a user (SAML has no back channel, so this is how a departed SAML user's
tokens end)."""
from __future__ import annotations

from flask import Blueprint, Response, request

from . import auth
from .common import services as _services, json_response as _json, api_principal as _who

api_bp = Blueprint("users_api", __name__, url_prefix="/api/users")


@api_bp.route("/<name>/sync", methods=["POST"])
def sync(name: str) -> Response:
    """Ask the directory (LDAP) about ``name`` now: ``{"username", "allowed", "reason"}``.
    404 for a user that is not a directory user, 503 when the directory cannot answer."""
    services = _services()
    result = services.directory_sync.sync(_who(), name,
                                          auth.origin(request.environ, services.settings))
    return _json({"username": result.username, "allowed": result.allowed,
                  "reason": result.reason or None})


@api_bp.route("/<name>/tokens", methods=["DELETE"])
def revoke_all(name: str) -> Response:
    """Revoke every live token of ``name``: ``{"username", "revoked": N}``."""
    services = _services()
    count = services.tokens.revoke_all(_who(), name,
                                       auth.origin(request.environ, services.settings))
    return _json({"username": name, "revoked": count})
