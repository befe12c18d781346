"""Modules under ``/api/modules/<name>...``: the module document, versions, download,
stats, stars, ratings, reviews, trust marks, recommendations.

Names contain a slash when scoped, so one route per method takes the rest of the path
and :func:`split` tells the name from what follows (``@scope/name/...`` or ``name/...``).
Approval decisions (``POST .../<version>/approve|reject|quarantine``) stay in
:mod:`.api`; they are handed over from here.
"""
from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, Response, request

from ..domain import Principal
from ..errors import FieldError, NotFound, Unauthenticated, ValidationFailed
from ..services.modules import ModulePage, VersionRow
from ..services.packuments import iso
from . import api, auth
from .npm_read import iter_file
from .common import services as _services, json_response as _json

bp = Blueprint("api_modules", __name__, url_prefix="/api")

DECISIONS = ("approve", "reject", "quarantine")


def split(rest: str) -> tuple[str, list[str]]:
    """``@s/n/versions`` -> (``@s/n``, [``versions``]); ``n/1.0.0/download`` ->
    (``n``, [``1.0.0``, ``download``])."""
    parts = [p for p in rest.split("/") if p]
    if not parts:
        raise NotFound("no module named")
    take = 2 if parts[0].startswith("@") else 1
    if len(parts) < take:
        raise NotFound(f"no module {rest}")
    return "/".join(parts[:take]), parts[take:]


def _reader(name: str) -> Principal | None:
    return auth.reader_of(request.environ, _services(), name)


def _user() -> Principal:
    who = auth.principal(request.environ, _services())
    if who is None:
        raise Unauthenticated("send a token: Authorization: Bearer <token>")
    return who


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object",
                               details=[FieldError("body", "not a JSON object")])
    return body


def _origin() -> Any:
    return auth.origin(request.environ, _services().settings)


def version_json(v: VersionRow) -> dict[str, Any]:
    return {"version": v.version, "state": v.state, "published_at": iso(v.published_at),
            "deprecated": v.deprecated, "publisher": v.publisher, "dist_tags": v.tags,
            "signatures": v.signatures, "downloads": v.downloads}


def module_json(p: ModulePage, base: str) -> dict[str, Any]:
    return {"name": p.name, "version": p.version, "description": p.description,
            "keywords": p.keywords, "category": p.category, "contracts": p.contracts,
            "author": p.author, "license": p.license, "homepage": p.homepage,
            "repository": p.repository, "maintainers": p.maintainers,
            "dist_tags": p.dist_tags, "dependencies": p.dependencies,
            "dependents": p.dependents, "files": p.files,
            "api": [{"kind": a.kind, "name": a.name, "signature": a.signature, "file": a.file}
                    for a in p.api],
            "trust": p.trust, "readme_html": p.readme_html,
            "signatures": p.signatures, **p.metrics.as_dict(),
            "versions": [version_json(v) for v in p.versions],
            "tarball": f"{base}/api/modules/{p.name}/{p.version}/download"}


# -- GET -----------------------------------------------------------------------------------

def _get_module(name: str, _args: list[str]) -> Response:
    """The module document: metadata of the latest version the caller may see, readme,
    dependencies, dependents, API reference, trust, metrics and every version."""
    services = _services()
    page = services.modules.page(_reader(name), name)
    return _json(module_json(page, auth.base_url(request.environ, services.settings)))


def _get_versions(name: str, _args: list[str]) -> Response:
    """Every version the caller may see, newest first, with state, tags and signatures."""
    return _json({"name": name, "versions": [version_json(v) for v in
                                             _services().modules.versions(_reader(name), name)]})


def _download(name: str, version: str) -> Response:
    """The version's tarball (``X-Integrity`` carries its sha512 integrity); counts a download."""
    services = _services()
    _reader(name)
    ref = services.packages.tarball(name, f"{name.rpartition('/')[2]}-{version}.tgz")
    services.downloads.hit(name, ref.version)
    fh = services.blobs.open(ref.digest)
    resp = Response(iter_file(fh), mimetype="application/octet-stream")
    resp.headers["Content-Length"] = str(ref.size)
    resp.headers["Content-Disposition"] = \
        f'attachment; filename="{name.rpartition("/")[2]}-{version}.tgz"'
    resp.headers["X-Integrity"] = ref.integrity
    return resp


def _get_stats(name: str, _args: list[str]) -> Response:
    """Download statistics: totals, trending, daily downloads and downloads per version."""
    services = _services()
    _reader(name)
    services.modules.versions(None, name)  # 404 unless something is installable
    days = services.popularity.daily(name)
    return _json({"name": name, **services.popularity.metrics_for(name).as_dict(),
                  "daily": [{"day": d.day.isoformat(), "downloads": d.count} for d in days],
                  "by_version": services.popularity.by_version(name)})


