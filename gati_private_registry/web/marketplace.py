"""The marketplace in the panel: the home page (search with type-ahead, categories,
trending, most downloaded, recently updated, recommended), search results, module pages,
and the forms that star, rate, review and moderate (all with CSRF)."""
from __future__ import annotations

import json
from typing import Any

from flask import (Blueprint, Response, flash, g, redirect, render_template, request,
                   url_for)
from flask.typing import ResponseReturnValue

from ..domain import Principal
from ..errors import FieldError, NotFound, ValidationFailed
from ..services.popularity import DailyDownloads
from ..services.search import SORTS, SearchQuery
from ..services.search_docs import Trust
from . import auth
from .common import services as _services

bp = Blueprint("marketplace", __name__)


def _viewer() -> Principal | None:
    user = getattr(g, "user", None)
    return _services().accounts.principal_for_user(user) if user is not None else None


def _must_sign_in() -> ResponseReturnValue | None:
    """Reads follow the registry's rule: signed in, unless ``anonymous_read``."""
    if g.user is None and not _services().settings.anonymous_read:
        return redirect(url_for("panel.login", next=request.full_path.rstrip("?")))
    return None


def _int_arg(name: str, default: int) -> int:
    try:
        return int(request.args.get(name, default))
    except ValueError:
        return default


def chart(days: list[DailyDownloads], width: int = 720, height: int = 120) -> dict[str, Any]:
    """Bars for an inline SVG of downloads per day (no script, no library)."""
    top = max((d.count for d in days), default=0) or 1
    step = width / max(len(days), 1)
    bars = [{"x": round(i * step, 2), "w": round(max(step - 1, 1), 2),
             "h": round(d.count / top * (height - 20), 2), "day": d.day.isoformat(),
             "count": d.count} for i, d in enumerate(days)]
    return {"bars": bars, "width": width, "height": height, "top": top,
            "total": sum(d.count for d in days)}


@bp.route("/marketplace")
def home() -> ResponseReturnValue:
    """The marketplace home, or search results when there is a query or a filter."""
    if (gate := _must_sign_in()) is not None:
        return gate
    services, who = _services(), _viewer()
    q = SearchQuery(text=request.args.get("q", "")[:500],
                    category=request.args.get("category", ""),
                    contract=request.args.get("contract", ""),
                    trust=request.args.get("trust", "") if request.args.get("trust", "") in
                    {t.value for t in Trust} else "",
                    sort=request.args.get("sort", "relevance") if request.args.get("sort") in SORTS
                    else "relevance",
                    page=max(_int_arg("page", 1), 1), per_page=20)
    searching = any((q.text, q.category, q.contract, q.trust, request.args.get("sort")))
    results = services.search.search(who, q)
    lists: dict[str, Any] = {}
    if not searching:
        lists = {
            "trending": services.search.search(who, SearchQuery(sort="trending", per_page=6),
                                               facets=False).hits,
            "downloads": services.search.search(who, SearchQuery(sort="downloads", per_page=6),
                                                facets=False).hits,
            "recent": services.search.search(who, SearchQuery(sort="recent", per_page=6),
                                             facets=False).hits,
            "recommended": _recommended(who),
        }
    return render_template("marketplace/home.html", results=results, q=q, searching=searching,
                           lists=lists, sorts=SORTS, trusts=[t.value for t in Trust])


def _recommended(who: Principal | None) -> list[Any]:
    """For a signed-in person: what goes with the modules they starred."""
    if who is None:
        return []
    services = _services()
    starred = services.social.starred_by(who)[:20]
    if not starred:
        return []
    manifest = {"dependencies": {n: "*" for n in starred}}
    return services.recommend.for_project(who, manifest, limit=6, remember=False)


