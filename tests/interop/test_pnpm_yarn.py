"""pnpm, yarn 4 and npm install a 23-package dependency tree (scoped and unscoped names,
``^``/``~``/exact ranges, a diamond, a chain of five, two majors of one package side by
side) from the registry; every installed file must be the published byte, and the set of
installed name@version must be what semver resolution gives.

The corpus is published with raw HTTP PUTs (the body npm 11 sends, NPM-PROTOCOL.md 4.1)
to keep this module at a few seconds per backend, so it runs on both backends.

Every range in the corpus is chosen so that ranges over one package either share their
highest match or do not overlap at all: then "highest satisfying version per edge" is the
only right answer for every client, whatever its dedupe strategy.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

S = "@gati-modules/it-"
LEAVES = [f"{S}leaf-0{i}" for i in range(1, 7)]
CHAIN = [f"{S}chain-{i}" for i in range(1, 6)]


def _corpus() -> dict[str, dict[str, dict[str, str]]]:
    """``{name: {version: dependencies}}``."""
    c: dict[str, dict[str, dict[str, str]]] = {}
    root_deps = {CHAIN[0]: "^1.0.0", "gati-it-left": "^1.0.0", f"{S}right": "^1.0.0",
                 LEAVES[0]: "^1.0.0", LEAVES[1]: "~1.0.0"}
    c[f"{S}app-root"] = {"1.0.0": {}, "1.1.0": root_deps, "2.0.0": {}}
    b_deps = {"gati-it-old-user": "^1.0.0", f"{S}new-user": "^1.0.0",
              f"{S}tilde-user": "1.0.0", "gati-it-caret-zero-user": "^1.0.0",
              LEAVES[2]: "^1.0.0"}
    c["gati-it-root-b"] = {"1.1.0": b_deps, "1.1.4": b_deps, "1.2.0": {}}
    # the deep chain: chain-1 -> chain-2 -> ... -> chain-5 -> leaf-04@^2
    for i, name in enumerate(CHAIN):
        nxt = {CHAIN[i + 1]: "^1.0.0"} if i + 1 < len(CHAIN) else {LEAVES[3]: "^2.0.0"}
        c[name] = {"1.0.0": nxt, "1.0.3": nxt, "2.0.0": {}}
    # the diamond: app-root -> left, right -> diamond-base (both end at 1.2.5)
    c["gati-it-left"] = {"1.0.0": {f"{S}diamond-base": "^1.0.0"},
                         "1.2.0": {f"{S}diamond-base": "^1.0.0"}}
    c[f"{S}right"] = {"1.0.0": {f"{S}diamond-base": "~1.2.0"}}
    c[f"{S}diamond-base"] = {"1.0.0": {}, "1.1.0": {}, "1.2.0": {},
                             "1.2.5": {LEAVES[4]: "^1.0.0"}, "2.0.0": {}}
    # two majors of util side by side
    c["gati-it-old-user"] = {"1.0.0": {f"{S}util": "^1.0.0"}}
    c[f"{S}new-user"] = {"1.0.0": {f"{S}util": "^2.0.0"}}
    c[f"{S}util"] = {"1.0.0": {}, "1.4.0": {}, "2.0.0": {}, "2.1.0": {LEAVES[5]: "^2.0.0"},
                     "3.0.0": {}}
    c[f"{S}tilde-user"] = {"1.0.0": {"gati-it-tilde-dep": "~0.3.1"}}
    c["gati-it-tilde-dep"] = {"0.3.0": {}, "0.3.1": {}, "0.3.7": {}, "0.4.0": {}}
    c["gati-it-caret-zero-user"] = {"1.0.0": {f"{S}caret-zero": "^0.2.1"}}
    c[f"{S}caret-zero"] = {"0.2.0": {}, "0.2.1": {}, "0.2.9": {}, "0.3.0": {}}
    for leaf in LEAVES:
        c[leaf] = {"1.0.0": {}, "1.0.2": {}, "2.0.0": {}, "2.0.1": {}}
    return c


CORPUS = _corpus()
PROJECT_DEPS = {f"{S}app-root": "^1.0.0", "gati-it-root-b": "~1.1.0"}


# --------------------------------------------------------------------------- semver


def _v(s: str) -> tuple[int, int, int]:
    a, b, c = s.split(".")
    return int(a), int(b), int(c)


def satisfies(version: str, rng: str) -> bool:
    v = _v(version)
    if rng[0] == "^":
        lo = _v(rng[1:])
        hi = (lo[0] + 1, 0, 0) if lo[0] else (0, lo[1] + 1, 0) if lo[1] else (0, 0, lo[2] + 1)
        return lo <= v < hi
    if rng[0] == "~":
        lo = _v(rng[1:])
        return lo <= v < (lo[0], lo[1] + 1, 0)
    return v == _v(rng)


def max_satisfying(name: str, rng: str) -> str:
    found = [v for v in CORPUS[name] if satisfies(v, rng)]
    assert found, f"corpus bug: nothing satisfies {name}@{rng}"
    return max(found, key=_v)


def expected_set() -> set[str]:
    seen: set[str] = set()
    todo = list(PROJECT_DEPS.items())
    while todo:
        name, rng = todo.pop()
        version = max_satisfying(name, rng)
        if f"{name}@{version}" not in seen:
            seen.add(f"{name}@{version}")
            todo.extend(CORPUS[name][version].items())
    return seen


def test_corpus_shape():
    """The brief's minimums: 20+ packages, scoped ones, a diamond, a chain of 5."""
    assert len(CORPUS) >= 20
    assert sum(n.startswith("@") for n in CORPUS) >= 10
    assert len(expected_set()) >= 20
    assert f"{S}util@1.4.0" in expected_set() and f"{S}util@2.1.0" in expected_set()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def corpus(registry_server):
    """Publish every version of every package (ascending, so latest = highest)."""
    reg = registry_server
    token = reg.token("admin", "publish")
    root = reg.tmp("corpus")
    packages = {}
    for name, versions in CORPUS.items():
        for version in sorted(versions, key=_v):
            pkg = reg.make_package(name, version, dependencies=versions[version] or None,
                                   root=root)
            res = reg.raw_publish(pkg, token)
            assert res.status in (200, 201), f"publish {pkg.spec}: {res}"
            packages[pkg.spec] = pkg
    return packages


