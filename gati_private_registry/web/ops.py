"""Operations endpoints: liveness, readiness and Prometheus metrics."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from flask.typing import ResponseReturnValue

from .. import observability
from ..services import ready
from ..services.upstream.status import metrics_text

bp = Blueprint("ops", __name__)


@bp.route("/healthz")
def healthz() -> ResponseReturnValue:
    """The process answers. Cheap: load balancers call it often."""
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz() -> ResponseReturnValue:
    """The database and the blob store can be reached and the schema is current or
    ahead (a replica of a newer release waiting for the migration is not ready; one of
    the older release on the migrated schema stays ready during a rolling upgrade)."""
    status = current_app.extensions["gati"].health()
    ok = ready(status)
    return jsonify(status="ok" if ok else "unavailable", checks=status), 200 if ok else 503


@bp.route("/metrics")
def prometheus() -> ResponseReturnValue:
    """Prometheus text format: every worker's counters and the database gauges. Like
    ``/healthz``, not authenticated: keep it on the internal network (see
    docs/operations.md)."""
    services = current_app.extensions["gati"]
    body, content_type = observability.render(services)
    # the mirror's counters live in a per-machine shared file (services/upstream/status.py)
    body += metrics_text(services.mirror).encode()
    return Response(body, content_type=content_type)
