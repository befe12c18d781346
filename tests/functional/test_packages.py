"""dist-tags, deprecate, unpublish, search, ping, health through the npm protocol."""
from __future__ import annotations

import copy
import gzip
import json

from gati_private_registry.testing import ModuleSpec

from .driver import Registry


def publish_versions(registry: Registry, name: str, *versions: str) -> None:
    for v in versions:
        assert registry.publish(ModuleSpec(name, v)).status_code == 201


def test_dist_tags(registry: Registry) -> None:
    publish_versions(registry, "tagged", "1.0.0", "1.1.0")
    h = registry.headers(registry.token())
    assert registry.client.get("/npm/-/package/tagged/dist-tags", headers=h).json == {"latest": "1.1.0"}
    assert registry.client.put("/npm/-/package/tagged/dist-tags/beta", json="1.0.0", headers=h).status_code == 200
    assert registry.doc("tagged")["dist-tags"] == {"latest": "1.1.0", "beta": "1.0.0"}
    # a tag that is a semver range, an unknown version, a non-string body
    assert registry.client.put("/npm/-/package/tagged/dist-tags/1.x", json="1.0.0", headers=h).status_code == 400
    assert registry.client.put("/npm/-/package/tagged/dist-tags/beta", json="9.9.9", headers=h).status_code == 404
    assert registry.client.put("/npm/-/package/tagged/dist-tags/beta", json={"v": 1}, headers=h).status_code == 400
    assert registry.client.delete("/npm/-/package/tagged/dist-tags/latest", headers=h).status_code == 400
    assert registry.client.delete("/npm/-/package/tagged/dist-tags/beta", headers=h).status_code == 200
    assert registry.doc("tagged")["dist-tags"] == {"latest": "1.1.0"}
    # scoped names in either spelling
    publish_versions(registry, "@s/tagged", "2.0.0")
    assert registry.client.get("/npm/-/package/@s%2ftagged/dist-tags", headers=h).json == {"latest": "2.0.0"}


def test_publish_with_tag_keeps_latest(registry: Registry) -> None:
    publish_versions(registry, "next-tag", "1.0.0")
    assert registry.publish(ModuleSpec("next-tag", "2.0.0-rc.1"), tag="next").status_code == 201
    assert registry.doc("next-tag")["dist-tags"] == {"latest": "1.0.0", "next": "2.0.0-rc.1"}


def test_deprecate_and_undeprecate(registry: Registry) -> None:
    publish_versions(registry, "old-thing", "1.0.0", "1.0.1")
    h = registry.headers(registry.token())
    doc = json.loads(registry.client.get("/npm/old-thing?write=true", headers=h).data)
    doc["versions"]["1.0.0"]["deprecated"] = "use 1.0.1"
    doc["versions"]["1.0.0"]["dist"]["tarball"] = "http://evil/x.tgz"   # never taken
    assert registry.client.put("/npm/old-thing", json=doc, headers=h).status_code == 200
    after = registry.doc("old-thing")
    assert after["versions"]["1.0.0"]["deprecated"] == "use 1.0.1"
    assert after["versions"]["1.0.0"]["dist"]["tarball"].startswith("http://localhost/npm/")
    assert "deprecated" not in after["versions"]["1.0.1"]
    doc["versions"]["1.0.0"]["deprecated"] = ""
    assert registry.client.put("/npm/old-thing", json=doc, headers=h).status_code == 200
    assert "deprecated" not in registry.doc("old-thing")["versions"]["1.0.0"]
    bad = copy.deepcopy(doc)
    bad["versions"]["1.0.0"]["deprecated"] = 42
    assert registry.client.put("/npm/old-thing", json=bad, headers=h).status_code == 400


def test_unpublish_one_version_then_whole_package(registry: Registry) -> None:
    publish_versions(registry, "going", "1.0.0", "1.0.1", "1.1.0")
    h = registry.headers(registry.token())
    doc = json.loads(registry.client.get("/npm/going?write=true", headers=h).data)
    del doc["versions"]["1.1.0"]
    resp = registry.client.put(f"/npm/going/-rev/{doc['_rev']}", json=doc, headers=h)
    assert resp.status_code == 200
    after = registry.doc("going")
    assert sorted(after["versions"]) == ["1.0.0", "1.0.1"]
    assert after["dist-tags"]["latest"] == "1.0.1"
    assert registry.tarball("going", "1.1.0").status_code == 404
    assert registry.client.delete(f"/npm/going/-/going-1.1.0.tgz/-rev/{after['_rev']}", headers=h).status_code == 200
    # the number is never reused
    assert registry.publish(ModuleSpec("going", "1.1.0")).status_code == 409
    # a PUT without versions is never read as "delete everything"
    assert registry.client.put(f"/npm/going/-rev/{after['_rev']}", json={"_id": "going", "maintainers": []},
                               headers=h).status_code == 200
    assert sorted(registry.doc("going")["versions"]) == ["1.0.0", "1.0.1"]
    assert registry.client.delete(f"/npm/going/-rev/{after['_rev']}", headers=h).status_code == 200
    assert registry.packument("going").status_code == 404
    assert registry.tarball("going", "1.0.0").status_code == 404
    assert registry.publish(ModuleSpec("going", "1.0.0")).status_code == 409
    assert registry.publish(ModuleSpec("going", "2.0.0")).status_code == 201
    assert list(registry.doc("going")["versions"]) == ["2.0.0"]


