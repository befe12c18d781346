"""Request ids, metrics and readiness (both backends)."""
from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any, Iterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import create_engine

from gati_private_registry.observability import REQUEST_ID, JsonFormatter
from gati_private_registry.services import build_services
from gati_private_registry.settings import Settings
from gati_private_registry.storage import migrate
from gati_private_registry.testing import ModuleSpec
from gati_private_registry.web.observe import Observe, classify, known_routes

from .driver import Registry


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_classify_keeps_labels_few() -> None:
    assert classify("/npm/@scope/pkg") == ("npm", "packument")
    assert classify("/npm/pkg/-/pkg-1.0.0.tgz") == ("npm", "tarball")
    assert classify("/npm/-/v1/search") == ("npm", "search")
    assert classify("/api/modules/a/1.0.0/approve") == ("api", "modules")
    assert classify("/approvals/x/1.0.0") == ("panel", "approvals")
    assert classify("/metrics") == ("ops", "metrics")
    assert classify("/") == ("panel", "home")


def test_made_up_paths_are_labelled_unknown(registry: Registry, app: Any) -> None:
    known = known_routes(rule.rule for rule in app.url_map.iter_rules())
    assert classify("/api/modules/a/1.0.0/approve", known) == ("api", "modules")
    assert classify("/api/no-such-api-x1", known) == ("api", "unknown")
    assert classify("/approvals/x/1.0.0", known) == ("panel", "approvals")
    assert classify("/no-such-page-x1/deeper", known) == ("panel", "unknown")
    assert classify("/", known) == ("panel", "home")
    assert classify("/npm/-/no/such", known) == ("npm", "unknown")
    # through the app: a request for a made-up path adds no label set of its own, and an
    # odd method is counted as OTHER
    assert registry.client.get("/api/no-such-api-x2").status_code == 404
    assert registry.client.open("/healthz", method="PROPFIND").status_code == 405
    text = registry.client.get("/metrics").text
    assert "no-such-api-x2" not in text and "PROPFIND" not in text
    assert sample(text, "gati_http_requests_total", door="api", route="unknown", status="404") >= 1
    assert sample(text, "gati_http_requests_total", door="ops", route="healthz", method="OTHER") >= 1


def test_a_body_that_starts_late_is_counted_with_its_status(
        caplog: pytest.LogCaptureFixture) -> None:
    """A generator body calls start_response only when the server iterates it (the
    mirror's first fetch of a tarball): counted and logged on close, with its status."""
    def late(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        yield b"tar"
        yield b"ball"

    labels = {"door": "npm", "route": "tarball", "method": "GET", "status": "200"}
    before = REGISTRY.get_sample_value("gati_http_requests_total", labels) or 0.0
    sent: list[Any] = []
    observe = Observe(late, access=True)
    with caplog.at_level(logging.INFO, logger="gati.access"):
        body = observe({"REQUEST_METHOD": "GET", "PATH_INFO": "/npm/late/-/late-1.0.0.tgz"},
                       lambda status, headers, exc_info=None: sent.append((status, headers)))
        assert not caplog.records  # nothing is known before the body starts
        assert b"".join(body) == b"tarball"
        body.close()  # type: ignore[attr-defined]
    assert sent[0][0] == "200 OK" and dict(sent[0][1])["X-Request-Id"]
    assert REGISTRY.get_sample_value("gati_http_requests_total", labels) == before + 1
    (line,) = [r for r in caplog.records if r.name == "gati.access"]
    assert line.status == 200 and line.route == "tarball"  # type: ignore[attr-defined]


def test_serve_leaves_access_lines_to_the_registry(settings: Settings) -> None:
    """With JSON logs gunicorn gets a logging config, and would then build an access
    line of its own for every request (which nothing prints): serve's logger does not."""
    from gati_private_registry.cli.serve import _Gunicorn

    cfg = _Gunicorn(settings).cfg
    assert cfg.logconfig_dict
    # making gunicorn's logger applies that config to this process: put ours back after
    root, error = logging.getLogger(), logging.getLogger("gunicorn.error")
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in (root, error)]
    try:
        log = cfg.logger_class(cfg)
        # gunicorn's own Logger would read the response's status here and fail on None
        assert log.access(None, None, {}, timedelta(0)) is None
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


def test_json_log_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("gati.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.status = 200
    token = REQUEST_ID.set("abc123")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["msg"] == "GET /x" and line["request_id"] == "abc123"
    assert line["status"] == 200 and line["level"] == "info" and line["ts"].endswith("Z")


def test_metrics_count_requests_publishes_and_decisions(registry: Registry) -> None:
    before = registry.client.get("/metrics").text
    registry.publish(ModuleSpec("counted", "1.0.0"))
    for _ in range(3):
        assert registry.packument("counted").status_code == 200
    assert registry.packument("nope").status_code == 404
    resp = registry.client.get("/metrics")
    assert resp.status_code == 200 and resp.content_type.startswith("text/plain")
    text = resp.text
    delta = (sample(text, "gati_http_requests_total", door="npm", route="packument", status="200")
             - sample(before, "gati_http_requests_total", door="npm", route="packument", status="200"))
    assert delta == 3
    assert sample(text, "gati_http_requests_total", door="npm", route="packument", status="404") >= 1
    assert sample(text, "gati_http_request_duration_seconds_count", door="npm", route="packument") >= 4
    assert sample(text, "gati_publishes_total", state="approved") >= 1
    assert sample(text, "gati_versions", state="approved") == 1
    assert sample(text, "gati_blob_store_blobs") == 1 and sample(text, "gati_blob_store_bytes") > 0
    assert re.search(r"^gati_changes_feed_seq \d", text, re.M)


def test_request_ids_are_made_or_kept(registry: Registry) -> None:
    made = registry.client.get("/healthz").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", made)
    assert registry.client.get("/healthz", headers={"X-Request-Id": "lb-42"}).headers["X-Request-Id"] == "lb-42"
    odd = registry.client.get("/healthz", headers={"X-Request-Id": "<script>"}).headers["X-Request-Id"]
    assert odd != "<script>"


def test_readyz_waits_for_pending_migrations(registry: Registry, settings: Settings,
                                             tmp_path: Any, backend: str) -> None:
    ready = registry.client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"]["migrations"] == "ok"
    # a database one migration behind: this release is not ready on it
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = settings.database_url + "_old"
        admin = create_engine(settings.database_url.rsplit("/", 1)[0] + "/postgres",
                              isolation_level="AUTOCOMMIT")
        from sqlalchemy import text
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"'))
            c.execute(text(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"'))
        admin.dispose()
    old = Settings.for_tests(tmp_path / "old-data", database={"url": url})
    services = build_services(old)
    try:
        migrate.upgrade(services.db.engine, "0004")
        health = services.health()
        assert health["database"] == "ok" and health["migrations"].startswith("pending: ")
    finally:
        services.close()
        if backend != "sqlite":
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}"'))
            admin.dispose()
