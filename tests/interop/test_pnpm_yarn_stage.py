"""pnpm and yarn against npm's staged publishing (``/-/stage``, NPM-PROTOCOL.md 7), which
the approval queue answers: real ``pnpm stage ...`` and ``yarn npm ... --staged`` /
``yarn npm stage ...`` commands. What each client sends: docs/protocol-notes-stage.md.

pnpm 12.21.0 has ``stage publish|list|view|download|approve|reject``; its ``approve``
also takes several ids (approved in dependency order, after reading each staged
tarball) or, on a terminal and without ids, offers a picker. yarn 4.18.1 has
``npm publish --staged`` and ``npm stage list|approve|reject`` but no ``view`` or
``download``: the yarn test checks the staged bytes over raw HTTP instead and asserts
that yarn refuses those two subcommands (a yarn that gains them needs tests here).

Publisher, approver and consumer are three users, so that "not installable" is what an
ordinary reader gets (publishers and approvers may see held versions in ``npm view``).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.interop

# the brief: staged publishing is tested with manual approval, set explicitly
REGISTRY_ENV = {"APPROVALS__DEFAULT_MODE": "manual"}

S = "@gati-modules/it-stage-"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def people(registry_server) -> dict[str, str]:
    """Tokens of three users: a publisher, an approver and a consumer (reader)."""
    reg = registry_server
    for user, role in (("stage-publisher", "publisher"), ("stage-approver", "approver"),
                       ("stage-consumer", "reader")):
        reg.add_user(user, role)
    return {"publisher": reg.token("stage-publisher", "publish"),
            "approver": reg.token("stage-approver", "approve"),
            "consumer": reg.token("stage-consumer", "read")}


def sha512_integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def same_files(got: dict[str, bytes], pkg: Any) -> None:
    """The published files, byte for byte; package.json by content (pnpm and yarn
    re-serialise it when they pack)."""
    assert sorted(got) == sorted(pkg.files), (sorted(got), sorted(pkg.files))
    for rel, data in pkg.files.items():
        if rel == "package.json":
            assert json.loads(got[rel]) == json.loads(data)
        else:
            assert got[rel] == data, rel


def says(output: str, *phrases: str) -> bool:
    """Whether every phrase is in ``output``, ignoring white space and the box-drawing
    margin: pnpm wraps its error reports at 80 columns, mid-word at hyphens."""
    flat = re.sub(r"[\s\u2502]+", "", output)
    return all(re.sub(r"\s+", "", p) in flat for p in phrases)


def installed_files(project: Path, name: str) -> dict[str, bytes]:
    root = Path(os.path.realpath(project / "node_modules" / name))
    files = {p.relative_to(root): p for p in root.rglob("*") if p.is_file()}
    return {rel.as_posix(): p.read_bytes() for rel, p in files.items()
            if "node_modules" not in rel.parts}


def served_tarball(reg, name: str, version: str, token: str) -> bytes:
    """The bytes installs get: the packument's dist.tarball (integrity checked)."""
    doc = reg.packument(name, token=token).json()
    dist = doc["versions"][version]["dist"]
    got = reg.http("GET", dist["tarball"], token=token)
    assert got.status == 200, got
    assert sha512_integrity(got.body) == dist["integrity"]
    return got.body


# --------------------------------------------------------------------------- pnpm


def pnpm(reg, tools, token: str, *args: str, cwd: Path | None = None):
    """pnpm with a private HOME whose ``~/.npmrc`` names the registry and ``token``."""
    home = reg.tmp("pnpm-home")
    (home / ".npmrc").write_text(f"registry={reg.npm_url}\n{reg.npmrc_auth_key}={token}\n")
    return tools.run_pnpm(*args, cwd=cwd or home, home=home)


def pnpm_stage_publish(reg, tools, token: str, pkg) -> dict[str, Any]:
    # --use-stderr: the progress lines go to stderr, the JSON summary alone to stdout
    res = pnpm(reg, tools, token, "stage", "publish", "--no-git-checks", "--json",
               "--use-stderr", cwd=pkg.path).ok()
    summary = res.json()[pkg.name]
    assert UUID.match(summary["stageId"]), res
    return summary


def pnpm_install(reg, tools, token: str, deps: dict[str, str]):
    project = reg.make_project(deps)
    # versions approved seconds ago: switch pnpm's release-age gate off
    (project / "pnpm-workspace.yaml").write_text(
        f"minimumReleaseAge: 0\nstoreDir: {reg.tmp('pnpm-store')}\n")
    return project, pnpm(reg, tools, token, "install", "--no-frozen-lockfile",
                         "--reporter=append-only", cwd=project)