@bp.route("/marketplace/suggest")
def suggest() -> Response:
    """Type-ahead for the search box (the panel session, not a token)."""
    if g.user is None and not _services().settings.anonymous_read:
        return Response(json.dumps({"suggestions": []}), status=401, mimetype="application/json")
    hits = _services().search.suggest(_viewer(), request.args.get("q", "")[:200])
    body = json.dumps({"suggestions": [{"name": h.name, "description": h.description,
                                        "url": url_for("marketplace.module", rest=h.name)}
                                       for h in hits]})
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.route("/marketplace/for-project", methods=["GET", "POST"])
def for_project() -> ResponseReturnValue:
    """Upload a package.json: modules that projects like it use."""
    if (gate := _must_sign_in()) is not None:
        return gate
    found, error = None, None
    if request.method == "POST":
        upload = request.files.get("package_json")
        raw = upload.read(1024 * 1024) if upload else request.form.get("text", "").encode()
        try:
            manifest = json.loads(raw or b"null")
            found = _services().recommend.for_project(
                _viewer(), manifest, origin=auth.origin(request.environ, _services().settings))
        except (ValueError, ValidationFailed) as exc:
            error = "That is not a package.json: " + (str(exc) if isinstance(exc, ValidationFailed)
                                                      else "not valid JSON")
    return render_template("marketplace/for_project.html", found=found, error=error), \
        400 if error else 200


def _split(rest: str) -> tuple[str, list[str]]:
    parts = [p for p in rest.split("/") if p]
    take = 2 if parts and parts[0].startswith("@") else 1
    if len(parts) < take:
        raise NotFound("no such module")
    return "/".join(parts[:take]), parts[take:]


@bp.route("/modules/<path:rest>", methods=["GET", "POST"])
def module(rest: str) -> ResponseReturnValue:
    """``/modules/<name>``: the module page. Its forms post to ``/modules/<name>/<action>``."""
    name, args = _split(rest)
    if request.method == "POST":
        return _act(name, args)
    if args:
        raise NotFound(f"no page {rest}")
    if (gate := _must_sign_in()) is not None:
        return gate
    services, who = _services(), _viewer()
    page = services.modules.page(who, name)
    base = auth.base_url(request.environ, services.settings)
    return render_template(
        "marketplace/module.html", m=page, registry_url=f"{base}/npm/",
        social=services.social.summary(who, name), reviews=services.social.reviews(who, name),
        chart=chart(services.popularity.daily(name)),
        together=services.recommend.together(who, name),
        similar=services.recommend.similar(who, name),
        is_admin=who is not None and who.is_admin, me=g.user.username if g.user else None)


def _act(name: str, args: list[str]) -> ResponseReturnValue:
    if g.user is None:
        return redirect(url_for("panel.login", next=url_for("marketplace.module", rest=name)))
    services, who = _services(), _viewer()
    origin = auth.origin(request.environ, services.settings)
    action = "/".join(args)
    form = request.form
    try:
        if action == "star":
            services.social.star(who, name, form.get("starred", "1") == "1", origin)
        elif action == "rate":
            raw = form.get("score", "")
            score = int(raw) if raw.isdigit() else raw
            services.social.rate(who, name, score if raw else None, origin)
            flash("Thanks for rating." if raw else "Rating removed.", "success")
        elif action == "review":
            rid = form.get("review_id", "")
            if rid.isdigit():
                services.social.edit_review(who, name, int(rid), form.get("body", ""), origin)
                flash("Review updated.", "success")
            else:
                services.social.add_review(who, name, form.get("body", ""), origin)
                flash("Review published.", "success")
        elif len(args) == 3 and args[0] == "reviews" and args[1].isdigit() and \
                args[2] in ("delete", "hide", "unhide"):
            rid_ = int(args[1])
            if args[2] == "delete":
                services.social.delete_review(who, name, rid_, origin)
                flash("Review deleted.", "success")
            else:
                services.social.hide_review(who, name, rid_, args[2] == "hide",
                                            form.get("reason", ""), origin)
                flash("Review hidden." if args[2] == "hide" else "Review shown again.", "success")
        elif action == "trust":
            assert who is not None
            services.modules.mark_trusted(who, name, form.get("trusted", "1") == "1",
                                          form.get("reason", ""), origin)
            flash("Trust mark saved; the badge follows within a second.", "success")
        else:
            raise NotFound(f"no action {action}")
    except ValidationFailed as exc:
        for d in exc.details or [FieldError("", exc.message)]:
            flash(f"{d.field}: {d.message}" if d.field else d.message, "error")
    return redirect(url_for("marketplace.module", rest=name) + "#" + (args[0] if args else ""))
