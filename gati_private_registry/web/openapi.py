"""``GET /api/openapi.json``: the OpenAPI 3.1 document of the JSON API, built from the
app's own ``url_map`` (so a route cannot exist undescribed) and the view docstrings,
with the bodies from :mod:`.openapi_schemas`. Built on the first request, once per app.

Rules that dispatch several sub-routes by method and path shape (``/api/modules/<path:
rest>``) are described sub-route by sub-route, not as an opaque ``{rest}``. Every
operation names the Flask rule and endpoint it belongs to (``x-flask-rule``,
``x-flask-endpoint``), which is how the tests check that every rule is described.
"""
from __future__ import annotations

import inspect
import json
import re
from importlib import metadata
from typing import Any, Callable

from flask import Blueprint, Flask, Response, current_app

from . import api, api_modules, api_recommend
from .openapi_schemas import OPERATIONS, SCHEMAS, ref

bp = Blueprint("openapi", __name__, url_prefix="/api")

#: where the built document is kept, per app
_CACHE_KEY = "gati.openapi"
#: the methods Flask adds to every rule by itself
_IMPLICIT = frozenset({"HEAD", "OPTIONS"})
#: operations anyone may call, token or not
PUBLIC = frozenset({"/api/keys", "/api/openapi.json"})

NAME_DOC = ("The module name. A scoped name keeps its slash (``@scope/name``); "
            "``%2f`` works too.")

#: (method, sub-path under ``/api/modules/{name}``, summary) of the changes that
#: :func:`.api_modules.change` dispatches. ``test_openapi`` calls each of them.
MODULE_CHANGES: tuple[tuple[str, str, str], ...] = (
    ("PUT", "/star", "Star the module."),
    ("POST", "/star", "Star the module (the same as PUT)."),
    ("DELETE", "/star", "Take the caller's star back."),
    ("PUT", "/rating", "Rate the module: ``{\"score\": 1-5}``."),
    ("DELETE", "/rating", "Take the caller's rating back."),
    ("POST", "/reviews", "Write a review: ``{\"body\": \"...\"}``; 201 with its id."),
    ("PATCH", "/reviews/{id}", "Edit the caller's review: ``{\"body\": \"...\"}``."),
    ("PUT", "/reviews/{id}", "Edit the caller's review (the same as PATCH)."),
    ("DELETE", "/reviews/{id}", "Delete a review."),
    ("POST", "/reviews/{id}/hide", "Hide a review (admins): ``{\"reason\": \"...\"}``."),
    ("POST", "/reviews/{id}/unhide", "Show a hidden review again (admins)."),
    ("PUT", "/trust", "Mark the module trusted (admins): ``{\"reason\": \"...\"}``."),
    ("DELETE", "/trust", "Take the trusted mark away (admins)."),
    ("POST", "/{version}/approve",
     "Approve a held version (approvers): ``{\"reason\": \"...\"}``; it is signed and served."),
    ("POST", "/{version}/reject",
     "Reject a held version (approvers): ``{\"reason\": \"...\"}``, shown to the publisher."),
    ("POST", "/{version}/quarantine",
     "Quarantine a version (approvers): kept, never served; ``{\"reason\": \"...\"}``."),
)


