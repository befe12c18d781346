"""The schemas of ``/api/openapi.json``: JSON Schema 2020-12 (what OpenAPI 3.1 uses) for
the request and response bodies, and per operation which of them it takes and gives.

Plain data, read by :mod:`.openapi` when it builds the document. The contract objects
(search, module, versions, approvals, keys, errors) list every property as required and
allow no others, so a response that gains or loses a field fails
``tests/functional/test_openapi.py`` until this file says so too.
"""
from __future__ import annotations

from typing import Any

STATES = ["pending", "approved", "rejected", "quarantined"]
SCOPES = ["read", "publish", "approve", "admin"]
SORTS = ["relevance", "downloads", "stars", "rating", "trending", "recent"]

S: dict[str, Any] = {"type": "string"}
S_NULL: dict[str, Any] = {"type": ["string", "null"]}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
WHEN: dict[str, Any] = {"type": "string", "format": "date-time"}
WHEN_NULL: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}


def strings() -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def closed(props: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object with exactly ``props``, all required but ``optional``."""
    return {"type": "object", "properties": props,
            "required": [k for k in props if k not in optional], "additionalProperties": False}


def open_(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object with at least ``required`` of ``props``; other keys may come."""
    return {"type": "object", "properties": props, "required": list(required)}


METRICS: dict[str, Any] = {
    "downloads": closed({"week": INT, "month": INT, "total": INT}),
    "trending": NUM, "stars": INT,
    "rating": ref("Rating"),
}

HIT: dict[str, Any] = {
    "name": S, "version": S, "description": S, "keywords": strings(), "category": S,
    "contracts": strings(), "author": S, "maintainers": strings(), "publisher": S,
    "trust": S, "state": {"enum": STATES}, "deprecated": BOOL, "modified": S,
    "score": NUM, **METRICS,
}

TOKEN: dict[str, Any] = {
    "key": S, "prefix": S, "name": S, "scope": {"enum": SCOPES}, "packages": strings(),
    "cidr": strings(), "created": WHEN, "expires": WHEN_NULL, "last_used": WHEN_NULL,
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": closed({"error": closed({
        "code": {"type": "string", "description": "stable, machine-readable"},
        "message": S,
        "details": array(closed({"field": S, "message": S})),
    })}),
    "Rating": closed({"average": NUM, "count": INT}),
    "SearchHit": closed(HIT),
    "SearchResults": closed({
        "query": S, "category": S_NULL, "contract": S_NULL, "trust": S_NULL,
        "sort": {"enum": SORTS}, "page": INT, "per_page": INT, "total": INT,
        "results": array(ref("SearchHit")),
        "facets": closed({"category": {"type": "object", "additionalProperties": INT}}),
    }),
    "Suggestions": closed({"query": S, "suggestions": array(closed({
        "name": S, "description": S, "category": S, "trust": S, "version": S}))}),
    "Categories": closed({"categories": {"type": "object", "additionalProperties": INT}}),
    "Version": closed({
        "version": S, "state": {"enum": STATES}, "published_at": WHEN, "deprecated": S_NULL,
        "publisher": S, "dist_tags": strings(), "signatures": strings(), "downloads": INT,
    }),
    "Versions": closed({"name": S, "versions": array(ref("Version"))}),
    "Module": closed({
        "name": S, "version": S, "description": S, "keywords": strings(), "category": S,
        "contracts": strings(), "author": S, "license": S, "homepage": S, "repository": S,
        "maintainers": strings(),
        "dist_tags": {"type": "object", "additionalProperties": S},
        "dependencies": {"type": "object", "additionalProperties": S},
        "dependents": strings(),
        "files": array({"type": "array", "description": "a file in the tarball"}),
        "api": array(closed({"kind": S, "name": S, "signature": S, "file": S})),
        "trust": S, "readme_html": S,
        "signatures": array(closed({"keyid": S, "algorithm": S})),
        **METRICS,
        "versions": array(ref("Version")),
        "tarball": {"type": "string", "format": "uri"},
    }),
    "Stats": open_({"name": S, **METRICS, "daily": array(closed({"day": S, "downloads": INT})),
                    "by_version": {"type": "object"}}, ("name", "daily")),
    "Reviews": open_({"name": S, "stars": INT, "rating": ref("Rating"),
                      "reviews": array({"type": "object"})}, ("name", "reviews")),
    "Together": open_({"name": S, "together": array(ref("Suggestion"))}, ("name", "together")),
    "Similar": open_({"name": S, "similar": array(ref("SearchHit"))}, ("name", "similar")),
    "Suggestion": closed({**HIT, "weight": NUM, "why": S}),
    "Recommendations": closed({"recommendations": array(ref("Suggestion"))}),
    "ApprovalItem": closed({
        "name": S, "version": S, "state": {"enum": STATES}, "reason": S, "publisher": S,
        "published_at": WHEN,
        "votes": array(closed({"plugin": S, "decision": S, "reasons": strings()})),
    }),
    "Approvals": closed({"items": array(ref("ApprovalItem")), "total": INT, "offset": INT,
                         "limit": INT}),
    "Decision": closed({"reason": {"type": "string", "description": "shown to the publisher"}},
                       optional=("reason",)),
    "Decided": closed({"name": S, "version": S, "state": {"enum": STATES}}),
    "Keys": closed({"keys": array(closed({
        "keyid": S, "algorithm": S, "key": {"type": "string", "description": "the public key"},
        "fingerprint": S, "pair": S, "active": BOOL, "valid_from": WHEN,
        "valid_until": WHEN_NULL, "revoked": BOOL, "revoked_at": WHEN_NULL,
        "revoked_reason": S_NULL,
    }))}),
    "Token": closed(TOKEN),
    "Tokens": closed({"tokens": array(ref("Token"))}),
    "NewToken": closed({"token": {"type": "string", "description": "the secret, shown once"},
                        **TOKEN}),
    "TokenRequest": closed({
        "scope": {"enum": SCOPES}, "packages": strings(), "cidr": strings(),
        "expires_days": {"type": ["integer", "null"]}, "name": S,
    }, optional=("scope", "packages", "cidr", "expires_days", "name")),
    "Audit": open_({"items": array(open_({
        "id": INT, "at": WHEN, "actor": S_NULL, "action": S, "subject": S_NULL,
        "ip": S_NULL, "user_agent": S_NULL, "details": {}}, ("id", "at", "action"))),
        "total": INT, "offset": INT, "limit": INT}, ("items", "total")),
    "Ok": open_({"ok": BOOL}, ("ok",)),
    "Object": {"type": "object", "description": "see the operation's description"},
    "Score": closed({"score": {"type": "integer", "minimum": 1, "maximum": 5}}),
    "ReviewBody": closed({"body": S}),
    "Reason": closed({"reason": S}, optional=("reason",)),
    "PluginPatch": closed({"enabled": BOOL, "config": {"type": "object"}},
                          optional=("enabled", "config")),
    "PackageJson": {"type": "object", "description":
                    "a package.json, or {\"package.json\": {...}}"},
    "MirrorRule": closed({"spec": S, "action": {"enum": ["approve", "block"]}, "reason": S},
                         optional=("reason",)),
    "Prefetch": open_({"packages": strings(), "lockfile": {"type": "object"},
                       "closure": BOOL}),
    "Webhook": open_({"url": {"type": "string", "format": "uri"}, "events": strings(),
                      "pattern": S, "description": S, "active": BOOL, "secret": S}),
}

