"""The marketplace pages and forms through the Flask test client, on both backends:
sign-in rule, CSRF, validation errors shown, moderation only for admins."""
from __future__ import annotations

import io
import json
import re

import pytest

from gati_private_registry.testing import ModuleSpec

from .driver import Registry


def csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def sign_in(registry: Registry, username: str, password: str) -> None:
    page = registry.client.get("/login")
    res = registry.client.post("/login", data={"username": username, "password": password,
                                               "csrf_token": csrf(page.text)})
    assert res.status_code == 302


@pytest.fixture
def shop(registry: Registry) -> Registry:
    registry.add_user("rita", "reader")
    registry.publish(ModuleSpec("@gati-modules/postgres", description="PostgreSQL pool",
                                keywords=["database"]))
    registry.publish(ModuleSpec("orders", dependencies={"@gati-modules/postgres": "^1.0.0",
                                                        "redis-cache": "^1.0.0"}))
    registry.publish(ModuleSpec("redis-cache", gati_module={"name": "redis-cache",
                                                            "version": "1.0.0", "type": "cache"}))
    registry.services.indexer.run_once()
    return registry


def test_pages_need_a_sign_in_unless_reads_are_anonymous(shop: Registry) -> None:
    for path in ("/marketplace", "/modules/orders", "/marketplace/for-project"):
        res = shop.client.get(path)
        assert res.status_code == 302 and "/login" in res.headers["Location"], path
    assert shop.client.get("/marketplace/suggest?q=ord").status_code == 401
    sign_in(shop, "rita", "password-123")
    home = shop.client.get("/marketplace")
    assert home.status_code == 200
    assert 'id="trending"' in home.text and 'id="categories"' in home.text
    assert re.search(r'category=database">database</a> <span class="muted">2</span>', home.text)
    results = shop.client.get("/marketplace?q=postgrs")   # a typo
    assert "@gati-modules/postgres" in results.text and "1 module for" in results.text
    suggest = shop.client.get("/marketplace/suggest?q=ord").json
    assert suggest["suggestions"][0] == {"name": "orders", "description": "a test module",
                                         "url": "/modules/orders"}
    page = shop.client.get("/modules/@gati-modules/postgres")
    assert page.status_code == 200 and 'id="downloads-chart"' in page.text
    assert shop.client.get("/modules/nope").status_code == 404


def test_forms_star_rate_review_with_csrf_and_errors(shop: Registry) -> None:
    sign_in(shop, "rita", "password-123")
    page = shop.client.get("/modules/orders").text
    token = csrf(page)
    assert shop.client.post("/modules/orders/star", data={"starred": "1"}).status_code == 400
    assert shop.client.post("/modules/orders/star",
                            data={"starred": "1", "csrf_token": token}).status_code == 302
    assert shop.services.social.summary(None, "orders").stars == 1
    res = shop.client.post("/modules/orders/rate", data={"score": "9", "csrf_token": token},
                           follow_redirects=True)
    assert "score: must be a whole number from 1 to 5" in res.text
    shop.client.post("/modules/orders/rate", data={"score": "5", "csrf_token": token})
    assert shop.services.social.summary(None, "orders").rating == 5.0
    res = shop.client.post("/modules/orders/review", data={"body": " ", "csrf_token": token},
                           follow_redirects=True)
    assert "body: write something" in res.text
    shop.client.post("/modules/orders/review",
                     data={"body": "<b onmouseover=alert(1)>hi</b> <script>x()</script>",
                           "csrf_token": token})
    page = shop.client.get("/modules/orders").text
    shown = re.search(r'<div class="review-body">(.*?)</div>', page, re.S).group(1)
    assert "<b>hi</b>" in shown and "onmouseover" not in shown and "<script" not in shown
    # the author's edit box holds the text as written, escaped
    assert "&lt;b onmouseover=alert(1)&gt;hi&lt;/b&gt;" in page
    [review] = shop.services.social.reviews(None, "orders")
    # a reader cannot moderate
    res = shop.client.post(f"/modules/orders/reviews/{review.id}/hide",
                           data={"reason": "spam", "csrf_token": token})
    assert res.status_code == 403
    # the package.json upload
    up = shop.client.post("/marketplace/for-project", data={
        "csrf_token": token, "package_json": (io.BytesIO(json.dumps(
            {"dependencies": {"@gati-modules/postgres": "1"}}).encode()), "package.json")},
        content_type="multipart/form-data")
    assert up.status_code == 200 and 'id="suggested"' in up.text and "redis-cache" in up.text
    bad = shop.client.post("/marketplace/for-project", data={
        "csrf_token": token, "package_json": (io.BytesIO(b"{nope"), "package.json")},
        content_type="multipart/form-data")
    assert bad.status_code == 400 and "not valid JSON" in bad.text


def test_admins_hide_reviews_and_mark_trusted(shop: Registry) -> None:
    rita = shop.services.accounts.principal_for_user(shop.services.accounts.get_user("rita"))
    rid = shop.services.social.add_review(rita, "orders", "nice")
    sign_in(shop, "admin", "admin-pass-1")
    token = csrf(shop.client.get("/modules/orders").text)
    res = shop.client.post(f"/modules/orders/reviews/{rid}/hide", data={"reason": "",
                                                                        "csrf_token": token},
                           follow_redirects=True)
    assert "reason: say why the review is hidden" in res.text
    shop.client.post(f"/modules/orders/reviews/{rid}/hide", data={"reason": "spam",
                                                                  "csrf_token": token})
    assert shop.services.social.reviews(None, "orders") == []
    shop.client.post("/modules/orders/trust", data={"trusted": "1", "reason": "ok",
                                                    "csrf_token": token})
    shop.services.indexer.run_once()
    assert re.search(r'trust-trusted"[^>]*>Trusted<', shop.client.get("/modules/orders").text)
