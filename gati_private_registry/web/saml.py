"""SAML endpoints: ``/saml/metadata`` (this SP, a stable URL for the IdP's admins),
``/saml/login`` (SP-initiated), ``/saml/acs`` (the IdP posts here, SP- or IdP-initiated),
``/saml/slo`` (single logout). Only when ``[saml] enabled``."""
from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from ..errors import Forbidden, NotFound, Unauthenticated
from ..services.saml import SamlServiceProvider
from . import auth, sessions
from .panel import local_target
from .common import services as _services

bp = Blueprint("saml", __name__, url_prefix="/saml")


def _sp() -> SamlServiceProvider:
    sp = _services().saml
    if sp is None:
        raise NotFound("SAML sign-on is not enabled on this registry")
    return sp


def _base() -> str:
    return auth.base_url(request.environ, _services().settings)


@bp.route("/metadata")
def metadata() -> Response:
    return Response(_sp().metadata(_base()), mimetype="application/samlmetadata+xml")


@bp.route("/login")
def login() -> ResponseReturnValue:
    """Send the browser to the IdP; ``next`` (a local path) is where it comes back to."""
    target = local_target(request.args.get("next", ""))
    _reqid, location = _sp().login_redirect(_base(), target)
    return redirect(location)


@bp.route("/acs", methods=["POST"])
def acs() -> ResponseReturnValue:
    services = _services()
    origin = auth.origin(request.environ, services.settings)
    try:
        result = _sp().consume(_base(), request.form.get("SAMLResponse", ""))
        user = services.signon.provision(result.identity, origin)
    except (Unauthenticated, Forbidden) as exc:
        if isinstance(exc, Unauthenticated):  # provision records its own refusals
            services.signon.failed("(saml)", origin, exc.message)
        return render_template("auth/login.html", error=exc.message,
                               saml=True, next=""), 401 if isinstance(exc, Unauthenticated) else 403
    if user.disabled:
        services.signon.failed(user.username, origin, "disabled account")
        return render_template("auth/login.html", error="This account is disabled.",
                               saml=True, next=""), 403
    # the RelayState we sent (or the IdP's, IdP-initiated): a local path, checked below
    target = request.form.get("RelayState", "")
    sessions.sign_in(user, origin, "saml")
    session["saml_nameid"] = result.name_id
    session["saml_index"] = result.session_index
    return redirect(local_target(target))


@bp.route("/slo", methods=["GET", "POST"])
def slo() -> ResponseReturnValue:
    """The IdP's logout request (end our session, answer it) or its logout response."""
    values = request.values
    location = _sp().logout_service(_base(), values.get("SAMLRequest"),
                                    values.get("SAMLResponse"), values.get("RelayState", ""))
    sessions.sign_out()
    if location:
        return redirect(location)
    flash("Signed out.")
    return redirect(url_for("panel.login"))
