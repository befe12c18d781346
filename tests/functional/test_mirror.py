"""The mirror through the npm front door, against an in-memory upstream (both backends)."""
from __future__ import annotations

import json
import time
from typing import Any, Iterator

import pytest
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from gati_private_registry.services import Services, build_services
from gati_private_registry.services.upstream.tarballs import TarballRefused
from gati_private_registry.settings import Settings
from gati_private_registry.storage import migrate
from gati_private_registry.storage.models import (AuditEvent, Change, Package, UpstreamPackument,
                                                  Version)
from gati_private_registry.testing import ModuleSpec

from .driver import Registry
from .fake_upstream import FakeUpstream

PATTERNS = [{"pattern": "@corp/*", "source": "local"},
            {"pattern": "@held/*", "source": "public", "approval": "manual"},
            {"pattern": "@young/*", "source": "public", "min_age": "7d"},
            {"pattern": "denied-*", "source": "deny"},
            {"pattern": "*", "source": "public"}]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"upstreams": {"public": {"url": "https://upstream.example/", "max_age": "10m",
                                     "stale_timeout": "0.3s"}},
            "packages": PATTERNS}


@pytest.fixture
def fake() -> FakeUpstream:
    up = FakeUpstream()
    up.add("leftpad", "1.0.0", published="2019-05-01T00:00:00.000Z")
    up.add("leftpad", "1.1.0", published="2020-05-01T00:00:00.000Z")
    up.add("@corp/x", "9.9.9")  # an attacker's public copy of an internal name
    return up


@pytest.fixture
def services(settings: Settings, fake: FakeUpstream) -> Iterator[Services]:
    svc = build_services(settings, upstream_clients={"public": fake})
    migrate.upgrade(svc.db.engine)
    svc.accounts.ensure_admin()
    svc.keys.ensure()
    yield svc
    svc.close()


def age_cache(services: Services, name: str) -> None:
    """Make the cached copy of ``name`` older than its max_age, in memory and database."""
    with services.db.write() as s:
        s.execute(update(UpstreamPackument).where(UpstreamPackument.name == name).values(
            fetched_at=datetime.now(timezone.utc) - timedelta(hours=1)))
    services.mirror.docs._docs[name].confirmed -= 3600


def read(resp: Any) -> bytes:
    return b"".join(resp.response)


def test_packument_merged_from_upstream(registry: Registry, fake: FakeUpstream) -> None:
    resp = registry.packument("leftpad")
    assert resp.status_code == 200, resp.data
    doc = json.loads(resp.data)
    assert sorted(doc["versions"]) == ["1.0.0", "1.1.0"]
    assert doc["dist-tags"] == {"latest": "1.1.0"}
    dist = doc["versions"]["1.1.0"]["dist"]
    assert dist["tarball"] == "http://localhost/npm/leftpad/-/leftpad-1.1.0.tgz"
    assert dist["integrity"] == fake.docs["leftpad"]["versions"]["1.1.0"]["dist"]["integrity"]
    assert set(doc["time"]) == {"1.0.0", "1.1.0", "created", "modified"}
    assert "Warning" not in resp.headers
    abbreviated = registry.packument("leftpad", abbreviated=True)
    assert abbreviated.headers["Content-Type"] == "application/vnd.npm.install-v1+json"
    assert set(json.loads(abbreviated.data)["time"]) == set(doc["time"])
    # within max_age the upstream is not asked again
    asked = len(fake.requests)
    assert registry.packument("leftpad").status_code == 200
    assert len(fake.requests) == asked


def test_tarball_fetched_once_verified_stored_and_signed(registry: Registry, fake: FakeUpstream,
                                                          services: Services) -> None:
    upstream_bytes = fake.add("streamed", "2.0.0")
    resp = registry.tarball("streamed", "2.0.0")
    assert resp.status_code == 200
    assert read(resp) == upstream_bytes
    with services.db.read() as s:
        row = s.scalar(select(Version).where(Version.version == "2.0.0"))
        assert row is not None and row.upstream == "public" and row.state == "approved"
        assert s.scalar(select(Change.kind).where(Change.package == "streamed")) == "version.mirror"
        assert s.scalar(select(AuditEvent.actor).where(AuditEvent.action == "version.mirror")) \
            == "upstream:public"
    assert services.blobs.exists(row.blob_digest)
    fetches = len([r for r in fake.requests if r.startswith("tarball")])
    again = registry.tarball("streamed", "2.0.0")
    assert again.status_code == 200 and read(again) == upstream_bytes
    assert len([r for r in fake.requests if r.startswith("tarball")]) == fetches
    # the approved mirrored version now carries our signatures beside the upstream's
    dist = registry.doc("streamed")["versions"]["2.0.0"]["dist"]
    assert dist["signatures"] and dist["gatiSignatures"]


