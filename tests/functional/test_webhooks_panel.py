"""The webhook pages of the panel: admins register webhooks (the secret shown once), switch
them on and off, delete them, read the delivery log and redeliver (both backends)."""
from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
from sqlalchemy import func, select

from gati_private_registry.services.webhook_worker import WebhookWorker
from gati_private_registry.storage.models import Webhook, WebhookDelivery
from gati_private_registry.testing import ModuleSpec

from .driver import Registry
from .webhook_receiver import Receiver


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"approvals": {"default_mode": "manual"}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def csrf(page: Any) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def sign_in(registry: Registry, username: str = "admin", password: str = "admin-pass-1") -> None:
    page = registry.client.get("/login")
    resp = registry.client.post("/login", data={"username": username, "password": password,
                                                "csrf_token": csrf(page)})
    assert resp.status_code == 302, resp.text


def hooks(registry: Registry) -> list[Webhook]:
    with registry.services.db.read() as s:
        return list(s.scalars(select(Webhook).order_by(Webhook.id)))


def test_only_signed_in_admins_see_the_pages(registry: Registry) -> None:
    away = registry.client.get("/admin/webhooks")
    assert away.status_code == 302 and "/login?next=/admin/webhooks" in away.headers["Location"]
    assert registry.client.get("/admin/webhooks/1").status_code == 302
    # the CSRF check comes first for every form post
    assert registry.client.post("/admin/webhooks", data={}).status_code == 400

    registry.add_user("pat", "publisher")
    sign_in(registry, "pat", "password-123")
    home = registry.client.get("/")
    assert "/admin/webhooks" not in home.text  # no nav link for non-admins
    for path in ("/admin/webhooks", "/admin/webhooks/1"):
        page = registry.client.get(path)
        assert page.status_code == 403 and "Not allowed" in page.text
    form = registry.client.post("/admin/webhooks", data={
        "csrf_token": csrf(home), "url": "https://example.org/hook", "events": "version.publish",
        "pattern": "*"})
    assert form.status_code == 403
    assert hooks(registry) == []


def test_admin_registers_sees_secret_once_and_manages(registry: Registry,
                                                     receiver: Receiver) -> None:
    sign_in(registry)
    page = registry.client.get("/admin/webhooks")
    assert page.status_code == 200 and "No webhooks yet" in page.text
    assert 'href="/admin/webhooks"' in page.text  # the nav link
    token = csrf(page)
    data = {"url": receiver.url(), "events": ["version.publish", "version.state"],
            "pattern": "@corp/*", "description": "<script>alert(1)</script>"}

    # no CSRF token, nothing happens
    refused = registry.client.post("/admin/webhooks", data=data)
    assert refused.status_code == 400 and hooks(registry) == []
    # bad input: every problem shown next to the form, nothing stored
    bad = registry.client.post("/admin/webhooks", data={
        "csrf_token": token, "url": "ftp://x", "pattern": "", "secret": "short"})
    assert bad.status_code == 400
    assert 'id="form-errors"' in bad.text
    for field in ("url:", "events:", "pattern:", "secret:"):
        assert field in bad.text
    assert hooks(registry) == []

    made = registry.client.post("/admin/webhooks", data={**data, "csrf_token": token})
    assert made.status_code == 201, made.text
    (hook,) = hooks(registry)
    shown = re.search(r'<pre id="new-secret">([^<]+)</pre>', made.text)
    assert shown and shown.group(1) == hook.secret
    assert hook.events == ["version.publish", "version.state"] and hook.pattern == "@corp/*"
    assert "<script>alert(1)</script>" not in made.text
    assert html.escape("<script>alert(1)</script>") in made.text
    listing = registry.client.get("/admin/webhooks")
    assert hook.secret not in listing.text and receiver.url() in listing.text

    off = registry.client.post(f"/admin/webhooks/{hook.id}/active",
                               data={"csrf_token": token, "active": "off"})
    assert off.status_code == 302
    assert hooks(registry)[0].active is False
    assert "Activate" in registry.client.get("/admin/webhooks").text
    assert registry.client.post(f"/admin/webhooks/{hook.id}/active",
                                data={"active": "on"}).status_code == 400  # no CSRF token
    assert hooks(registry)[0].active is False
    registry.client.post(f"/admin/webhooks/{hook.id}/active",
                         data={"csrf_token": token, "active": "on", "back": "detail"})
    assert hooks(registry)[0].active is True

    assert registry.client.post(f"/admin/webhooks/{hook.id}/delete").status_code == 400
    gone = registry.client.post(f"/admin/webhooks/{hook.id}/delete", data={"csrf_token": token})
    assert gone.status_code == 302 and hooks(registry) == []
    assert registry.client.get(f"/admin/webhooks/{hook.id}").status_code == 404


def test_delivery_log_and_redeliver(registry: Registry, receiver: Receiver) -> None:
    sign_in(registry)
    token = csrf(registry.client.get("/admin/webhooks"))
    registry.client.post("/admin/webhooks", data={
        "csrf_token": token, "url": receiver.url(), "events": ["version.publish"], "pattern": "*"})
    (hook,) = hooks(registry)
    resp = registry.publish(ModuleSpec("@corp/logged", "2.1.0", extra={"license": "MIT"}))
    assert resp.status_code == 201
    receiver.fail(1, status=418)
    worker = WebhookWorker(registry.services.settings, registry.services.db, holder="t")
    assert worker.run_once(datetime.now(timezone.utc)).retrying == 1

    page = registry.client.get(f"/admin/webhooks/{hook.id}")
    assert page.status_code == 200
    with registry.services.db.read() as s:
        delivery = s.scalars(select(WebhookDelivery)).one()
    row = re.search(rf'<tr id="delivery-{delivery.id}" data-status="pending">(.*?)</tr>',
                    page.text, re.S)
    assert row, page.text
    for text in ("version.publish", "@corp/logged@2.1.0", "HTTP 418", "next try"):
        assert text in row.group(1)

    path = f"/admin/webhooks/{hook.id}/deliveries/{delivery.id}/redeliver"
    assert registry.client.post(path).status_code == 400  # no CSRF token
    again = registry.client.post(path, data={"csrf_token": token})
    assert again.status_code == 302 and again.headers["Location"].endswith(f"/admin/webhooks/{hook.id}")
    worker.run_once(datetime.now(timezone.utc))
    page = registry.client.get(f"/admin/webhooks/{hook.id}")
    assert f'<tr id="delivery-{delivery.id}" data-status="delivered">' in page.text
    assert "HTTP 200" in page.text and len(receiver.requests) == 2
    with registry.services.db.read() as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
