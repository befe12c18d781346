"""Run-time plugin administration: admins list, enable, disable and configure the policy
plugins through the API and the panel; the next publish follows (both backends)."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from gati_private_registry import hooks
from gati_private_registry.services import Services, build_services
from gati_private_registry.services.plugins import PluginHost
from gati_private_registry.settings import Settings
from gati_private_registry.storage import migrate
from gati_private_registry.storage.models import (AuditEvent, Change, Package, PluginConfig,
                                                  Version, VoteRecord)
from gati_private_registry.testing import ModuleSpec, publish_body

from .driver import Registry

BUILTINS = {"licence", "install_scripts", "secrets", "size_limits", "names", "gati_contract"}


class NoSettings:
    """A plugin without a settings schema; it abstains."""

    @hooks.hookimpl
    def gati_registry_review_version(self, candidate: hooks.Candidate,
                                     config: dict[str, Any]) -> hooks.Vote | None:
        return None


class Fancy:
    """A plugin whose schema has every kind of setting the panel form renders."""

    @hooks.hookimpl
    def gati_registry_plugin_settings(self) -> dict[str, Any]:
        return {"type": "object", "title": "Fancy", "additionalProperties": False,
                "properties": {
                    "strict": {"type": "boolean", "default": False},
                    "level": {"type": "integer", "enum": [1, 2, 3], "default": 1},
                    "ratio": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
                    "days": {"type": "array", "items": {"type": "string",
                                                        "enum": ["mon", "tue", "wed"]},
                             "default": ["mon"]},
                    "owner": {"type": "string", "maxLength": 20, "default": "ops",
                              "description": "Who to ask <b>first</b>."},
                    "limits": {"type": "object", "default": {"a": 1},
                               "additionalProperties": {"type": "integer"}}}}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"approvals": {"default_mode": "auto"}}


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    # the shipped plugins from their entry points, plus two test plugins
    host = PluginHost(blocked=settings.plugins.blocked,
                      extra=[("no_settings", NoSettings()), ("fancy", Fancy())])
    svc = build_services(settings, plugins=host)
    migrate.upgrade(svc.db.engine)
    svc.accounts.ensure_admin()
    yield svc
    svc.close()


def api(registry: Registry, method: str, path: str, token: str | None = "admin",
        **kw: Any) -> Any:
    tok = registry.token("admin", "admin") if token == "admin" else token
    return registry.client.open(path, method=method, headers=registry.headers(tok), **kw)


def stored_rows(registry: Registry) -> dict[str, tuple[bool, dict[str, Any]]]:
    with registry.services.db.read() as s:
        return {r.name: (r.enabled, r.config) for r in s.scalars(select(PluginConfig))}


def audit_actions(registry: Registry, prefix: str = "plugin.") -> list[tuple[str, str, dict[str, Any]]]:
    with registry.services.db.read() as s:
        return [(e.action, e.subject, e.details) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.id))]


def votes_of(registry: Registry, name: str) -> dict[str, str]:
    with registry.services.db.read() as s:
        rows = s.execute(select(VoteRecord.plugin, VoteRecord.decision)
                         .join(Version, Version.id == VoteRecord.version_id)
                         .join(Package, Package.id == Version.package_id)
                         .where(Package.name == name)).all()
    return {r.plugin: r.decision for r in rows}


# -- the API -----------------------------------------------------------------------------

def test_list_shows_every_plugin_with_its_defaults(registry: Registry) -> None:
    resp = api(registry, "GET", "/api/plugins")
    assert resp.status_code == 200
    items = {i["name"]: i for i in resp.json["items"]}
    assert BUILTINS | {"no_settings", "fancy"} <= set(items)
    licence = items["licence"]
    assert licence["installed"] and licence["enabled"] and licence["votes"]
    assert licence["distribution"] == "gati-registry-plugins" and licence["version"]
    assert "gati_registry_review_version" in licence["hooks"]
    assert licence["schema"]["title"] == "Licence"
    assert licence["stored"] == {} and licence["updated_at"] is None
    assert licence["config"] == licence["defaults"]
    assert "MIT" in licence["config"]["allow"] and licence["config"]["unknown"] == "needs-review"
    assert items["no_settings"]["schema"] is None and items["no_settings"]["config"] == {}
    assert items["no_settings"]["distribution"] is None
    assert items["fancy"]["votes"] is False  # it has settings but no review hook

    one = api(registry, "GET", "/api/plugins/licence")
    assert one.status_code == 200 and one.json == licence
    missing = api(registry, "GET", "/api/plugins/no-such-plugin")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


def test_configure_merges_stores_audits_and_feeds_changes(registry: Registry) -> None:
    resp = api(registry, "PATCH", "/api/plugins/licence", json={"config": {"deny": ["MIT"]}})
    assert resp.status_code == 200, resp.json
    assert resp.json["stored"] == {"deny": ["MIT"]} and resp.json["config"]["deny"] == ["MIT"]
    assert resp.json["config"]["unknown"] == "needs-review"  # default kept
    assert resp.json["updated_by"] == "admin" and resp.json["updated_at"]
    # a second patch merges; null puts one setting back to its default
    api(registry, "PATCH", "/api/plugins/licence", json={"config": {"unknown": "reject"}})
    assert stored_rows(registry)["licence"] == (True, {"deny": ["MIT"], "unknown": "reject"})
    back = api(registry, "PATCH", "/api/plugins/licence", json={"config": {"deny": None}})
    assert back.json["stored"] == {"unknown": "reject"}
    assert back.json["config"]["deny"] == back.json["defaults"]["deny"]

    events = audit_actions(registry)
    assert [(a, s) for a, s, _ in events] == [("plugin.update", "licence")] * 3
    assert events[0][2] == {"old_enabled": True, "new_enabled": True, "changed_keys": ["deny"]}
    with registry.services.db.read() as s:
        kinds = s.scalars(select(Change).where(Change.kind == "plugin.config")).all()
    assert [c.payload["keys"] for c in kinds] == [["deny"], ["unknown"], ["deny"]]
    assert all(c.payload["plugin"] == "licence" for c in kinds)

    # a patch that changes nothing records nothing
    api(registry, "PATCH", "/api/plugins/licence", json={"config": {"unknown": "reject"}})
    api(registry, "PATCH", "/api/plugins/licence", json={})
    assert len(audit_actions(registry)) == 3


@pytest.mark.parametrize("plugin, body, fields", [
    ("licence", {"config": {"allow": "MIT"}}, ["config.allow"]),                 # wrong type
    ("licence", {"config": {"allow": ["MIT", 3, ""]}}, ["config.allow[1]", "config.allow[2]"]),
    ("licence", {"config": {"unknown": "maybe"}}, ["config.unknown"]),           # enum
    ("licence", {"config": {"colour": "red"}}, ["config.colour"]),               # unknown key
    ("names", {"config": {"max_distance": 9, "min_length": 0}},
     ["config.max_distance", "config.min_length"]),                               # bounds, all at once
    ("size_limits", {"config": {"max_files": "many"}}, ["config.max_files"]),
    ("fancy", {"config": {"limits": {"a": "x"}}}, ["config.limits.a"]),           # nested
    ("licence", {"enabled": "yes"}, ["enabled"]),
    ("licence", {"config": ["MIT"]}, ["config"]),
    ("licence", {"enable": False}, ["enable"]),                                   # body key typo
    ("no_settings", {"config": {"anything": 1}}, ["config.anything"]),            # no schema
])
def test_invalid_settings_are_refused_and_nothing_changes(
        registry: Registry, plugin: str, body: dict[str, Any], fields: list[str]) -> None:
    before = api(registry, "GET", f"/api/plugins/{plugin}").json
    resp = api(registry, "PATCH", f"/api/plugins/{plugin}", json=body)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["code"] == "validation_failed"
    assert [d["field"] for d in resp.json["error"]["details"]] == fields
    assert all(d["message"] for d in resp.json["error"]["details"])
    assert api(registry, "GET", f"/api/plugins/{plugin}").json == before
    assert stored_rows(registry) == {} and audit_actions(registry) == []


def test_a_plugin_without_settings_accepts_only_nothing(registry: Registry) -> None:
    ok = api(registry, "PATCH", "/api/plugins/no_settings", json={"config": {}, "enabled": False})
    assert ok.status_code == 200 and ok.json["enabled"] is False and ok.json["config"] == {}
    assert stored_rows(registry) == {"no_settings": (False, {})}


def test_unknown_plugins_and_people_who_may_not(registry: Registry) -> None:
    assert api(registry, "PATCH", "/api/plugins/nope", json={"enabled": False}).status_code == 404
    assert api(registry, "DELETE", "/api/plugins/nope/config").status_code == 404
    registry.add_user("pub", "publisher")
    registry.add_user("appr", "approver")
    for token in (registry.token("pub", "publish"), registry.token("appr", "approve"),
                  registry.token("admin", "approve")):  # an admin's token without admin scope
        assert api(registry, "GET", "/api/plugins", token).status_code == 403
        assert api(registry, "GET", "/api/plugins/licence", token).status_code == 403
        resp = api(registry, "PATCH", "/api/plugins/licence", token, json={"enabled": False})
        assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"
        assert api(registry, "DELETE", "/api/plugins/licence/config", token).status_code == 403
    anonymous = api(registry, "PATCH", "/api/plugins/licence", None, json={"enabled": False})
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["WWW-Authenticate"]
    assert api(registry, "GET", "/api/plugins", None).status_code == 401
    assert stored_rows(registry) == {} and audit_actions(registry) == []


# -- the publish path follows at once ----------------------------------------------------

def test_a_disabled_plugin_does_not_vote(registry: Registry) -> None:
    agpl = {"license": "AGPL-3.0-only"}
    assert registry.publish(ModuleSpec("copyleft", "1.0.0", extra=agpl)).json["state"] == "rejected"
    assert votes_of(registry, "copyleft")["licence"] == "reject"

    resp = api(registry, "PATCH", "/api/plugins/licence", json={"enabled": False})
    assert resp.status_code == 200 and resp.json["enabled"] is False
    second = registry.publish(ModuleSpec("copyleft-two", "1.0.0", extra=agpl))
    assert second.json["state"] == "approved"
    votes = votes_of(registry, "copyleft-two")
    assert "licence" not in votes and "secrets" in votes

    # a reset of the settings keeps it disabled
    api(registry, "PATCH", "/api/plugins/licence", json={"config": {"unknown": "reject"}})
    reset = api(registry, "DELETE", "/api/plugins/licence/config")
    assert reset.status_code == 200 and reset.json["enabled"] is False and reset.json["stored"] == {}
    assert "licence" not in votes_of(registry, "copyleft-two")
    third = registry.publish(ModuleSpec("copyleft-three", "1.0.0", extra=agpl))
    assert third.json["state"] == "approved" and "licence" not in votes_of(registry, "copyleft-three")

    api(registry, "PATCH", "/api/plugins/licence", json={"enabled": True})
    assert registry.publish(ModuleSpec("copyleft-four", "1.0.0", extra=agpl)).json["state"] == "rejected"
    actions = audit_actions(registry)
    assert [a for a, _, _ in actions] == ["plugin.update", "plugin.update", "plugin.reset",
                                          "plugin.update"]
    assert actions[0][2]["old_enabled"] is True and actions[0][2]["new_enabled"] is False
    assert actions[2][2]["reset_keys"] == ["unknown"]


def test_a_denied_licence_rejects_also_in_another_process(registry: Registry,
                                                           settings: Settings) -> None:
    mit = {"license": "MIT"}
    assert registry.publish(ModuleSpec("permissive", "1.0.0", extra=mit)).json["state"] == "approved"
    # another process on the same database, built before the change: nothing is cached
    other = build_services(settings, plugins=registry.services.plugins)
    try:
        resp = api(registry, "PATCH", "/api/plugins/licence",
                   json={"config": {"allow": ["Apache-2.0"], "deny": ["MIT"]}})
        assert resp.status_code == 200
        admin = other.accounts.principal_for_user(other.accounts.get_user("admin"))
        result = other.publish.publish(admin, "permissive", publish_body(
            ModuleSpec("permissive", "1.1.0", extra=mit)))
        assert result.state.value == "rejected" and "licence" in result.reason
    finally:
        other.close()
    assert registry.publish(ModuleSpec("permissive", "1.2.0", extra=mit)).json["state"] == "rejected"

    api(registry, "DELETE", "/api/plugins/licence/config")
    assert registry.publish(ModuleSpec("permissive", "1.3.0", extra=mit)).json["state"] == "approved"


def test_rows_of_plugins_that_are_gone_do_not_break_listing(registry: Registry) -> None:
    now = datetime.now(timezone.utc)
    with registry.services.db.write() as s:
        s.add(PluginConfig(name="uninstalled", enabled=False, config={"x": 1},
                           updated_at=now, updated_by="someone"))
        s.add(PluginConfig(name="gone_too", enabled=True, config={"y": 2},
                           updated_at=now, updated_by="someone"))
    items = {i["name"]: i for i in api(registry, "GET", "/api/plugins").json["items"]}
    gone = items["uninstalled"]
    assert gone["installed"] is False and gone["schema"] is None and gone["stored"] == {"x": 1}
    assert gone["enabled"] is False and items["gone_too"]["installed"] is False
    assert api(registry, "GET", "/api/plugins/uninstalled").json["installed"] is False
    assert api(registry, "PATCH", "/api/plugins/uninstalled", json={"enabled": True}).status_code == 404
    assert registry.publish(ModuleSpec("still-works", "1.0.0", extra={"license": "MIT"})).status_code == 201
    # forgetting the settings keeps a disabled plugin disabled, should it come back
    assert api(registry, "DELETE", "/api/plugins/uninstalled/config").status_code == 200
    assert api(registry, "DELETE", "/api/plugins/gone_too/config").status_code == 200
    rows = stored_rows(registry)
    assert rows["uninstalled"] == (False, {}) and "gone_too" not in rows
    assert api(registry, "GET", "/api/plugins/gone_too").status_code == 404
    assert [a[:2] for a in audit_actions(registry)] == [("plugin.reset", "uninstalled"),
                                                       ("plugin.reset", "gone_too")]


def test_stale_settings_never_stop_an_admin_from_disabling(registry: Registry) -> None:
    # settings stored under an older schema of the plugin
    with registry.services.db.write() as s:
        s.add(PluginConfig(name="licence", enabled=True, config={"unknown": "maybe"},
                           updated_at=datetime.now(timezone.utc), updated_by="someone"))
    off = api(registry, "PATCH", "/api/plugins/licence", json={"enabled": False})
    assert off.status_code == 200 and off.json["enabled"] is False
    # changing settings reports the stale value at its path, so it can be fixed
    resp = api(registry, "PATCH", "/api/plugins/licence", json={"config": {"deny": []}})
    assert resp.status_code == 400
    assert [d["field"] for d in resp.json["error"]["details"]] == ["config.unknown"]
    fixed = api(registry, "PATCH", "/api/plugins/licence",
                json={"config": {"deny": [], "unknown": None}})
    assert fixed.status_code == 200 and fixed.json["stored"] == {"deny": []}


# -- the panel ---------------------------------------------------------------------------

def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def sign_in(registry: Registry, username: str = "admin", password: str = "admin-pass-1") -> None:
    page = registry.client.get("/login")
    resp = registry.client.post("/login", data={"username": username, "password": password,
                                                "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 302, resp.text


def test_panel_is_for_admins_only(registry: Registry) -> None:
    resp = registry.client.get("/admin/plugins/licence")
    assert resp.status_code == 302 and "/login?next=/admin/plugins/licence" in resp.headers["Location"]
    registry.add_user("pub", "publisher", "pub-pass-123")
    sign_in(registry, "pub", "pub-pass-123")
    assert registry.client.get("/approvals").status_code == 200
    assert "/admin/plugins" not in registry.client.get("/approvals").text  # no nav link
    for path in ("/admin/plugins", "/admin/plugins/licence"):
        denied = registry.client.get(path)
        assert denied.status_code == 403 and "Not allowed" in denied.text
    page = registry.client.get("/approvals")
    resp = registry.client.post("/admin/plugins/licence/enabled",
                                data={"enabled": "off", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 403 and stored_rows(registry) == {}


def test_panel_lists_and_toggles_with_csrf(registry: Registry) -> None:
    sign_in(registry)
    page = registry.client.get("/admin/plugins")
    assert page.status_code == 200
    for name in BUILTINS:
        assert f'id="plugin-{name}"' in page.text
    assert 'href="/admin/plugins"' in page.text  # the nav link for admins
    no_token = registry.client.post("/admin/plugins/secrets/enabled", data={"enabled": "off"})
    assert no_token.status_code == 400 and stored_rows(registry) == {}
    done = registry.client.post("/admin/plugins/secrets/enabled",
                                data={"enabled": "off", "csrf_token": csrf_of(page.text)})
    assert done.status_code == 302 and done.headers["Location"].endswith("/admin/plugins")
    assert stored_rows(registry) == {"secrets": (False, {})}
    listed = registry.client.get("/admin/plugins").text
    row = listed[listed.index('id="plugin-secrets"'):].split("</tr>")[0]
    assert "disabled" in row and ">Enable<" in row
    bad = registry.client.post("/admin/plugins/secrets/enabled",
                               data={"enabled": "maybe", "csrf_token": csrf_of(page.text)})
    assert bad.status_code == 400 and stored_rows(registry) == {"secrets": (False, {})}


def test_panel_form_is_generated_from_the_schema(registry: Registry) -> None:
    sign_in(registry)
    html = registry.client.get("/admin/plugins/fancy").text
    assert re.search(r'<input type="checkbox" id="field-strict" name="config.strict"\s*>', html)
    assert re.search(r'<select id="field-level" name="config.level"', html)
    assert '<option value="1" selected>1</option>' in html
    assert re.search(r'<input id="field-ratio" name="config.ratio" type="number" value="0.5" '
                     r'max="1" min="0" step="any"', html)
    assert 'name="config.days" value="mon" checked' in html
    assert 'name="config.days" value="tue">' in html
    assert re.search(r'<input id="field-owner" name="config.owner" type="text" value="ops" maxlength="20"', html)
    assert "Who to ask &lt;b&gt;first&lt;/b&gt;." in html  # descriptions are escaped
    assert re.search(r'<textarea id="field-limits" name="config.limits" rows="6" class="mono"', html)
    licence = registry.client.get("/admin/plugins/licence").text
    assert re.search(r'<textarea id="field-allow" name="config.allow"[^>]*>MIT\n', licence)
    names = registry.client.get("/admin/plugins/names").text
    assert re.search(r'id="field-max_distance"[^>]*max="3" min="0" step="1"', names)


def test_panel_saves_typed_values_or_shows_errors_at_the_fields(registry: Registry) -> None:
    sign_in(registry)
    token = csrf_of(registry.client.get("/admin/plugins/fancy").text)
    good = {"csrf_token": token, "action": "save", "config.strict": "on", "config.level": "3",
            "config.ratio": "0.25", "config.days": ["mon", "wed"], "config.owner": "sec-team",
            "config.limits": '{"a": 2, "b": 5}'}
    resp = registry.client.post("/admin/plugins/fancy", data=good)
    assert resp.status_code == 302, resp.text
    assert stored_rows(registry)["fancy"][1] == {
        "strict": True, "level": 3, "ratio": 0.25, "days": ["mon", "wed"], "owner": "sec-team",
        "limits": {"a": 2, "b": 5}}
    page = registry.client.get("/admin/plugins/fancy").text
    assert "Saved the settings of fancy." in page

    bad = {**good, "config.level": "7", "config.ratio": "2", "config.owner": "x" * 30,
           "config.limits": "{not json", "config.strict": None}
    bad = {k: v for k, v in bad.items() if v is not None}
    resp = registry.client.post("/admin/plugins/fancy", data=bad)
    assert resp.status_code == 400
    errors = {k: v for k, v in re.findall(r'<p class="field-error" id="error-(\w+)">([^<]*)</p>',
                                          resp.text)}
    assert set(errors) == {"level", "ratio", "owner", "limits"}
    assert "is not valid JSON" in errors["limits"] and "1" in errors["level"]
    assert "greater than the maximum of 1" in errors["ratio"]
    assert 'value="2"' in resp.text and "{not json" in resp.text  # what was typed is kept
    assert stored_rows(registry)["fancy"][1]["level"] == 3  # nothing stored

    # emptied number and JSON fields go back to the defaults; the licence list by lines
    registry.client.post("/admin/plugins/fancy", data={**good, "config.ratio": "",
                                                      "config.limits": ""})
    assert "ratio" not in stored_rows(registry)["fancy"][1]
    assert "limits" not in stored_rows(registry)["fancy"][1]
    resp = registry.client.post("/admin/plugins/licence", data={
        "csrf_token": token, "action": "save", "config.allow": "MIT\n\n  Apache-2.0 \n",
        "config.deny": "GPL-3.0-only", "config.unknown": "reject"})
    assert resp.status_code == 302
    assert stored_rows(registry)["licence"] == (True, {"allow": ["MIT", "Apache-2.0"],
                                                       "deny": ["GPL-3.0-only"],
                                                       "unknown": "reject"})
    # a setting may be called like a field of the form itself
    names = registry.client.post("/admin/plugins/names", data={
        "csrf_token": token, "action": "save", "config.action": "reject",
        "config.max_distance": "1", "config.min_length": "5", "config.deny": "evil-*"})
    assert names.status_code == 302, names.text
    assert stored_rows(registry)["names"][1] == {"action": "reject", "max_distance": 1,
                                                 "min_length": 5, "deny": ["evil-*"],
                                                 "allow": []}
    reset = registry.client.post("/admin/plugins/licence", data={"csrf_token": token,
                                                                  "action": "reset"})
    assert reset.status_code == 302 and stored_rows(registry)["licence"] == (True, {})
    assert registry.client.post("/admin/plugins/licence", data={"config.allow": "MIT"}).status_code == 400
    assert stored_rows(registry)["licence"] == (True, {})


def test_panel_shows_and_forgets_settings_of_a_plugin_that_is_gone(registry: Registry) -> None:
    with registry.services.db.write() as s:
        s.add(PluginConfig(name="gone", enabled=True, config={"<i>x</i>": 1},
                           updated_at=datetime.now(timezone.utc), updated_by="someone"))
    sign_in(registry)
    listed = registry.client.get("/admin/plugins")
    assert listed.status_code == 200
    row = listed.text[listed.text.index('id="plugin-gone"'):].split("</tr>")[0]
    assert "not installed" in row and "Forget settings" in row and ">Disable<" not in row
    page = registry.client.get("/admin/plugins/gone")
    assert page.status_code == 200 and "&lt;i&gt;x&lt;/i&gt;" in page.text
    resp = registry.client.post("/admin/plugins/gone", data={"csrf_token": csrf_of(page.text),
                                                             "action": "reset"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/plugins")
    assert "gone" not in stored_rows(registry)
    assert registry.client.get("/admin/plugins/gone").status_code == 404
