"""Webhooks: admins register URLs; the worker follows the changes feed and POSTs signed
events to a real HTTP receiver, with retries, a lease and a delivery log (both backends)."""
from __future__ import annotations

import contextlib
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from gati_private_registry.cli.admin import main
from gati_private_registry.services import Services
from gati_private_registry.services.webhook_http import Outcome
from gati_private_registry.services.webhook_worker import GAP_GRACE, WebhookRunner, WebhookWorker
from gati_private_registry.services.webhooks import aware
from gati_private_registry.storage import changes
from gati_private_registry.storage.models import (AuditEvent, Change, Webhook, WebhookDelivery,
                                                  WorkerLease)
from gati_private_registry.testing import ModuleSpec

from .driver import Registry
from .webhook_receiver import Receiver

SECRET = "a-shared-secret-of-some-length"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"approvals": {"default_mode": "manual"},
            "public_url": "https://registry.example.internal",
            "webhooks": {"max_attempts": 4, "retry_base": 5.0, "timeout": 1.0}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def worker(services: Services) -> WebhookWorker:
    return WebhookWorker(services.settings, services.db, holder="worker-one")


def admin(registry: Registry) -> dict[str, str]:
    return registry.headers(registry.token("admin", "admin"))


def create(registry: Registry, url: str, **fields: Any) -> Any:
    return registry.client.post("/api/webhooks", json={"url": url, **fields}, headers=admin(registry))


def publish(registry: Registry, name: str, version: str = "1.0.0") -> None:
    resp = registry.publish(ModuleSpec(name, version, extra={"license": "MIT"}))
    assert resp.status_code == 201, resp.data


def approve(registry: Registry, name: str, version: str = "1.0.0") -> None:
    resp = registry.client.post(f"/api/modules/{name}/{version}/approve", json={"reason": "fine"},
                                headers=registry.headers(registry.token("admin", "approve")))
    assert resp.status_code == 200, resp.data


def deliveries(services: Services) -> list[WebhookDelivery]:
    with services.db.read() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def count(services: Services, model: Any, *where: Any) -> int:
    with services.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def now() -> datetime:
    return datetime.now(timezone.utc)


# -- registration --------------------------------------------------------------------


def test_create_is_for_admins_and_validates_everything(registry: Registry,
                                                       receiver: Receiver) -> None:
    url = receiver.url()
    assert registry.client.get("/api/webhooks").status_code == 401
    assert registry.client.post("/api/webhooks", json={"url": url}).status_code == 401
    # an admin's publish token is not an admin token; a publisher is no admin at all
    registry.add_user("pat", "publisher")
    for token in (registry.token("admin", "publish"), registry.token("pat", "publish")):
        for resp in (registry.client.post("/api/webhooks", json={"url": url},
                                          headers=registry.headers(token)),
                     registry.client.post("/api/webhooks", json={"url": "nope"},
                                          headers=registry.headers(token)),
                     registry.client.get("/api/webhooks", headers=registry.headers(token))):
            assert resp.status_code == 403, resp.data
            assert resp.json["error"]["code"] == "forbidden"

    bad = [({"url": "ftp://example.org/x"}, "url"), ({"url": "http://"}, "url"),
           ({"url": "just words"}, "url"), ({"url": "https://h.example/" + "x" * 2000}, "url"),
           ({"url": "https://user:pw@h.example/"}, "url"), ({"url": 7}, "url"), ({}, "url"),
           ({"url": url, "events": []}, "events"), ({"url": url, "events": ["nope"]}, "events"),
           ({"url": url, "events": "version.publish"}, "events"),
           ({"url": url, "pattern": ""}, "pattern"), ({"url": url, "secret": "short"}, "secret"),
           ({"url": url, "active": "yes"}, "active"), ({"url": url, "colour": "red"}, "colour")]
    for body, field in bad:
        resp = registry.client.post("/api/webhooks", json=body, headers=admin(registry))
        assert resp.status_code == 400, (body, resp.data)
        assert field in [d["field"] for d in resp.json["error"]["details"]], (body, resp.json)
    # every problem at once
    many = create(registry, "gopher://x", events=["nope"], pattern="", secret="short")
    assert {d["field"] for d in many.json["error"]["details"]} == {"url", "events", "pattern", "secret"}
    not_object = registry.client.post("/api/webhooks", data="[1]", content_type="application/json",
                                      headers=admin(registry))
    assert not_object.status_code == 400
    assert count(registry.services, Webhook) == 0
    assert count(registry.services, AuditEvent, AuditEvent.action.like("webhook.%")) == 0


