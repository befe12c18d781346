"""Prefetch jobs over HTTP: ``/api/mirror/prefetch`` (admin token) and the form and
progress on ``/admin/mirror`` (routes on the blueprints of :mod:`.mirror`)."""
from __future__ import annotations

import json
from typing import Any

from flask import Response, redirect, request, url_for
from flask.typing import ResponseReturnValue

from ..errors import FieldError, ValidationFailed
from ..services.packuments import iso
from ..services.upstream.prefetch import JobView, parse_list, parse_lockfile
from . import auth
from .common import json_response as _json, services as _services
from .mirror import _api_admin, _panel_admin, api_bp, panel_bp
from .panel import login_required


def job_json(job: JobView) -> dict[str, Any]:
    return {"id": job.id, "status": job.status, "source": job.source, "closure": job.closure,
            "total": job.total, "done": job.done, "failed": job.failed,
            "percent": job.percent, "current": job.current, "errors": list(job.errors),
            "created_by": job.created_by, "created_at": iso(job.created_at),
            "finished_at": iso(job.finished_at) if job.finished_at else None}


def specs_from_body(body: Any) -> tuple[list[tuple[str, str]], str, bool]:
    """(specs, source, closure) of a submission: ``{"packages": [...]}`` or
    ``{"lockfile": {...}}``, with an optional boolean ``closure`` (default true).
    Raises :class:`ValidationFailed`."""
    if not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object",
                               details=[FieldError("body", "not an object")])
    closure = body.get("closure", True)
    if not isinstance(closure, bool):
        raise ValidationFailed("closure must be true or false",
                               details=[FieldError("closure", "not a boolean")])
    has_list, has_lock = "packages" in body, "lockfile" in body
    if has_list == has_lock:
        raise ValidationFailed("send either packages or lockfile", details=[
            FieldError("packages", "give a list of name@range, or a package-lock.json as "
                                   "lockfile")])
    if has_lock:
        return parse_lockfile(body["lockfile"]), "lockfile", closure
    if not isinstance(body["packages"], list):
        raise ValidationFailed("packages must be a list",
                               details=[FieldError("packages", "not a list")])
    return parse_list(body["packages"]), "list", closure


@api_bp.post("/prefetch")
def api_prefetch() -> Response:
    """Queue a prefetch job (admins): ``{"packages": ["name@range", ...]}`` or a lockfile;
    201 with ``Location``."""
    who = _api_admin()
    specs, source, closure = specs_from_body(request.get_json(silent=True))
    job = _services().mirror.prefetch.submit(
        who, specs, source=source, closure=closure,
        origin=auth.origin(request.environ, _services().settings))
    resp = _json(job_json(job), 201)
    resp.headers["Location"] = url_for("mirror_api.api_prefetch_job", job_id=job.id)
    return resp


@api_bp.get("/prefetch")
def api_prefetch_jobs() -> Response:
    """The recent prefetch jobs with their progress (admins)."""
    _api_admin()
    return _json({"jobs": [job_json(j) for j in _services().mirror.prefetch.recent()]})


@api_bp.get("/prefetch/<int:job_id>")
def api_prefetch_job(job_id: int) -> Response:
    """One prefetch job, with the items that failed (admins)."""
    _api_admin()
    jobs = _services().mirror.prefetch
    out = job_json(jobs.get(job_id))
    out["failed_items"] = [{"name": n, "spec": s, "version": v, "error": e}
                           for n, s, v, _, e in jobs.items(job_id, "failed", limit=200)]
    return _json(out)


@api_bp.post("/prefetch/<int:job_id>/cancel")
def api_prefetch_cancel(job_id: int) -> Response:
    """Cancel a queued or running prefetch job (admins)."""
    who = _api_admin()
    job = _services().mirror.prefetch.cancel(
        who, job_id, auth.origin(request.environ, _services().settings))
    return _json(job_json(job))


def _panel_specs() -> tuple[list[tuple[str, str]], str, bool]:
    closure = request.form.get("closure") == "on"
    upload = request.files.get("lockfile")
    text = request.form.get("packages", "")
    if upload is not None and upload.filename:
        try:
            lock = json.loads(upload.read())
        except (ValueError, UnicodeDecodeError):
            raise ValidationFailed("not JSON", details=[
                FieldError("lockfile", "the file is not a JSON package-lock.json")]) from None
        return parse_lockfile(lock), "lockfile", closure
    lines = [ln.strip() for ln in text.replace(",", "\n").splitlines() if ln.strip()]
    if not lines:
        raise ValidationFailed("nothing to prefetch", details=[
            FieldError("packages", "list packages (one name@range per line) or choose a "
                                   "package-lock.json")])
    return parse_list(lines), "list", closure


@panel_bp.post("/prefetch")
@login_required
def prefetch() -> ResponseReturnValue:
    """Queue a prefetch job from the form (a list or an uploaded lockfile)."""
    from .mirror import render_index

    who = _panel_admin()
    try:
        specs, source, closure = _panel_specs()
        _services().mirror.prefetch.submit(
            who, specs, source=source, closure=closure,
            origin=auth.origin(request.environ, _services().settings))
    except ValidationFailed as exc:
        errors: dict[str, list[str]] = {}
        for d in exc.details:
            errors.setdefault("prefetch", []).append(f"{d.field}: {d.message}")
        return render_index(errors=errors, prefetch_text=request.form.get("packages", "")), 400
    return redirect(url_for("mirror_panel.index") + "#prefetch")


@panel_bp.post("/prefetch/<int:job_id>/cancel")
@login_required
def prefetch_cancel(job_id: int) -> ResponseReturnValue:
    who = _panel_admin()
    _services().mirror.prefetch.cancel(who, job_id,
                                       auth.origin(request.environ, _services().settings))
    return redirect(url_for("mirror_panel.index") + "#prefetch")
