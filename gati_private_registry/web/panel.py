"""The web panel: sign-in, the page that confirms an ``npm login`` from the browser, and
the approvals pages (queue, review and decisions, a publisher's own versions)."""
from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from typing import Any, Callable

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from ..errors import Forbidden, RateLimited, Unauthenticated, Unavailable, ValidationFailed
from ..services import review
from . import auth, sessions
from .errors import status_for
from .common import services as _services

bp = Blueprint("panel", __name__)


def _sign_in() -> tuple[bool, str | None, int]:
    """Check the posted credentials (local password or the directory) and start a
    session; returns (ok, error, HTTP status for the error)."""
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    origin = auth.origin(request.environ, _services().settings)
    try:
        user = _services().accounts.check_password(username, password, origin)
    except Unauthenticated:
        return False, "Incorrect username or password.", 401
    except (Forbidden, RateLimited, Unavailable) as exc:
        return False, exc.message, status_for(exc)
    sessions.sign_in(user, origin, "panel")
    return True, None, 200


@bp.route("/")
def home() -> ResponseReturnValue:
    base = auth.base_url(request.environ, _services().settings)
    return render_template("home.html", registry_url=f"{base}/npm/")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    error, status = None, 200
    if request.method == "POST":
        ok, error, status = _sign_in()
        if ok:
            return redirect(local_target(request.args.get("next", "")))
    return render_template("auth/login.html", error=error, username=request.form.get("username"),
                           saml=_services().settings.saml.enabled,
                           next=request.args.get("next", "")), status


def local_target(target: str) -> str:
    """``target`` when it is a path on this site, else the home page: no open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("panel.home")
    return target


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    held = sessions.sign_out()
    saml = _services().saml
    if held.get("saml_nameid") and saml is not None:
        # single logout: the IdP ends its session too, then sends the browser back
        base = auth.base_url(request.environ, _services().settings)
        location = saml.logout_redirect(base, held["saml_nameid"], held.get("saml_index", ""))
        if location:
            return redirect(location)
    flash("Signed out.")
    return redirect(url_for("panel.login"))


@bp.route("/login/npm/<sid>", methods=["GET", "POST"])
def npm_login(sid: str) -> ResponseReturnValue:
    """Where ``npm login`` sends the browser. Signed-in people confirm with one click;
    others sign in on this page, which confirms at the same time."""
    services = _services()
    services.logins.check_web_login(sid)
    origin = auth.origin(request.environ, services.settings)
    if request.method == "POST":
        if g.user is None or "username" in request.form:
            ok, error, status = _sign_in()
            if not ok:
                return render_template("auth/login.html", error=error,
                                       heading="Sign in to finish npm login",
                                       button="Sign in and confirm",
                                       saml=services.settings.saml.enabled,
                                       next=request.path), status
        services.logins.confirm_web_login(sid, g.user, origin)
        return render_template("auth/npm_confirm.html", done=True)
    if g.user is None:
        return render_template("auth/login.html", heading="Sign in to finish npm login",
                               intro="A command-line client is waiting for you to sign in.",
                               button="Sign in and confirm",
                               saml=services.settings.saml.enabled, next=request.path)
    return render_template("auth/npm_confirm.html", done=False)


# -- approvals ---------------------------------------------------------------------------

QUEUE_STATES = ("pending", "rejected", "quarantined", "approved", "all")


def login_required(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """Send people who are not signed in to the sign-in page, and back here afterwards."""
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if g.user is None:
            return redirect(url_for("panel.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapped


@bp.app_template_filter("when")
def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is not None:  # SQLite hands back naive UTC, PostgreSQL aware
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M UTC")


@bp.app_template_filter("tojson_text")
def _tojson_text(value: Any) -> str:
    # a plain str, so Jinja autoescapes it
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@bp.app_template_filter("pretty_json")
def _pretty_json(value: Any) -> str:
    # a plain str, so Jinja autoescapes it (``tojson`` would be marked safe)
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@bp.route("/approvals")
@login_required
def approvals_queue() -> ResponseReturnValue:
    services = _services()
    state = request.args.get("state", "pending")
    query = request.args.get("q", "")
    principal = services.accounts.principal_for_user(g.user)
    items = services.approvals.queue(principal, None if state == "all" else state)
    return render_template("approvals/queue.html", items=review.matching(items, query),
                           state=state, q=query, states=QUEUE_STATES)


def _render_review(name: str, version: str, errors: dict[str, list[str]] | None = None,
                   form: dict[str, str] | None = None) -> str:
    services = _services()
    principal = services.accounts.principal_for_user(g.user)
    info = review.version_review(services.db, principal, name, version)
    actions = (review.allowed_actions(principal, info.state)
               if services.approvals.may_decide(principal, name) else [])
    return render_template("approvals/review.html", r=info, actions=actions,
                           approver_team=services.approvals.approver_team(name),
                           errors=errors or {}, form=form or {})


@bp.route("/approvals/<path:name>/<version>", methods=["GET", "POST"])
@login_required
def approval_review(name: str, version: str) -> ResponseReturnValue:
    """The review page; its forms post back here with ``action`` and ``reason``."""
    if request.method == "GET":
        return _render_review(name, version)
    services = _services()
    action = request.form.get("action", "")
    reason = request.form.get("reason", "")
    try:
        services.approvals.decide(services.accounts.principal_for_user(g.user), name, version,
                                  action, reason, auth.origin(request.environ, services.settings))
    except ValidationFailed as exc:
        # field errors go next to the form they belong to; other errors (Forbidden,
        # Conflict, NotFound) go through the error table
        errors: dict[str, list[str]] = {}
        for d in exc.details:
            errors.setdefault(d.field, []).append(d.message)
        return _render_review(name, version, errors, {"action": action, "reason": reason}), 400
    done = {"approve": "Approved", "reject": "Rejected", "quarantine": "Quarantined"}[action]
    flash(f"{done} {name}@{version}.", "success")
    return redirect(url_for("panel.approval_review", name=name, version=version))


@bp.route("/my/versions")
@login_required
def my_versions() -> ResponseReturnValue:
    return render_template("approvals/my_versions.html",
                           versions=review.own_versions(_services().db, g.user.id))


@bp.route("/keys")
def keys() -> ResponseReturnValue:
    """The signing keys with their fingerprints; public, like the keys themselves."""
    return render_template("keys.html", keys=_services().keys.all())
