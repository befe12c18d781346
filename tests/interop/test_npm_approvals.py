"""The approval workflow through the real npm: a held version is not installable, with a
readable reason, until an approver decides; reject and quarantine keep it away."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.interop

# every version waits for a person, as on a fresh install with the workflow switched on
REGISTRY_ENV = {"APPROVALS__DEFAULT_MODE": "manual"}


def decide(reg, name: str, version: str, action: str, reason: str = "reviewed") -> None:
    res = reg.http("POST", f"/api/modules/{name}/{version}/{action}", body={"reason": reason},
                   token=reg.token("admin", "approve"))
    assert res.status == 200, res


def test_publish_pending_approve_install_then_reject_and_quarantine(registry_server):
    reg = registry_server
    name = "@gati-modules/it-gated"
    pkg = reg.make_package(name, "1.0.0")
    published = reg.publish_dir(pkg.path, reg.token("admin", "publish")).ok()
    assert "is pending" in published.output, published   # npm prints the npm-notice header

    project = reg.make_project({name: "^1.0.0"})
    held = reg.npm("install", cwd=project, token=reg.token("admin", "read")).failed()
    assert "E404" in held.output and "not approved for installs" in held.output, held

    decide(reg, name, "1.0.0", "approve")
    reg.npm("install", cwd=project, token=reg.token("admin", "read")).ok()
    installed = project / "node_modules" / name
    assert json.loads((installed / "package.json").read_text())["version"] == "1.0.0"

    # a rejected version never becomes installable
    newer = reg.make_package(name, "1.1.0", description="held back text")
    reg.publish_dir(newer.path, reg.token("admin", "publish")).ok()
    # nor does a held version change the description or README npm view shows
    for when in ("held", "rejected"):
        for field, want in (("description", "Gati interop test module"),
                            ("readme", "Version 1.0.0.")):
            shown = reg.npm("view", name, field, token=reg.token("admin", "read")).ok()
            assert want in shown.output and "held back" not in shown.output \
                and "1.1.0" not in shown.output, (when, shown)
        if when == "held":
            decide(reg, name, "1.1.0", "reject", "licence not allowed")
    fresh = reg.make_project({name: "^1.0.0"})
    reg.npm("install", cwd=fresh, token=reg.token("admin", "read")).ok()
    assert json.loads((fresh / "node_modules" / name / "package.json").read_text())["version"] == "1.0.0"
    tarball = reg.http("GET", f"/npm/{name}/-/it-gated-1.1.0.tgz", token=reg.token("admin", "read"))
    assert tarball.status == 404 and b"rejected" in tarball.body

    # quarantine after approval: installs stop getting it
    decide(reg, name, "1.0.0", "quarantine", "CVE-2026-0001")
    again = reg.make_project({name: "^1.0.0"})
    gone = reg.npm("install", cwd=again, token=reg.token("admin", "read")).failed()
    assert "E404" in gone.output and "quarantined" in gone.output, gone


def test_publisher_sees_own_pending_and_rejected_versions_in_npm_view(registry_server):
    reg = registry_server
    name = "@gati-modules/it-viewed"
    reg.add_user("pat", "publisher")
    reg.add_user("eve", "publisher")
    pat, eve = reg.token("pat", "publish"), reg.token("eve", "read")
    reg.publish_dir(reg.make_package(name, "1.0.0").path, pat).ok()

    # the publisher's own token: npm view shows the version and its state
    viewed = reg.npm("view", f"{name}@1.0.0", "gati", "--json", token=pat).ok()
    state = json.loads(viewed.output)
    assert state["state"] == "pending" and "waiting for an approver" in state["reason"], viewed
    # someone else sees nothing at all, and installs are still refused for the publisher
    assert "E404" in reg.npm("view", f"{name}@1.0.0", token=eve).failed().output
    project = reg.make_project({name: "1.0.0"})
    assert "E404" in reg.npm("install", cwd=project, token=pat).failed().output

    decide(reg, name, "1.0.0", "reject", "bundles a private key")
    rejected = json.loads(reg.npm("view", f"{name}@1.0.0", "gati", "--json", token=pat).ok().output)
    assert rejected["state"] == "rejected" and rejected["reason"] == "bundles a private key"