def test_create_list_update_delete(registry: Registry, receiver: Receiver) -> None:
    made = create(registry, receiver.url(), description="CI trigger")
    assert made.status_code == 201, made.data
    hook = made.json
    assert hook["events"] == ["version.publish", "version.state"] and hook["pattern"] == "*"
    assert hook["active"] is True and hook["created_by"] == "admin"
    secret = hook["secret"]
    assert len(secret) >= 40
    with registry.services.db.read() as s:
        assert s.get(Webhook, hook["id"]).secret == secret
        audit = s.scalars(select(AuditEvent).where(AuditEvent.action == "webhook.create")).one()
    assert audit.actor == "admin" and secret not in str(audit.details)

    # the secret is shown once: never in a listing or a read
    listed = registry.client.get("/api/webhooks", headers=admin(registry))
    assert listed.json["total"] == 1 and "secret" not in listed.json["items"][0]
    assert secret not in listed.text
    one = registry.client.get(f"/api/webhooks/{hook['id']}", headers=admin(registry))
    assert one.json["url"] == receiver.url() and "secret" not in one.json
    given = create(registry, receiver.url("/other"), secret=SECRET, events=["version.state"],
                   pattern="@corp/*")
    assert given.json["secret"] == SECRET and given.json["events"] == ["version.state"]

    path = f"/api/webhooks/{hook['id']}"
    for body, field in [({"active": "no"}, "active"), ({"url": "mailto:x@y"}, "url"),
                        ({"events": []}, "events"), ({"secret": SECRET}, "secret"), ({}, "body")]:
        resp = registry.client.patch(path, json=body, headers=admin(registry))
        assert resp.status_code == 400, (body, resp.data)
        assert field in [d["field"] for d in resp.json["error"]["details"]]
    assert registry.client.get(path, headers=admin(registry)).json == one.json  # unchanged
    changed = registry.client.patch(path, json={"active": False, "pattern": "@corp/*",
                                                "events": ["version.state", "version.publish"]},
                                    headers=admin(registry))
    assert changed.status_code == 200, changed.data
    assert changed.json["active"] is False and changed.json["pattern"] == "@corp/*"
    assert changed.json["events"] == ["version.publish", "version.state"]
    reader = registry.headers(registry.token("admin", "read"))
    assert registry.client.patch(path, json={"active": True}, headers=reader).status_code == 403
    assert registry.client.delete(path, headers=reader).status_code == 403
    assert registry.client.patch("/api/webhooks/999", json={"active": True},
                                 headers=admin(registry)).status_code == 404

    assert registry.client.delete(path, headers=admin(registry)).status_code == 204
    assert registry.client.get(path, headers=admin(registry)).status_code == 404
    assert registry.client.delete(path, headers=admin(registry)).status_code == 404
    assert registry.client.get("/api/webhooks/abc", headers=admin(registry)).json["error"]["code"] \
        == "not_found"
    with registry.services.db.read() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("webhook.%"))
                            .order_by(AuditEvent.id)).all()
    assert actions == ["webhook.create", "webhook.create", "webhook.update", "webhook.delete"]


# -- delivery ------------------------------------------------------------------------


