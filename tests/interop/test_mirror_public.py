"""The mirror in front of the npm registry configured on this machine (``npm config get
registry``; CI has the same): npm, pnpm and yarn 4 install a real public project,
``express@^4`` and its ~70 packages, through it. After the first install every second
one, with a clean client cache, is served entirely from the mirror's cache: the mirror's
own count of upstream requests does not move.

If the configured registry cannot be reached the tests fail (never skip) and say so.
"""
from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.interop


def _configured_registry() -> str:
    try:
        out = subprocess.run(["npm", "config", "get", "registry"], capture_output=True,
                             text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out


PUBLIC = _configured_registry()
REGISTRY_ENV = {
    "UPSTREAMS__PUBLIC__URL": PUBLIC or "http://127.0.0.1:9/",
    "UPSTREAMS__PUBLIC__TIMEOUT": "60s",
    # the approval mode that fits a mirror of public packages in a test: auto
    # (the interop conftest sets [approvals] default_mode = auto)
    "PACKAGES": "@corp/*=local,*=public",
}
PROJECT = {"express": "^4"}


@pytest.fixture(scope="module")
def public_registry() -> str:
    if not PUBLIC.startswith(("http://", "https://")):
        pytest.fail(f"`npm config get registry` gave {PUBLIC!r}: these tests need the npm "
                    f"registry configured on the machine", pytrace=False)
    try:
        with urllib.request.urlopen(PUBLIC.rstrip("/") + "/express", timeout=30) as r:
            assert r.status == 200
    except Exception as exc:  # noqa: BLE001 - turned into a clear failure
        pytest.fail(f"the configured npm registry {PUBLIC} is unreachable ({exc!r}); the "
                    f"mirror's public interop tests need it", pytrace=False)
    return PUBLIC


def upstream_requests(reg: Any) -> int:
    st = reg.http("GET", "/api/mirror/status", token=reg.token("admin", "admin"))
    assert st.status == 200, st.body
    return int(json.loads(st.body)["counters"]["upstream_requests"])


def installed(project: Path) -> dict[str, str]:
    """name → version of every package under node_modules (nested ones included)."""
    out: dict[str, str] = {}
    for manifest in project.glob("node_modules/**/package.json"):
        rel = manifest.relative_to(project).parts
        # node_modules/<name>/package.json or node_modules/@scope/<name>/package.json
        if rel[-3] == "node_modules" or (rel[-3].startswith("@") and rel[-4] == "node_modules"):
            data = json.loads(manifest.read_text())
            if isinstance(data.get("name"), str) and data.get("version"):
                out[data["name"]] = data["version"]
    return out


def check_express(project: Path) -> dict[str, str]:
    got = installed(project)
    assert got.get("express", "").startswith("4."), sorted(got)[:20]
    assert len(got) >= 30 and {"body-parser", "send", "qs", "mime"} <= set(got), sorted(got)
    return got


def test_npm_installs_express_then_again_from_the_cache_only(registry_server: Any,
                                                             public_registry: str) -> None:
    reg = registry_server
    token = reg.token("admin", "read")
    project = reg.make_project(PROJECT)
    reg.npm("install", "--fetch-retries=1", cwd=project, token=token).ok()
    first = check_express(project)
    lock = json.loads((project / "package-lock.json").read_text())
    resolved = {e.get("resolved", "") for p, e in lock["packages"].items() if p}
    assert all(u.startswith(reg.npm_url) for u in resolved), resolved  # all through us
    before = upstream_requests(reg)
    assert before > len(first)  # the first install did go upstream
    again = reg.make_project(PROJECT)
    reg.npm("install", "--fetch-retries=0", cwd=again, token=token).ok()  # fresh cache
    assert check_express(again) == first
    assert upstream_requests(reg) == before, "the second install asked the upstream"


def test_pnpm_and_yarn_install_express_from_the_warm_mirror(
        registry_server: Any, public_registry: str, node_tools: Any) -> None:
    reg = registry_server
    token = reg.token("admin", "read")
    warm = reg.make_project(PROJECT)
    reg.npm("install", cwd=warm, token=token).ok()  # warm (a no-op after the npm test)
    expected = check_express(warm)
    before = upstream_requests(reg)

    pnpm_project = reg.make_project(PROJECT)
    (pnpm_project / ".npmrc").write_text(
        f"registry={reg.npm_url}\n{reg.npmrc_auth_key}={token}\n")
    (pnpm_project / "pnpm-workspace.yaml").write_text(
        # updateNotifier: pnpm would ask the registry for its own newest version
        f"minimumReleaseAge: 0\nupdateNotifier: false\nstoreDir: {reg.tmp('pnpm-store')}\n")
    node_tools.run_pnpm("install", "--no-frozen-lockfile", "--reporter=append-only",
                        "--config.node-linker=hoisted", cwd=pnpm_project,
                        home=reg.tmp("pnpm-home")).ok()
    got = check_express(pnpm_project)
    assert got["express"] == expected["express"]

    yarn_project = reg.make_project(PROJECT)
    (yarn_project / "yarn.lock").write_text("")
    (yarn_project / ".yarnrc.yml").write_text("\n".join([
        "nodeLinker: node-modules", f'npmRegistryServer: "{reg.npm_url.rstrip("/")}"',
        f'npmAuthToken: "{token}"', "npmAlwaysAuth: true", 'unsafeHttpWhitelist: ["127.0.0.1"]',
        "npmMinimalAgeGate: 0", "enableTelemetry: false", "enableGlobalCache: false",
        "enableImmutableInstalls: false"]) + "\n")
    node_tools.run_yarn("install", cwd=yarn_project, home=reg.tmp("yarn-home")).ok()
    got = check_express(yarn_project)
    assert got["express"] == expected["express"]
    assert upstream_requests(reg) == before, "pnpm or yarn made the mirror ask the upstream"
