"""Recommendations under ``/api/``: ``GET /api/modules/<name>/together``,
``GET /api/modules/<name>/similar`` and ``POST /api/recommendations`` with a
``package.json`` (the body itself, or ``{"package.json": {...}}``)."""
from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, Response, request

from ..errors import FieldError, ValidationFailed
from ..services.recommend import Suggestion
from . import auth
from .api_search import hit_json
from .common import services as _services, json_response as _json

bp = Blueprint("api_recommend", __name__, url_prefix="/api")


def suggestion_json(s: Suggestion) -> dict[str, Any]:
    return {**hit_json(s.hit), "weight": round(s.weight, 4), "why": s.why}


def _together(name: str, _args: list[str]) -> Response:
    """Modules often installed together with this one, strongest first."""
    services = _services()
    who = auth.reader_of(request.environ, services, name)
    return _json({"name": name, "together": [suggestion_json(s) for s in
                                             services.recommend.together(who, name)]})


def _similar(name: str, _args: list[str]) -> Response:
    """Modules like this one (category, contracts, keywords)."""
    services = _services()
    who = auth.reader_of(request.environ, services, name)
    return _json({"name": name, "similar": [hit_json(h) for h in
                                            services.recommend.similar(who, name)]})


GETS: dict[str, Callable[[str, list[str]], Response]] = {"together": _together,
                                                          "similar": _similar}


@bp.route("/recommendations", methods=["POST"])
def for_project() -> Response:
    """Suggestions for the project whose ``package.json`` is the body."""
    services = _services()
    who = auth.reader(request.environ, services)
    body = request.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("package.json"), dict):
        body = body["package.json"]
    if not isinstance(body, dict):
        raise ValidationFailed("send a package.json", details=[
            FieldError("body", "must be a package.json object")])
    found = services.recommend.for_project(who, body,
                                           origin=auth.origin(request.environ, services.settings))
    return _json({"recommendations": [suggestion_json(s) for s in found]})