def test_pnpm_stage_publish_list_view_download_approve_reject(registry_server, node_tools,
                                                              people):
    reg, tools = registry_server, node_tools
    publisher, approver, consumer = people["publisher"], people["approver"], people["consumer"]
    name = f"{S}pnpm"
    pkg = reg.make_package(name, "1.0.0")
    staged = pnpm_stage_publish(reg, tools, publisher, pkg)
    stage_id = staged["stageId"]

    # staged is not installable
    _, res = pnpm_install(reg, tools, consumer, {name: "1.0.0"})
    assert "ERR_PNPM_FETCH_404" in res.failed().output, res

    # list: approvers see it, the publisher sees their own, a consumer nothing
    mine = pnpm(reg, tools, approver, "stage", "list", name, "--json").ok().json()
    assert [(i["id"], i["packageName"], i["version"]) for i in mine] == [(stage_id, name, "1.0.0")]
    everything = pnpm(reg, tools, approver, "stage", "list", "--json").ok().json()
    assert stage_id in [i["id"] for i in everything]
    assert stage_id in [i["id"] for i in pnpm(reg, tools, publisher, "stage", "list", "--json")
                        .ok().json()]
    assert pnpm(reg, tools, consumer, "stage", "list", "--json").ok().json() == []

    view = pnpm(reg, tools, approver, "stage", "view", stage_id, "--json").ok().json()
    assert (view["id"], view["packageName"], view["version"], view["tag"], view["actor"]) == \
        (stage_id, name, "1.0.0", "latest", "stage-publisher")
    assert view["shasum"] == staged["shasum"]
    text = pnpm(reg, tools, approver, "stage", "view", stage_id).ok().stdout
    assert f"package name: {name}" in text and "staged by: stage-publisher (user)" in text

    # download: the bytes pnpm packed (same integrity as its publish summary)
    downloads = reg.tmp("pnpm-download")
    pnpm(reg, tools, approver, "stage", "download", stage_id, cwd=downloads).ok()
    (tgz,) = downloads.glob("*.tgz")
    staged_bytes = tgz.read_bytes()
    assert sha512_integrity(staged_bytes) == staged["integrity"]
    assert hashlib.sha1(staged_bytes).hexdigest() == view["shasum"]
    same_files(reg.tarball_files(staged_bytes), pkg)

    # approve: installable with pnpm, the very bytes that were downloaded
    out = pnpm(reg, tools, approver, "stage", "approve", stage_id).ok()
    assert f"Staged package {stage_id} approved" in out.output, out
    project, res = pnpm_install(reg, tools, consumer, {name: "1.0.0"})
    res.ok()
    same_files(installed_files(project, name), pkg)
    assert served_tarball(reg, name, "1.0.0", consumer) == staged_bytes
    assert pnpm(reg, tools, approver, "stage", "list", name, "--json").ok().json() == []

    # reject: gone from the list, never installable
    newer = reg.make_package(name, "1.1.0")
    second = pnpm_stage_publish(reg, tools, publisher, newer)["stageId"]
    out = pnpm(reg, tools, approver, "stage", "reject", second).ok()
    assert f"Staged package {second} has been rejected" in out.output, out
    assert pnpm(reg, tools, approver, "stage", "list", name, "--json").ok().json() == []
    _, res = pnpm_install(reg, tools, consumer, {name: "1.1.0"})
    assert says(res.failed().output, f"No matching version found for {name}@1.1.0"), res
    assert sorted(reg.packument(name, token=consumer).json()["versions"]) == ["1.0.0"]

    # a publisher may not decide; unknown ids are 404 (pnpm prints status and body)
    third = pnpm_stage_publish(reg, tools, publisher, reg.make_package(name, "1.2.0"))["stageId"]
    refused = pnpm(reg, tools, publisher, "stage", "approve", third).failed()
    assert says(refused.output, "403 Forbidden", "needs an approve or admin token"), refused
    assert "404" in pnpm(reg, tools, approver, "stage", "view", UNKNOWN_ID).failed().output
    assert "404" in pnpm(reg, tools, approver, "stage", "approve", UNKNOWN_ID).failed().output
    pnpm(reg, tools, approver, "stage", "reject", third).ok()