@bp.route("/openapi.json")
def document() -> Response:
    """This document: OpenAPI 3.1 for every route under ``/api/``. Public: no token."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    body = app.extensions.get(_CACHE_KEY)
    if body is None:
        # two first requests at once both build it; the result is the same
        body = app.extensions[_CACHE_KEY] = json.dumps(build(app)).encode()
    return Response(body, mimetype="application/json",
                    headers={"Cache-Control": "public, max-age=300"})


def build(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every ``/api/`` rule in ``app``'s url_map."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api/"):
            continue
        methods = sorted(set(rule.methods or ()) - _IMPLICIT)
        for method, path, summary, doc in _routes(app, rule.rule, rule.endpoint, methods):
            op = _operation(method, path, summary, doc, _converters(rule.rule))
            op["operationId"] = _operation_id(rule.endpoint, method, path, len(methods))
            op["x-flask-rule"], op["x-flask-endpoint"] = rule.rule, rule.endpoint
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gati Private Registry API", "version": _version(),
                 "description": _INFO},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "responses": {"Error": {
                "description": "an error: ``code`` is stable, ``details`` name the fields",
                "content": {"application/json": {"schema": ref("Error")}}}},
            "securitySchemes": {"bearerToken": {
                "type": "http", "scheme": "bearer",
                "description": "``Authorization: Bearer TOKEN`` (gati-registry token create, "
                               "npm token create, the panel, or POST /api/tokens)"}},
        },
        "security": [{"bearerToken": []}],
    }


_INFO = ("The Gati REST API: JSON, bearer tokens (``Authorization: Bearer TOKEN``). Reads "
         "need a token unless the registry sets ``anonymous_read = true``. Every error is "
         "``{\"error\": {\"code\", \"message\", \"details\": [{\"field\", \"message\"}]}}``.")


def _version() -> str:
    try:
        return metadata.version("gati-private-registry")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _routes(app: Flask, rule: str, endpoint: str,
            methods: list[str]) -> list[tuple[str, str, str, str]]:
    """(method, OpenAPI path, summary, description) of each route behind ``rule``."""
    if endpoint == "api_modules.get":
        gets: dict[str, Callable[..., Any]] = {**api_modules._GETS, **api_recommend.GETS}
        out = [("GET", "/api/modules/{name}" + (f"/{sub}" if sub else ""), _summary(fn.__doc__),
                _doc(fn.__doc__)) for sub, fn in gets.items()]
        doc = api_modules._download.__doc__
        out.append(("GET", "/api/modules/{name}/{version}/download", _summary(doc), _doc(doc)))
        return out
    if endpoint == "api_modules.change":
        decide = _doc(api.decide.__doc__)
        return [(m, "/api/modules/{name}" + sub, summary,
                 decide if sub.startswith("/{version}/") else summary)
                for m, sub, summary in MODULE_CHANGES]
    doc = app.view_functions[endpoint].__doc__
    path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)
    return [(m, path, _summary(doc), _doc(doc)) for m in methods]


def _doc(doc: str | None) -> str:
    return inspect.cleandoc(doc or "")


def _summary(doc: str | None) -> str:
    """The first sentence of a docstring, on one line."""
    first = " ".join(_doc(doc).split("\n\n")[0].split())
    cut = first.find(". ")
    return first[:cut + 1] if cut > 0 else first


def _operation_id(endpoint: str, method: str, path: str, methods: int) -> str:
    if endpoint.startswith("api_modules."):
        tail = re.sub(r"[^a-z0-9]+", "_", path.removeprefix("/api/modules/{name}").lower())
        return f"modules.{method.lower()}{tail.rstrip('_')}"
    return endpoint if methods == 1 else f"{endpoint}.{method.lower()}"


def _converters(rule: str) -> dict[str, str]:
    """``/a/<int:job_id>/<name>`` -> ``{"job_id": "int", "name": "default"}``."""
    return {name: kind or "default"
            for kind, name in re.findall(r"<(?:([^<>:(]+)(?:\([^)]*\))?:)?([^<>]+)>", rule)}


def _parameter(name: str, converter: str | None) -> dict[str, Any]:
    whole = converter == "int" or (converter is None and name == "id")
    schema: dict[str, Any] = {"type": "integer"} if whole else {"type": "string"}
    param: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema}
    if name == "name" and converter is None:
        param["description"] = NAME_DOC
    return param


def _operation(method: str, path: str, summary: str, doc: str,
               converters: dict[str, str]) -> dict[str, Any]:
    spec = OPERATIONS.get((method, path), {})
    params = [_parameter(n, converters.get(n) if not path.startswith("/api/modules/") else None)
              for n in re.findall(r"\{([^}]+)\}", path)]
    params += [{"name": n, "in": "query", "required": False, "schema": s}
               for n, s in spec.get("query", {}).items()]
    op: dict[str, Any] = {"summary": summary, "tags": [path.split("/")[2]]}
    if doc and doc != summary:
        op["description"] = doc
    if params:
        op["parameters"] = params
    if spec.get("body"):
        op["requestBody"] = {"required": spec["body"] not in ("Decision", "Reason"),
                             "content": {"application/json": {"schema": ref(spec["body"])}}}
    status = spec.get("status", "200")
    if spec.get("binary"):
        ok: dict[str, Any] = {"description": "the tarball", "content": {
            "application/octet-stream": {"schema": {"type": "string",
                                                    "contentMediaType": "application/gzip"}}},
            "headers": {"X-Integrity": {"description": "the tarball's sha512 integrity",
                                        "schema": {"type": "string"}}}}
    elif "response" in spec and spec["response"] is None:
        ok = {"description": "done, no body"}
    else:
        ok = {"description": "OK", "content": {"application/json": {
            "schema": ref(spec.get("response") or "Object")}}}
    op["responses"] = {status: ok, "default": {"$ref": "#/components/responses/Error"}}
    if path in PUBLIC:
        op["security"] = []
    return op