@pytest.mark.parametrize("fault", ["corrupt", "truncate"])
def test_bad_upstream_tarball_is_refused_and_not_kept(registry: Registry, fake: FakeUpstream,
                                                      services: Services, fault: str) -> None:
    fake.add("broken", "1.0.0")
    setattr(fake, fault, True)
    resp = registry.tarball("broken", "1.0.0")  # small: one chunk, so a clean 404
    assert resp.status_code == 404 and "refused the upstream's tarball" in resp.json["error"]
    with services.db.read() as s:
        assert s.scalar(select(Version).where(Version.version == "1.0.0")) is None
    blobs = [p for p in services.settings.blob_dir.rglob("*") if p.is_file()]
    assert blobs == []
    setattr(fake, fault, False)
    assert read(registry.tarball("broken", "1.0.0")) == fake.tarballs[
        "https://upstream.example/broken/-/broken-1.0.0.tgz"]


def test_a_large_bad_tarball_is_cut_off_before_its_last_chunk(
        registry: Registry, fake: FakeUpstream, services: Services) -> None:
    good = fake.add("big", "1.0.0")
    url = "https://upstream.example/big/-/big-1.0.0.tgz"
    fake.tarballs[url] = good + bytes(5000)  # trailing garbage: several chunks, wrong hash
    resp = registry.tarball("big", "1.0.0")
    assert resp.status_code == 200  # streaming had begun...
    with pytest.raises(TarballRefused):
        read(resp)  # ...and the connection is dropped before the last chunk
    with services.db.read() as s:
        assert s.scalar(select(Version).where(Version.version == "1.0.0")) is None


def test_local_patterns_never_ask_the_upstream(registry: Registry, fake: FakeUpstream) -> None:
    assert registry.packument("@corp/x").status_code == 404
    assert registry.tarball("@corp/x", "9.9.9").status_code == 404
    assert not [r for r in fake.requests if "@corp" in r]
    assert registry.publish(ModuleSpec("@corp/x", "1.0.0")).status_code == 201
    doc = registry.doc("@corp/x")
    assert list(doc["versions"]) == ["1.0.0"]
    assert not [r for r in fake.requests if "@corp" in r]


def test_local_publish_to_an_upstream_name_is_refused(registry: Registry,
                                                      fake: FakeUpstream) -> None:
    resp = registry.publish(ModuleSpec("leftpad", "5.0.0"))
    assert resp.status_code == 403
    assert "exists in the upstream registry public" in resp.json["error"]
    assert registry.publish(ModuleSpec("denied-thing", "1.0.0")).status_code == 403
    # a name the upstream lacks may be published here; from then on it is local only
    assert registry.publish(ModuleSpec("only-here", "1.0.0")).status_code == 201
    fake.add("only-here", "7.0.0")
    asked = len(fake.requests)
    assert list(registry.doc("only-here")["versions"]) == ["1.0.0"]
    assert registry.tarball("only-here", "7.0.0").status_code == 404
    assert len(fake.requests) == asked


def test_stale_metadata_when_the_upstream_is_down_or_slow(
        registry: Registry, fake: FakeUpstream, services: Services,
        caplog: pytest.LogCaptureFixture) -> None:
    assert registry.packument("leftpad").status_code == 200
    age_cache(services, "leftpad")
    fake.down = True
    resp = registry.packument("leftpad")
    assert resp.status_code == 200 and "110" in resp.headers["Warning"]
    assert sorted(json.loads(resp.data)["versions"]) == ["1.0.0", "1.1.0"]
    assert caplog.text.count("serving stale metadata for leftpad") == 1
    registry.packument("leftpad")
    assert caplog.text.count("serving stale metadata for leftpad") == 1  # once per package
    fake.down, fake.delay = False, 5.0
    services.mirror.docs._backoff.clear()
    started = time.monotonic()
    resp = registry.packument("leftpad")
    assert resp.status_code == 200 and "Warning" in resp.headers
    assert time.monotonic() - started < 3.0  # stale_timeout, not the upstream's pace
    # nothing cached and the upstream unreachable: 503, not a guess
    fake.delay, fake.down = 0.0, True
    assert registry.packument("never-seen").status_code == 503