def test_pnpm_stage_approve_several_in_dependency_order(registry_server, node_tools, people):
    """``pnpm stage approve ID...`` reads every staged item and tarball, then approves
    dependencies before their dependents, whatever order the ids were given in."""
    reg, tools = registry_server, node_tools
    base, app = f"{S}pnpm-base", f"{S}pnpm-app"
    base_pkg = reg.make_package(base, "2.0.0")
    app_pkg = reg.make_package(app, "1.0.0", dependencies={base: "^2.0.0"})
    base_id = pnpm_stage_publish(reg, tools, people["publisher"], base_pkg)["stageId"]
    app_id = pnpm_stage_publish(reg, tools, people["publisher"], app_pkg)["stageId"]

    out = pnpm(reg, tools, people["approver"], "stage", "approve", app_id, base_id).ok().stdout
    lines = [line for line in out.splitlines() if line.startswith("Approved ")]
    assert lines == [f"Approved {base}@2.0.0", f"Approved {app}@1.0.0",
                     "Approved 2 staged packages successfully."], out
    project, res = pnpm_install(reg, tools, people["consumer"], {app: "1.0.0"})
    res.ok()
    same_files(installed_files(project, app), app_pkg)
    base_dir = Path(os.path.realpath(project / "node_modules" / app)).parent
    assert json.loads((base_dir / Path(base).name / "package.json").read_text())["version"] \
        == "2.0.0"


