"""The web panel: sign-in, and the page that confirms an ``npm login`` from the browser."""
from __future__ import annotations

from flask import (Blueprint, current_app, flash, g, redirect, render_template, request,
                   session, url_for)
from flask.typing import ResponseReturnValue

from ..errors import NotFound, Unauthenticated
from ..services import Services
from . import auth

bp = Blueprint("panel", __name__)


def _services() -> Services:
    return current_app.extensions["gati"]  # type: ignore[no-any-return]


@bp.before_app_request
def load_user() -> None:
    g.user = None
    uid = session.get("uid")
    if uid is None:
        return
    try:
        user = _services().accounts.get_user(session.get("username", ""))
    except NotFound:
        session.clear()
        return
    if user.id != uid or user.disabled:
        session.clear()
        return
    g.user = user


def _sign_in() -> tuple[bool, str | None]:
    """Check the posted credentials and start a session; returns (ok, error)."""
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    try:
        user = _services().accounts.check_password(
            username, password, auth.origin(request.environ, _services().settings))
    except Unauthenticated:
        return False, "Incorrect username or password."
    session.clear()
    session["uid"] = user.id
    session["username"] = user.username
    g.user = user
    return True, None


@bp.route("/")
def home() -> ResponseReturnValue:
    base = auth.base_url(request.environ, _services().settings)
    return render_template("home.html", registry_url=f"{base}/npm/")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    error = None
    if request.method == "POST":
        ok, error = _sign_in()
        if ok:
            target = request.args.get("next", "")
            # only local paths: no open redirect
            if not target.startswith("/") or target.startswith("//"):
                target = url_for("panel.home")
            return redirect(target)
    return render_template("auth/login.html", error=error,
                           username=request.form.get("username")), 401 if error else 200


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    session.clear()
    flash("Signed out.")
    return redirect(url_for("panel.login"))


@bp.route("/login/npm/<sid>", methods=["GET", "POST"])
def npm_login(sid: str) -> ResponseReturnValue:
    """Where ``npm login`` sends the browser. Signed-in people confirm with one click;
    others sign in on this page, which confirms at the same time."""
    services = _services()
    services.accounts.check_web_login(sid)
    origin = auth.origin(request.environ, services.settings)
    if request.method == "POST":
        if g.user is None or "username" in request.form:
            ok, error = _sign_in()
            if not ok:
                return render_template("auth/login.html", error=error,
                                       heading="Sign in to finish npm login",
                                       button="Sign in and confirm"), 401
        services.accounts.confirm_web_login(sid, g.user, origin)
        return render_template("auth/npm_confirm.html", done=True)
    if g.user is None:
        return render_template("auth/login.html", heading="Sign in to finish npm login",
                               intro="A command-line client is waiting for you to sign in.",
                               button="Sign in and confirm")
    return render_template("auth/npm_confirm.html", done=False)