def test_publish_and_approve_reach_the_receiver_signed(registry: Registry, receiver: Receiver,
                                                      worker: WebhookWorker) -> None:
    assert worker.run_once(now()).enqueued == 0  # the worker already follows the feed
    publish(registry, "@corp/before")  # history: not delivered to a newer webhook
    hook = create(registry, receiver.url(), secret=SECRET).json
    publish(registry, "@corp/hooked")
    approve(registry, "@corp/hooked")

    result = worker.run_once(now())
    assert result.held and result.enqueued == 2 and result.delivered == 2, result
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    for req, event in ((first, "version.publish"), (second, "version.state")):
        assert req.signature_ok(SECRET), req.headers
        assert not req.signature_ok("another-secret-entirely")
        assert req.headers["Content-Type"] == "application/json"
        assert req.headers["User-Agent"] == "gati-registry-webhooks"
        assert req.headers["X-Gati-Event"] == event
        body = req.json
        assert body["id"] == int(req.headers["X-Gati-Delivery"])
        assert body["event"] == event and body["package"] == "@corp/hooked"
        assert body["version"] == "1.0.0"
        assert body["registry"] == "https://registry.example.internal"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["occurredAt"])
    assert first.json["change"]["state"] == "pending"
    assert second.json["change"] == {"old": "pending", "new": "approved", "actor": "admin",
                                     "reason": "fine"}

    log = registry.client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=admin(registry)).json
    assert log["total"] == 2
    assert [d["event"] for d in log["items"]] == ["version.state", "version.publish"]  # newest first
    assert all(d["status"] == "delivered" and d["attempts"] == 1 and d["last_status"] == 200
               and d["delivered_at"] and d["duration_ms"] is not None for d in log["items"])
    # nothing twice: the cursor moved with the queued rows
    again = worker.run_once(now())
    assert again.enqueued == 0 and again.attempted == 0 and len(receiver.requests) == 2


def test_failing_receiver_is_retried_with_backoff(registry: Registry, receiver: Receiver,
                                                  worker: WebhookWorker) -> None:
    create(registry, receiver.url(), secret=SECRET)
    publish(registry, "@corp/flaky")
    receiver.fail(3, status=503)
    t0 = now()
    assert worker.run_once(t0).retrying == 1
    (d,) = deliveries(registry.services)
    assert d.status == "pending" and d.attempts == 1 and d.last_status == 503
    assert "HTTP 503" in d.last_error and "receiver says no" in d.last_error
    assert aware(d.next_attempt_at) == t0 + timedelta(seconds=5)

    assert worker.run_once(t0 + timedelta(seconds=4.9)).attempted == 0  # not due yet
    t1 = t0 + timedelta(seconds=5)
    assert worker.run_once(t1).retrying == 1
    assert aware(deliveries(registry.services)[0].next_attempt_at) == t1 + timedelta(seconds=10)
    t2 = t1 + timedelta(seconds=10)
    assert worker.run_once(t2).retrying == 1
    assert aware(deliveries(registry.services)[0].next_attempt_at) == t2 + timedelta(seconds=20)
    t3 = t2 + timedelta(seconds=20)
    assert worker.run_once(t3).delivered == 1
    (d,) = deliveries(registry.services)
    assert d.status == "delivered" and d.attempts == 4 and d.last_status == 200 and not d.last_error
    assert aware(d.delivered_at) == t3 and d.next_attempt_at is None
    # four identical, identically signed requests
    assert len(receiver.requests) == 4 and len({r.body for r in receiver.requests}) == 1
    assert {r.headers["X-Gati-Delivery"] for r in receiver.requests} == {str(d.id)}


def test_gives_up_after_max_attempts_and_redeliver_queues_again(
        registry: Registry, receiver: Receiver, worker: WebhookWorker) -> None:
    hook = create(registry, receiver.url(), secret=SECRET).json
    publish(registry, "@corp/down")
    receiver.fail(100)
    t = now()
    for attempt in range(1, 5):
        result = worker.run_once(t)
        assert result.attempted == 1, (attempt, result)
        t = t + timedelta(seconds=5 * 2 ** (attempt - 1))
    (d,) = deliveries(registry.services)
    assert d.status == "failed" and d.attempts == 4 and d.next_attempt_at is None
    assert worker.run_once(t + timedelta(days=1)).attempted == 0
    assert len(receiver.requests) == 4

    path = f"/api/webhooks/{hook['id']}/deliveries/{d.id}/redeliver"
    reader = registry.headers(registry.token("admin", "read"))
    assert registry.client.post(path, headers=reader).status_code == 403
    assert registry.client.post(f"/api/webhooks/{hook['id']}/deliveries/999/redeliver",
                                headers=admin(registry)).status_code == 404
    assert deliveries(registry.services)[0].status == "failed"
    again = registry.client.post(path, headers=admin(registry))
    assert again.status_code == 202 and again.json["status"] == "pending"
    assert again.json["attempts"] == 0
    receiver.fail(0)
    assert worker.run_once(now() + timedelta(seconds=1)).delivered == 1
    assert deliveries(registry.services)[0].status == "delivered"
    assert len(receiver.requests) == 5
    assert count(registry.services, AuditEvent, AuditEvent.action == "webhook.redeliver") == 1


