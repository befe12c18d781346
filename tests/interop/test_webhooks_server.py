"""Webhooks inside the real server: the delivery thread runs in the gunicorn workers of
``gati-registry serve``, so an ``npm publish`` and an approval through the API reach a
receiver as signed events, each exactly once although two workers follow the feed."""
from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.functional.webhook_receiver import Receiver

pytestmark = pytest.mark.interop

REGISTRY_ENV = {"APPROVALS__DEFAULT_MODE": "manual"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def wait_for(receiver: Receiver, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.requests) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def test_npm_publish_and_approval_are_delivered_by_the_server(registry_server, receiver):
    reg = registry_server
    admin = reg.token("admin", "admin")
    made = reg.http("POST", "/api/webhooks", token=admin,
                    body={"url": receiver.url("/ci"), "pattern": "@gati-modules/*",
                          "description": "interop"})
    assert made.status == 201, made
    hook = made.json()

    name = "@gati-modules/it-hooked"
    pkg = reg.make_package(name, "1.0.0")
    published = reg.publish_dir(pkg.path, reg.token("admin", "publish")).ok()
    assert "is pending" in published.output, published
    approved = reg.http("POST", f"/api/modules/{name}/1.0.0/approve", body={"reason": "reviewed"},
                        token=reg.token("admin", "approve"))
    assert approved.status == 200, approved

    wait_for(receiver, 2)
    assert [r.headers["X-Gati-Event"] for r in receiver.requests] == \
        ["version.publish", "version.state"], reg.log_tail()
    for req in receiver.requests:
        assert req.path == "/ci" and req.signature_ok(hook["secret"])
        assert req.headers["User-Agent"] == "gati-registry-webhooks"
        assert req.json["package"] == name and req.json["version"] == "1.0.0"
    publish_event, state_event = (r.json for r in receiver.requests)
    assert publish_event["change"]["state"] == "pending"
    assert state_event["change"] == {"old": "pending", "new": "approved", "actor": "admin",
                                     "reason": "reviewed"}

    # both gunicorn workers follow the feed; the lease keeps it to one delivery each
    time.sleep(3)
    assert len(receiver.requests) == 2
    log = reg.http("GET", f"/api/webhooks/{hook['id']}/deliveries", token=admin).json()
    assert log["total"] == 2
    assert {d["status"] for d in log["items"]} == {"delivered"}
