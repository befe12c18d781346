"""The approvals panel in a real browser: queue, review page, decisions, a publisher's
own versions, and user text rendered inert."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gati_private_registry.testing import ModuleSpec

PUBLISHER_PASSWORD = "publisher-pw-123"


def test_approver_reviews_and_approves_a_pending_version(
        server: Any, page: Any, sign_in: Any, screenshots: Path) -> None:
    publish = server.token("admin", "publish")
    server.publish(ModuleSpec("orders-db", "1.0.0", description="orders storage"), publish)
    server.publish(ModuleSpec("orders-db", "1.1.0", description="orders storage, faster",
                              dependencies={"left-pad": "^1.3.0"},
                              files={"lib/cache.js": "module.exports = {};\n"}), publish)
    read = server.token("admin", "read")
    assert server.http("GET", "/npm/orders-db", read).status == 404  # nothing approved yet

    sign_in(page, next_path="/approvals")
    queue = page.locator("#queue")
    row = queue.locator("tr", has_text="1.1.0")
    assert row.locator("td.name").inner_text() == "orders-db"
    assert "admin" in row.inner_text()
    assert "pending" in row.inner_text()
    page.screenshot(path=str(screenshots / "approvals-queue.png"), full_page=True)

    # the name filter
    page.fill("input[name=q]", "no-such-module")
    page.click("#queue-filters button[type=submit]")
    assert page.locator("#queue").count() == 0
    assert "No pending versions" in page.inner_text("main")
    page.goto("/approvals?q=orders")

    page.locator("#queue tr", has_text="1.1.0").get_by_role("link", name="Review").click()
    page.wait_for_url("**/approvals/orders-db/1.1.0")
    assert "orders-db@1.1.0" in page.inner_text("h1")
    manifest = page.inner_text("#manifest pre")
    assert '"description": "orders storage, faster"' in manifest
    assert '"left-pad": "^1.3.0"' in manifest
    assert '"gati.db/v1"' in page.inner_text("#gati-module")
    files = page.inner_text("#files")
    assert "lib/cache.js" in files and "package.json" in files and "gati-module.json" in files
    # the diff against 1.0.0: the new dependency and the new file
    changes = page.inner_text("#changes")
    assert "since 1.0.0" in changes
    assert re.search(r'^\+\s+"left-pad": "\^1\.3\.0"', changes, re.MULTILINE)
    assert "+ lib/cache.js" in changes
    # every plugin that voted is listed with its decision
    votes = page.locator("#votes")
    assert votes.locator("tbody tr").count() >= 1, page.inner_text("#votes")
    assert votes.locator(".badge").first.inner_text() in ("approve", "reject", "needs-review")
    assert page.locator("#form-approve").count() == 1
    page.screenshot(path=str(screenshots / "approval-review.png"), full_page=True)

    page.fill("#form-approve textarea[name=reason]", "reviewed the diff, looks fine")
    page.click("#form-approve button[type=submit]")
    page.wait_for_url("**/approvals/orders-db/1.1.0")
    assert "Approved orders-db@1.1.0." in page.inner_text(".flash.success")
    assert "approved" in page.inner_text("h1")
    history = page.inner_text("#history")
    assert "reviewed the diff, looks fine" in history and "admin" in history
    assert page.locator("#form-approve").count() == 0  # approved: only quarantine is left

    res = server.http("GET", "/npm/orders-db", read)
    assert res.status == 200, res.body[:300]
    assert "1.1.0" in res.json()["versions"]
    assert "1.0.0" not in res.json()["versions"]  # still pending
    assert page.dialogs == []


def test_reject_needs_a_reason_and_the_publisher_sees_the_outcome(
        server: Any, page: Any, sign_in: Any, browser: Any) -> None:
    server.add_user("pub", "publisher", PUBLISHER_PASSWORD)
    server.publish(ModuleSpec("billing-db", "2.0.0"), server.token("pub", "publish"))
    server.publish(ModuleSpec("payroll-db", "1.0.0"), server.token("admin", "publish"))

    sign_in(page, next_path="/approvals/billing-db/2.0.0")
    page.click("#form-reject button[type=submit]")  # empty reason
    assert page.locator("#form-errors").is_visible()
    assert "a reason is required to reject" in page.inner_text("#form-reject .field-error")
    assert page.get_attribute("#form-reject textarea", "aria-invalid") == "true"
    page.goto("/approvals/billing-db/2.0.0")
    assert "pending" in page.inner_text("h1")  # nothing changed
    stale = page.context.new_page()
    stale.goto("/approvals/billing-db/2.0.0")

    page.fill("#form-reject textarea[name=reason]", "uses an unapproved licence")
    page.click("#form-reject button[type=submit]")
    page.wait_for_url("**/approvals/billing-db/2.0.0")
    assert "Rejected billing-db@2.0.0." in page.inner_text(".flash.success")
    assert "uses an unapproved licence" in page.inner_text("#state-reason")

    # a decision from a page opened before the reject: a readable conflict, no change
    stale.fill("#form-quarantine textarea[name=reason]", "too late")
    stale.click("#form-quarantine button[type=submit]")
    assert "Not possible right now" in stale.inner_text("h1")
    assert "billing-db@2.0.0 is rejected; it cannot be quarantined" in \
        stale.inner_text("#error-message")
    page.reload()
    assert "rejected" in page.inner_text("h1")

    # the publisher, in a context of their own
    context = browser.new_context(base_url=server.url)
    try:
        pub = context.new_page()
        sign_in(pub, "pub", PUBLISHER_PASSWORD, next_path="/my/versions")
        row = pub.locator("#my-versions tr", has_text="billing-db")
        assert "rejected" in row.inner_text()
        assert "uses an unapproved licence" in row.inner_text()
        row.get_by_role("link", name="billing-db").click()
        pub.wait_for_url("**/approvals/billing-db/2.0.0")
        assert pub.locator("#decide form").count() == 0  # no approve/reject forms
        pub.goto("/approvals?state=all")
        names = pub.locator("#queue td.name").all_inner_texts()
        assert names == ["billing-db"]  # publishers see only their own versions
        pub.goto("/approvals/payroll-db/1.0.0")  # someone else's pending version
        assert "Not allowed" in pub.inner_text("h1")
        assert "only approvers and its publisher" in pub.inner_text("#error-message")
    finally:
        context.close()


def test_user_text_renders_inert(server: Any, page: Any, sign_in: Any) -> None:
    evil = "<script>alert(1)</script>"
    server.publish(ModuleSpec("xss-db", "1.0.0", description=evil,
                              files={f"docs/{'<img src=x onerror=alert(2)>'}.md": "x"}),
                   server.token("admin", "publish"))
    sign_in(page, next_path="/approvals/xss-db/1.0.0")
    # the dialog recorder works, so an empty list below means something
    page.evaluate("() => alert('probe')")
    assert page.dialogs == ["probe"]
    page.dialogs.clear()
    assert evil in page.inner_text("#manifest pre")
    assert "docs/<img src=x onerror=alert(2)>.md" in page.inner_text("#files")
    page.fill("#form-quarantine textarea[name=reason]", f"suspicious {evil}")
    page.click("#form-quarantine button[type=submit]")
    page.wait_for_url("**/approvals/xss-db/1.0.0")
    assert f"suspicious {evil}" in page.inner_text("#state-reason")
    assert f"suspicious {evil}" in page.inner_text("#history")
    html = page.content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert evil not in html
    page.goto("/approvals?state=quarantined&q=xss")
    assert page.locator("#queue td.name").all_inner_texts() == ["xss-db"]
    page.goto("/approvals/xss-db/1.0.0")
    page.wait_for_timeout(300)
    assert page.dialogs == []
