"""Prefetch jobs through the API and the panel, worked by the lease holder, against the
in-memory upstream (both backends)."""
from __future__ import annotations

import io
import json
from typing import Any

from sqlalchemy import func, select

from gati_private_registry.services import Services
from gati_private_registry.services.upstream.prefetch_worker import PrefetchWorker
from gati_private_registry.storage.models import AuditEvent, PrefetchItem, PrefetchJob, Version

from .driver import Registry
from .fake_upstream import FakeUpstream
from .test_mirror import fake, read, services, settings_overrides  # noqa: F401 (fixtures)


def admin(registry: Registry) -> dict[str, str]:
    return {"Authorization": f"Bearer {registry.token('admin', 'admin')}"}


def tree(fake: FakeUpstream) -> None:
    """app → (web ^1, util ~2.0.0); web → util ^2; util 2.0.1 is the newest 2.0.x."""
    fake.add("util", "2.0.0")
    fake.add("util", "2.0.1")
    fake.add("util", "3.0.0")
    fake.add("web", "1.0.0", dependencies={"util": "^2.0.0"})
    fake.add("web", "1.4.0", dependencies={"util": "^2.0.0"})
    fake.add("app", "1.0.0", dependencies={"web": "^1", "util": "~2.0.0"})


def worker(services: Services, concurrency: int = 2, holder: str = "test-a") -> PrefetchWorker:
    return PrefetchWorker(services.mirror, services.db, concurrency, holder=holder)


def mirrored(services: Services) -> set[str]:
    with services.db.read() as s:
        from gati_private_registry.storage.models import Package
        return {f"{n}@{v}" for n, v in s.execute(
            select(Package.name, Version.version).join(Version, Version.package_id == Package.id)
            .where(Version.upstream.is_not(None)))}


def tarball_requests(fake: FakeUpstream) -> list[str]:
    return [r for r in fake.requests if r.startswith("tarball")]


def test_prefetch_a_list_fetches_the_whole_closure(registry: Registry, fake: FakeUpstream,
                                                   services: Services, client: Any) -> None:
    tree(fake)
    resp = client.post("/api/mirror/prefetch", json={"packages": ["app@^1"]},
                       headers=admin(registry))
    assert resp.status_code == 201, resp.json
    job = resp.json
    assert job["status"] == "queued" and job["total"] == 1 and job["source"] == "list"
    assert resp.headers["Location"].endswith(f"/api/mirror/prefetch/{job['id']}")
    result = worker(services).run_once()
    assert result.held and result.processed == 3
    assert mirrored(services) == {"app@1.0.0", "web@1.4.0", "util@2.0.1"}
    done = client.get(f"/api/mirror/prefetch/{job['id']}", headers=admin(registry)).json
    assert (done["status"], done["total"], done["done"], done["failed"]) == ("done", 3, 3, 0)
    assert done["percent"] == 100 and done["errors"] == [] and done["failed_items"] == []
    with services.db.read() as s:
        actions = list(s.scalars(select(AuditEvent.action).where(
            AuditEvent.action.like("mirror.prefetch%")).order_by(AuditEvent.id)))
    assert actions == ["mirror.prefetch", "mirror.prefetch.start", "mirror.prefetch.done"]
    # warm: with the upstream gone, installs get every tarball from the cache
    fake.down = True
    for spec in ("app@1.0.0", "web@1.4.0", "util@2.0.1"):
        name, version = spec.split("@")
        assert read(registry.tarball(name, version)) == fake.tarballs[
            f"https://upstream.example/{name}/-/{name}-{version}.tgz"]


