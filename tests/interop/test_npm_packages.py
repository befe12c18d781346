"""The real npm against the real server: publish, install, ci, view, dist-tags, deprecate,
unpublish, search, ping, outdated."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import time

import pytest

pytestmark = pytest.mark.interop


def installed_files(project, name):
    root = project / "node_modules" / name
    assert (root / "package.json").is_file(), f"{name} is not installed in {project}"
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and rel.parts[0] != "node_modules":
            out[rel.as_posix()] = p.read_bytes()
    return out


def installed_version(project, name):
    return json.loads((project / "node_modules" / name / "package.json").read_text())["version"]


def assert_same_files(installed, source, what):
    assert sorted(installed) == sorted(source), f"{what}: file sets differ"
    for rel in source:
        assert installed[rel] == source[rel], f"{what}: {rel} differs from the published file"


# --------------------------------------------------------------------------- 1


def test_publish_install_ci_view(registry_server):
    reg = registry_server
    publisher = reg.token("admin", "publish")
    v100 = reg.make_package("@gati-modules/it-hello", "1.0.0", keywords=["gati-module", "hello"])
    v110 = reg.make_package("@gati-modules/it-hello", "1.1.0", keywords=["gati-module", "hello"])
    plain = reg.make_package("gati-it-plain", "0.3.0")
    for pkg in (v100, v110, plain):
        res = reg.publish_dir(pkg.path, publisher).ok()
        assert f"+ {pkg.spec}" in res.stdout, res

    # install into a fresh project; every file byte-for-byte as published
    project = reg.make_project({"@gati-modules/it-hello": "^1.0.0", "gati-it-plain": "0.3.0"})
    reader = reg.token("admin", "read")
    reg.npm("install", cwd=project, token=reader).ok()
    assert installed_version(project, "@gati-modules/it-hello") == "1.1.0"
    assert_same_files(installed_files(project, "@gati-modules/it-hello"), v110.files,
                      "@gati-modules/it-hello@1.1.0")
    assert_same_files(installed_files(project, "gati-it-plain"), plain.files, "gati-it-plain")

    lock = json.loads((project / "package-lock.json").read_text())
    entry = lock["packages"]["node_modules/@gati-modules/it-hello"]
    assert entry["version"] == "1.1.0"
    assert entry["resolved"].startswith(reg.npm_url), entry
    assert entry["integrity"].startswith("sha512-"), entry

    # npm ci from the lockfile in a clean directory with a fresh cache
    clean = reg.tmp("ci")
    shutil.copy(project / "package.json", clean / "package.json")
    shutil.copy(project / "package-lock.json", clean / "package-lock.json")
    reg.npm("ci", cwd=clean, token=reader).ok()
    assert_same_files(installed_files(clean, "@gati-modules/it-hello"), v110.files, "npm ci")
    assert_same_files(installed_files(clean, "gati-it-plain"), plain.files, "npm ci (unscoped)")

    # npm view --json: versions, dist-tags, time, dist
    view = reg.npm("view", "@gati-modules/it-hello", "--json", token=reader).ok().json()
    assert view["name"] == "@gati-modules/it-hello"
    assert view["versions"] == ["1.0.0", "1.1.0"]
    assert view["dist-tags"] == {"latest": "1.1.0"}
    for v in ("1.0.0", "1.1.0"):
        assert re.match(r"\d{4}-\d\d-\d\dT", view["time"][v]), view["time"]
    assert "created" in view["time"] and "modified" in view["time"], view["time"]
    dist = view["dist"]
    assert dist["tarball"].startswith(reg.npm_url), dist
    assert re.fullmatch(r"[0-9a-f]{40}", dist["shasum"]), dist
    assert dist["integrity"].startswith("sha512-"), dist

    # the tarball behind dist.tarball really has that integrity and the published files
    tgz = reg.http("GET", dist["tarball"], token=reader)
    assert tgz.status == 200, tgz
    assert "gzip" not in tgz.headers.get("Content-Encoding", ""), tgz.headers
    assert "sha512-" + base64.b64encode(hashlib.sha512(tgz.body).digest()).decode() \
        == dist["integrity"]
    assert hashlib.sha1(tgz.body).hexdigest() == dist["shasum"]

    # a specific version of the scoped package, and an unscoped one
    one = reg.npm("view", "@gati-modules/it-hello@1.0.0", "--json", token=reader).ok().json()
    assert one["version"] == "1.0.0"
    assert one["keywords"] == ["gati-module", "hello"]
    assert reg.npm("view", "gati-it-plain", "version", token=reader).ok().stdout.strip() == "0.3.0"


# --------------------------------------------------------------------------- 4


def test_dist_tags(registry_server):
    reg = registry_server
    name = "@gati-modules/it-tags"
    admin = reg.token("admin", "publish")
    v1 = reg.make_package(name, "1.0.0")
    v11 = reg.make_package(name, "1.1.0")
    assert reg.raw_publish(v1).status in (200, 201)
    assert reg.raw_publish(v11, tag="next").status in (200, 201)

    def tags():
        res = reg.npm("dist-tag", "ls", name, token=admin).ok()
        return dict(line.split(": ", 1) for line in res.stdout.strip().splitlines())

    assert tags() == {"latest": "1.0.0", "next": "1.1.0"}
    reg.npm("dist-tag", "add", f"{name}@1.1.0", "beta", token=admin).ok()
    assert tags() == {"latest": "1.0.0", "next": "1.1.0", "beta": "1.1.0"}

    project = reg.make_project({name: "beta"})
    reg.npm("install", cwd=project, token=admin).ok()
    assert installed_version(project, name) == "1.1.0"
    assert_same_files(installed_files(project, name), v11.files, f"{name}@beta")

    reg.npm("dist-tag", "rm", name, "beta", token=admin).ok()
    assert tags() == {"latest": "1.0.0", "next": "1.1.0"}

    res = reg.npm("dist-tag", "rm", name, "latest", token=admin).failed()
    assert re.search(r"E4\d\d", res.output), res
    assert tags()["latest"] == "1.0.0"
    doc = reg.packument(name).json()
    assert doc["dist-tags"]["latest"] == "1.0.0"


# --------------------------------------------------------------------------- 5


def test_deprecate_and_undeprecate(registry_server):
    reg = registry_server
    name = "gati-it-deprecate"
    admin = reg.token("admin", "publish")
    for v in ("1.0.0", "1.1.0"):
        assert reg.raw_publish(reg.make_package(name, v)).status in (200, 201)
    before = reg.packument(name).json()

    msg = "use 1.1.0 instead"
    reg.npm("deprecate", f"{name}@1.0.0", msg, token=admin).ok()
    view = reg.npm("view", f"{name}@1.0.0", "--json", token=admin).ok().json()
    assert view["deprecated"] == msg
    assert "deprecated" not in reg.npm("view", f"{name}@1.1.0", "--json", token=admin).ok().json()
    after = reg.packument(name).json()
    for v in ("1.0.0", "1.1.0"):  # the echoed document must not change anything else
        assert after["versions"][v]["dist"] == before["versions"][v]["dist"]

    project = reg.make_project({name: "1.0.0"})
    res = reg.npm("install", cwd=project, token=admin).ok()
    assert re.search(rf"deprecated {re.escape(name)}@1\.0\.0: {re.escape(msg)}", res.output), res

    reg.npm("deprecate", f"{name}@1.0.0", "", token=admin).ok()
    view = reg.npm("view", f"{name}@1.0.0", "--json", token=admin).ok().json()
    assert not view.get("deprecated"), view
    res = reg.npm("install", cwd=reg.make_project({name: "1.0.0"}), token=admin).ok()
    assert not re.search(r"warn deprecated", res.output), res


# --------------------------------------------------------------------------- 6


def test_unpublish_version_and_package(registry_server):
    reg = registry_server
    name = "@gati-modules/it-unpublish"
    admin = reg.token("admin", "publish")
    pkgs = {v: reg.make_package(name, v) for v in ("1.0.0", "1.0.1", "1.1.0")}
    for pkg in pkgs.values():
        reg.publish_dir(pkg.path, admin).ok()

    reg.npm("unpublish", f"{name}@1.0.1", token=admin).ok()
    view = reg.npm("view", name, "--json", token=admin).ok().json()
    assert view["versions"] == ["1.0.0", "1.1.0"]
    assert view["dist-tags"]["latest"] == "1.1.0"
    res = reg.npm("view", f"{name}@1.0.1", "version", token=admin)
    assert res.stdout.strip() == "", res
    tarball = f"/npm/{name}/-/it-unpublish-1.0.1.tgz"
    assert reg.http("GET", tarball, token=admin).status == 404

    # --tag: else npm itself refuses a version below latest without sending anything
    res = reg.publish_dir(pkgs["1.0.1"].path, admin, "--tag", "legacy").failed()
    assert re.search(r"E40[39]", res.output), res

    reg.npm("unpublish", name, "--force", token=admin).ok()
    res = reg.npm("view", name, "--json", token=admin).failed()
    assert "E404" in res.output, res
    assert reg.packument(name).status == 404
    for v, pkg in pkgs.items():
        res = reg.publish_dir(pkg.path, admin, "--tag", "again").failed()
        assert re.search(r"E4\d\d", res.output), f"{v} was accepted again:\n{res}"
    assert reg.packument(name).status == 404


# --------------------------------------------------------------------------- 7


def test_search_ping_outdated(registry_server):
    reg = registry_server
    admin = reg.token("admin", "publish")
    word = "gatisearch" + hashlib.sha1(reg.backend.encode()).hexdigest()[:6]
    name = "@gati-modules/it-search"
    for v in ("1.0.0", "1.2.0"):
        pkg = reg.make_package(name, v, keywords=[word, "gati-module"],
                               description=f"find me by {word}")
        assert reg.raw_publish(pkg).status in (200, 201)

    # the index follows the changes feed in the background, a burst of commits in one
    # pass a quarter of a second apart: it may show 1.0.0 for a moment, then 1.2.0
    deadline = time.monotonic() + 20
    while True:
        res = reg.npm("search", word, "--json", token=admin)
        found = {o["name"]: o for o in res.json()} if res.returncode == 0 else {}
        if found.get(name, {}).get("version") == "1.2.0":
            break
        assert time.monotonic() < deadline, f"npm search {word} never showed {name}@1.2.0:\n{res}"
        time.sleep(1)
    hit = found[name]
    assert hit["version"] == "1.2.0"
    assert word in hit["keywords"]

    res = reg.npm("ping", token=admin).ok()
    assert "PONG" in res.output, res

    project = reg.make_project({name: "1.0.0"})
    reg.npm("install", cwd=project, token=admin).ok()
    res = reg.npm("outdated", "--json", cwd=project, token=admin)
    assert res.returncode == 1, res  # npm outdated exits 1 when something is outdated
    info = res.json()[name]
    assert (info["current"], info["wanted"], info["latest"]) == ("1.0.0", "1.0.0", "1.2.0"), info
