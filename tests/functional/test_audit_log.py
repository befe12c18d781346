"""The audit log: GET /api/audit for admins and auditors, the panel page with CSV and
JSON-lines export, and append-only storage (both backends)."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from gati_private_registry.storage.models import AuditEvent
from gati_private_registry.testing import ModuleSpec

from .driver import Registry


def sign_in(registry: Registry, username: str, password: str) -> None:
    page = registry.client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    resp = registry.client.post("/login", data={"username": username, "password": password,
                                                "csrf_token": csrf})
    assert resp.status_code == 302, resp.text


@pytest.fixture
def history(registry: Registry) -> Registry:
    registry.token("admin", "admin")
    registry.add_user("pub", "publisher")
    registry.add_user("aud", "auditor")
    registry.publish(ModuleSpec("one", "1.0.0"), registry.token("pub"))
    registry.publish(ModuleSpec("two", "1.0.0"), registry.token("pub"))
    registry.client.put("/npm/-/user/org.couchdb.user:pub", json={"name": "pub", "password": "bad"})
    return registry


def api(registry: Registry, token: str, query: str = "") -> object:
    return registry.client.get(f"/api/audit{query}", headers=registry.headers(token))


def test_admins_and_auditors_query_with_filters_and_paging(history: Registry) -> None:
    admin = history.token("admin", "admin")
    everything = api(history, admin).json
    actions = [i["action"] for i in everything["items"]]
    assert everything["total"] == len(actions) >= 6
    assert actions[0] == "login.failure"        # newest first
    assert {"user.create", "token.create", "version.publish"} <= set(actions)
    pub = api(history, admin, "?actor=pub&action=version.publish").json
    assert [i["subject"] for i in pub["items"]] == ["two@1.0.0", "one@1.0.0"]
    assert pub["items"][0]["at"].endswith("Z") and "ip" in pub["items"][0]
    prefixed = api(history, admin, "?action=login.*").json
    assert {i["action"] for i in prefixed["items"]} == {"login.failure"}
    page = api(history, admin, "?limit=2&offset=1").json
    assert [i["id"] for i in page["items"]] == [i["id"] for i in everything["items"][1:3]]
    assert page["total"] == everything["total"]
    assert api(history, admin, "?since=2999-01-01").json == {
        "items": [], "total": 0, "offset": 0, "limit": 100}
    # an auditor reads with a read token
    assert api(history, history.token("aud", "read")).status_code == 200


def test_audit_is_refused_to_everyone_else(history: Registry) -> None:
    assert api(history, "").status_code == 401
    assert api(history, history.token("pub")).status_code == 403
    # an admin's token that is not admin-scoped is not enough
    assert api(history, history.token("admin", "publish")).status_code == 403


def test_bad_filters_are_reported_together(history: Registry) -> None:
    resp = api(history, history.token("admin", "admin"), "?since=yesterday&until=soon")
    assert resp.status_code == 400
    assert {d["field"] for d in resp.json["error"]["details"]} == {"since", "until"}
    assert api(history, history.token("admin", "admin"), "?limit=x").status_code == 400


def test_panel_page_and_exports(history: Registry) -> None:
    sign_in(history, "aud", "password-123")
    page = history.client.get("/admin/audit?actor=pub")
    assert page.status_code == 200
    assert "version.publish" in page.text and "two@1.0.0" in page.text
    jsonl = history.client.get("/admin/audit/export.jsonl?actor=pub")
    assert jsonl.status_code == 200 and jsonl.mimetype == "application/x-ndjson"
    rows = [json.loads(line) for line in jsonl.text.splitlines()]
    assert rows and all(r["actor"] == "pub" for r in rows)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)  # oldest first
    exported = history.client.get("/admin/audit/export.csv?action=version.publish")
    assert exported.headers["Content-Disposition"] == 'attachment; filename="gati-audit.csv"'
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["subject"] for r in table] == ["one@1.0.0", "two@1.0.0"]
    assert json.loads(table[0]["details"])["state"] == "approved"
    # exporting is itself recorded
    admin = history.token("admin", "admin")
    exports = api(history, admin, "?action=audit.export").json["items"]
    assert [e["subject"] for e in exports] == ["csv", "jsonl"]
    assert exports[0]["details"]["filter"] == {"action": "version.publish"}
    assert history.client.get("/admin/audit/export.xml").status_code == 400


def test_csv_export_neutralises_formulas(registry: Registry) -> None:
    registry.client.put("/npm/-/user/org.couchdb.user:=cmd", json={"name": "=cmd", "password": "x"})
    sign_in(registry, "admin", "admin-pass-1")
    table = list(csv.DictReader(io.StringIO(
        registry.client.get("/admin/audit/export.csv?action=login.failure").text)))
    assert table[0]["actor"] == "'=cmd"


def test_panel_audit_is_for_admins_and_auditors(history: Registry) -> None:
    assert history.client.get("/admin/audit").status_code == 302  # sign in first
    sign_in(history, "pub", "password-123")
    assert history.client.get("/admin/audit").status_code == 403
    assert history.client.get("/admin/audit/export.csv").status_code == 403


def test_the_log_is_append_only_in_the_database(history: Registry) -> None:
    engine = history.services.db.engine
    for stmt in (update(AuditEvent).values(actor="nobody"), delete(AuditEvent)):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(stmt)
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE audit_events"))
    admin = history.token("admin", "admin")
    assert all(i["actor"] != "nobody" for i in api(history, admin).json["items"])
    # and there is no HTTP way to change it
    for method in ("delete", "put", "post", "patch"):
        assert getattr(history.client, method)("/api/audit", headers=history.headers(admin)).status_code == 405
