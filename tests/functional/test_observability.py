"""Request ids, metrics and readiness (both backends)."""
from __future__ import annotations

import json
import logging
import re
from typing import Any

from sqlalchemy import create_engine

from gati_private_registry.observability import REQUEST_ID, JsonFormatter
from gati_private_registry.services import build_services
from gati_private_registry.settings import Settings
from gati_private_registry.storage import migrate
from gati_private_registry.testing import ModuleSpec
from gati_private_registry.web.observe import classify

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