# --------------------------------------------------------------------------- checks


def _resolve(from_dir: Path, name: str) -> Path | None:
    """Node's module resolution: ``<dir>/node_modules/<name>`` up the tree, realpath'd
    (that is also how pnpm's symlinked layout is walked)."""
    for d in [from_dir, *from_dir.parents]:
        if d.name == "node_modules":
            continue
        candidate = d / "node_modules" / name
        if (candidate / "package.json").exists():
            return Path(os.path.realpath(candidate))
    return None


def _files(pkg_dir: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(pkg_dir):
        dirnames[:] = [d for d in dirnames if d != "node_modules"]
        for f in filenames:
            p = Path(dirpath) / f
            out[p.relative_to(pkg_dir).as_posix()] = p.read_bytes()
    return out


def _all_installed(project: Path, layout: str) -> set[str]:
    """Every package present on disk, whether reachable or not."""
    found: set[str] = set()

    def add(pkg_dir: Path) -> None:
        m = json.loads((pkg_dir / "package.json").read_text())
        found.add(f"{m['name']}@{m['version']}")

    if layout == "pnpm":
        store = project / "node_modules" / ".pnpm"
        for entry in store.iterdir():
            nm = entry / "node_modules"
            if not nm.is_dir():
                continue
            for child in nm.iterdir():
                dirs = list(child.iterdir()) if child.name.startswith("@") and not child.is_symlink() \
                    else [child]
                for d in dirs:
                    if not d.is_symlink() and (d / "package.json").exists():
                        add(d)
        return found

    def walk(nm: Path) -> None:
        if not nm.is_dir():
            return
        for child in nm.iterdir():
            if child.name.startswith("."):
                continue
            dirs = list(child.iterdir()) if child.name.startswith("@") else [child]
            for d in dirs:
                if (d / "package.json").exists():
                    add(d)
                    walk(d / "node_modules")

    walk(project / "node_modules")
    return found


def verify_install(project: Path, corpus: dict, layout: str, pick: str = "highest") -> None:
    """Walk the installed graph from the project like Node does; every edge must resolve
    to the highest satisfying version (``pick="any"``: to some satisfying version), and
    every reached package must hold exactly the published files."""
    reached: dict[str, Path] = {}
    todo = [(project, name, rng, "<project>") for name, rng in PROJECT_DEPS.items()]
    problems = []
    while todo:
        where, name, rng, parent = todo.pop()
        pkg_dir = _resolve(where, name)
        if pkg_dir is None:
            problems.append(f"{parent} -> {name}@{rng}: not resolvable from {where}")
            continue
        manifest = json.loads((pkg_dir / "package.json").read_text())
        got = f"{manifest['name']}@{manifest['version']}"
        want = f"{name}@{max_satisfying(name, rng)}"
        if pick == "any" and manifest["name"] == name and satisfies(manifest["version"], rng):
            want = got
        if got != want:
            problems.append(f"{parent} -> {name}@{rng}: resolved {got}, want {want}")
            continue
        if got in reached:
            continue
        reached[got] = pkg_dir
        todo.extend((pkg_dir, dep, r, got) for dep, r in CORPUS[name][manifest["version"]].items())
    assert not problems, "\n".join(problems)
    if pick == "any":
        assert reached
    else:
        assert set(reached) == expected_set()
    for spec, pkg_dir in sorted(reached.items()):
        published = corpus[spec].files
        installed = _files(pkg_dir)
        assert sorted(installed) == sorted(published), f"{spec} at {pkg_dir}: file sets differ"
        for rel, data in published.items():
            assert installed[rel] == data, f"{spec}: {rel} is not the published file"
    assert _all_installed(project, layout) == (set(reached) if pick == "any" else expected_set())


def _write_project(reg, extra_files: dict[str, str]) -> Path:
    project = reg.make_project(PROJECT_DEPS)
    for rel, text in extra_files.items():
        (project / rel).write_text(text)
    return project


# --------------------------------------------------------------------------- the clients


def test_pnpm_install(registry_server, corpus, node_tools):
    reg = registry_server
    token = reg.token("admin", "read")
    store = reg.tmp("pnpm-store")
    project = _write_project(reg, {
        ".npmrc": f"registry={reg.npm_url}\n{reg.npmrc_auth_key}={token}\n",
        # packages published seconds ago: switch pnpm's release-age gate off
        "pnpm-workspace.yaml": f"minimumReleaseAge: 0\nstoreDir: {store}\n",
    })
    # --no-frozen-lockfile: under CI=true pnpm would insist on a lockfile
    res = node_tools.run_pnpm("install", "--no-frozen-lockfile", "--reporter=append-only",
                              cwd=project, home=reg.tmp("pnpm-home")).ok()
    assert (project / "pnpm-lock.yaml").exists(), res
    verify_install(project, corpus, "pnpm")
    lock = (project / "pnpm-lock.yaml").read_text()
    assert "tilde-dep@0.3.7" in lock and "integrity: sha512-" in lock

    # and again from the lockfile with a cold store
    for p in ("node_modules",):
        import shutil
        shutil.rmtree(project / p)
    (project / "pnpm-workspace.yaml").write_text(
        f"minimumReleaseAge: 0\nstoreDir: {reg.tmp('pnpm-store2')}\n")
    node_tools.run_pnpm("install", "--frozen-lockfile", "--reporter=append-only",
                        cwd=project, home=reg.tmp("pnpm-home")).ok()
    verify_install(project, corpus, "pnpm")


def test_yarn_install(registry_server, corpus, node_tools):
    reg = registry_server
    token = reg.token("admin", "read")
    project = _write_project(reg, {
        "yarn.lock": "",
        ".yarnrc.yml": "\n".join([
            "nodeLinker: node-modules",
            f'npmRegistryServer: "{reg.npm_url.rstrip("/")}"',
            f'npmAuthToken: "{token}"',
            # without it yarn sends no Authorization for unscoped packages and tarballs
            "npmAlwaysAuth: true",
            'unsafeHttpWhitelist: ["127.0.0.1"]',
            # yarn quarantines versions younger than 1 day (and any without a time)
            "npmMinimalAgeGate: 0",
            "enableTelemetry: false",
            "enableGlobalCache: false",
            # under CI=true yarn defaults to immutable installs
            "enableImmutableInstalls: false",
        ]) + "\n",
    })
    home = reg.tmp("yarn-home")
    res = node_tools.run_yarn("install", cwd=project, home=home).ok()
    assert "YN0000: · Done" in res.stdout or "Done" in res.stdout, res
    verify_install(project, corpus, "yarn")
    lock = (project / "yarn.lock").read_text()
    assert "gati-it-tilde-dep@npm:0.3.7" in lock, lock[:3000]


def test_npm_install_tree(registry_server, corpus):
    reg = registry_server
    project = _write_project(reg, {})
    res = reg.npm("install", cwd=project, token=reg.token("admin", "read")).ok()
    assert not re.search(r"\bERR!", res.output), res
    verify_install(project, corpus, "npm")


def test_pnpm_with_its_default_release_age_gate(registry_server, corpus, node_tools):
    """pnpm's default minimumReleaseAge (1 day, non-strict) needs a complete ``time`` map
    to decide; brand-new packages must still install (pnpm excludes them itself)."""
    reg = registry_server
    token = reg.token("admin", "read")
    project = _write_project(reg, {
        ".npmrc": f"registry={reg.npm_url}\n{reg.npmrc_auth_key}={token}\n",
        "pnpm-workspace.yaml": f"storeDir: {reg.tmp('pnpm-store')}\n",
    })
    res = node_tools.run_pnpm("install", "--no-frozen-lockfile", "--reporter=append-only",
                              cwd=project, home=reg.tmp("pnpm-home")).ok()
    # all versions are younger than the gate: pnpm (non-strict) takes the lowest satisfying
    # ones and adds them to minimumReleaseAgeExclude itself; that it could date them at all
    # shows the packuments' `time` is complete (without it pnpm warns and takes the highest)
    assert "minimumReleaseAgeExclude" in (project / "pnpm-workspace.yaml").read_text(), res
    assert "ERR_PNPM" not in res.output, res
    verify_install(project, corpus, "pnpm", pick="any")


def test_packument_representations(registry_server, corpus):
    """What pnpm and npm rely on (NPM-PROTOCOL.md 1.4, 2): the abbreviated document has its
    media type and a complete ``time``; abbreviated and full have different ETags (pnpm
    re-asks for the full one with the abbreviated ETag); every spelling of a scoped name
    works; yarn's conventional tarball URL works."""
    reg = registry_server
    token = reg.token("admin", "read")
    name = f"{S}diamond-base"
    versions = set(CORPUS[name])
    abbrev_accept = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"

    abbrev = reg.http("GET", "/npm/@gati-modules%2fit-diamond-base", token=token,
                      headers={"Accept": abbrev_accept, "Accept-Encoding": "identity"})
    assert abbrev.status == 200, abbrev
    assert abbrev.headers.get("Content-Type", "").startswith(
        "application/vnd.npm.install-v1+json"), abbrev.headers
    a = abbrev.json()
    assert set(a["versions"]) == versions
    assert versions <= set(a.get("time", {})), f"abbreviated time incomplete: {a.get('time')}"
    assert a["dist-tags"]["latest"] == "2.0.0"
    for v, doc in a["versions"].items():
        assert doc["dist"]["tarball"].startswith(reg.npm_url) and doc["dist"]["integrity"]

    full = reg.http("GET", "/npm/@gati-modules%2fit-diamond-base", token=token,
                    headers={"Accept": "application/json"})
    assert full.status == 200, full
    f = full.json()
    assert f.get("_rev"), "full packument without _rev"
    assert versions | {"created", "modified"} <= set(f["time"]), f["time"]
    for resp in (abbrev, full):
        assert resp.headers.get("Cache-Control"), f"packument without Cache-Control: {resp.headers}"

    a_etag, f_etag = abbrev.headers.get("ETag"), full.headers.get("ETag")
    if a_etag and f_etag:
        assert a_etag != f_etag, "abbreviated and full documents share an ETag"
        again = reg.http("GET", "/npm/@gati-modules%2fit-diamond-base", token=token,
                         headers={"Accept": "application/json; q=1.0, */*",
                                  "If-None-Match": a_etag})
        assert again.status == 200 and "time" in again.json(), \
            f"full request with the abbreviated ETag got {again.status}"
        same = reg.http("GET", "/npm/@gati-modules%2fit-diamond-base", token=token,
                        headers={"Accept": "application/json", "If-None-Match": f_etag})
        assert same.status in (200, 304), same

    for spelling in ("@gati-modules%2Fit-diamond-base", "@gati-modules/it-diamond-base"):
        other = reg.http("GET", f"/npm/{spelling}", token=token)
        assert other.status == 200 and other.json()["name"] == name, (spelling, other)

    tgz = corpus[f"{name}@1.2.5"].tarball()
    for path in ("/npm/@gati-modules%2fit-diamond-base/-/it-diamond-base-1.2.5.tgz",
                 "/npm/@gati-modules/it-diamond-base/-/it-diamond-base-1.2.5.tgz"):
        got = reg.http("GET", path, token=token, headers={"Accept-Encoding": "gzip"})
        assert got.status == 200, (path, got)
        assert "Content-Encoding" not in got.headers or got.headers["Content-Encoding"] == "identity"
        assert got.body == tgz, path


def test_pnpm_and_yarn_publish(registry_server, node_tools):
    """pnpm and yarn publish with their own body shapes (NPM-PROTOCOL.md 4.1: yarn sends a
    top-level readme and no _npmVersion); npm then installs what they published."""
    reg = registry_server
    token = reg.token("admin", "publish")
    by_pnpm = reg.make_package(f"{S}published-by-pnpm", "1.0.0")
    (by_pnpm.path / ".npmrc").write_text(
        f"registry={reg.npm_url}\n{reg.npmrc_auth_key}={token}\n")
    node_tools.run_pnpm("publish", "--no-git-checks", cwd=by_pnpm.path,
                        home=reg.tmp("pnpm-home")).ok()

    by_yarn = reg.make_package("gati-it-published-by-yarn", "1.0.0")
    (by_yarn.path / "yarn.lock").write_text("")
    (by_yarn.path / ".yarnrc.yml").write_text("\n".join([
        "nodeLinker: node-modules",
        f'npmRegistryServer: "{reg.npm_url.rstrip("/")}"',
        f'npmAuthToken: "{token}"',
        "npmAlwaysAuth: true",
        'unsafeHttpWhitelist: ["127.0.0.1"]',
        "enableTelemetry: false",
        "enableGlobalCache: false",
        "enableImmutableInstalls: false",
    ]) + "\n")
    home = reg.tmp("yarn-home")
    node_tools.run_yarn("install", cwd=by_yarn.path, home=home).ok()
    node_tools.run_yarn("npm", "publish", cwd=by_yarn.path, home=home).ok()

    project = reg.make_project({by_pnpm.name: "1.0.0", by_yarn.name: "1.0.0"})
    reg.npm("install", cwd=project, token=reg.token("admin", "read")).ok()
    for pkg in (by_pnpm, by_yarn):
        root = project / "node_modules" / pkg.name
        installed = json.loads((root / "package.json").read_text())
        assert (installed["name"], installed["version"]) == (pkg.name, "1.0.0")
        for rel, data in pkg.files.items():
            if rel != "package.json":  # yarn rewrites package.json when it packs
                assert (root / rel).read_bytes() == data, f"{pkg.name}: {rel}"
        view = reg.npm("view", pkg.name, "--json", token=token).ok().json()
        assert view["dist"]["tarball"].startswith(reg.npm_url), view["dist"]
        assert "1.0.0" in view["time"], view