def test_redirects_timeouts_and_refused_connections_are_failures(
        registry: Registry, receiver: Receiver, worker: WebhookWorker) -> None:
    target = Receiver()
    closed = Receiver()
    closed_url = closed.url("/gone")
    closed.close()  # nothing listens there any more
    try:
        receiver.redirect_to = target.url("/elsewhere")
        create(registry, receiver.url("/moved"), events=["version.publish"])
        create(registry, closed_url, events=["version.publish"])
        publish(registry, "@corp/edge")
        result = worker.run_once(now())
        assert result.attempted == 2 and result.retrying == 2, result
        moved, refused = deliveries(registry.services)
        assert moved.last_status == 302 and "not followed" in moved.last_error
        assert target.requests == []  # the redirect was not followed
        assert refused.last_status is None and "cannot connect" in refused.last_error

        receiver.redirect_to = None
        receiver.delay = 2.5  # longer than the 1 s timeout
        result = worker.run_once(now() + timedelta(seconds=5))
        assert result.attempted == 2
        moved = deliveries(registry.services)[0]
        assert moved.status == "pending" and moved.attempts == 2 and moved.last_status is None
        assert "no answer within 1 s" in moved.last_error
    finally:
        target.close()


def test_a_transport_that_raises_counts_as_a_failed_attempt(registry: Registry,
                                                            services: Services) -> None:
    def broken(url: str, body: bytes, headers: Any, timeout: float) -> Outcome:
        raise RuntimeError("boom")

    worker = WebhookWorker(services.settings, services.db, holder="w", transport=broken)
    create(registry, "https://receiver.example.invalid/hook")
    publish(registry, "@corp/boom")
    assert worker.run_once(now()).retrying == 1
    (d,) = deliveries(services)
    assert d.attempts == 1 and d.last_error == "RuntimeError: boom" and d.status == "pending"


def test_inactive_webhooks_get_nothing_and_patterns_and_events_filter(
        registry: Registry, receiver: Receiver, worker: WebhookWorker) -> None:
    create(registry, receiver.url("/corp"), pattern="@corp/*")
    create(registry, receiver.url("/off"), active=False)
    create(registry, receiver.url("/states"), events=["version.state"])
    publish(registry, "@corp/one")
    publish(registry, "@other/two")
    approve(registry, "@corp/one")
    worker.run_once(now())
    got = sorted((r.path, r.json["event"], r.json["package"]) for r in receiver.requests)
    assert got == [("/corp", "version.publish", "@corp/one"),
                   ("/corp", "version.state", "@corp/one"),
                   ("/states", "version.state", "@corp/one")]

    # deactivating pauses the retries of queued deliveries, and queues nothing new;
    # activating again resumes them
    corp = registry.client.get("/api/webhooks", headers=admin(registry)).json["items"][0]["id"]
    receiver.requests.clear()
    receiver.fail(1)
    publish(registry, "@corp/three")
    t = now()
    assert worker.run_once(t).retrying == 1
    off = registry.client.patch(f"/api/webhooks/{corp}", json={"active": False},
                                headers=admin(registry))
    assert off.json["active"] is False
    publish(registry, "@corp/four")
    assert worker.run_once(t + timedelta(seconds=10)).attempted == 0
    registry.client.patch(f"/api/webhooks/{corp}", json={"active": True}, headers=admin(registry))
    assert worker.run_once(t + timedelta(seconds=10)).delivered == 1
    assert [r.json["package"] for r in receiver.requests] == ["@corp/three", "@corp/three"]