def test_manual_policy_queues_the_first_request_for_an_approver(
        registry: Registry, fake: FakeUpstream, services: Services) -> None:
    fake.add("@held/lib", "1.0.0")
    resp = registry.packument("@held/lib")
    assert resp.status_code == 404 and "no version is approved" in resp.json["error"]
    admin = services.tokens.authenticate_token(registry.token("admin", "admin"), "")
    queue = services.approvals.queue(admin, "pending", package="@held/lib")
    assert [(i.version, i.state) for i in queue] == [("1.0.0", "pending")]

    def description() -> str:
        with services.db.read() as s:
            return str(s.scalar(select(Package.description).where(Package.name == "@held/lib")))

    assert description() == ""   # a held upstream version's text shows nowhere yet
    services.approvals.decide(admin, "@held/lib", "1.0.0", "approve")
    assert list(registry.doc("@held/lib")["versions"]) == ["1.0.0"]
    assert description() == "upstream @held/lib"
    assert registry.tarball("@held/lib", "1.0.0").status_code == 200


def test_min_age_holds_young_versions(registry: Registry, fake: FakeUpstream) -> None:
    fake.add("@young/lib", "1.0.0", published="2020-01-01T00:00:00.000Z")
    fake.add("@young/lib", "1.1.0", published=time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                             time.gmtime()))
    doc = registry.doc("@young/lib")
    assert list(doc["versions"]) == ["1.0.0"] and doc["dist-tags"]["latest"] == "1.0.0"
    resp = registry.tarball("@young/lib", "1.1.0")
    assert resp.status_code == 404 and "queued for approval" in resp.json["error"]


def test_admin_pre_approves_a_range_and_blocks_a_version(
        registry: Registry, fake: FakeUpstream, services: Services) -> None:
    fake.add("@held/range", "4.1.0")
    fake.add("@held/range", "4.2.0")
    fake.add("@held/range", "5.0.0")
    admin = services.tokens.authenticate_token(registry.token("admin", "admin"), "")
    services.mirror.rules.add(admin, "@held/range@^4", "approve")
    assert sorted(registry.doc("@held/range")["versions"]) == ["4.1.0", "4.2.0"]
    assert registry.tarball("@held/range", "4.2.0").status_code == 200
    read(registry.tarball("@held/range", "4.2.0"))
    services.mirror.rules.add(admin, "@held/range@4.2.0", "block", "CVE-2099-0001")
    assert sorted(registry.doc("@held/range")["versions"]) == ["4.1.0"]
    assert registry.tarball("@held/range", "4.2.0").status_code == 404  # cached, now quarantined
    publisher = services.tokens.authenticate_token(registry.token("admin", "publish"), "")
    with pytest.raises(Exception) as err:
        services.mirror.rules.add(publisher, "@held/range@*", "approve")
    assert "admin" in str(err.value)


def test_bad_rules_are_refused(registry: Registry, services: Services) -> None:
    from gati_private_registry.errors import ValidationFailed

    admin = services.tokens.authenticate_token(registry.token("admin", "admin"), "")
    with pytest.raises(ValidationFailed) as err:
        services.mirror.rules.add(admin, "Bad Name@^1", "maybe", "")
    fields = {d.field for d in err.value.details}
    assert fields == {"action", "name"}
    with pytest.raises(ValidationFailed) as err:
        services.mirror.rules.add(admin, "lodash@not a range", "block", "")
    assert {d.field for d in err.value.details} == {"spec", "reason"}


def test_denied_names_are_not_served(registry: Registry, fake: FakeUpstream) -> None:
    fake.add("denied-pkg", "1.0.0")
    assert registry.packument("denied-pkg").status_code == 404
    assert not [r for r in fake.requests if "denied" in r]


def test_upstream_signatures_and_keys_pass_through(registry: Registry, fake: FakeUpstream,
                                                   client: Any) -> None:
    fake.keys = [{"keyid": "SHA256:upstream-key", "keytype": "ecdsa-sha2-nistp256",
                  "scheme": "ecdsa-sha2-nistp256", "key": "MFkw", "expires": None}]
    fake.add("signed", "1.0.0", signatures=[{"keyid": "SHA256:upstream-key", "sig": "MEUC"},
                                            {"keyid": "SHA256:unknown", "sig": "MEQC"}])
    dist = registry.doc("signed")["versions"]["1.0.0"]["dist"]
    # an unknown keyid would abort `npm audit signatures`: only served keys pass
    assert dist["signatures"] == [{"keyid": "SHA256:upstream-key", "sig": "MEUC"}]
    keys = client.get("/npm/-/npm/v1/keys").json["keys"]
    assert "SHA256:upstream-key" in [k["keyid"] for k in keys]
    assert any(k["keyid"] != "SHA256:upstream-key" for k in keys)  # ours are still there


