"""Tokens over HTTP besides npm's own ``/-/npm/v1/tokens``: ``/api/tokens`` (bearer) and
the panel's token page (signed-in people, CSRF-protected forms). A secret is shown once,
in the response that created it; only its sha256 is stored."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, render_template, request
from flask.typing import ResponseReturnValue

from ..domain import Origin, Principal, ROLE_MAX_SCOPE, Role, Scope
from ..errors import FieldError, ValidationFailed
from ..services.tokens import TokenInfo
from ..services.packuments import iso
from . import auth
from .panel import login_required
from .common import services as _services, json_response as _json, api_principal as _who

api_bp = Blueprint("tokens_api", __name__, url_prefix="/api/tokens")
panel_bp = Blueprint("tokens_panel", __name__, url_prefix="/tokens")


def _origin() -> Origin:
    return auth.origin(request.environ, _services().settings)


def token_json(t: TokenInfo) -> dict[str, Any]:
    return {"key": t.key, "prefix": t.prefix, "name": t.name, "scope": t.scope.value,
            "packages": t.packages or [], "cidr": t.cidr or [],
            "created": iso(t.created_at), "expires": iso(t.expires_at) if t.expires_at else None,
            "last_used": iso(t.last_used_at) if t.last_used_at else None}


def _list_field(body: dict[str, Any], name: str, errors: list[FieldError]) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(FieldError(name, "a list of strings"))
        return None
    return value


def _create(who: Principal, body: dict[str, Any]) -> Any:
    errors: list[FieldError] = []
    packages = _list_field(body, "packages", errors)
    cidr = _list_field(body, "cidr", errors)
    expires = body.get("expires_days")
    if expires in ("", None):
        expires = None
    elif isinstance(expires, str) and expires.isdigit():
        expires = int(expires)
    elif not isinstance(expires, int) or isinstance(expires, bool):
        errors.append(FieldError("expires_days", "a whole number of days"))
        expires = None
    name = body.get("name", "")
    if not isinstance(name, str):
        errors.append(FieldError("name", "a string"))
        name = ""
    scope = body.get("scope", "read")
    if errors:
        raise ValidationFailed("invalid token request", details=errors)
    return _services().tokens.create_token(
        who, who.username, scope if isinstance(scope, str) else "", name=name,
        expires_days=expires, cidr=cidr, origin=_origin(), packages=packages)


@api_bp.route("", methods=["GET"])
def api_list() -> Response:
    """The caller's own live tokens (never their secrets), with last use."""
    return _json({"tokens": [token_json(t) for t in _services().tokens.list_tokens(_who())]})


@api_bp.route("", methods=["POST"])
def api_create() -> Response:
    """Create a token for the caller.
    ``{"scope": "read|publish|approve|admin", "packages": ["@team/*"], "cidr":
    ["10.0.0.0/8"], "expires_days": 30, "name": "ci"}``; the secret is in the answer only."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object",
                               details=[FieldError("body", "not a JSON object")])
    new = _create(_who(), body)
    return _json({"token": new.secret, **token_json(new.info)}, 201)


@api_bp.route("/<key>", methods=["DELETE"])
def api_revoke(key: str) -> Response:
    """Revoke one of the caller's tokens by its key or key prefix (needs a publish or
    admin token)."""
    _services().tokens.revoke_token(_who(), key, _origin())
    return _json({"ok": True})


# -- panel -----------------------------------------------------------------------------


def _principal() -> Principal:
    return _services().accounts.principal_for_user(g.user)


def _render(principal: Principal, **extra: Any) -> str:
    scopes = [s.value for s in Scope if ROLE_MAX_SCOPE[Role(g.user.role)].allows(s)]
    return render_template("tokens.html", tokens=_services().tokens.list_tokens(principal),
                           scopes=scopes, can_manage=principal.can(Scope.PUBLISH),
                           **{"errors": {}, "form": {}, **extra})


@panel_bp.route("", methods=["GET", "POST"])
@login_required
def index() -> ResponseReturnValue:
    """Your tokens and the form that makes one (its secret shown once, here)."""
    principal = _principal()
    if request.method == "GET":
        return _render(principal)
    form = request.form
    body = {"scope": form.get("scope", "read"), "name": form.get("name", ""),
            "packages": form.get("packages", ""), "cidr": form.get("cidr", ""),
            "expires_days": form.get("expires_days", "")}
    try:
        new = _create(principal, body)
    except ValidationFailed as exc:
        errors: dict[str, list[str]] = {}
        for d in exc.details:
            errors.setdefault(d.field, []).append(d.message)
        return _render(principal, errors=errors, form=body), 400
    return _render(principal, created=new.info, secret=new.secret), 201


@panel_bp.route("/<key>/revoke", methods=["POST"])
@login_required
def revoke(key: str) -> ResponseReturnValue:
    principal = _principal()
    _services().tokens.revoke_token(principal, key, _origin())
    return _render(principal, revoked=key)
