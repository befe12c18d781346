"""Publishers see their own held versions (and approvers all of them) in the full
packument that ``npm view`` reads; installs never do (both backends)."""
from __future__ import annotations

from typing import Any

import pytest

from gati_private_registry.testing import ModuleSpec

from .driver import Registry


@pytest.fixture
def approval_mode() -> str:
    return "manual"


def full(registry: Registry, name: str, token: str | None, command: str = "view") -> Any:
    """The full packument as ``npm <command>`` asks for it."""
    return registry.client.get(f"/npm/{name}", headers={**registry.headers(token),
                                                         "npm-command": command})


def test_own_held_versions_show_with_their_state(registry: Registry) -> None:
    registry.add_user("pat", "publisher")
    registry.add_user("eve", "publisher")
    registry.add_user("ann", "approver")
    pat, eve = registry.token("pat", "publish"), registry.token("eve", "publish")
    ann = registry.token("ann", "approve")
    assert registry.publish(ModuleSpec("mine", "1.0.0"), token=pat).json["state"] == "pending"

    own = full(registry, "mine", pat)
    assert own.status_code == 200
    assert own.headers["Cache-Control"] == "private, no-cache"
    doc = own.json
    assert doc["dist-tags"] == {"latest": "1.0.0"}   # what the publisher asked for
    entry = doc["versions"]["1.0.0"]
    assert entry["gati"]["state"] == "pending"
    assert "waiting for an approver" in entry["gati"]["reason"]
    assert entry["dist"]["tarball"].startswith("http://localhost/npm/mine/-/mine-1.0.0.tgz")
    assert "1.0.0" in doc["time"]
    # installs (npm 11 reads the full document too) and the tarball still refuse it,
    # to the publisher as well
    assert full(registry, "mine", pat, command="install").status_code == 404
    assert registry.packument("mine", token=pat, abbreviated=True).status_code == 404
    assert registry.tarball("mine", "1.0.0", token=pat).status_code == 404
    # someone else's token sees nothing; an approver sees it
    assert full(registry, "mine", eve).status_code == 404
    assert full(registry, "mine", ann).json["versions"]["1.0.0"]["gati"]["state"] == "pending"

    # approved: the plain document, with no gati block; a second version is rejected
    assert registry.client.post("/api/modules/mine/1.0.0/approve", json={},
                                headers=registry.headers(ann)).status_code == 200
    assert registry.publish(ModuleSpec("mine", "1.1.0"), token=pat).status_code == 201
    assert registry.client.post("/api/modules/mine/1.1.0/reject", json={"reason": "leaks a key"},
                                headers=registry.headers(ann)).status_code == 200
    doc = full(registry, "mine", pat).json
    assert doc["dist-tags"] == {"latest": "1.0.0"}
    assert "gati" not in doc["versions"]["1.0.0"]
    assert doc["versions"]["1.1.0"]["gati"] == {
        "state": "rejected", "reason": "leaks a key",
        "stateChangedAt": doc["versions"]["1.1.0"]["gati"]["stateChangedAt"]}
    public = full(registry, "mine", eve)
    assert public.headers["Cache-Control"] == "no-cache"
    assert list(public.json["versions"]) == ["1.0.0"]
    abbreviated = registry.packument("mine", token=pat, abbreviated=True).json
    assert list(abbreviated["versions"]) == ["1.0.0"]
    assert list(full(registry, "mine", pat, command="install").json["versions"]) == ["1.0.0"]