def test_prefetch_a_lockfile_v3_and_v1(registry: Registry, fake: FakeUpstream,
                                       services: Services, client: Any) -> None:
    tree(fake)
    lock_v3 = {"name": "p", "lockfileVersion": 3, "packages": {
        "": {"name": "p", "dependencies": {"app": "^1"}},
        "node_modules/app": {"version": "1.0.0", "resolved": "https://x/app-1.0.0.tgz"},
        "node_modules/web": {"version": "1.0.0"},
        "node_modules/web/node_modules/util": {"version": "2.0.0"},
        "node_modules/util": {"version": "2.0.1"},
        "node_modules/local-thing": {"resolved": "../local-thing", "link": True},
        "packages/ws": {"version": "0.0.0"}}}
    resp = client.post("/api/mirror/prefetch", json={"lockfile": lock_v3},
                       headers=admin(registry))
    assert resp.status_code == 201 and resp.json["total"] == 4, resp.json
    worker(services).run_once()
    job = client.get(f"/api/mirror/prefetch/{resp.json['id']}", headers=admin(registry)).json
    # every dependency is satisfied by a locked version: the closure adds nothing
    assert (job["status"], job["total"], job["done"]) == ("done", 4, 4), job
    assert mirrored(services) == {"app@1.0.0", "web@1.0.0", "util@2.0.0", "util@2.0.1"}
    lock_v1 = {"lockfileVersion": 1, "dependencies": {
        "web": {"version": "1.4.0", "dependencies": {"util": {"version": "2.0.0"}}},
        "alias": {"version": "npm:util@3.0.0"},
        "gitdep": {"version": "git+https://example.com/x.git#abc",
                   "resolved": "git+https://example.com/x.git#abc"}}}
    resp = client.post("/api/mirror/prefetch", json={"lockfile": lock_v1, "closure": False},
                       headers=admin(registry))
    assert resp.status_code == 201 and resp.json["total"] == 3, resp.json
    worker(services).run_once()
    assert {"web@1.4.0", "util@3.0.0"} <= mirrored(services)


def test_a_stopped_worker_leaves_the_rest_for_the_next_holder(
        registry: Registry, fake: FakeUpstream, services: Services, client: Any) -> None:
    for i in range(5):
        fake.add(f"leaf{i}", "1.0.0")
    resp = client.post("/api/mirror/prefetch", json={"packages": [f"leaf{i}" for i in range(5)]},
                       headers=admin(registry))
    job_id = resp.json["id"]
    first = worker(services, concurrency=1, holder="proc-a")
    record = first._record

    def record_then_die(*args: Any) -> None:
        record(*args)
        first.stopping.set()  # the process stops after this batch

    first._record = record_then_die  # type: ignore[method-assign]
    assert first.run_once().processed == 2
    second = worker(services, concurrency=3, holder="proc-b")
    assert not second.run_once().held  # one holder at a time
    with services.db.read() as s:
        job = s.get(PrefetchJob, job_id)
        assert job is not None and (job.status, job.done) == ("running", 2)
        assert job.current.startswith("leaf")
    first.release()
    assert second.run_once().processed == 3
    with services.db.read() as s:
        job = s.get(PrefetchJob, job_id)
        assert job is not None and (job.status, job.done, job.total) == ("done", 5, 5)
    # each tarball was fetched exactly once across the two holders
    assert sorted(tarball_requests(fake)) == sorted(set(tarball_requests(fake)))
    assert len(tarball_requests(fake)) == 5


def test_failures_are_counted_and_shown(registry: Registry, fake: FakeUpstream,
                                        services: Services, client: Any) -> None:
    fake.add("good", "1.0.0", dependencies={"missing-dep": "^1", "gitdep": "github:a/b"})
    fake.add("@held/thing", "1.0.0")
    resp = client.post("/api/mirror/prefetch",
                       json={"packages": ["good", "nope@^1", "leftpad@^9", "@held/thing",
                                          "denied-x"]},
                       headers=admin(registry))
    worker(services).run_once()
    job = client.get(f"/api/mirror/prefetch/{resp.json['id']}", headers=admin(registry)).json
    assert job["status"] == "done" and job["total"] == 6, job
    assert (job["done"], job["failed"]) == (2, 4)
    failed = {f["name"]: f["error"] for f in job["failed_items"]}
    assert set(failed) == {"nope", "leftpad", "denied-x", "missing-dep"}
    assert "not in the upstream" in failed["nope"] and "satisfies" in failed["leftpad"]
    assert any("gitdep@github:a/b: not from a registry" in e for e in job["errors"])
    # a manual pattern: fetched and queued for an approver, not served yet
    assert any("@held/thing@1.0.0" in e and "pending" in e for e in job["errors"])
    with services.db.read() as s:
        assert s.scalar(select(Version.state).where(Version.upstream.is_not(None),
                                                    Version.manifest["name"].as_string()
                                                    == "@held/thing")) == "pending"


def test_cancel(registry: Registry, fake: FakeUpstream, services: Services, client: Any) -> None:
    resp = client.post("/api/mirror/prefetch", json={"packages": ["leftpad"]},
                       headers=admin(registry))
    url = f"/api/mirror/prefetch/{resp.json['id']}"
    assert client.post(url + "/cancel", headers=admin(registry)).json["status"] == "cancelled"
    assert worker(services).run_once().processed == 0
    again = client.post(url + "/cancel", headers=admin(registry))
    assert again.status_code == 400 and again.json["error"]["details"][0]["field"] == "status"
    assert client.post("/api/mirror/prefetch/999/cancel",
                       headers=admin(registry)).status_code == 404
    assert client.get("/api/mirror/prefetch", headers=admin(registry)).json["jobs"][0][
        "status"] == "cancelled"


