"""The marketplace in a real browser against a real server: search with type-ahead, a
module page, star, rate, review, the trust badge and the download chart; and README and
review text full of script payloads rendered inert."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gati_private_registry.testing import ModuleSpec, free_port, publish_body

from .conftest import ADMIN_PASSWORD, Server

PAYLOADS = """# Hello

<script>window.__xss = 1; alert('readme script')</script>
<img src="x" onerror="window.__xss = 2; alert('img')">
<a href="javascript:alert('link')" id="js-link">click me</a>
<iframe src="javascript:alert('frame')"></iframe>
<svg onload="alert('svg')"><circle r="5"/></svg>
<div style="background:url(javascript:alert('css'))" onmouseover="alert('hover')">hover me</div>
[markdown link](javascript:alert('md'))
<details open ontoggle="alert('toggle')"><summary>x</summary></details>

Normal **bold** text and a [safe link](https://example.org/).
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("gati-market")
    data_dir = workdir / "data"
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update({"GATI_REGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "manual",
                "GATI_REGISTRY_MARKETPLACE__DOWNLOAD_FLUSH_INTERVAL": "0.2",
                "GATI_REGISTRY_MARKETPLACE__STATS_MAX_AGE": "0"})
    srv = Server(port=free_port(), data_dir=data_dir, env=env, log_path=workdir / "server.log")
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def catalogue(server: Server) -> dict[str, str]:
    publish, admin = server.token("admin", "publish"), server.token("admin", "admin")
    specs = [
        ModuleSpec("@gati-modules/postgres", "1.0.0", description="PostgreSQL connection pool",
                   keywords=["database", "sql"], files={"README.md": "# postgres\n\nPooled **PostgreSQL**.\n",
                                                        "index.d.ts": "export declare function connect(url: string): Pool;\n"}),
        ModuleSpec("@gati-modules/postgres-migrate", "1.0.0", description="schema migrations",
                   keywords=["database"], dependencies={"@gati-modules/postgres": "^1.0.0"}),
        ModuleSpec("redis-cache", "1.0.0", description="a Redis cache", keywords=["cache"],
                   gati_module={"name": "redis-cache", "version": "1.0.0", "type": "cache"}),
        ModuleSpec("evil-readme", "1.0.0", description="a README full of payloads",
                   files={"README.md": PAYLOADS}),
    ]
    for spec in specs:
        # npm sends the README in the document too; it is what the registry keeps
        body = publish_body(spec, registry=server.url + "/npm/",
                            manifest_overrides={"readme": spec.files.get("README.md", "")})
        res = server.http("PUT", f"/npm/{spec.name.replace('/', '%2f')}", publish, body)
        assert res.status in (200, 201), res.body
        res = server.http("POST", f"/api/modules/{spec.name}/{spec.version}/approve", admin, {})
        assert res.status == 200, res.body
    read = server.token("admin", "read")
    for _ in range(5):
        assert server.http("GET", "/npm/@gati-modules/postgres/-/postgres-1.0.0.tgz", read).status == 200
    # the index follows the feed within a second; the download counts within 0.2 s
    wait_for(lambda: server.http("GET", "/api/search?q=evil", read).json()["total"] == 1, "the index")
    wait_for(lambda: server.http("GET", "/api/modules/@gati-modules/postgres/stats", read)
             .json()["downloads"]["week"] == 5, "download counts")
    return {"read": read, "admin": admin}


def test_search_type_ahead_module_page_star_rate_review(
        server: Server, catalogue: dict[str, str], page: Any, sign_in: Any,
        screenshots: Path) -> None:
    sign_in(page, next_path="/marketplace")
    assert page.locator("#categories").inner_text().count("database") == 1
    assert "@gati-modules/postgres" in page.inner_text("#most-downloaded")
    page.screenshot(path=str(screenshots / "marketplace-home.png"), full_page=True)

    page.click("#q")
    page.keyboard.type("postg", delay=30)
    suggestions = page.locator("#suggestions li")
    suggestions.first.wait_for()
    names = [n.strip() for n in page.locator("#suggestions li strong").all_inner_texts()]
    assert names[:2] == ["@gati-modules/postgres", "@gati-modules/postgres-migrate"] or \
        set(names[:2]) == {"@gati-modules/postgres", "@gati-modules/postgres-migrate"}, names
    page.screenshot(path=str(screenshots / "marketplace-typeahead.png"))
    page.keyboard.press("Enter")  # no suggestion selected: the form searches
    page.wait_for_url("**/marketplace?q=postg*")
    assert "@gati-modules/postgres" in page.inner_text("#results")
    page.screenshot(path=str(screenshots / "marketplace-search.png"), full_page=True)

    page.fill("#q", "")
    page.keyboard.type("postgres-mig", delay=30)
    page.locator("#suggestions li").first.wait_for()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url("**/modules/@gati-modules/postgres-migrate")
    assert "@gati-modules/postgres" in page.inner_text("#dependencies")
    page.click("#dependencies a")
    page.wait_for_url("**/modules/@gati-modules/postgres")

    # the badge, signatures, install commands, API reference, dependents, chart
    assert page.inner_text(".module-head .badge.trust-community") == "Community"
    assert page.inner_text("#signature-status") == "signed"
    assert "pnpm add @gati-modules/postgres" in page.inner_text("#install")
    assert "connect" in page.inner_text("#api")
    assert "@gati-modules/postgres-migrate" in page.inner_text("#dependents")
    bars = page.locator("#downloads-chart rect")
    assert bars.count() == 90
    assert float(bars.nth(89).get_attribute("height")) > 0
    assert "5 this week" in page.inner_text("#stats")

    page.click("#star-button")
    page.wait_for_selector("#star-button[aria-pressed=true]")
    assert page.inner_text("#star-count") == "1 star"
    page.select_option("#rate-form select", "4")
    page.click("#rate-form button")
    page.wait_for_selector("text=4.0/5 from 1 rating")
    page.fill("#review-form textarea", "Works **well**.\n\n" + PAYLOADS)
    page.click("#review-form button")
    page.wait_for_selector(".review .review-body strong")
    body = page.locator(".review .review-body").first
    assert "Works well." in body.inner_text()
    _assert_inert(page, ".review .review-body")

    # an admin marks it Trusted: the badge follows the changes feed
    page.fill("#trust-form input[name=reason]", "reviewed by the platform team")
    page.click("#trust-form button")
    wait_for(lambda: (page.reload() or True) and
             page.locator(".module-head .badge.trust-trusted").count() == 1, "the Trusted badge")
    page.screenshot(path=str(screenshots / "module-page.png"), full_page=True)
    assert page.dialogs == []


def _assert_inert(page: Any, selector: str) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"
    found = page.evaluate("""sel => {
        const out = [];
        for (const root of document.querySelectorAll(sel)) {
          for (const el of root.querySelectorAll('*')) {
            const tag = el.tagName.toLowerCase();
            if (['script', 'iframe', 'svg', 'object', 'embed', 'style'].includes(tag)) out.push(tag);
            for (const a of el.attributes) {
              if (a.name.startsWith('on') || a.name === 'style') out.push(tag + '@' + a.name);
              if (/^\\s*javascript:/i.test(a.value)) out.push(tag + '@' + a.name + '=js');
            }
          }
        }
        return out;
    }""", selector)
    assert found == []


def test_readme_full_of_script_payloads_renders_inert(
        server: Server, catalogue: dict[str, str], page: Any, sign_in: Any,
        screenshots: Path) -> None:
    sign_in(page, next_path="/modules/evil-readme")
    readme = page.locator("#readme")
    assert "Normal bold text" in readme.inner_text()
    assert readme.locator("a[href='https://example.org/']").get_attribute("rel") == \
        "noopener noreferrer nofollow"
    page.hover("text=hover me")
    page.click("text=click me")   # its javascript: href was removed: nothing happens
    _assert_inert(page, "#readme")
    assert page.dialogs == []
    page.screenshot(path=str(screenshots / "module-readme-xss-inert.png"), full_page=True)
