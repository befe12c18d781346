"""Webhooks over HTTP: the JSON API under ``/api/webhooks`` (bearer token, admins) and
the panel pages under ``/admin/webhooks`` (signed-in admins, CSRF-protected forms)."""
from __future__ import annotations

from typing import Any

from flask import (Blueprint, Response, flash, g, redirect, render_template, request,
                   url_for)
from flask.typing import ResponseReturnValue

from ..domain import Origin, Principal
from ..errors import FieldError, NotFound, ValidationFailed
from ..services.packuments import iso
from ..services.webhooks import (DEFAULT_EVENTS, EVENT_KINDS, UPDATABLE, DeliveryInfo,
                                 WebhookInfo)
from . import auth
from .panel import login_required
from .common import services as _services, json_response as _json, api_principal as _who

api_bp = Blueprint("webhooks_api", __name__, url_prefix="/api/webhooks")
panel_bp = Blueprint("webhooks_panel", __name__, url_prefix="/admin/webhooks")

CREATE_FIELDS = frozenset({"url", "events", "pattern", "description", "secret", "active"})


def _origin() -> Origin:
    return auth.origin(request.environ, _services().settings)


def _id(value: str, what: str = "webhook") -> int:
    if not value.isdigit() or len(value) > 18:
        raise NotFound(f"no {what} {value}")
    return int(value)