def test_bad_submissions_are_refused_and_store_nothing(registry: Registry, services: Services,
                                                       client: Any) -> None:
    reader = {"Authorization": f"Bearer {registry.token('admin', 'read')}"}
    assert client.post("/api/mirror/prefetch", json={"packages": ["x"]}).status_code == 401
    assert client.post("/api/mirror/prefetch", json={"packages": ["x"]},
                       headers=reader).status_code == 403
    assert client.get("/api/mirror/prefetch", headers=reader).status_code == 403
    cases: list[tuple[Any, str]] = [
        ([1, 2], "body"),
        ({}, "packages"),
        ({"packages": ["a"], "lockfile": {}}, "packages"),
        ({"packages": "express"}, "packages"),
        ({"packages": []}, "packages"),
        ({"packages": ["Bad Name@1"]}, "packages[0]"),
        ({"packages": ["ok@>>nonsense<<"]}, "packages[0]"),
        ({"packages": [""]}, "packages[0]"),
        ({"packages": ["x"], "closure": "yes"}, "closure"),
        ({"lockfile": []}, "lockfile"),
        ({"lockfile": {"lockfileVersion": 3}}, "lockfile"),
        ({"lockfile": {"packages": {"": {}}}}, "lockfile"),
        ({"lockfile": {"packages": {"node_modules/x": {"version": "not a version"}}}},
         "lockfile"),
    ]
    for body, field in cases:
        resp = client.post("/api/mirror/prefetch", json=body, headers=admin(registry))
        assert resp.status_code == 400, (body, resp.json)
        assert resp.json["error"]["details"][0]["field"] == field, (body, resp.json)
    with services.db.read() as s:
        assert s.scalar(select(func.count()).select_from(PrefetchJob)) == 0
        assert s.scalar(select(func.count()).select_from(PrefetchItem)) == 0
    assert client.get("/api/mirror/prefetch/1", headers=admin(registry)).status_code == 404


def test_panel_form_and_progress(registry: Registry, fake: FakeUpstream,
                                 services: Services) -> None:
    from .test_webhooks_panel import csrf, sign_in

    tree(fake)
    sign_in(registry)
    page = registry.client.get("/admin/mirror")
    assert page.status_code == 200 and "No prefetch jobs yet" in page.text
    assert 'http-equiv="refresh"' not in page.text
    no_csrf = registry.client.post("/admin/mirror/prefetch", data={"packages": "app"})
    assert no_csrf.status_code == 400
    bad = registry.client.post("/admin/mirror/prefetch", data={
        "packages": "<script>x</script>", "csrf_token": csrf(page)})
    assert bad.status_code == 400 and "&lt;script&gt;" in bad.text and "<script>x" not in bad.text
    empty = registry.client.post("/admin/mirror/prefetch", data={"packages": " ",
                                                                 "csrf_token": csrf(page)})
    assert empty.status_code == 400 and "list packages" in empty.text
    not_json = registry.client.post("/admin/mirror/prefetch", data={
        "csrf_token": csrf(page), "lockfile": (io.BytesIO(b"{nope"), "package-lock.json")},
        content_type="multipart/form-data")
    assert not_json.status_code == 400 and "not a JSON package-lock.json" in not_json.text
    lock = {"lockfileVersion": 3, "packages": {"node_modules/app": {"version": "1.0.0"}}}
    ok = registry.client.post("/admin/mirror/prefetch", data={
        "csrf_token": csrf(page), "closure": "on",
        "lockfile": (io.BytesIO(json.dumps(lock).encode()), "package-lock.json")},
        content_type="multipart/form-data")
    assert ok.status_code == 302
    running = registry.client.get("/admin/mirror")
    assert 'http-equiv="refresh"' in running.text and "0 done, 0 failed of 1" in running.text
    worker(services).run_once()
    finished = registry.client.get("/admin/mirror")
    assert "3 done, 0 failed of 3" in finished.text and 'http-equiv="refresh"' not in finished.text
    with services.db.read() as s:
        assert s.scalar(select(PrefetchJob.created_by)) == "admin"
