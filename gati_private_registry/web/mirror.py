"""The mirror's HTTP surface beyond the npm read path (its counters are part of
``/metrics``, see web/ops.py): the status and curation API (``/api/mirror/...``, admins) and the panel page (``/admin/mirror``)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from ..domain import Principal
from ..errors import FieldError, Forbidden, Unauthenticated, ValidationFailed
from ..services.packuments import iso
from ..services.upstream.status import status
from . import auth
from .panel import login_required
from .common import services as _services, json_response as _json

api_bp = Blueprint("mirror_api", __name__, url_prefix="/api/mirror")
panel_bp = Blueprint("mirror_panel", __name__, url_prefix="/admin/mirror")


def _api_admin() -> Principal:
    who = auth.principal(request.environ, _services())
    if who is None:
        raise Unauthenticated("send a token: Authorization: Bearer <token>")
    if not who.is_admin:
        raise Forbidden("the mirror's status and rules need an admin token")
    return who


def _rule(r: Any) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "range": r.range, "action": r.action,
            "reason": r.reason, "created_by": r.created_by, "created_at": iso(r.created_at)}


@api_bp.get("/status")
def api_status() -> Response:
    """Upstream reachability, cache sizes, counters and recent misses (admins)."""
    _api_admin()
    st = status(_services().mirror)
    return _json({
        "offline": st.offline,
        "upstreams": [{"name": u.name, "url": u.url, "reachable": u.reachable,
                       "latency_ms": u.latency_ms, "requests": u.requests, "errors": u.errors,
                       "last_ok": iso(u.last_ok) if u.last_ok else None,
                       "last_error": iso(u.last_error) if u.last_error else None}
                      for u in st.upstreams],
        "cache": {"packuments": st.cached_packuments, "metadata_bytes": st.cached_metadata_bytes,
                  "versions": st.mirrored_versions, "tarball_bytes": st.mirrored_bytes},
        "counters": st.counters,
        "recent_misses": [{"at": iso(at), "what": what} for at, what in st.recent_misses]})


@api_bp.get("/rules")
def api_rules() -> Response:
    """The curation rules: which upstream versions are approved or blocked on arrival
    (admins)."""
    _api_admin()
    return _json({"rules": [_rule(r) for r in _services().mirror.rules.all()]})


@api_bp.post("/rules")
def api_add_rule() -> Response:
    """Add a curation rule (admins): ``{"spec": "name@range", "action": "approve|block",
    "reason": "..."}``."""
    who = _api_admin()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object", details=[FieldError("body", "not an object")])
    rule = _services().mirror.rules.add(who, str(body.get("spec") or ""),
                                        str(body.get("action") or ""),
                                        str(body.get("reason") or ""),
                                        auth.origin(request.environ, _services().settings))
    return _json(_rule(rule), 201)


@api_bp.delete("/rules/<int:rule_id>")
def api_remove_rule(rule_id: int) -> Response:
    """Remove a curation rule (admins)."""
    who = _api_admin()
    _services().mirror.rules.remove(who, rule_id, auth.origin(request.environ, _services().settings))
    return _json({"ok": True})


def _panel_admin() -> Principal:
    who = _services().accounts.principal_for_user(g.user)
    if not who.is_admin:
        raise Forbidden("the mirror page is for admins")
    return who


@panel_bp.route("", methods=["GET", "POST"])
@login_required
def index() -> ResponseReturnValue:
    """Upstream status, cache, recent misses, and the curation rules with their form."""
    who = _panel_admin()
    errors: dict[str, list[str]] = {}
    form = {"spec": "", "action": "approve", "reason": ""}
    code = 200
    if request.method == "POST":
        form = {k: request.form.get(k, "") for k in form}
        try:
            _services().mirror.rules.add(who, form["spec"], form["action"], form["reason"],
                                         auth.origin(request.environ, _services().settings))
            return redirect(url_for("mirror_panel.index"))
        except ValidationFailed as exc:
            for d in exc.details:
                errors.setdefault(d.field, []).append(d.message)
            code = 400
    return render_index(errors=errors, form=form), code


def render_index(*, errors: dict[str, list[str]] | None = None,
                 form: dict[str, str] | None = None, prefetch_text: str = "") -> str:
    """The mirror page (also re-rendered with the prefetch form's errors)."""
    jobs = _services().mirror.prefetch.recent(10)
    return render_template("admin/mirror.html", st=status(_services().mirror),
                           rules=_services().mirror.rules.all(), errors=errors or {},
                           form=form or {"spec": "", "action": "approve", "reason": ""},
                           packages=_services().settings.packages, jobs=jobs,
                           active=any(j.status in ("queued", "running") for j in jobs),
                           prefetch_text=prefetch_text)


@panel_bp.post("/rules/<int:rule_id>/delete")
@login_required
def remove(rule_id: int) -> ResponseReturnValue:
    who = _panel_admin()
    _services().mirror.rules.remove(who, rule_id, auth.origin(request.environ, _services().settings))
    return redirect(url_for("mirror_panel.index"))
