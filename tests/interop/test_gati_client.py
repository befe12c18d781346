"""The real ``gati`` console script against a real ``gati-registry serve``: sign-in and key
pinning, install of a corpus with a deep chain, a wide fan-out and conflicting ranges
(checked file by file and loaded by node), lockfile, offline reinstall, verify and
tampering, update/list/remove, create/publish/unpublish, search/info, the same
name@version set as npm, and key rotation and revocation."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

GATI = str(Path(sys.executable).parent / "gati")
CHAIN = 8
FAN = 16


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"$ gati {' '.join(self.args)} -> {self.returncode}\n{self.stdout}\n{self.stderr}"

    def ok(self) -> "Run":
        assert self.returncode == 0, str(self)
        return self

    def json(self) -> Any:
        return json.loads(self.stdout)


class Gati:
    """One developer: a private HOME (config, credentials, cache) and the real CLI."""

    def __init__(self, home: Path, registry: str) -> None:
        self.home = home
        self.registry = registry
        home.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GATI_", "NPM_CONFIG", "npm_config"))}
        env.update({"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                    "XDG_CACHE_HOME": str(self.home / ".cache"), "NO_COLOR": "1",
                    "GATI_REGISTRY": self.registry})
        return env

    def __call__(self, *args: str, cwd: Path | None = None, input: str | None = None,
                 env: dict[str, str] | None = None) -> Run:
        proc = subprocess.run([GATI, *args], cwd=cwd or self.home, input=input,
                              capture_output=True, text=True, timeout=180,
                              env={**self.env(), **(env or {})})
        return Run(list(args), proc.returncode, proc.stdout, proc.stderr)


def _fingerprint(reg: Any) -> str:
    keys = reg.http("GET", "/api/keys").json()["keys"]
    return next(k["fingerprint"] for k in keys
                if k["algorithm"] == "ed25519" and k["active"] and not k["revoked"])


@pytest.fixture(scope="module")
def corpus(registry_server: Any) -> dict[str, Any]:
    """Publishes the modules; returns ``{name@version: Package}``."""
    reg = registry_server
    pkgs = []
    for i in range(CHAIN):
        deps = {f"@gc/chain-{i + 1}": "^1.0.0"} if i + 1 < CHAIN else {}
        pkgs.append(reg.make_package(f"@gc/chain-{i}", "1.0.0", dependencies=deps))
    for i in range(FAN):
        pkgs.append(reg.make_package(f"@gc/leaf-{i}", "1.0.0"))
    pkgs.append(reg.make_package("@gc/fan", "1.0.0",
                                 dependencies={f"@gc/leaf-{i}": "^1.0.0" for i in range(FAN)}))
    for v in ("1.0.0", "1.1.0", "2.0.0", "2.1.0-beta.1"):
        pkgs.append(reg.make_package("@gc/shared", v))
    pkgs.append(reg.make_package("@gc/uses-shared-1", "1.0.0",
                                 dependencies={"@gc/shared": "~1.0.0"}))
    pkgs.append(reg.make_package("@gc/uses-shared-2", "1.0.0",
                                 dependencies={"@gc/shared": "^2.0.0"}))
    for p in pkgs:
        res = reg.raw_publish(p, tag="beta" if "-" in p.version else "latest")
        assert res.status == 201, res
    return {p.spec: p for p in pkgs}


PROJECT_DEPS = {"@gc/chain-0": "^1.0.0", "@gc/fan": "^1.0.0", "@gc/shared": "^1.0.0",
                "@gc/uses-shared-1": "^1.0.0", "@gc/uses-shared-2": "^1.0.0"}

EXPECTED_TREE = {
    **{f"node_modules/@gc/chain-{i}": "1.0.0" for i in range(CHAIN)},
    **{f"node_modules/@gc/leaf-{i}": "1.0.0" for i in range(FAN)},
    "node_modules/@gc/fan": "1.0.0",
    "node_modules/@gc/shared": "1.1.0",  # latest is 2.0.0; ^1 takes the highest 1.x
    "node_modules/@gc/uses-shared-1": "1.0.0",
    "node_modules/@gc/uses-shared-1/node_modules/@gc/shared": "1.0.0",  # ~1.0.0 conflicts
    "node_modules/@gc/uses-shared-2": "1.0.0",
    "node_modules/@gc/uses-shared-2/node_modules/@gc/shared": "2.0.0",  # no prerelease
}


@pytest.fixture(scope="module")
def dev(registry_server: Any, corpus: dict[str, Any]) -> Gati:
    reg = registry_server
    g = Gati(reg.tmp("gati-home"), reg.npm_url)
    g("registry", "login", "--username", "admin", "--password-stdin",
      "--trust-key", _fingerprint(reg), input=reg.admin_password + "\n").ok()
    return g


@pytest.fixture(scope="module")
def project(registry_server: Any, dev: Gati) -> Path:
    path = registry_server.make_project(PROJECT_DEPS)
    dev("module", "install", cwd=path).ok()
    return path


def _lock(path: Path) -> dict[str, Any]:
    return json.loads((path / "gati-lock.json").read_text())


def _tree(path: Path) -> dict[str, str]:
    return {p: e["version"] for p, e in _lock(path)["packages"].items()}


def test_login_pins_the_key_and_stores_the_token_privately(registry_server: Any,
                                                           dev: Gati) -> None:
    reg = registry_server
    creds = dev.home / ".config/gati/credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    stored = json.loads(creds.read_text())["registries"][reg.url]["token"]
    who = dev("registry", "whoami", "--json").ok()
    assert stored not in who.stdout + who.stderr
    assert who.json() == {"registry": reg.url, "username": "admin"}
    pinned = json.loads((dev.home / ".config/gati/keys.json").read_text())[reg.url]
    assert [k["fingerprint"] for k in pinned.values()] == [_fingerprint(reg)]
    # a wrong fingerprint, and no decision at all, store nothing
    token = reg.token("admin", "publish", cached=False)
    other = Gati(reg.tmp("gati-home"), reg.url)
    bad = other("registry", "login", "--token", token, "--trust-key", "00:11")
    assert bad.returncode == 5 and "no organisation key with fingerprint" in bad.stderr, bad
    undecided = other("registry", "login", "--token", token)
    assert undecided.returncode == 2 and "--trust-key" in undecided.stderr, undecided
    assert not (other.home / ".config/gati/credentials.json").exists()
    ok = other("--json", "registry", "login", "--token", token, "--yes").ok()
    assert ok.json()["newly_pinned"] == [_fingerprint(reg)]
    for run in (bad, undecided, ok):
        assert token not in run.stdout + run.stderr
    assert other("registry", "logout").ok()
    after = other("registry", "whoami")
    assert after.returncode == 3 and "gati registry login" in after.stderr, after
    assert reg.http("GET", "/npm/-/whoami", token=token).status == 401  # revoked


def test_install_lays_out_npms_tree_file_by_file_and_node_loads_it(
        registry_server: Any, corpus: dict[str, Any], project: Path) -> None:
    assert _tree(project) == EXPECTED_TREE
    for path, version in EXPECTED_TREE.items():
        name = path.split("node_modules/")[-1]
        published = corpus[f"{name}@{version}"].files
        on_disk = registry_server.read_tree(project / path)
        assert on_disk == published, path
    script = (
        "const path = require('path'); const { createRequire } = require('module');\n"
        f"const tree = {json.dumps(EXPECTED_TREE)};\n"
        "let n = 0;\n"
        "for (const [p, v] of Object.entries(tree)) {\n"
        "  const name = p.split('node_modules/').pop();\n"
        "  const parent = p.slice(0, p.length - ('node_modules/' + name).length);\n"
        "  const req = createRequire(path.join(process.cwd(), parent, 'index.js'));\n"
        "  const mod = req(name);\n"
        "  if (mod.name !== name || mod.version !== v) throw new Error(p + ' loaded ' + "
        "JSON.stringify(mod));\n"
        "  n++;\n"
        "}\n"
        "import('@gc/fan').then(m => { if (m.default.name !== '@gc/fan') throw 1; "
        "console.log(n); });\n")
    out = subprocess.run(["node", "-e", script], cwd=project, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == str(len(EXPECTED_TREE)), out
    pkg = json.loads((project / "package.json").read_text())
    assert pkg["dependencies"] == PROJECT_DEPS


def test_lockfile_is_stable_and_a_warm_cache_installs_offline(
        registry_server: Any, dev: Gati, project: Path) -> None:
    before = (project / "gati-lock.json").read_bytes()
    again = dev("--json", "module", "install", cwd=project).ok().json()
    assert again["resolved_from"] == "the lockfile" and again["added"] == []
    assert (project / "gati-lock.json").read_bytes() == before
    offline = registry_server.tmp("offline")
    for f in ("package.json", "gati-lock.json"):
        shutil.copy(project / f, offline / f)
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    keys = dev.home / ".config/gati/keys.json"
    stored = json.loads(keys.read_text())
    keys.write_text(json.dumps({**stored, dead: stored[registry_server.url]}))
    res = dev("--json", "module", "install", cwd=offline, env={"GATI_REGISTRY": dead}).ok()
    assert res.json()["downloaded"] == 0 and "checking signatures with the keys pinned" \
        in res.stderr
    assert registry_server.read_tree(offline / "node_modules/@gc") == \
        registry_server.read_tree(project / "node_modules/@gc")


def test_verify_passes_then_catches_changed_files_and_signatures(
        registry_server: Any, dev: Gati, project: Path) -> None:
    work = registry_server.tmp("verify")
    for f in ("package.json", "gati-lock.json"):
        shutil.copy(project / f, work / f)
    dev("module", "install", cwd=work).ok()
    assert dev("--json", "module", "verify", cwd=work).ok().json()["checked"] == len(EXPECTED_TREE)
    target = work / "node_modules/@gc/chain-3/lib/util.js"
    target.write_text(target.read_text() + "exports.evil = 1;\n")
    (work / "node_modules/@gc/leaf-2/extra.js").write_text("1")
    res = dev("module", "verify", cwd=work)
    assert res.returncode == 5, res
    assert "lib/util.js: changed since it was installed" in res.stdout
    assert "extra.js: not in the signed tarball" in res.stdout
    assert "2 of" in res.stderr
    dev("module", "install", "--force", cwd=work).ok()
    dev("module", "verify", "@gc/chain-3", cwd=work).ok()
    lock = _lock(work)
    entry = lock["packages"]["node_modules/@gc/fan"]
    entry["gatiSignatures"][0]["sig"] = entry["gatiSignatures"][0]["sig"][::-1]
    (work / "gati-lock.json").write_text(json.dumps(lock))
    res = dev("module", "verify", "@gc/fan", cwd=work)
    assert res.returncode == 5 and "@gc/fan@1.0.0" in res.stdout, res
    # install checks before it writes: an altered signature leaves node_modules alone
    shutil.rmtree(work / "node_modules")
    res = dev("module", "install", cwd=work)
    assert res.returncode == 5 and "altered" in res.stderr, res
    assert not (work / "node_modules").exists()


def test_npm_resolves_the_same_set(registry_server: Any, dev: Gati, project: Path) -> None:
    reg = registry_server
    npm_dir = reg.make_project(PROJECT_DEPS)
    reg.npm("install", "--ignore-scripts", cwd=npm_dir, token=reg.token("admin", "read")).ok()
    npm_lock = json.loads((npm_dir / "package-lock.json").read_text())
    npm_set = {f"{p.split('node_modules/')[-1]}@{e['version']}"
               for p, e in npm_lock["packages"].items() if p}
    gati_set = {f"{e['name']}@{e['version']}" for e in _lock(project)["packages"].values()}
    assert gati_set == npm_set
    # and the same places, for this corpus
    assert {p: e["version"] for p, e in npm_lock["packages"].items() if p} == EXPECTED_TREE


def test_search_and_info(registry_server: Any, dev: Gati, corpus: dict[str, Any]) -> None:
    found = dev("--json", "module", "search", "chain").ok().json()
    assert {r["name"] for r in found["results"]} >= {f"@gc/chain-{i}" for i in range(CHAIN)}
    info = dev("module", "info", "@gc/shared", "--version", "^2", "--json").ok().json()
    assert info["version"] == "2.0.0" and info["signature"]["ok"] is True
    assert info["dist-tags"] == {"latest": "2.1.0-beta.1", "beta": "2.1.0-beta.1"} or \
        info["dist-tags"]["beta"] == "2.1.0-beta.1"
    assert dev("module", "info", "@gc/nope").returncode == 4
    # /api/search: categories, sorts and the limit are the registry's
    by_category = dev("--json", "module", "search", "chain", "--category", "database").ok().json()
    assert by_category["results"] and {r["category"] for r in by_category["results"]} == {"database"}
    assert dev("--json", "module", "search", "chain", "--category", "queue").ok().json()["results"] == []
    limited = dev("--json", "module", "search", "chain", "--limit", "2", "--sort", "downloads").ok().json()
    assert len(limited["results"]) == 2
    # suggestions for a project: the registry's POST /api/recommendations
    work = registry_server.tmp("for-project")
    (work / "package.json").write_text(json.dumps({"name": "app", "version": "0.0.0",
                                                    "dependencies": {"@gc/chain-0": "^1.0.0"}}))
    suggested = dev("--json", "module", "search", "--for-project", cwd=work).ok().json()
    assert suggested["for_project"] is True and isinstance(suggested["results"], list)
    assert "@gc/chain-0" not in {r["name"] for r in suggested["results"]}   # not what it has
    assert dev("module", "search").returncode == 2


def test_update_list_outdated_and_remove(registry_server: Any, dev: Gati,
                                         project: Path) -> None:
    reg = registry_server
    work = reg.tmp("update")
    for f in ("package.json", "gati-lock.json"):
        shutil.copy(project / f, work / f)
    dev("module", "install", cwd=work).ok()
    assert reg.raw_publish(reg.make_package("@gc/shared", "1.2.0"), tag="legacy").status == 201
    outdated = dev("--json", "module", "list", "--outdated", cwd=work).ok().json()["modules"]
    assert [(m["name"], m["version"], m["wanted"]) for m in outdated] == \
        [("@gc/shared", "1.1.0", "1.2.0")]
    dev("module", "install", cwd=work).ok()  # the lockfile still holds 1.1.0
    assert _tree(work)["node_modules/@gc/shared"] == "1.1.0"
    res = dev("--json", "module", "update", "@gc/shared", cwd=work).ok().json()
    assert res["updated"] == [{"name": "@gc/shared", "from": "1.1.0", "to": "1.2.0"}]
    assert json.loads((work / "node_modules/@gc/shared/package.json").read_text())["version"] \
        == "1.2.0"
    dev("module", "remove", "@gc/uses-shared-2", cwd=work).ok()
    assert not (work / "node_modules/@gc/uses-shared-2").exists()
    assert "@gc/uses-shared-2" not in json.loads((work / "package.json").read_text())["dependencies"]
    assert "node_modules/@gc/uses-shared-2/node_modules/@gc/shared" not in _tree(work)
    assert dev("module", "remove", "@gc/never", cwd=work).returncode == 4


def test_create_publish_install_with_config_and_unpublish(registry_server: Any,
                                                          dev: Gati) -> None:
    reg = registry_server
    space = reg.tmp("create")
    dev("module", "create", "@gc/made", "--type", "cache", cwd=space).ok()
    mod = space / "made"
    gm = json.loads((mod / "gati-module.json").read_text())
    gm.update(type="toaster", defaultConfig={"ttl": 60})
    (mod / "gati-module.json").write_text(json.dumps(gm))
    bad = dev("--json", "module", "publish", cwd=mod)
    assert bad.returncode == 7, bad
    fields = {d["field"] for d in bad.json()["error"]["details"]}
    assert fields == {"gati-module.json type", "gati-module.json main"}
    gm["type"] = "cache"
    (mod / "gati-module.json").write_text(json.dumps(gm))
    (mod / "dist").mkdir()
    (mod / "dist/index.js").write_text("module.exports = { made: true };\n")
    pub = dev("--json", "module", "publish", "--tag", "next", cwd=mod).ok().json()
    assert pub["files"] == ["README.md", "dist/index.js", "gati-module.json", "package.json"]
    info = dev("--json", "module", "info", "@gc/made@next").ok().json()
    assert info["version"] == "0.1.0" and info["dist-tags"]["next"] == "0.1.0"
    app = reg.tmp("app")
    dev("module", "install", "@gc/made@next", cwd=app).ok()
    config = json.loads((app / "gati.config.json").read_text())
    assert config["modules"]["@gc/made"]["version"] == "next" or \
        config["modules"]["@gc/made"]["config"]["ttl"] == 60
    assert config["modules"]["@gc/made"]["config"]["ttl"] == 60
    out = subprocess.run(["node", "-e", "console.log(require('@gc/made').made)"], cwd=app,
                         capture_output=True, text=True)
    assert out.stdout.strip() == "true", out
    dev("module", "remove", "@gc/made", cwd=app).ok()
    assert json.loads((app / "gati.config.json").read_text())["modules"] == {}
    dev("module", "unpublish", "@gc/made@0.1.0").ok()
    assert dev("module", "info", "@gc/made").returncode == 4


def test_rotation_and_revocation(registry_server: Any, dev: Gati, project: Path) -> None:
    """Runs last: it changes the registry's keys."""
    reg = registry_server
    old = _fingerprint(reg)
    reg.cli("keys", "rotate").ok()
    fresh = reg.make_project({"@gc/chain-5": "^1.0.0"})
    dev("module", "install", cwd=fresh).ok()  # the old key still signs what it signed
    old_keyid = next(k["keyid"] for k in reg.http("GET", "/api/keys").json()["keys"]
                     if k["fingerprint"] == old)
    reg.cli("keys", "revoke", old_keyid, "--reason", "drill").ok()
    res = dev("module", "verify", cwd=project)
    assert res.returncode == 5 and "revoked" in res.stdout, res
    other = reg.make_project({"@gc/chain-6": "^1.0.0"})
    res = dev("module", "install", cwd=other)
    assert res.returncode == 5 and "not pinned" in res.stderr, res
    assert not (other / "node_modules").exists()
    dev("registry", "login", "--token", reg.token("admin", "read"), "--trust-key",
        _fingerprint(reg)).ok()
    dev("module", "install", cwd=other).ok()
    dev("module", "verify", cwd=other).ok()
