"""Operations endpoints: liveness and readiness."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

bp = Blueprint("ops", __name__)


@bp.route("/healthz")
def healthz() -> ResponseReturnValue:
    """The process answers. Cheap: load balancers call it often."""
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz() -> ResponseReturnValue:
    """The database and the blob store can be reached."""
    status = current_app.extensions["gati"].health()
    ok = all(v == "ok" for v in status.values())
    return jsonify(status="ok" if ok else "unavailable", checks=status), 200 if ok else 503
