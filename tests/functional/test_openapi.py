"""``GET /api/openapi.json``: a valid OpenAPI 3.1 document that describes every ``/api/``
rule of the app (so a route cannot be added undescribed), whose module sub-routes are
the ones the dispatcher answers, and whose schemas the real answers satisfy."""
from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from gati_private_registry.testing import ModuleSpec
from gati_private_registry.web import api_modules, api_recommend
from gati_private_registry.web.openapi import MODULE_CHANGES

from .driver import Registry

METHODS = ("get", "put", "post", "delete", "patch")


def _doc(registry: Registry) -> dict[str, Any]:
    resp = registry.client.get("/api/openapi.json")  # no token: public
    assert resp.status_code == 200, resp.data
    assert resp.mimetype == "application/json"
    return json.loads(resp.data)


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), path, op) for path, item in doc["paths"].items()
            for m, op in item.items() if m in METHODS]


def _call(registry: Registry, method: str, url: str, token: str | None,
          body: Any = None) -> Any:
    return registry.client.open(url, method=method, headers=registry.headers(token),
                                data=json.dumps(body) if body is not None else None,
                                content_type="application/json" if body is not None else None)


def _check(doc: dict[str, Any], method: str, template: str, resp: Any) -> list[str]:
    """Problems of ``resp`` against the schema the document gives for its status
    (the default error response for a status it does not list)."""
    op = doc["paths"][template][method.lower()]
    answer = op["responses"].get(str(resp.status_code)) or op["responses"]["default"]
    if "$ref" in answer:
        answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    content = answer.get("content", {})
    if "application/json" not in content:
        assert not resp.data or resp.mimetype != "application/json", (method, template)
        return []
    assert resp.mimetype == "application/json", (method, template, resp.mimetype)
    schema = {**content["application/json"]["schema"], "components": doc["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [f"{method} {template} -> {resp.status_code}: {e.json_path}: {e.message}"
            for e in validator.iter_errors(json.loads(resp.data))]


def test_the_document_is_valid_openapi_and_public(registry: Registry) -> None:
    doc = _doc(registry)
    validate(doc)  # raises with what is wrong
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http", "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerToken"]["description"]}
    assert doc["security"] == [{"bearerToken": []}]
    assert doc["paths"]["/api/keys"]["get"]["security"] == []
    assert doc["paths"]["/api/openapi.json"]["get"]["security"] == []
    error = doc["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["required"] == ["code", "message", "details"]
    assert error["properties"]["details"]["items"]["required"] == ["field", "message"]
    for method, path, op in _operations(doc):
        assert op["summary"], f"{method} {path} has no summary (give its view a docstring)"
        assert op["responses"]["default"] == {"$ref": "#/components/responses/Error"}
    # built once per app: the second answer is the same bytes
    assert registry.client.get("/api/openapi.json").data == \
        registry.client.get("/api/openapi.json").data


def test_every_api_rule_of_the_app_is_described(registry: Registry) -> None:
    doc = _doc(registry)
    described = {(op["x-flask-rule"], method) for method, _, op in _operations(doc)}
    missing = [f"{m} {rule.rule}" for rule in registry.client.application.url_map.iter_rules()
               if rule.rule.startswith("/api/")
               for m in sorted(set(rule.methods or ()) - {"HEAD", "OPTIONS"})
               if (rule.rule, m) not in described]
    assert not missing, f"routes missing from /api/openapi.json: {missing}"
    # plain rules keep their own path; {rest} never shows
    assert "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver" in doc["paths"]
    assert "/api/mirror/prefetch/{job_id}" in doc["paths"]
    assert doc["paths"]["/api/mirror/prefetch/{job_id}"]["get"]["parameters"][0]["schema"] == \
        {"type": "integer"}
    assert not [p for p in doc["paths"] if "{rest}" in p or "<" in p]
    for contract in ("/api/search", "/api/modules/{name}", "/api/modules/{name}/versions",
                     "/api/modules/{name}/{version}/download", "/api/approvals", "/api/keys",
                     "/api/modules/{name}/{version}/approve",
                     "/api/modules/{name}/{version}/reject"):
        assert contract in doc["paths"], contract


def test_module_sub_routes_are_the_ones_the_dispatcher_answers(registry: Registry) -> None:
    doc = _doc(registry)
    gets = {p.removeprefix("/api/modules/{name}") for m, p, _ in _operations(doc)
            if m == "GET" and p.startswith("/api/modules/")}
    assert gets == {f"/{k}" if k else "" for k in [*api_modules._GETS, *api_recommend.GETS]} \
        | {"/{version}/download"}
    registry.publish(ModuleSpec("@corp/described", "1.0.0"))
    admin = registry.token("admin", "admin")
    review = _call(registry, "POST", "/api/modules/@corp/described/reviews", admin,
                   {"body": "first"}).json["id"]
    bodies = {"/rating": {"score": 4}, "/reviews": {"body": "again"},
              "/reviews/{id}": {"body": "edited"}, "/reviews/{id}/hide": {"reason": "spam"},
              "/trust": {"reason": "ours"}, "/{version}/approve": {"reason": "ok"},
              "/{version}/reject": {"reason": "no"}, "/{version}/quarantine": {"reason": "q"}}
    problems: list[str] = []
    # the deleting calls last, so the review and the version are there for the others
    for method, sub, _ in sorted(MODULE_CHANGES, key=lambda c: c[0] == "DELETE"):
        template = "/api/modules/{name}" + sub
        assert method.lower() in doc["paths"][template], template
        url = template.format(name="@corp/described", id=review, version="1.0.0")
        resp = _call(registry, method, url, admin, bodies.get(sub) if method != "DELETE" else None)
        if resp.status_code == 404 and "no such endpoint" in resp.json["error"]["message"]:
            problems.append(f"{method} {url}: described but not dispatched")
        problems += _check(doc, method, template, resp)
    assert not problems, "\n".join(problems)


@pytest.fixture
def published(registry: Registry) -> Registry:
    registry.publish(ModuleSpec("@gati-modules/postgres", "1.0.0", description="PostgreSQL",
                                keywords=["database", "sql"]))
    registry.publish(ModuleSpec("@gati-modules/postgres", "1.1.0", description="pooled",
                                keywords=["database"]))
    registry.publish(ModuleSpec("orders", "1.0.0", description="orders service",
                                dependencies={"@gati-modules/postgres": "^1.0.0"}))
    registry.services.indexer.run_once()
    return registry


def test_real_answers_satisfy_their_schemas(published: Registry) -> None:
    reg, doc = published, _doc(published)
    read, admin = reg.token("admin", "read"), reg.token("admin", "admin")
    calls: list[tuple[str, str, str, str | None, Any]] = [
        ("GET", "/api/search", "/api/search?q=postgres", read, None),
        ("GET", "/api/search", "/api/search?q=&sort=downloads&per_page=5", read, None),
        ("GET", "/api/search/suggest", "/api/search/suggest?q=pos", read, None),
        ("GET", "/api/categories", "/api/categories", read, None),
        ("GET", "/api/modules/{name}", "/api/modules/@gati-modules/postgres", read, None),
        ("GET", "/api/modules/{name}/versions", "/api/modules/@gati-modules/postgres/versions",
         read, None),
        ("GET", "/api/modules/{name}/stats", "/api/modules/orders/stats", read, None),
        ("GET", "/api/modules/{name}/reviews", "/api/modules/orders/reviews", read, None),
        ("GET", "/api/modules/{name}/together", "/api/modules/orders/together", read, None),
        ("GET", "/api/modules/{name}/similar", "/api/modules/orders/similar", read, None),
        ("POST", "/api/recommendations", "/api/recommendations", read,
         {"dependencies": {"orders": "^1.0.0"}}),
        ("GET", "/api/approvals", "/api/approvals?state=all", admin, None),
        ("GET", "/api/keys", "/api/keys", None, None),
        ("GET", "/api/audit", "/api/audit?limit=5", admin, None),
        ("GET", "/api/tokens", "/api/tokens", admin, None),
        ("POST", "/api/tokens", "/api/tokens", admin, {"scope": "read", "name": "ci"}),
        # errors: the common error schema, with field details
        ("GET", "/api/modules/{name}", "/api/modules/no-such-module", read, None),
        ("GET", "/api/search", "/api/search?sort=loudest", read, None),
        ("GET", "/api/approvals", "/api/approvals", None, None),
        ("POST", "/api/modules/{name}/{version}/reject",
         "/api/modules/orders/1.0.0/reject", admin, {"reason": 5}),
    ]
    problems: list[str] = []
    answers = {}
    for method, template, url, token, body in calls:
        resp = _call(reg, method, url, token, body)
        answers[url] = resp
        problems += _check(doc, method, template, resp)
    assert not problems, "\n".join(problems)
    # the answers were the real thing, not empty lists that satisfy anything
    assert answers["/api/search?q=postgres"].json["results"][0]["name"] == "@gati-modules/postgres"
    assert len(answers["/api/modules/@gati-modules/postgres/versions"].json["versions"]) == 2
    assert answers["/api/approvals?state=all"].json["items"]
    assert answers["/api/keys"].json["keys"]
    assert answers["/api/modules/no-such-module"].status_code == 404
    bad = answers["/api/search?sort=loudest"]
    assert bad.status_code == 400
    assert {d["field"] for d in bad.json["error"]["details"]} == {"sort"}
    assert answers["/api/approvals"].status_code == 401
    assert answers["/api/modules/orders/1.0.0/reject"].json["error"]["details"][0]["field"] == \
        "reason"
    # what Flask refuses by itself has the same shape under /api/
    for method, url, status in (("POST", "/api/keys", 405), ("GET", "/api/no-such-thing", 404)):
        resp = _call(reg, method, url, read)
        assert resp.status_code == status
        problems += _check(doc, "GET", "/api/keys", resp)  # the default: the Error schema
    assert not problems, "\n".join(problems)
    assert resp.json["error"]["code"] == "not_found"
    tarball = _call(reg, "GET", "/api/modules/orders/1.0.0/download", read)
    assert tarball.status_code == 200 and tarball.mimetype == "application/octet-stream"
    assert tarball.headers["X-Integrity"].startswith("sha512-")
    tarball.close()  # the blob file behind the streamed body
    assert "application/octet-stream" in \
        doc["paths"]["/api/modules/{name}/{version}/download"]["get"]["responses"]["200"]["content"]
