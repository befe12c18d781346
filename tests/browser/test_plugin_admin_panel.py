"""The plugin admin pages in a real browser: an admin disables a plugin, configures two
through the forms generated from their schemas (one bad value first), and the next
publish follows."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from gati_private_registry.testing import ModuleSpec, publish_body


def save(page: Any) -> None:
    """Submit the settings form. It posts back to the page's own URL, so wait for the
    navigation rather than for a URL that already matches."""
    with page.expect_navigation():
        page.click("#save")


def test_admin_disables_and_configures_plugins(server: Any, page: Any, sign_in: Any,
                                               screenshots: Path) -> None:
    admin = server.token("admin", "admin")
    sign_in(page, next_path="/admin/plugins")
    assert page.get_by_role("link", name="Plugins").get_attribute("aria-current") == "page"
    rows = page.locator("#plugins tbody tr")
    names = {rows.nth(i).get_attribute("data-plugin") for i in range(rows.count())}
    assert {"licence", "install_scripts", "secrets", "size_limits", "names",
            "gati_contract"} <= names
    assert "enabled" in page.inner_text("#plugin-install_scripts .status")

    # disable one plugin from the list
    page.click("#plugin-install_scripts form.toggle button")
    page.wait_for_url("**/admin/plugins")
    assert "Disabled install_scripts." in page.inner_text(".flash.success")
    assert "disabled" in page.inner_text("#plugin-install_scripts .status")
    assert server.http("GET", "/api/plugins/install_scripts", admin).json()["enabled"] is False

    # a bad value is refused with the message at its field, and nothing is stored
    page.goto("/admin/plugins/names")
    page.fill("#field-max_distance", "9")
    save(page)
    assert page.locator("#form-errors").is_visible()
    assert "9 is greater than the maximum of 3" in page.inner_text("#error-max_distance")
    assert page.get_attribute("#field-max_distance", "aria-invalid") == "true"
    assert page.input_value("#field-max_distance") == "9"  # what was typed is kept
    assert server.http("GET", "/api/plugins/names", admin).json()["stored"] == {}
    page.fill("#field-max_distance", "2")
    save(page)
    assert page.url.endswith("/admin/plugins/names")
    assert "Saved the settings of names." in page.inner_text(".flash.success")
    assert server.http("GET", "/api/plugins/names", admin).json()["config"]["max_distance"] == 2

    # the licence lists, one id per line: move MIT from the allow list to the deny list
    page.goto("/admin/plugins")
    page.locator("#plugin-licence").get_by_role("link", name="Configure").click()
    page.wait_for_url("**/admin/plugins/licence")
    allow = page.input_value("#field-allow").splitlines()
    assert "MIT" in allow
    page.fill("#field-allow", "\n".join(x for x in allow if x != "MIT"))
    page.fill("#field-deny", page.input_value("#field-deny") + "\nMIT")
    page.select_option("#field-unknown", "reject")
    save(page)
    assert page.url.endswith("/admin/plugins/licence")
    assert "Saved the settings of licence." in page.inner_text(".flash.success")
    assert "Changed" in page.inner_text("#setting-deny")
    assert "MIT" in page.input_value("#field-deny").splitlines()
    page.screenshot(path=str(screenshots / "plugin-admin.png"), full_page=True)
    licence = server.http("GET", "/api/plugins/licence", admin).json()
    assert "MIT" in licence["config"]["deny"] and "MIT" not in licence["config"]["allow"]
    assert licence["config"]["unknown"] == "reject" and licence["updated_by"] == "admin"

    # the next publish follows: MIT is denied, install scripts are no longer looked at
    spec = ModuleSpec("mit-db", "1.0.0", extra={"license": "MIT",
                                                "scripts": {"postinstall": "node x.js"}})
    res = server.http("PUT", "/npm/mit-db", server.token("admin", "publish"),
                      publish_body(spec, registry=server.url + "/npm/"))
    assert res.status == 201, res.body[:300]
    assert res.json()["state"] == "rejected"
    items = server.http("GET", "/api/approvals?state=rejected", admin).json()["items"]
    votes = {v["plugin"]: v for v in next(i for i in items if i["name"] == "mit-db")["votes"]}
    assert votes["licence"]["decision"] == "reject"
    assert any("denied" in r for r in votes["licence"]["reasons"])
    assert "install_scripts" not in votes and "secrets" in votes
    assert page.dialogs == []
