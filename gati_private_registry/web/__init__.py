"""HTTP: blueprints, and the one place where domain errors become responses."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..errors import RegistryError, TooLarge
from ..services import Services
from . import (api, api_modules, api_plugins, api_recommend, api_search, audit,
               marketplace, mirror, npm, openapi, ops, panel, panel_plugins, saml, sessions,
               tokens, users, webhooks)
from . import mirror_prefetch  # noqa: F401  (adds the prefetch routes to mirror's blueprints)
from .errors import api_body, auth_headers, npm_body, status_for
from .observe import Observe, known_routes

log = logging.getLogger(__name__)


def _front_door(path: str) -> str:
    if path.startswith("/npm/"):
        return "npm"
    if path.startswith("/api/"):
        return "api"
    return "panel"


def render_error(exc: RegistryError) -> Response:
    """The only mapping from a domain error to an HTTP response, one renderer per door."""
    status = status_for(exc)
    door = _front_door(request.path)
    if door == "npm":
        resp = Response(npm_body(exc), status=status, mimetype="application/json")
    elif door == "api":
        resp = Response(api_body(exc), status=status, mimetype="application/json")
    else:
        resp = Response(render_template("error.html", error=exc, status=status), status=status)
    for key, value in auth_headers(exc):
        resp.headers[key] = value
    resp.headers["Cache-Control"] = "no-store"
    return resp


def create_wsgi_app(services: Services, secret_key: str) -> Flask:
    """The Flask app for ``services``, wrapped by the lean npm read path."""
    app = Flask("gati_private_registry", static_folder="static", template_folder="templates")
    app.config.update(
        SECRET_KEY=secret_key,
        MAX_CONTENT_LENGTH=services.settings.limits.max_request_size,
        WTF_CSRF_TIME_LIMIT=None,
        JSON_SORT_KEYS=False,
    )
    app.extensions["gati"] = services
    sessions.init_app(app, services)
    csrf = CSRFProtect(app)
    csrf.exempt(npm.bp)  # token-authenticated APIs for CLIs and scripts, no cookies involved
    csrf.exempt(api.bp)
    csrf.exempt(api_plugins.bp)
    csrf.exempt(webhooks.api_bp)
    csrf.exempt(mirror.api_bp)
    csrf.exempt(audit.api_bp)
    csrf.exempt(tokens.api_bp)
    csrf.exempt(users.api_bp)
    # the IdP's signed response is the proof here; a CSRF token cannot cross sites
    csrf.exempt(saml.acs)
    csrf.exempt(saml.slo)
    csrf.exempt(api_search.bp)
    csrf.exempt(api_modules.bp)
    csrf.exempt(api_recommend.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(npm.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(panel.bp)
    app.register_blueprint(api_plugins.bp)
    app.register_blueprint(panel_plugins.bp)
    app.register_blueprint(webhooks.api_bp)
    app.register_blueprint(webhooks.panel_bp)
    app.register_blueprint(mirror.api_bp)
    app.register_blueprint(mirror.panel_bp)
    app.register_blueprint(audit.api_bp)
    app.register_blueprint(audit.panel_bp)
    app.register_blueprint(tokens.api_bp)
    app.register_blueprint(tokens.panel_bp)
    app.register_blueprint(users.api_bp)
    app.register_blueprint(saml.bp)
    app.register_blueprint(api_search.bp)
    app.register_blueprint(api_modules.bp)
    app.register_blueprint(api_recommend.bp)
    app.register_blueprint(marketplace.bp)
    app.register_blueprint(openapi.bp)

    app.register_error_handler(RegistryError, render_error)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc: Any) -> Response:
        return render_error(TooLarge("request body is larger than the configured limit"))

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> Any:
        return render_template("error.html", error=exc.description, status=400), 400

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        if _front_door(request.path) == "panel":
            return render_template("error.html", error=exc.description, status=exc.code), exc.code
        import json
        if _front_door(request.path) == "api":
            # the API's one error shape (as /api/openapi.json says), also for what Flask
            # refuses by itself: an unknown path, a method the route does not take
            body: dict[str, Any] = {"error": {"code": exc.name.lower().replace(" ", "_"),
                                      "message": exc.description or exc.name,
                                      "details": []}}
        else:
            body = {"error": exc.description, "reason": exc.name}
        return Response(json.dumps(body), status=exc.code or 500, mimetype="application/json")

    app.wsgi_app = npm.NpmReadPath(services, app.wsgi_app)  # type: ignore[method-assign]
    # outermost, so the fast path is counted and logged too
    app.wsgi_app = Observe(  # type: ignore[method-assign]
        app.wsgi_app, services.settings.access_log,
        known_routes(rule.rule for rule in app.url_map.iter_rules()))
    return app