def test_metrics_status_api_and_rules_api(registry: Registry, fake: FakeUpstream,
                                          client: Any) -> None:
    assert registry.packument("leftpad").status_code == 200
    read(registry.tarball("leftpad", "1.1.0"))
    text = client.get("/metrics").text
    assert 'gati_upstream_requests_total{upstream="public"}' in text
    # misses: the packument, the upstream's keys, the tarball
    assert "gati_mirror_misses_total 3" in text and "gati_mirror_tarball_fetches_total 1" in text
    admin = {"Authorization": f"Bearer {registry.token('admin', 'admin')}"}
    reader = {"Authorization": f"Bearer {registry.token('admin', 'read')}"}
    assert client.get("/api/mirror/status", headers=reader).status_code == 403
    assert client.get("/api/mirror/status").status_code == 401
    st = client.get("/api/mirror/status", headers=admin).json
    assert st["cache"]["versions"] == 1 and st["upstreams"][0]["name"] == "public"
    assert any("tarball leftpad@1.1.0" in m["what"] for m in st["recent_misses"])
    resp = client.post("/api/mirror/rules", json={"spec": "leftpad@1.0.0", "action": "block",
                                                  "reason": "bad release"}, headers=admin)
    assert resp.status_code == 201, resp.json
    assert list(registry.doc("leftpad")["versions"]) == ["1.1.0"]
    bad = client.post("/api/mirror/rules", json={"spec": "leftpad", "action": "block"},
                      headers=admin)
    assert bad.status_code == 400 and bad.json["error"]["details"][0]["field"] == "reason"
    assert client.post("/api/mirror/rules", json={"spec": "x", "action": "approve"},
                       headers=reader).status_code == 403
    rule_id = client.get("/api/mirror/rules", headers=admin).json["rules"][0]["id"]
    assert client.delete(f"/api/mirror/rules/{rule_id}", headers=admin).status_code == 200
    assert sorted(registry.doc("leftpad")["versions"]) == ["1.0.0", "1.1.0"]


def test_mirror_panel_page(registry: Registry, fake: FakeUpstream) -> None:
    from .test_webhooks_panel import csrf, sign_in

    registry.packument("leftpad")
    sign_in(registry)
    page = registry.client.get("/admin/mirror")
    assert page.status_code == 200 and "upstream-public" in page.text
    assert "metadata leftpad" in page.text
    no_csrf = registry.client.post("/admin/mirror", data={"spec": "leftpad@^1", "action": "approve"})
    assert no_csrf.status_code == 400
    bad = registry.client.post("/admin/mirror", data={"spec": "leftpad@^1", "action": "block",
                                                      "reason": "", "csrf_token": csrf(page)})
    assert bad.status_code == 400 and "a reason is required" in bad.text
    ok = registry.client.post("/admin/mirror", data={"spec": "leftpad@^1", "action": "approve",
                                                     "reason": "<b>vetted</b>",
                                                     "csrf_token": csrf(page)})
    assert ok.status_code == 302
    page = registry.client.get("/admin/mirror")
    assert "&lt;b&gt;vetted&lt;/b&gt;" in page.text and "<b>vetted" not in page.text


def test_offline_mode_serves_only_what_is_cached(registry: Registry, fake: FakeUpstream,
                                                 settings: Settings) -> None:
    import dataclasses

    from gati_private_registry.app import create_app
    from gati_private_registry.settings_mirror import MirrorSettings

    assert registry.packument("leftpad").status_code == 200
    read(registry.tarball("leftpad", "1.1.0"))
    fake.add("uncached", "1.0.0")
    offline = dataclasses.replace(settings, mirror=MirrorSettings(offline=True))
    svc = build_services(offline, upstream_clients={"public": fake})
    try:
        other = Registry(create_app(offline, svc).test_client(), svc)
        asked = len(fake.requests)
        svc.mirror.docs._docs.clear()
        age_cache(services=registry.services, name="leftpad")
        resp = other.packument("leftpad", token=registry.token("admin", "read"))
        assert resp.status_code == 200 and "Warning" not in resp.headers
        assert read(other.tarball("leftpad", "1.1.0", token=registry.token("admin", "read"))) \
            == fake.tarballs["https://upstream.example/leftpad/-/leftpad-1.1.0.tgz"]
        missing = other.tarball("leftpad", "1.0.0", token=registry.token("admin", "read"))
        assert missing.status_code == 404 and "offline" in missing.json["error"]
        gone = other.packument("uncached", token=registry.token("admin", "read"))
        assert gone.status_code == 404 and "offline" in gone.json["error"]
        assert len(fake.requests) == asked  # the upstream was never asked
    finally:
        svc.close()