#: (METHOD, OpenAPI path) -> what the operation takes and gives: ``query`` parameters
#: (name -> schema), ``body`` (a schema name), ``status`` and ``response`` (a schema
#: name; ``None`` for no body), ``binary`` for a file.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/api/search"): {"query": {
        "q": S, "category": S, "contract": S, "trust": S,
        "sort": {"enum": SORTS, "default": "relevance"},
        "page": {"type": "integer", "minimum": 1, "default": 1},
        "per_page": {"type": "integer", "minimum": 1, "default": 20}},
        "response": "SearchResults"},
    ("GET", "/api/search/suggest"): {"query": {"q": S}, "response": "Suggestions"},
    ("GET", "/api/categories"): {"response": "Categories"},
    ("POST", "/api/recommendations"): {"body": "PackageJson", "response": "Recommendations"},
    ("GET", "/api/modules/{name}"): {"response": "Module"},
    ("GET", "/api/modules/{name}/versions"): {"response": "Versions"},
    ("GET", "/api/modules/{name}/{version}/download"): {"binary": True},
    ("GET", "/api/modules/{name}/stats"): {"response": "Stats"},
    ("GET", "/api/modules/{name}/reviews"): {"response": "Reviews"},
    ("GET", "/api/modules/{name}/together"): {"response": "Together"},
    ("GET", "/api/modules/{name}/similar"): {"response": "Similar"},
    ("POST", "/api/modules/{name}/{version}/approve"): {"body": "Decision",
                                                         "response": "Decided"},
    ("POST", "/api/modules/{name}/{version}/reject"): {"body": "Decision",
                                                        "response": "Decided"},
    ("POST", "/api/modules/{name}/{version}/quarantine"): {"body": "Decision",
                                                            "response": "Decided"},
    ("PUT", "/api/modules/{name}/rating"): {"body": "Score"},
    ("POST", "/api/modules/{name}/reviews"): {"body": "ReviewBody", "status": "201"},
    ("PATCH", "/api/modules/{name}/reviews/{id}"): {"body": "ReviewBody"},
    ("PUT", "/api/modules/{name}/reviews/{id}"): {"body": "ReviewBody"},
    ("POST", "/api/modules/{name}/reviews/{id}/hide"): {"body": "Reason"},
    ("PUT", "/api/modules/{name}/trust"): {"body": "Reason"},
    ("GET", "/api/approvals"): {"query": {
        "state": {"type": "string", "enum": [*STATES, "all"], "default": "pending"},
        "offset": {"type": "integer", "minimum": 0, "default": 0},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
        "response": "Approvals"},
    ("GET", "/api/keys"): {"response": "Keys"},
    ("GET", "/api/audit"): {"query": {
        "since": WHEN, "until": WHEN, "actor": S,
        "action": {"type": "string", "description": "a trailing * matches a prefix"},
        "subject": S, "offset": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer", "minimum": 1}}, "response": "Audit"},
    ("GET", "/api/tokens"): {"response": "Tokens"},
    ("POST", "/api/tokens"): {"body": "TokenRequest", "status": "201", "response": "NewToken"},
    ("DELETE", "/api/tokens/{key}"): {"response": "Ok"},
    ("PATCH", "/api/plugins/{name}"): {"body": "PluginPatch"},
    ("POST", "/api/mirror/rules"): {"body": "MirrorRule", "status": "201"},
    ("DELETE", "/api/mirror/rules/{rule_id}"): {"response": "Ok"},
    ("POST", "/api/mirror/prefetch"): {"body": "Prefetch", "status": "201"},
    ("POST", "/api/webhooks"): {"body": "Webhook", "status": "201"},
    ("PATCH", "/api/webhooks/{webhook_id}"): {"body": "Webhook"},
    ("DELETE", "/api/webhooks/{webhook_id}"): {"status": "204", "response": None},
    ("GET", "/api/webhooks/{webhook_id}/deliveries"): {"query": {
        "page": {"type": "integer", "minimum": 1, "default": 1},
        "per_page": {"type": "integer", "minimum": 1, "default": 50}}},
    ("POST", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): {
        "status": "202"},
}
