"""A held version's description and README reach nobody but its publisher and approvers:
the public packument, the marketplace and search show those of the approved version at
``latest``, and follow ``latest`` when approvals, dist-tags or unpublish move it; the
migration that keeps READMEs per version repairs existing data (both backends)."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, insert, select

from gati_private_registry.app import create_app, prepare
from gati_private_registry.settings import Settings
from gati_private_registry.storage import migrate
from gati_private_registry.storage.db import make_engine
from gati_private_registry.storage.models import Change, Package, Packument, Version
from gati_private_registry.testing import ModuleSpec

from .driver import Registry

NAME = "notes"


@pytest.fixture
def approval_mode() -> str:
    return "manual"


def publish(registry: Registry, version: str, word: str, token: str) -> Any:
    """Publish ``NAME@version`` whose description and README say ``word``."""
    spec = ModuleSpec(NAME, version, description=f"{word} description")
    resp = registry.publish(spec, token=token,
                            manifest_overrides={"readme": f"# {word}\n\nall about {word}\n",
                                                "readmeFilename": f"{word}.md"})
    assert resp.status_code == 201, resp.data
    return resp


def decide(registry: Registry, version: str, action: str, token: str) -> None:
    resp = registry.client.post(f"/api/modules/{NAME}/{version}/{action}",
                                json={"reason": f"{action} for the test"},
                                headers=registry.headers(token))
    assert resp.status_code == 200, resp.data


def search(registry: Registry, word: str, token: str) -> list[dict[str, Any]]:
    registry.services.indexer.run_once()
    resp = registry.client.get(f"/api/search?q={word}", headers=registry.headers(token))
    assert resp.status_code == 200
    return list(resp.json["results"])


def assert_shows(registry: Registry, word: str, reader: str,
                 hidden: tuple[str, ...] = (), held: tuple[str, ...] = ()) -> None:
    """Every public view of NAME shows the text of the version saying ``word``: not the
    README of those saying ``hidden`` (approved versions' manifests stay in the
    packument), and nothing at all of the held versions saying ``held``."""
    doc = registry.doc(NAME)
    assert doc["description"] == f"{word} description"
    assert doc["readme"] == f"# {word}\n\nall about {word}\n"
    assert doc["readmeFilename"] == f"{word}.md"
    raw = registry.packument(NAME, token=reader).data
    abbreviated = registry.packument(NAME, token=reader, abbreviated=True).data
    with registry.services.db.read() as s:
        row = s.scalar(select(Package).where(Package.name == NAME))
        assert row is not None
        assert (row.description, row.readme) == (doc["description"], doc["readme"])
    hits = search(registry, word, reader)   # (brings the index up to date first)
    page = registry.client.get(f"/api/modules/{NAME}", headers=registry.headers(reader)).json
    assert page["description"] == f"{word} description"
    assert f"all about {word}" in page["readme_html"]
    assert [h["name"] for h in hits] == [NAME]
    assert hits[0]["description"] == f"{word} description"
    npm_hits = registry.client.get(f"/npm/-/v1/search?text={word}",
                                   headers=registry.headers(reader)).json["objects"]
    assert [(o["package"]["name"], o["package"]["description"]) for o in npm_hits] == \
        [(NAME, f"{word} description")]
    for other in hidden + held:
        for body in (raw, abbreviated, json.dumps(page).encode()):
            assert f"all about {other}".encode() not in body
        assert search(registry, other, reader) == []
    for other in held:
        for body in (raw, abbreviated, json.dumps(page).encode()):
            assert other.encode() not in body


def test_held_text_stays_private_until_approved_and_follows_latest(registry: Registry) -> None:
    registry.add_user("pat", "publisher")
    registry.add_user("rita", "reader")
    pat, rita = registry.token("pat", "publish"), registry.token("rita", "read")
    approver = registry.token("admin", "approve")

    publish(registry, "1.0.0", "aardvark", pat)
    decide(registry, "1.0.0", "approve", approver)
    assert_shows(registry, "aardvark", rita)

    # a held version changes nothing anyone else sees
    assert publish(registry, "2.0.0", "bumblebee", pat).json["state"] == "pending"
    assert_shows(registry, "aardvark", rita, held=("bumblebee",))
    # its publisher's own view (npm view) carries its README in its own entry only
    own = registry.client.get(f"/npm/{NAME}", headers={**registry.headers(pat),
                                                       "npm-command": "view"}).json
    assert own["readme"] == "# aardvark\n\nall about aardvark\n"
    assert own["description"] == "aardvark description"
    assert own["versions"]["2.0.0"]["readme"] == "# bumblebee\n\nall about bumblebee\n"
    assert own["versions"]["2.0.0"]["readmeFilename"] == "bumblebee.md"
    assert own["versions"]["2.0.0"]["description"] == "bumblebee description"

    decide(registry, "2.0.0", "approve", approver)
    assert_shows(registry, "bumblebee", rita, hidden=("aardvark",))

    # a rejected version never showed, and still does not
    publish(registry, "3.0.0", "chameleon", pat)
    decide(registry, "3.0.0", "reject", approver)
    assert_shows(registry, "bumblebee", rita, hidden=("aardvark",), held=("chameleon",))

    # moving latest by hand moves the text
    h = registry.headers(pat)
    assert registry.client.put(f"/npm/-/package/{NAME}/dist-tags/latest", json="1.0.0",
                               headers=h).status_code == 200
    assert_shows(registry, "aardvark", rita, hidden=("bumblebee",), held=("chameleon",))
    # an admin re-approving the rejected version gives it latest, and its text
    decide(registry, "3.0.0", "approve", registry.token("admin", "admin"))
    assert registry.doc(NAME)["dist-tags"]["latest"] == "3.0.0"
    assert_shows(registry, "chameleon", rita, hidden=("aardvark", "bumblebee"))
    # quarantining the version at latest falls back to the highest approved one
    decide(registry, "3.0.0", "quarantine", approver)
    assert_shows(registry, "bumblebee", rita, hidden=("aardvark",), held=("chameleon",))
    # unpublishing it moves latest, and the text, back again
    doc = json.loads(registry.client.get(f"/npm/{NAME}?write=true", headers=h).data)
    del doc["versions"]["2.0.0"]
    assert registry.client.put(f"/npm/{NAME}/-rev/{doc['_rev']}", json=doc,
                               headers=h).status_code == 200
    assert_shows(registry, "aardvark", rita, held=("bumblebee", "chameleon"))


def test_a_package_with_nothing_approved_shows_its_text_only_to_its_publisher(
        registry: Registry) -> None:
    registry.add_user("pat", "publisher")
    registry.add_user("rita", "reader")
    pat, rita = registry.token("pat", "publish"), registry.token("rita", "read")
    publish(registry, "1.0.0", "dodo", pat)
    assert registry.packument(NAME, token=rita).status_code == 404
    assert registry.client.get(f"/api/modules/{NAME}",
                               headers=registry.headers(rita)).status_code == 404
    assert search(registry, "dodo", rita) == []
    with registry.services.db.read() as s:
        row = s.scalar(select(Package).where(Package.name == NAME))
        assert row is not None and (row.description, row.readme) == ("", "")
    own = registry.client.get(f"/npm/{NAME}", headers={**registry.headers(pat),
                                                       "npm-command": "view"}).json
    assert own["description"] == "dodo description"
    assert own["readme"] == "# dodo\n\nall about dodo\n"
    # the publisher finds their own pending package
    assert [h["name"] for h in search(registry, "dodo", pat)] == [NAME]


# -- the migration ------------------------------------------------------------------------


def _seed_0009(url: str) -> None:
    """At revision 0009, the state the old publish left: ``leaky``'s row and packument
    carry the text of its held 2.0.0; ``fine``'s are its approved 1.0.0's; ``mirrored``
    came from an upstream (its row never had a README)."""
    engine = make_engine(url)
    try:
        migrate.upgrade(engine, "0009")
        meta = MetaData()
        meta.reflect(engine)
        t = meta.tables
        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        with engine.begin() as c:
            c.execute(insert(t["blobs"]), [{"digest": "ab" * 64, "size": 1, "created_at": t0}])
            for pid, name, desc, readme, upstream in (
                    (1, "leaky", "held description", "# held", None),
                    (2, "fine", "fine description", "# fine", None),
                    (3, "mirrored", "", "", "public")):
                c.execute(insert(t["packages"]), [{
                    "id": pid, "name": name, "scope": None, "description": desc,
                    "readme": readme, "readme_filename": "README.md" if readme else "",
                    "rev": 2, "created_at": t0, "modified_at": t0, "upstream": upstream}])
                full = {"_id": name, "_rev": "2-x", "name": name, "description": desc,
                        "dist-tags": {"latest": "1.0.0"}, "versions": {}, "readme": readme,
                        "readmeFilename": "README.md" if readme else "", "users": {}}
                c.execute(insert(t["packuments"]), [{
                    "package_id": pid, "name": name, "visible": True,
                    "full": json.dumps(full, separators=(",", ":")).encode(),
                    "abbreviated": b"{}", "etag": f"old-{name}", "modified_at": t0}])
            versions = [(1, "1.0.0", "approved", "approved description", None, 0),
                        (1, "2.0.0", "pending", "held description", None, 1),
                        (2, "1.0.0", "approved", "fine description", None, 0),
                        (3, "1.0.0", "approved", "mirror description", "public", 0)]
            for i, (pid, version, state, desc, upstream, day) in enumerate(versions):
                when = t0 + timedelta(days=day)
                c.execute(insert(t["versions"]), [{
                    "package_id": pid, "version": version, "state": state,
                    "manifest": {"name": "x", "version": version, "description": desc},
                    "blob_digest": "ab" * 64, "integrity": "sha512-x", "shasum": "x" * 40,
                    "size": 1, "file_count": 1, "unpacked_size": 1, "files": [],
                    "published_at": when, "state_changed_at": when, "state_reason": "",
                    "stage_id": f"stage-{i}", "tag": "latest", "upstream": upstream}])
            c.execute(insert(t["dist_tags"]), [{"package_id": 1, "tag": "latest",
                                                "version": "1.0.0"},
                                               {"package_id": 2, "tag": "latest",
                                                "version": "1.0.0"}])
    finally:
        engine.dispose()


def test_migration_gives_readmes_to_versions_and_withdraws_held_text(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        factory = request.getfixturevalue("postgres")
        url = factory.url(factory.create())
    _seed_0009(url)
    settings = Settings.for_tests(tmp_path / "data", database={"url": url},
                                  approvals={"default_mode": "manual"})
    services, _ = prepare(settings)   # upgrades to head, as a server start does
    try:
        with services.db.read() as s:
            readmes = {(r.package_id, r.version): (r.readme, r.readme_filename)
                       for r in s.execute(select(Version.package_id, Version.version,
                                                 Version.readme, Version.readme_filename))}
            assert readmes == {(1, "1.0.0"): ("", ""), (1, "2.0.0"): ("# held", "README.md"),
                               (2, "1.0.0"): ("# fine", "README.md"),
                               (3, "1.0.0"): ("", "")}
            texts = {p.name: (p.description, p.readme, p.readme_filename)
                     for p in s.scalars(select(Package))}
            assert texts == {"leaky": ("approved description", "", ""),
                             "fine": ("fine description", "# fine", "README.md"),
                             "mirrored": ("mirror description", "", "")}
            stored = {p.name: p for p in s.scalars(select(Packument))}
            leaky = json.loads(stored["leaky"].full)
            assert (leaky["description"], leaky["readme"], leaky["readmeFilename"]) == \
                ("approved description", "", "")
            assert stored["leaky"].etag == hashlib.sha256(stored["leaky"].full).hexdigest()[:32]
            assert stored["fine"].etag == "old-fine"   # nothing to repair there
            changed = s.scalars(select(Change.package).where(Change.kind == "package.text"))
            assert sorted(changed) == ["leaky", "mirrored"]
        # approving the held version now gives the package its (kept) README
        registry = Registry(create_app(settings, services).test_client(), services)
        resp = registry.client.post("/api/modules/leaky/2.0.0/approve", json={},
                                    headers=registry.headers(registry.token("admin", "approve")))
        assert resp.status_code == 200, resp.data
        doc = registry.doc("leaky")
        assert (doc["description"], doc["readme"]) == ("held description", "# held")
    finally:
        services.close()
