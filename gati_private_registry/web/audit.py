"""The audit log over HTTP: ``GET /api/audit`` (bearer token; admins and auditors) and
the panel's browsable, exportable page under ``/admin/audit`` (CSV and JSON lines).
Reading only: nothing here, or anywhere, changes or deletes an event."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterator

from flask import Blueprint, Response, g, render_template, request
from flask.typing import ResponseReturnValue

from ..domain import Principal
from ..errors import FieldError, Unauthenticated, ValidationFailed
from ..services.audit import AuditFilter, AuditRecord, parse_filter
from . import auth
from .panel import login_required
from .common import services as _services

api_bp = Blueprint("audit_api", __name__, url_prefix="/api/audit")
panel_bp = Blueprint("audit_panel", __name__, url_prefix="/admin/audit")

PAGE = 50
CSV_COLUMNS = ("id", "at", "actor", "action", "subject", "ip", "user_agent", "details")


def _filter() -> AuditFilter:
    a = request.args
    return parse_filter(a.get("since", ""), a.get("until", ""), a.get("actor", ""),
                        a.get("action", ""), a.get("subject", ""))


def _paging(default_limit: int) -> tuple[int, int]:
    try:
        offset = max(0, int(request.args.get("offset", 0)))
        limit = max(1, min(1000, int(request.args.get("limit", default_limit))))
    except ValueError:
        raise ValidationFailed("offset and limit must be numbers",
                               details=[FieldError("offset", "not a number")]) from None
    return offset, limit


@api_bp.route("")
def api_query() -> Response:
    """The audit log (admins and auditors), newest first.
    ``?since=&until=&actor=&action=&subject=&offset=&limit=``;
    ``action`` ending in ``*`` matches a prefix (``login.*``)."""
    who = auth.principal(request.environ, _services())
    if who is None:
        raise Unauthenticated("send a token: Authorization: Bearer <token>")
    f = _filter()
    offset, limit = _paging(100)
    items, total = _services().audit.query(who, f, offset, limit)
    resp = Response(json.dumps({"items": [i.as_dict() for i in items], "total": total,
                                "offset": offset, "limit": limit}),
                    mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- panel -----------------------------------------------------------------------------


def _principal() -> Principal:
    return _services().accounts.principal_for_user(g.user)


@panel_bp.route("")
@login_required
def index() -> ResponseReturnValue:
    f = _filter()
    offset, limit = _paging(PAGE)
    items, total = _services().audit.query(_principal(), f, offset, limit)
    args = {k: v for k, v in request.args.items() if k not in ("offset", "limit") and v}
    return render_template("admin/audit.html", items=items, total=total, offset=offset,
                           limit=limit, args=args)


def _csv(records: Iterator[AuditRecord]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in records:
        d = r.as_dict()
        d["details"] = json.dumps(d["details"], sort_keys=True)
        # a spreadsheet runs cells starting with = + - @ as formulas: neutralise them
        writer.writerow([_cell(str(d[c])) for c in CSV_COLUMNS])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _jsonl(records: Iterator[AuditRecord]) -> Iterator[str]:
    for r in records:
        yield json.dumps(r.as_dict(), sort_keys=True) + "\n"


@panel_bp.route("/export.<fmt>")
@login_required
def export(fmt: str) -> ResponseReturnValue:
    """The whole filtered log, oldest first, as ``csv`` or ``jsonl``, streamed."""
    if fmt not in ("csv", "jsonl"):
        raise ValidationFailed("export as csv or jsonl", details=[FieldError("format", fmt)])
    services = _services()
    records = services.audit.export(_principal(), _filter(), fmt,
                                    auth.origin(request.environ, services.settings))
    body: Any = _csv(records) if fmt == "csv" else _jsonl(records)
    mime = "text/csv" if fmt == "csv" else "application/x-ndjson"
    resp = Response(body, mimetype=mime)
    resp.headers["Content-Disposition"] = f'attachment; filename="gati-audit.{fmt}"'
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