def run_on_terminal(args: list[str], *, cwd: Path, env: dict[str, str],
                    script: list[tuple[str, str]], timeout: float = 90.0) -> tuple[int, str]:
    """Run ``args`` on a pseudo-terminal: for each ``(pattern, keys)``, wait until the
    output (after the previous match) matches ``pattern``, then type ``keys``.
    Returns the exit code and everything printed."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, close_fds=True)
    os.close(slave)
    seen, pos, steps = "", 0, list(script)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if steps:
                m = re.search(steps[0][0], seen[pos:])
                if m:
                    pos += m.end()
                    os.write(master, steps.pop(0)[1].encode())
                    continue
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            if not data:
                break
            seen += data.decode("utf-8", "replace")
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=30), seen
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)


def test_pnpm_stage_approve_interactive_picker(registry_server, node_tools, people):
    """Without ids, on a terminal, ``pnpm stage approve`` lists the queue as a checklist
    (``GET /-/stage``) and approves what the approver ticks."""
    reg, tools = registry_server, node_tools
    name = f"{S}pnpm-picked"
    stage_id = pnpm_stage_publish(reg, tools, people["publisher"],
                                  reg.make_package(name, "1.0.0"))["stageId"]
    queue = [i["id"] for i in pnpm(reg, tools, people["approver"], "stage", "list",
                                   "--json").ok().json()]
    down = "\x1b[B" * queue.index(stage_id)  # the picker lists the queue in this order

    home = reg.tmp("pnpm-home")
    (home / ".npmrc").write_text(
        f"registry={reg.npm_url}\n{reg.npmrc_auth_key}={people['approver']}\n")
    env = {k: v for k, v in os.environ.items()
           if not k.lower().startswith(("npm_config_", "pnpm_", "yarn_")) and k != "CI"}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local/share"),
                "XDG_STATE_HOME": str(home / ".local/state"), "NO_COLOR": "1", "TERM": "xterm"})
    code, seen = run_on_terminal(
        [tools.pnpm, "stage", "approve"], cwd=home, env=env,
        script=[("Choose which staged packages to approve", down + " "),
                (r"\[x\] " + re.escape(f"{name}@1.0.0"), "\r")])
    assert code == 0, seen[-3000:]
    assert f"Approved {name}@1.0.0" in seen and "Approved 1 staged package successfully" in seen, \
        seen[-3000:]
    assert reg.packument(name, token=people["consumer"]).json()["dist-tags"]["latest"] == "1.0.0"


# --------------------------------------------------------------------------- yarn


def yarn_dir(reg, token: str, path: Path | None = None) -> Path:
    """A yarn 4 project directory talking to the registry with ``token``: ``path`` (a
    package to publish) or a new empty project."""
    if path is None:
        path = reg.make_project({})
    (path / "yarn.lock").write_text("")
    (path / ".yarnrc.yml").write_text("\n".join([
        "nodeLinker: node-modules",
        f'npmRegistryServer: "{reg.npm_url.rstrip("/")}"',
        f'npmAuthToken: "{token}"',
        # without it yarn sends no Authorization for unscoped packages and tarballs
        "npmAlwaysAuth: true",
        'unsafeHttpWhitelist: ["127.0.0.1"]',
        # yarn quarantines versions younger than a day
        "npmMinimalAgeGate: 0",
        "enableTelemetry: false",
        "enableGlobalCache: false",
        # under CI=true yarn defaults to immutable installs
        "enableImmutableInstalls: false",
    ]) + "\n")
    return path


def yarn(reg, tools, cwd: Path, *args: str):
    return tools.run_yarn(*args, cwd=cwd, home=reg.tmp("yarn-home"))


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def yarn_stage_publish(reg, tools, token: str, pkg) -> str:
    yarn_dir(reg, token, pkg.path)
    yarn(reg, tools, pkg.path, "install").ok()  # yarn publishes installed projects only
    res = yarn(reg, tools, pkg.path, "npm", "publish", "--staged", "--json").ok()
    (record,) = [r for r in ndjson(res.stdout) if "stageId" in r]
    assert (record["name"], record["version"], record["staged"], record["published"]) == \
        (pkg.name, pkg.version, True, False), record
    assert UUID.match(record["stageId"]), record
    return str(record["stageId"])


def yarn_install(reg, tools, token: str, deps: dict[str, str]):
    project = yarn_dir(reg, token, reg.make_project(deps))
    return project, yarn(reg, tools, project, "install")


def test_yarn_stage_publish_list_approve_reject(registry_server, node_tools, people):
    reg, tools = registry_server, node_tools
    publisher, approver, consumer = people["publisher"], people["approver"], people["consumer"]
    approver_dir = yarn_dir(reg, approver)
    name = f"{S}yarn"
    pkg = reg.make_package(name, "1.0.0")
    stage_id = yarn_stage_publish(reg, tools, publisher, pkg)

    _, res = yarn_install(reg, tools, consumer, {name: "1.0.0"})
    assert "Package not found" in res.failed().output and "404" in res.output, res

    # list (NDJSON tree with --json): name@tag -> version, the id, the date
    nodes = ndjson(yarn(reg, tools, approver_dir, "npm", "stage", "list", name, "--json")
                   .ok().stdout)
    assert [(n["value"], n["children"]["ID"]) for n in nodes] == \
        [({"descriptor": f"{name}@latest", "locator": f"{name}@1.0.0"}, stage_id)]
    assert nodes[0]["children"]["Staged"].endswith("Z")
    everything = ndjson(yarn(reg, tools, approver_dir, "npm", "stage", "list", "--json")
                        .ok().stdout)
    assert stage_id in [n["children"]["ID"] for n in everything]
    text = yarn(reg, tools, approver_dir, "npm", "stage", "list").ok().stdout
    assert "awaiting approval" in text and stage_id in text, text

    # yarn 4.18 has no stage view/download: read what it staged over raw HTTP
    for sub in ("view", "download"):
        missing = yarn(reg, tools, approver_dir, "npm", "stage", sub, stage_id).failed()
        assert "Command not found" in missing.output, missing
    item = reg.http("GET", f"/npm/-/stage/{stage_id}", token=approver)
    assert item.status == 200 and (item.json()["packageName"], item.json()["version"]) == \
        (name, "1.0.0"), item
    blob = reg.http("GET", f"/npm/-/stage/{stage_id}/tarball", token=approver)
    assert blob.status == 200 and hashlib.sha1(blob.body).hexdigest() == item.json()["shasum"]
    same_files(reg.tarball_files(blob.body), pkg)

    out = yarn(reg, tools, approver_dir, "npm", "stage", "approve", stage_id).ok()
    assert "approved and published successfully" in out.output, out
    project, res = yarn_install(reg, tools, consumer, {name: "1.0.0"})
    res.ok()
    same_files(installed_files(project, name), pkg)
    assert served_tarball(reg, name, "1.0.0", consumer) == blob.body
    assert "No staged versions found" in yarn(reg, tools, approver_dir, "npm", "stage", "list",
                                              name).ok().output

    # reject
    second = yarn_stage_publish(reg, tools, publisher, reg.make_package(name, "1.1.0"))
    out = yarn(reg, tools, approver_dir, "npm", "stage", "reject", second).ok()
    assert f"Staged package {second} has been rejected" in out.output, out
    assert "No staged versions found" in yarn(reg, tools, approver_dir, "npm", "stage", "list",
                                              name).ok().output
    _, res = yarn_install(reg, tools, consumer, {name: "1.1.0"})
    assert f"{name}@npm:1.1.0: No candidates found" in res.failed().output, res
    assert sorted(reg.packument(name, token=consumer).json()["versions"]) == ["1.0.0"]

    # a publisher may not decide (yarn prints the body's error); unknown ids are 404
    third = yarn_stage_publish(reg, tools, publisher, reg.make_package(name, "1.2.0"))
    refused = yarn(reg, tools, yarn_dir(reg, publisher), "npm", "stage", "approve",
                   third).failed()
    assert "403" in refused.output and "approve or admin token" in refused.output, refused
    gone = yarn(reg, tools, approver_dir, "npm", "stage", "reject", UNKNOWN_ID).failed()
    assert "404" in gone.output, gone
    yarn(reg, tools, approver_dir, "npm", "stage", "reject", third).ok()