def test_unpublish_against_an_old_revision_is_refused(registry: Registry) -> None:
    """npm unpublish reads the document, drops a version and PUTs the rest to /-rev/REV.
    A version published in between is missing from that body: a stale revision must
    not unpublish it."""
    publish_versions(registry, "racing", "1.0.0", "1.0.1")
    h = registry.headers(registry.token())
    doc = json.loads(registry.client.get("/npm/racing?write=true", headers=h).data)
    publish_versions(registry, "racing", "1.0.2")            # someone else, meanwhile
    del doc["versions"]["1.0.0"]
    resp = registry.client.put(f"/npm/racing/-rev/{doc['_rev']}", json=doc, headers=h)
    assert resp.status_code == 409
    assert "read it again" in resp.json["error"]
    assert sorted(registry.doc("racing")["versions"]) == ["1.0.0", "1.0.1", "1.0.2"]
    # read again: the current revision lists 1.0.2, and only 1.0.0 goes
    doc = json.loads(registry.client.get("/npm/racing?write=true", headers=h).data)
    del doc["versions"]["1.0.0"]
    assert registry.client.put(f"/npm/racing/-rev/{doc['_rev']}", json=doc, headers=h).status_code == 200
    assert sorted(registry.doc("racing")["versions"]) == ["1.0.1", "1.0.2"]


def test_version_document_and_tags(registry: Registry) -> None:
    publish_versions(registry, "single", "1.0.0", "1.2.0")
    h = registry.headers(registry.token())
    assert registry.client.get("/npm/single/1.0.0", headers=h).json["version"] == "1.0.0"
    assert registry.client.get("/npm/single/latest", headers=h).json["version"] == "1.2.0"
    assert registry.client.get("/npm/single/9.9.9", headers=h).status_code == 404


def test_search(registry: Registry) -> None:
    registry.publish(ModuleSpec("@gati-modules/postgres", "1.0.0", description="PostgreSQL connector",
                                keywords=["database", "sql"]))
    registry.publish(ModuleSpec("redis-cache", "1.0.0", description="cache", keywords=["cache"],
                                gati_module={"name": "redis-cache", "version": "1.0.0",
                                             "type": "cache"}))
    registry.services.indexer.run_once()  # what the server's follower thread does
    h = registry.headers(registry.token("admin", "read"))
    res = registry.client.get("/npm/-/v1/search?text=database&size=20&from=0&quality=0.65", headers=h).json
    assert res["total"] == 1
    obj = res["objects"][0]
    assert obj["package"]["name"] == "@gati-modules/postgres"
    assert isinstance(obj["package"]["maintainers"], list)
    assert obj["package"]["publisher"]["username"] == "admin"
    assert 0 < obj["score"]["final"] <= 1
    assert registry.client.get("/npm/-/v1/search?text=nothing-here", headers=h).json["total"] == 0
    assert registry.client.get("/npm/-/v1/search?text=x&size=abc", headers=h).status_code == 400


def test_ping_health_and_audit(registry: Registry) -> None:
    assert registry.client.get("/npm/-/ping").json == {}
    assert registry.client.get("/healthz").status_code == 200
    ready = registry.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "migrations": "ok", "blobs": "ok"}
    body = gzip.compress(json.dumps({"x": ["1.0.0"]}).encode())
    resp = registry.client.post("/npm/-/npm/v1/security/advisories/bulk", data=body,
                                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert resp.status_code == 200 and resp.json == {}


def test_unknown_npm_endpoint_is_404_json(registry: Registry) -> None:
    resp = registry.client.get("/npm/-/nonsense", headers=registry.headers(registry.token()))
    assert resp.status_code == 404
    assert "error" in resp.json


def test_only_approved_versions_are_served(registry: Registry) -> None:
    """The lifecycle hook point: a version in any other state is in no packument, no
    tag and no tarball URL, until it is approved."""
    from sqlalchemy import update

    from gati_private_registry.services import packuments
    from gati_private_registry.storage.models import Version

    publish_versions(registry, "gated", "1.0.0", "1.1.0")
    for state in ("pending", "rejected", "quarantined"):
        with registry.services.db.write() as s:
            s.execute(update(Version).where(Version.version == "1.1.0").values(state=state))
            pkg = packuments.lock_package_row(s, "gated")
            assert pkg is not None
            packuments.render(s, packuments.touch(s, pkg))
        doc = registry.doc("gated")
        assert list(doc["versions"]) == ["1.0.0"], state
        assert doc["dist-tags"]["latest"] == "1.0.0"
        assert "1.1.0" not in json.loads(registry.packument("gated", abbreviated=True).data)["versions"]
        assert registry.tarball("gated", "1.1.0").status_code == 404
        h = registry.headers(registry.token())
        assert registry.client.get("/npm/gated/1.1.0", headers=h).status_code == 404
