"""The npm registry protocol under ``/npm/``: the Flask blueprint for everything but
packument and tarball reads (those are answered by :mod:`.npm_read` before Flask).
"""
from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone
from typing import Any, Callable

from flask import Blueprint, Response, request

from ..domain import Principal, Scope, VersionState
from ..errors import FieldError, NotFound, Unauthenticated, ValidationFailed
from ..services.packuments import iso
from ..services.search import MAX_PER_PAGE, SearchQuery, npm_final, npm_score_detail
from . import auth
from .npm_paths import NpmRoute, parse_path
from .npm_read import ABBREVIATED, NpmReadPath, iter_file
from .common import services as _services, json_response as _json

__all__ = ["ABBREVIATED", "NpmReadPath", "bp"]


bp = Blueprint("npm", __name__)


def _body() -> Any:
    raw = request.get_data(cache=False)
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        # npm gzips audit bodies; Flask does not inflate request bodies
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(
                raw, _services().settings.limits.max_request_size)
        except zlib.error:
            raise ValidationFailed("body is not valid gzip",
                                   details=[FieldError("body", "bad gzip")]) from None
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ValidationFailed("body is not valid JSON",
                               details=[FieldError("body", "invalid JSON")]) from None


def _who(required: bool = True) -> Principal | None:
    who = auth.principal(request.environ, _services())
    if who is None and required:
        raise Unauthenticated("log in first: npm login")
    return who


def _origin() -> Any:
    return auth.origin(request.environ, _services().settings)


def _base() -> str:
    return auth.base_url(request.environ, _services().settings)


@bp.route("/npm/", methods=["GET"])
def root() -> Response:
    return _json({"db_name": "gati-registry"})


@bp.route("/npm/<path:rest>", methods=["GET", "HEAD", "PUT", "POST", "DELETE"])
def dispatch(rest: str) -> Response:
    route = parse_path(rest)
    if route is None:
        raise NotFound(f"no such endpoint: {request.method} /npm/{rest}")
    handler = _HANDLERS.get((route.kind, request.method if request.method != "HEAD" else "GET"))
    if handler is None:
        raise NotFound(f"{request.method} is not supported on /npm/{rest}")
    return handler(route)


def h_ping(route: NpmRoute) -> Response:
    return _json({})