def _int_arg(name: str, default: int) -> Any:
    """An integer query argument; anything else goes to the service as is, which says
    what is wrong with it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return raw


def _when(value: Any) -> str | None:
    return iso(value) if value is not None else None


def webhook_json(w: WebhookInfo) -> dict[str, Any]:
    return {"id": w.id, "url": w.url, "events": list(w.events), "pattern": w.pattern,
            "description": w.description, "active": w.active,
            "created_at": iso(w.created_at), "created_by": w.created_by}


def delivery_json(d: DeliveryInfo) -> dict[str, Any]:
    return {"id": d.id, "webhook_id": d.webhook_id, "change_seq": d.change_seq,
            "event": d.event, "package": d.package, "version": d.version, "status": d.status,
            "attempts": d.attempts, "next_attempt_at": _when(d.next_attempt_at),
            "last_status": d.last_status, "last_error": d.last_error,
            "duration_ms": d.duration_ms, "created_at": iso(d.created_at),
            "delivered_at": _when(d.delivered_at)}


# -- API -------------------------------------------------------------------------------


def _body(allowed: frozenset[str]) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object",
                               details=[FieldError("body", "not a JSON object")])
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationFailed("unknown fields", details=[
            FieldError(k, f"unknown field; known: {', '.join(sorted(allowed))}") for k in unknown])
    return body


@api_bp.get("")
def api_list() -> Response:
    """Every webhook (admins)."""
    hooks = _services().webhooks.list(_who())
    return _json({"items": [webhook_json(w) for w in hooks], "total": len(hooks)})


@api_bp.post("")
def api_create() -> Response:
    """Register a webhook. The answer carries the secret; it is never shown again."""
    who = _who()
    _services().webhooks.require_admin(who)  # 403 before any complaint about the body
    body = _body(CREATE_FIELDS)
    new = _services().webhooks.create(
        who, body.get("url"), events=body.get("events"), pattern=body.get("pattern", "*"),
        description=body.get("description", ""), secret=body.get("secret"),
        active=body.get("active", True), origin=_origin())
    return _json({**webhook_json(new.webhook), "secret": new.secret}, 201)


@api_bp.get("/<webhook_id>")
def api_get(webhook_id: str) -> Response:
    """One webhook (admins)."""
    return _json(webhook_json(_services().webhooks.get(_who(), _id(webhook_id))))


@api_bp.patch("/<webhook_id>")
def api_update(webhook_id: str) -> Response:
    """Change ``url``, ``events``, ``pattern``, ``active`` or ``description``."""
    who = _who()
    _services().webhooks.require_admin(who)
    body = _body(UPDATABLE)
    return _json(webhook_json(_services().webhooks.update(who, _id(webhook_id), body,
                                                          _origin())))


@api_bp.delete("/<webhook_id>")
def api_delete(webhook_id: str) -> Response:
    """Delete a webhook (admins); 204."""
    _services().webhooks.delete(_who(), _id(webhook_id), _origin())
    return Response(status=204)


@api_bp.get("/<webhook_id>/deliveries")
def api_deliveries(webhook_id: str) -> Response:
    """The delivery log, newest first: ``?page=1&per_page=50``."""
    page = _services().webhooks.deliveries(_who(), _id(webhook_id), _int_arg("page", 1),
                                           _int_arg("per_page", 50))
    return _json({"items": [delivery_json(d) for d in page.items], "total": page.total,
                  "page": page.page, "per_page": page.per_page})


@api_bp.post("/<webhook_id>/deliveries/<delivery_id>/redeliver")
def api_redeliver(webhook_id: str, delivery_id: str) -> Response:
    """Send a delivery again (admins); 202 with the delivery."""
    d = _services().webhooks.redeliver(_who(), _id(webhook_id), _id(delivery_id, "delivery"),
                                       _origin())
    return _json(delivery_json(d), 202)


# -- panel -----------------------------------------------------------------------------


def _admin() -> Principal:
    return _services().accounts.principal_for_user(g.user)


def _render_list(principal: Principal, *, created: Any = None, secret: str | None = None,
                 errors: dict[str, list[str]] | None = None,
                 form: dict[str, Any] | None = None) -> str:
    return render_template("admin/webhooks.html", hooks=_services().webhooks.list(principal),
                           kinds=EVENT_KINDS, created=created, secret=secret,
                           errors=errors or {},
                           form=form or {"events": list(DEFAULT_EVENTS), "pattern": "*"})


@panel_bp.route("", methods=["GET", "POST"])
@login_required
def index() -> ResponseReturnValue:
    """The webhooks and the form that registers one (the secret is shown once, here)."""
    principal = _admin()
    if request.method == "GET":
        return _render_list(principal)
    form = {"url": request.form.get("url", ""), "events": request.form.getlist("events"),
            "pattern": request.form.get("pattern", "*"),
            "description": request.form.get("description", ""),
            "secret": request.form.get("secret", "")}
    try:
        new = _services().webhooks.create(
            principal, form["url"], events=form["events"], pattern=form["pattern"],
            description=form["description"], secret=form["secret"] or None, origin=_origin())
    except ValidationFailed as exc:
        errors: dict[str, list[str]] = {}
        for d in exc.details:
            errors.setdefault(d.field, []).append(d.message)
        form.pop("secret")  # never echoed back into the page
        return _render_list(principal, errors=errors, form=form), 400
    return _render_list(principal, created=new.webhook, secret=new.secret), 201


@panel_bp.post("/<webhook_id>/active")
@login_required
def set_active(webhook_id: str) -> ResponseReturnValue:
    active = request.form.get("active") == "on"
    w = _services().webhooks.update(_admin(), _id(webhook_id), {"active": active}, _origin())
    flash(f"Webhook {w.id} {'activated' if active else 'deactivated'}.", "success")
    if request.form.get("back") == "detail":
        return redirect(url_for("webhooks_panel.detail", webhook_id=w.id))
    return redirect(url_for("webhooks_panel.index"))


@panel_bp.post("/<webhook_id>/delete")
@login_required
def remove(webhook_id: str) -> ResponseReturnValue:
    hook_id = _id(webhook_id)
    _services().webhooks.delete(_admin(), hook_id, _origin())
    flash(f"Webhook {hook_id} deleted.", "success")
    return redirect(url_for("webhooks_panel.index"))


@panel_bp.get("/<webhook_id>")
@login_required
def detail(webhook_id: str) -> ResponseReturnValue:
    """One webhook and its delivery log, newest first (``?page=``)."""
    principal = _admin()
    hook_id = _id(webhook_id)
    hook = _services().webhooks.get(principal, hook_id)
    page = _services().webhooks.deliveries(principal, hook_id, _int_arg("page", 1), 50)
    return render_template("admin/webhook.html", hook=hook, page=page)


@panel_bp.post("/<webhook_id>/deliveries/<delivery_id>/redeliver")
@login_required
def redeliver(webhook_id: str, delivery_id: str) -> ResponseReturnValue:
    hook_id = _id(webhook_id)
    d = _services().webhooks.redeliver(_admin(), hook_id, _id(delivery_id, "delivery"), _origin())
    flash(f"Delivery {d.id} is queued again.", "success")
    return redirect(url_for("webhooks_panel.detail", webhook_id=hook_id))
