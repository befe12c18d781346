"""The marketplace's search under ``/api/``: ``/api/search``, type-ahead suggestions and
categories. Reads: a token unless ``anonymous_read``; results are what the caller may
see (approved, plus their own pending versions)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from ..errors import FieldError, ValidationFailed
from ..services.search import SearchHit, SearchQuery
from . import auth
from .common import services as _services, json_response as _json

bp = Blueprint("api_search", __name__, url_prefix="/api")


def hit_json(h: SearchHit) -> dict[str, Any]:
    return {"name": h.name, "version": h.version, "description": h.description,
            "keywords": h.keywords, "category": h.category, "contracts": h.contracts,
            "author": h.author, "maintainers": h.maintainers, "publisher": h.publisher,
            "trust": h.trust, "state": h.state, "deprecated": h.deprecated,
            "modified": h.modified, "score": round(h.score, 4), **h.metrics.as_dict()}


def _int(name: str, default: int, errors: list[FieldError]) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        errors.append(FieldError(name, "must be a whole number"))
        return default


def parse_query() -> SearchQuery:
    """The search parameters of this request. Raises :class:`ValidationFailed`."""
    errors: list[FieldError] = []
    q = SearchQuery(text=request.args.get("q", ""), category=request.args.get("category", ""),
                    contract=request.args.get("contract", ""),
                    trust=request.args.get("trust", ""),
                    sort=request.args.get("sort", "relevance") or "relevance",
                    page=_int("page", 1, errors), per_page=_int("per_page", 20, errors))
    if errors:
        raise ValidationFailed("invalid search", details=errors)
    return q


@bp.route("/search")
def search() -> Response:
    """Search the modules the caller may see.
    ``GET /api/search?q=&category=&contract=&trust=&sort=&page=&per_page=``"""
    services = _services()
    who = auth.reader(request.environ, services)
    result = services.search.search(who, parse_query())
    q = result.query
    return _json({"query": q.text, "category": q.category or None,
                  "contract": q.contract or None, "trust": q.trust or None, "sort": q.sort,
                  "page": q.page, "per_page": q.per_page, "total": result.total,
                  "results": [hit_json(h) for h in result.hits],
                  "facets": {"category": result.facets}})


@bp.route("/search/suggest")
def suggest() -> Response:
    """Type-ahead: ``GET /api/search/suggest?q=pos`` -> a few names."""
    services = _services()
    who = auth.reader(request.environ, services)
    text = request.args.get("q", "")[:200]
    return _json({"query": text, "suggestions": [
        {"name": h.name, "description": h.description, "category": h.category,
         "trust": h.trust, "version": h.version}
        for h in services.search.suggest(who, text)]})


@bp.route("/categories")
def categories() -> Response:
    """Every category with how many packages the caller may find in it."""
    services = _services()
    who = auth.reader(request.environ, services)
    return _json({"categories": services.search.categories(who)})