def _get_reviews(name: str, _args: list[str]) -> Response:
    """Stars, the average rating and the reviews the caller may see."""
    services = _services()
    who = _reader(name)
    social = services.social.summary(who, name)
    return _json({"name": name, "stars": social.stars,
                  "rating": {"average": round(social.rating, 2), "count": social.ratings},
                  "reviews": [r.as_dict() for r in services.social.reviews(who, name)]})


_GETS: dict[str, Callable[[str, list[str]], Response]] = {
    "": _get_module, "versions": _get_versions, "stats": _get_stats, "reviews": _get_reviews,
}


@bp.route("/modules/<path:rest>", methods=["GET"])
def get(rest: str) -> Response:
    """The GET routes under ``/api/modules/<name>/``: the module, ``versions``,
    ``<version>/download``, ``stats``, ``reviews``, ``together`` and ``similar``."""
    name, args = split(rest)
    if len(args) == 2 and args[1] == "download":
        return _download(name, args[0])
    handler = _GETS.get("/".join(args))
    if handler is None:
        from . import api_recommend
        handler = api_recommend.GETS.get("/".join(args))
    if handler is None:
        raise NotFound(f"no such endpoint: GET /api/modules/{rest}")
    return handler(name, args)


# -- changes -------------------------------------------------------------------------------

def _review_id(raw: str) -> int:
    if not raw.isdigit():
        raise NotFound(f"no review {raw}")
    return int(raw)


@bp.route("/modules/<path:rest>", methods=["POST", "PUT", "PATCH", "DELETE"])
def change(rest: str) -> Response:
    """Stars (``PUT|DELETE .../star``), ratings (``PUT|DELETE .../rating`` with
    ``{"score": 1-5}``), reviews (``POST .../reviews`` with ``{"body": "..."}``,
    ``PATCH|DELETE .../reviews/<id>``, admins: ``POST .../reviews/<id>/hide`` with
    ``{"reason": "..."}`` and ``.../unhide``), trust marks (admins: ``PUT|DELETE
    .../trust``), and approval decisions (see :mod:`.api`)."""
    method = request.method
    parts = rest.split("/")
    if method == "POST" and len(parts) >= 3 and parts[-1] in DECISIONS:
        return api.decide(rest)
    name, args = split(rest)
    services, origin = _services(), _origin()
    key = (method, args[0] if args else "", len(args))
    if key in (("PUT", "star", 1), ("POST", "star", 1), ("DELETE", "star", 1)):
        services.social.star(_user(), name, method != "DELETE", origin)
        return _json({"name": name, "starred": method != "DELETE",
                      "stars": services.social.summary(None, name).stars})
    if key in (("PUT", "rating", 1), ("DELETE", "rating", 1)):
        score = _body().get("score") if method == "PUT" else None
        if method == "PUT" and score is None:
            raise ValidationFailed("invalid rating", details=[FieldError("score", "missing")])
        services.social.rate(_user(), name, score, origin)
        social = services.social.summary(None, name)
        return _json({"name": name, "score": score,
                      "rating": {"average": round(social.rating, 2), "count": social.ratings}})
    if key == ("POST", "reviews", 1):
        rid = services.social.add_review(_user(), name, _body().get("body"), origin)
        return _json({"name": name, "id": rid}, status=201)
    if key in (("PATCH", "reviews", 2), ("PUT", "reviews", 2)):
        services.social.edit_review(_user(), name, _review_id(args[1]), _body().get("body"),
                                    origin)
        return _json({"name": name, "id": int(args[1])})
    if key == ("DELETE", "reviews", 2):
        services.social.delete_review(_user(), name, _review_id(args[1]), origin)
        return _json({"name": name, "id": int(args[1]), "deleted": True})
    if method == "POST" and len(args) == 3 and args[0] == "reviews" and args[2] in ("hide", "unhide"):
        hide = args[2] == "hide"
        services.social.hide_review(_user(), name, _review_id(args[1]), hide,
                                    _body().get("reason", ""), origin)
        return _json({"name": name, "id": int(args[1]), "hidden": hide})
    if key in (("PUT", "trust", 1), ("DELETE", "trust", 1)):
        services.modules.mark_trusted(_user(), name, method == "PUT",
                                      _body().get("reason", "") if method == "PUT" else "",
                                      origin)
        return _json({"name": name, "trusted_mark": method == "PUT"})
    raise NotFound(f"no such endpoint: {method} /api/modules/{rest}")
