"""Operations through a real ``gati-registry serve`` (gunicorn, several workers):
``/metrics`` adds up every worker's counters, logs are JSON lines with request ids, and
``/readyz`` reports each check."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.interop


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_from_every_worker_and_json_logs(registry_server):
    reg = registry_server
    token = reg.token("admin", "read")
    before = reg.http("GET", "/metrics").body.decode()
    ids = []
    for i in range(40):
        res = reg.http("GET", f"/npm/no-such-package-{i}", token=token)
        assert res.status == 404
        ids.append(res.headers["X-Request-Id"])
    text = reg.http("GET", "/metrics").body.decode()
    labels = {"door": "npm", "route": "packument", "status": "404"}
    assert _sample(text, "gati_http_requests_total", **labels) - \
        _sample(before, "gati_http_requests_total", **labels) == 40
    assert "gati_follower_lag_changes" in text and "gati_blob_store_bytes" in text

    lines = [json.loads(line) for line in reg.log_path.read_text().splitlines()
             if line.startswith("{")]
    access = {line["request_id"]: line for line in lines if line.get("logger") == "gati.access"}
    assert all(rid in access for rid in ids)
    one = access[ids[0]]
    assert one["status"] == 404 and one["path"] == "/npm/no-such-package-0" and one["duration_ms"] >= 0

    ready = reg.http("GET", "/readyz")
    assert ready.status == 200
    assert json.loads(ready.body)["checks"] == {"database": "ok", "migrations": "ok", "blobs": "ok"}