def test_deliveries_are_paginated(registry: Registry, receiver: Receiver,
                                  worker: WebhookWorker) -> None:
    hook = create(registry, receiver.url()).json
    for v in ("1.0.0", "1.0.1", "1.0.2"):
        publish(registry, "@corp/paged", v)
    worker.run_once(now())
    path = f"/api/webhooks/{hook['id']}/deliveries"
    page = registry.client.get(path + "?per_page=2&page=2", headers=admin(registry)).json
    assert page["total"] == 3 and page["page"] == 2 and len(page["items"]) == 1
    assert page["items"][0]["version"] == "1.0.0"
    for query in ("?page=0", "?page=x", "?per_page=500"):
        resp = registry.client.get(path + query, headers=admin(registry))
        assert resp.status_code == 400, query
    assert registry.client.get("/api/webhooks/999/deliveries", headers=admin(registry)).status_code == 404


# -- the lease and the feed ----------------------------------------------------------


def test_one_lease_holder_and_no_double_delivery(registry: Registry, receiver: Receiver,
                                                 services: Services) -> None:
    one = WebhookWorker(services.settings, services.db, holder="worker-one")
    two = WebhookWorker(services.settings, services.db, holder="worker-two")
    # two processes finding the lease free at the same moment: one wins
    barrier = threading.Barrier(2)
    t0 = now()
    won: dict[str, bool] = {}

    def take(w: WebhookWorker) -> None:
        barrier.wait()
        won[w.holder] = w.acquire(t0)

    threads = [threading.Thread(target=take, args=(w,)) for w in (one, two)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(won.values()) == [False, True], won
    holder, other = (one, two) if won["worker-one"] else (two, one)

    create(registry, receiver.url(), secret=SECRET)
    for v in ("1.0.0", "1.0.1", "1.0.2"):
        publish(registry, "@corp/raced", v)
    results: dict[str, list[Any]] = {"worker-one": [], "worker-two": []}

    def run(w: WebhookWorker) -> None:
        for _ in range(3):
            results[w.holder].append(w.run_once(t0 + timedelta(seconds=1)))

    threads = [threading.Thread(target=run, args=(w,)) for w in (one, two)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(r.held for r in results[holder.holder])
    assert not any(r.held for r in results[other.holder])
    assert {r.holder for r in results[other.holder]} == {holder.holder}
    assert [r.json["version"] for r in receiver.requests] == ["1.0.0", "1.0.1", "1.0.2"]
    assert other.run_once(t0 + timedelta(seconds=2)).holder == holder.holder

    # the holder stops renewing (a crash): after the lease runs out the other takes over
    later = t0 + timedelta(seconds=31)
    publish(registry, "@corp/raced", "1.0.3")
    taken = other.run_once(later)
    assert taken.held and taken.delivered == 1
    assert not holder.run_once(later).held
    assert [r.json["version"] for r in receiver.requests] == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]
    assert len(deliveries(services)) == 4
    with services.db.read() as s:
        assert s.get(WorkerLease, "webhooks").holder == other.holder
    # a clean shutdown hands the lease over at once
    other.release()
    assert holder.run_once(later).held


class FailsOnce(WebhookWorker):
    """A worker whose first pass hits a database hiccup."""

    passes = 0

    def run_once(self, now: datetime | None = None) -> Any:
        self.passes += 1
        if self.passes == 1:
            raise RuntimeError("database went away")
        return super().run_once(now)


def wait_for(receiver: Receiver, n: int, timeout: float = 15.0) -> float:
    started = time.monotonic()
    while len(receiver.requests) < n and time.monotonic() - started < timeout:
        time.sleep(0.05)
    return time.monotonic() - started


def test_the_thread_survives_errors_wakes_on_commits_and_releases_the_lease(
        registry: Registry, receiver: Receiver, services: Services) -> None:
    create(registry, receiver.url())
    publish(registry, "@corp/threaded")
    worker = FailsOnce(services.settings, services.db, holder="thread")
    # a long poll interval: only the generation counter can make it this quick
    runner = WebhookRunner(worker, services.generation, poll_interval=60)
    runner.start()
    try:
        wait_for(receiver, 1)
        assert worker.passes >= 2 and len(receiver.requests) == 1  # it kept going
        publish(registry, "@corp/threaded", "1.0.1")
        assert wait_for(receiver, 2) < 10
        assert [r.json["version"] for r in receiver.requests] == ["1.0.0", "1.0.1"]
    finally:
        runner.stop()
    assert runner._thread is not None and not runner._thread.is_alive()
    with services.db.read() as s:
        assert s.get(WorkerLease, "webhooks").holder == ""


def _insert_change(s: Session, seq: int, name: str) -> None:
    s.execute(insert(Change).values(seq=seq, kind="version.publish", package=name, version="1.0.0",
                                    payload={"state": "approved"}, at=now()))


def test_a_gap_in_the_feed_waits_for_the_late_commit(registry: Registry, receiver: Receiver,
                                                     worker: WebhookWorker, backend: str) -> None:
    create(registry, receiver.url(), events=["version.publish"])
    worker.run_once(now())
    services = registry.services
    with services.db.read() as s:
        last = s.scalar(select(func.max(Change.seq))) or 0
    with contextlib.ExitStack() as cleanup:
        if backend == "postgres":
            # a transaction that took its sequence number first but commits last
            conn = cleanup.enter_context(services.db.engine.connect())
            late = conn.begin()
            with Session(bind=conn) as s:
                changes.append(s, "version.publish", package="@corp/late", version="1.0.0")
                s.flush()
            publish(registry, "@corp/early")
        else:
            # SQLite has one writer at a time and no gaps: write the same rows by hand
            with services.db.write() as s:
                _insert_change(s, last + 2, "@corp/early")
        t = now()
        assert worker.run_once(t).attempted == 0 and receiver.requests == []
        if backend == "postgres":
            late.commit()
        else:
            with services.db.write() as s:
                _insert_change(s, last + 1, "@corp/late")
    assert worker.run_once(t).delivered == 2
    assert [r.json["package"] for r in receiver.requests] == ["@corp/late", "@corp/early"]


def test_a_gap_that_never_fills_is_skipped_after_a_grace(
        registry: Registry, receiver: Receiver, worker: WebhookWorker, backend: str) -> None:
    create(registry, receiver.url(), events=["version.publish"])
    worker.run_once(now())
    services = registry.services
    if backend == "postgres":
        with pytest.raises(RuntimeError):  # rolled back: its sequence number is gone
            with services.db.write() as s:
                changes.append(s, "version.publish", package="@corp/never", version="1.0.0")
                raise RuntimeError("roll back")
        publish(registry, "@corp/after")
    else:
        with services.db.read() as s:
            last = s.scalar(select(func.max(Change.seq))) or 0
        with services.db.write() as s:
            _insert_change(s, last + 2, "@corp/after")
    t = now()
    assert worker.run_once(t).attempted == 0
    assert worker.run_once(t + GAP_GRACE - timedelta(seconds=10)).attempted == 0
    assert worker.run_once(t + GAP_GRACE).delivered == 1
    assert [r.json["package"] for r in receiver.requests] == ["@corp/after"]


def test_cli_run_once(registry: Registry, receiver: Receiver, services: Services) -> None:
    env = {"GATI_REGISTRY_DATABASE__URL": services.settings.database_url,
           "GATI_REGISTRY_DATA": str(services.settings.data)}
    create(registry, receiver.url())
    publish(registry, "@corp/cli")
    done = CliRunner().invoke(main, ["webhooks", "run-once"], env=env, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "queued 1, attempted 1: delivered 1" in done.output
    assert [r.json["package"] for r in receiver.requests] == ["@corp/cli"]
    # while a server process holds the lease, the command does nothing
    assert WebhookWorker(services.settings, services.db, holder="server").run_once(now()).held
    publish(registry, "@corp/cli", "1.0.1")
    busy = CliRunner().invoke(main, ["webhooks", "run-once"], env=env, catch_exceptions=False)
    assert busy.exit_code != 0 and "another process (server)" in busy.output
    assert len(receiver.requests) == 1