def h_whoami(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    return _json({"username": who.username})


def h_version(route: NpmRoute) -> Response:
    services = _services()
    auth.reader_of(request.environ, services, route.name)
    doc = services.packuments.get_document(route.name, _base())
    if doc is None:
        raise NotFound(f"{route.name} is not in this registry")
    version = doc["dist-tags"].get(route.arg, route.arg)
    if version not in doc["versions"]:
        raise NotFound(f"{route.name}@{route.arg} is not in this registry")
    return _json(doc["versions"][version])


def h_publish_or_update(route: NpmRoute) -> Response:
    services = _services()
    who = _who()
    assert who is not None
    body = _body()
    if isinstance(body, dict) and "_attachments" in body:
        result = services.publish.publish(who, route.name, body, _origin())
        headers = {}
        if result.state is not VersionState.APPROVED:
            # npm prints this header as "npm notice ...": the publisher learns at once
            # that the version is not installable yet, and why
            notice = f"{route.name}@{result.version} is {result.state.value}: {result.reason}"
            headers["npm-notice"] = " ".join(notice.split()).encode("ascii", "replace").decode()[:500]
        return _json({"ok": True, "id": route.name, "rev": result.rev, "success": True,
                      "state": result.state.value}, status=201, headers=headers)
    done = services.packages.update_from_document(who, route.name, body, _origin(), removal=False)
    return _json({"ok": True, "id": route.name, "message": done})


def h_rev_put(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    done = _services().packages.update_from_document(who, route.name, _body(), _origin(),
                                                     removal=True, rev=route.arg)
    return _json({"ok": True, "id": route.name, "message": done})


def h_rev_delete(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    _services().packages.unpublish_package(who, route.name, _origin())
    return _json({"ok": True, "id": route.name})


def h_tarball_delete(route: NpmRoute) -> Response:
    # The version itself was unpublished by the preceding PUT; the blob stays for the
    # audit trail and is no longer served. Only owners get a success here.
    who = _who()
    assert who is not None
    _services().packages.check_owner(who, route.name)
    return _json({"ok": True})


def h_search(route: NpmRoute) -> Response:
    """npm's search API over the index, in npm's format (``npm search``, pnpm, yarn)."""
    services = _services()
    who = auth.reader(request.environ, services)
    text = request.args.get("text", "")
    weights: dict[str, float] = {}
    try:
        size = max(1, min(MAX_PER_PAGE, int(request.args.get("size", 20))))
        offset = max(0, int(request.args.get("from", 0)))
        for key, default in (("quality", 0.65), ("popularity", 0.98), ("maintenance", 0.5)):
            weights[key] = max(0.0, float(request.args.get(key, default)))
    except ValueError:
        raise ValidationFailed("size, from and the weights must be numbers",
                               details=[FieldError("size", "not a number")]) from None
    # npm pages by offset; the index by page: ask for the pages that cover the window
    first = offset // size
    page = services.search.search(who, SearchQuery(text=text, page=first + 1, per_page=size),
                                  facets=False)
    hits = page.hits
    if offset % size:
        more = services.search.search(who, SearchQuery(text=text, page=first + 2, per_page=size),
                                      facets=False).hits
        hits = (hits + more)[offset % size: offset % size + size]
    top_weekly = max((h.metrics.downloads_week for h in hits), default=0)
    dependents = services.search.dependents_counts(h.name for h in hits)
    base = _base()
    objects = []
    for h in hits:
        detail = npm_score_detail(h, top_weekly)
        objects.append({
            "package": {
                "name": h.name, "scope": h.name[1:].partition("/")[0] if h.name.startswith("@")
                else "unscoped", "version": h.version, "description": h.description,
                "keywords": h.keywords, "date": h.modified,
                "links": {"npm": f"{base}/modules/{h.name}"},
                "author": {"name": h.author} if h.author else None,
                "publisher": {"username": h.publisher, "email": ""},
                "maintainers": [{"username": m, "email": ""} for m in h.maintainers],
            },
            "downloads": {"weekly": h.metrics.downloads_week, "monthly": h.metrics.downloads_month},
            "dependents": dependents.get(h.name, 0),
            "updated": h.modified,
            "score": {"final": npm_final(detail, weights), "detail": detail},
            "searchScore": h.score,
            "flags": {"deprecated": 1} if h.deprecated else {},
            "gati": {"category": h.category, "contracts": h.contracts, "trust": h.trust,
                     "state": h.state},
        })
    return _json({"objects": objects, "total": page.total,
                  "time": datetime.now(timezone.utc).strftime("%a %b %d %Y %H:%M:%S GMT+0000")})


def h_web_login(route: NpmRoute) -> Response:
    body = _body() if request.content_length else None
    create = bool(isinstance(body, dict) and body.get("create"))
    sid = _services().logins.start_web_login(create=create)
    base = _base()
    return _json({"loginUrl": f"{base}/login/npm/{sid}", "doneUrl": f"{base}/npm/-/v1/done/{sid}"})


def h_web_done(route: NpmRoute) -> Response:
    token = _services().logins.poll_web_login(route.arg, _origin())
    if token is None:
        return _json({}, status=202, headers={"Retry-After": "1"})
    return _json({"token": token})


def h_couch_login(route: NpmRoute) -> Response:
    body = _body()
    if not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object", details=[FieldError("body", "not an object")])
    name = body.get("name") or route.name
    if name != route.name:
        raise ValidationFailed("the name in the body and the URL differ",
                               details=[FieldError("name", "mismatch")])
    password = body.get("password")
    if not isinstance(password, str):
        creds = auth.basic_credentials(request.environ)
        password = creds[1] if creds and creds[0] == name else ""
    token = _services().logins.couch_login(name, password, str(body.get("email") or ""),
                                             _origin())
    return _json({"ok": True, "id": f"org.couchdb.user:{name}", "rev": "1-0", "token": token},
                 status=201)


def h_couch_get(route: NpmRoute) -> Response:
    raise NotFound(f"no user {route.name}")


def h_logout(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    _services().tokens.revoke_token(who, route.arg, _origin(), require_scope=False)
    return _json({"ok": True})


def _token_json(info: Any, secret: str | None = None) -> dict[str, Any]:
    return {"key": info.key, "token": secret or f"{info.prefix}…", "name": info.name,
            "created": iso(info.created_at), "updated": iso(info.created_at),
            "readonly": info.scope is Scope.READ, "scope": info.scope.value,
            "cidr_whitelist": info.cidr,
            "expires": iso(info.expires_at) if info.expires_at else None,
            "last_used": iso(info.last_used_at) if info.last_used_at else None}


def h_tokens_list(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    infos = _services().tokens.list_tokens(who)
    return _json({"objects": [_token_json(i) for i in infos], "total": len(infos), "urls": {}})


def h_tokens_create(route: NpmRoute) -> Response:
    services = _services()
    who = _who()
    assert who is not None
    body = _body()
    if not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object", details=[FieldError("body", "not an object")])
    password = body.get("password")
    if not isinstance(password, str):
        raise ValidationFailed("your password is required", details=[FieldError("password", "required")])
    services.accounts.check_password(who.username, password, _origin())
    expires = body.get("expires")
    if expires is not None and not isinstance(expires, int):
        raise ValidationFailed("expires must be a number of days",
                               details=[FieldError("expires", "not a whole number")])
    cidr = body.get("cidr_whitelist") or None
    new = services.tokens.create_token(
        who, who.username, Scope.READ if body.get("readonly") else Scope.PUBLISH,
        name=str(body.get("name") or body.get("description") or "npm token create"),
        expires_days=expires, cidr=cidr, origin=_origin())
    return _json(_token_json(new.info, new.secret), status=201)


def h_token_delete(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    _services().tokens.revoke_token(who, route.arg, _origin())
    return _json({"ok": True})


def h_dist_tags(route: NpmRoute) -> Response:
    services = _services()
    auth.reader_of(request.environ, services, route.name)
    return _json(services.packages.dist_tags(route.name))


def h_dist_tag_put(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    _services().packages.set_tag(who, route.name, route.arg, _body(), _origin())
    return _json({"ok": True})


def h_dist_tag_get(route: NpmRoute) -> Response:
    tags = h_dist_tags(NpmRoute("dist_tags", name=route.name)).get_json()
    if route.arg not in tags:
        raise NotFound(f"{route.name} has no tag {route.arg}")
    return _json(tags[route.arg])


def h_dist_tag_delete(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    _services().packages.remove_tag(who, route.name, route.arg, _origin())
    return _json({"ok": True})


def h_audit(route: NpmRoute) -> Response:
    # No advisory database yet: nothing found. Read the body so a bad one is refused.
    _body()
    return _json({})


def _stage_json(item: Any) -> dict[str, Any]:
    # the fields npm's stage list/view print (npm shows any extra keys too)
    return {"id": item.stage_id, "packageName": item.name, "version": item.version,
            "tag": item.tag, "createdAt": iso(item.published_at), "actor": item.publisher,
            "actorType": "user", "shasum": item.shasum, "state": item.state,
            "reason": item.reason,
            "votes": [{"plugin": v.plugin, "decision": v.decision.value,
                       "reasons": list(v.reasons)} for v in item.votes]}


def h_stage_publish(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    result = _services().publish.publish(who, route.name, _body(), _origin(), staged=True)
    return _json({"stageId": result.stage_id, "state": result.state.value,
                  "message": f"{route.name}@{result.version} is {result.state.value}: {result.reason}"},
                 status=201)


def h_stage_list(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    try:
        page = max(0, int(request.args.get("page", 0)))
        per_page = max(1, min(100, int(request.args.get("perPage", 100))))
    except ValueError:
        raise ValidationFailed("page and perPage must be numbers",
                               details=[FieldError("page", "not a number")]) from None
    approvals, package = _services().approvals, request.args.get("package") or None
    chunk = approvals.queue(who, "pending", package=package, offset=page * per_page,
                            limit=per_page)
    # clients page until they hold `total` items or get a short page
    return _json({"items": [_stage_json(i) for i in chunk],
                  "total": approvals.count(who, "pending", package=package)})


def h_stage_view(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    return _json(_stage_json(_services().approvals.staged(who, route.arg)))


def h_stage_tarball(route: NpmRoute) -> Response:
    services = _services()
    who = _who()
    assert who is not None
    item = services.approvals.staged(who, route.arg)
    fh = services.blobs.open(item.blob_digest)
    resp = Response(iter_file(fh), mimetype="application/octet-stream")
    resp.headers["Content-Length"] = str(item.size)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def h_stage_approve(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    state = _services().approvals.decide_staged(who, route.arg, "approve", _origin())
    return _json({"message": f"approved: the version is {state.value}"}, status=201)


def h_stage_reject(route: NpmRoute) -> Response:
    who = _who()
    assert who is not None
    _services().approvals.decide_staged(who, route.arg, "reject", _origin())
    resp = Response(status=204)
    del resp.headers["Content-Type"]  # no body, so no type (Flask would say text/html)
    return resp


def h_keys(route: NpmRoute) -> Response:
    # Public keys are public: served without a token, like registry.npmjs.org does.
    # A revoked key stays listed, expiring where it began, so a stale copy of one of
    # its signatures fails loudly instead of passing.
    keys = []
    for k in _services().keys.all():
        if k.algorithm != "ecdsa-p256":
            continue
        expires = k.valid_from if k.revoked_at is not None else k.expires_at
        keys.append({"expires": iso(expires) if expires else None, "keyid": k.keyid,
                     "keytype": "ecdsa-sha2-nistp256", "scheme": "ecdsa-sha2-nistp256",
                     "key": k.public_key})
    # mirrored versions keep their upstream's signatures: its keys are served beside ours
    keys += _services().mirror.upstream_keys()
    return _json({"keys": keys})


def h_attestations(route: NpmRoute) -> Response:
    services = _services()
    # the argument is name@version (the name may start with its own @scope)
    auth.reader_of(request.environ, services, route.arg.rpartition("@")[0] or route.arg)
    return Response(services.mirror.attestations(route.arg), mimetype="application/json")


def h_visibility(route: NpmRoute) -> Response:
    return _json({"public": False})


_HANDLERS: dict[tuple[str, str], Callable[[NpmRoute], Response]] = {
    ("ping", "GET"): h_ping,
    ("whoami", "GET"): h_whoami,
    ("search", "GET"): h_search,
    ("web_login", "POST"): h_web_login,
    ("web_done", "GET"): h_web_done,
    ("couch_user", "PUT"): h_couch_login,
    ("couch_user", "GET"): h_couch_get,
    ("logout", "DELETE"): h_logout,
    ("tokens", "GET"): h_tokens_list,
    ("tokens", "POST"): h_tokens_create,
    ("token", "DELETE"): h_token_delete,
    ("dist_tags", "GET"): h_dist_tags,
    ("dist_tag", "GET"): h_dist_tag_get,
    ("dist_tag", "PUT"): h_dist_tag_put,
    ("dist_tag", "DELETE"): h_dist_tag_delete,
    ("audit", "POST"): h_audit,
    ("visibility", "GET"): h_visibility,
    ("keys", "GET"): h_keys,
    ("attestations", "GET"): h_attestations,
    ("stage_publish", "POST"): h_stage_publish,
    ("stage_list", "GET"): h_stage_list,
    ("stage_item", "GET"): h_stage_view,
    ("stage_item", "DELETE"): h_stage_reject,
    ("stage_tarball", "GET"): h_stage_tarball,
    ("stage_approve", "POST"): h_stage_approve,
    ("version", "GET"): h_version,
    ("packument", "PUT"): h_publish_or_update,
    ("rev", "PUT"): h_rev_put,
    ("rev", "DELETE"): h_rev_delete,
    ("tarball_rev", "DELETE"): h_tarball_delete,
}
