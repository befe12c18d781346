"""Registry signatures verified by the clients' own code: npm's (pacote with
``verifySignatures``, exactly what ``npm audit signatures`` runs per package) over a
project of 20+ modules installed by the real npm, and ``pnpm audit signatures``.

``npm audit signatures`` itself first refreshes Sigstore's public TUF repository, which
a closed network cannot reach (NPM-PROTOCOL.md section 8), so its per-package check is
driven here directly with the bundled pacote.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

JS = Path(__file__).parent / "js" / "verify-signatures.cjs"
S = "@gati-modules/sig-"


def _corpus() -> dict[str, dict[str, str]]:
    """20 modules, scoped and unscoped, some depending on others: ``{name: deps}``."""
    names = [f"{S}{i:02d}" if i % 3 else f"gati-sig-{i:02d}" for i in range(20)]
    corpus: dict[str, dict[str, str]] = {}
    for i, name in enumerate(names):
        deps = {names[j]: "^1.0.0" for j in (2 * i + 1, 2 * i + 2) if j < len(names)}
        corpus[name] = deps
    return corpus


CORPUS = _corpus()


@pytest.fixture(scope="module")
def installed(registry_server):
    reg = registry_server
    token = reg.token("admin", "publish")
    root = reg.tmp("sig-corpus")
    for name, deps in CORPUS.items():
        pkg = reg.make_package(name, "1.0.0", dependencies=deps or None, root=root)
        res = reg.raw_publish(pkg, token)
        assert res.status in (200, 201), f"publish {name}: {res}"
    project = reg.make_project({name: "^1.0.0" for name in CORPUS})
    reg.npm("install", "--no-audit", cwd=project, token=reg.token("admin", "read")).ok()
    return project


def _npm_root() -> Path:
    out = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _verify(reg, project: Path, *extra: str) -> list[dict]:
    pacote = _npm_root() / "npm" / "node_modules" / "pacote"
    assert pacote.is_dir(), f"npm's bundled pacote not found at {pacote}"
    res = subprocess.run(["node", str(JS), str(pacote), str(project), reg.npm_url,
                          reg.token("admin", "read"), str(reg.tmp("pacote-cache")), *extra],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_npm_verifies_every_installed_module(registry_server, installed):
    results = _verify(registry_server, installed)
    assert len(results) >= 20
    assert {r["name"] for r in results} == set(CORPUS)
    bad = [r for r in results if not r["ok"] or r["signatures"] < 1]
    assert not bad, bad
    # what was verified is what npm installed
    assert all(r["integrity"] == r["installedIntegrity"] for r in results)


def test_npm_rejects_signatures_under_the_wrong_keys(registry_server, installed):
    results = _verify(registry_server, installed, "wrong-keys")
    assert len(results) >= 20
    assert {r["code"] for r in results} == {"EINTEGRITYSIGNATURE"}, results


def test_pnpm_audit_signatures(registry_server, installed, node_tools):
    reg = registry_server
    project = reg.make_project({name: "^1.0.0" for name in CORPUS}, name="gati-sig-pnpm")
    npmrc = f"registry={reg.npm_url}\n{reg.npmrc_auth_key}={reg.token('admin', 'read')}\n"
    (project / ".npmrc").write_text(npmrc)
    (project / "pnpm-workspace.yaml").write_text(
        f"minimumReleaseAge: 0\nstoreDir: {reg.tmp('pnpm-store')}\n")
    home = reg.tmp("pnpm-home")
    node_tools.run_pnpm("install", "--no-frozen-lockfile", "--reporter=append-only",
                        cwd=project, home=home).ok()
    audit = node_tools.run_pnpm("audit", "signatures", cwd=project, home=home).ok()
    assert "audited 20 packages" in audit.output, audit
    assert "20 packages have verified registry signatures" in audit.output, audit
    assert "invalid" not in audit.output.lower() and "missing" not in audit.output.lower(), audit


def test_rotation_and_revocation_as_npm_sees_them(registry_server, installed):
    """After ``keys rotate`` every module carries the old and the new signature and npm
    accepts both (the old key's ``expires`` is after their publish time); after the old
    pair is revoked only the new signature is served, and it still verifies."""
    reg = registry_server
    before = {k["keyid"] for k in json.loads(reg.http("GET", "/npm/-/npm/v1/keys").body)["keys"]}
    rotated = reg.cli("keys", "rotate").ok()
    # the CLI and the server's re-signing follower share the work; either way all is signed
    assert "every approved version carries the active signatures" in rotated.output, rotated
    results = _verify(reg, installed)
    assert all(r["ok"] and r["signatures"] == 2 for r in results), results
    old = next(iter(before))
    reg.cli("keys", "revoke", old, "--reason", "rotated out in a drill").ok()
    results = _verify(reg, installed)
    assert all(r["ok"] and r["signatures"] == 1 for r in results), results


def test_the_running_server_resigns_after_a_background_rotation(registry_server, installed):
    """``keys rotate --background`` leaves re-signing to the server: its follower of the
    changes feed (a thread in the gunicorn workers) signs every module with the new pair."""
    import time

    reg = registry_server
    out = reg.cli("keys", "rotate", "--background").ok()
    assert "the running servers sign them" in out.output, out
    keys = json.loads(reg.http("GET", "/api/keys").body)["keys"]
    active = next(k["keyid"] for k in keys if k["active"] and k["algorithm"] == "ecdsa-p256")
    token = reg.token("admin", "read")
    deadline = time.monotonic() + 30
    missing = set(CORPUS)
    while missing and time.monotonic() < deadline:
        for name in sorted(missing):
            doc = json.loads(reg.packument(name, token).body)
            if any(s["keyid"] == active for s in doc["versions"]["1.0.0"]["dist"]["signatures"]):
                missing.discard(name)
        time.sleep(0.2)
    assert not missing, f"not re-signed by the server: {sorted(missing)}\n{reg.log_tail()}"
    assert all(r["ok"] for r in _verify(reg, installed))
