"""Plugins vote, the policy decides the first state, approvers move it on (both backends)."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from sqlalchemy import func, select

from gati_private_registry import hooks
from gati_private_registry.services import build_services
from gati_private_registry.services.plugins import PluginHost
from gati_private_registry.settings import Settings
from gati_private_registry.storage import migrate
from gati_private_registry.storage.models import AuditEvent, Change, Transition, VoteRecord
from gati_private_registry.testing import ModuleSpec

from .driver import Registry


class Recorder:
    """A test plugin: votes what the test says, remembers what it saw."""

    def __init__(self) -> None:
        self.decision: hooks.Decision | None = hooks.Decision.APPROVE
        self.seen: list[hooks.Candidate] = []
        self.changes: list[hooks.StateChange] = []
        self.fail = False

    @hooks.hookimpl
    def gati_registry_review_version(self, candidate: hooks.Candidate,
                                     config: dict[str, Any]) -> hooks.Vote | None:
        self.seen.append(candidate)
        if self.fail:
            raise RuntimeError("plugin bug")
        if self.decision is None:
            return None
        return hooks.Vote(self.decision, (f"recorder says {self.decision.value}", f"limit={config['limit']}"))

    @hooks.hookimpl
    def gati_registry_version_state_changed(self, change: hooks.StateChange) -> None:
        self.changes.append(change)

    @hooks.hookimpl
    def gati_registry_plugin_settings(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"limit": {"type": "integer", "default": 7}}}


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"approvals": {"default_mode": "manual",
                          "policies": [{"pattern": "@auto/*", "mode": "auto"},
                                       {"pattern": "@strict/*", "mode": "auto-if-approved"}]}}


@pytest.fixture
def services(settings: Settings, recorder: Recorder) -> Iterator[Any]:
    host = PluginHost(load_entry_points=False, extra=[("recorder", recorder)])
    svc = build_services(settings, plugins=host)
    migrate.upgrade(svc.db.engine)
    svc.accounts.ensure_admin()
    yield svc
    svc.close()


def approve_via_api(registry: Registry, name: str, version: str, action: str, token: str,
                    reason: str = "looks fine") -> Any:
    return registry.client.post(f"/api/modules/{name}/{version}/{action}", json={"reason": reason},
                                headers=registry.headers(token))


def test_manual_policy_holds_versions_until_approved(registry: Registry, recorder: Recorder) -> None:
    resp = registry.publish(ModuleSpec("held", "1.0.0", extra={"license": "MIT"}))
    assert resp.status_code == 201
    assert resp.json["state"] == "pending"
    assert "held@1.0.0 is pending" in resp.headers["npm-notice"]
    # the plugin saw the real package: manifest, files and their contents
    cand = recorder.seen[-1]
    assert cand.name == "held" and cand.manifest["license"] == "MIT"
    assert {f.path for f in cand.files} >= {"package.json", "index.js", "gati-module.json"}
    assert b"module.exports" in cand.read_file("index.js")
    assert "held" in cand.existing_names() or cand.existing_names() == frozenset()
    # blocked everywhere: packument, tarball, version document
    assert registry.packument("held").status_code == 404
    assert registry.tarball("held", "1.0.0").status_code == 404
    approver = registry.token("admin", "approve")
    queue = registry.client.get("/api/approvals?state=pending", headers=registry.headers(approver)).json
    assert [(i["name"], i["version"]) for i in queue["items"]] == [("held", "1.0.0")]
    assert queue["items"][0]["votes"] == [{"plugin": "recorder", "decision": "approve",
                                           "reasons": ["recorder says approve", "limit=7"]}]
    ok = approve_via_api(registry, "held", "1.0.0", "approve", approver)
    assert ok.status_code == 200 and ok.json["state"] == "approved"
    assert list(registry.doc("held")["versions"]) == ["1.0.0"]
    assert registry.tarball("held", "1.0.0").status_code == 200
    assert [(c.old_state, c.new_state) for c in recorder.changes] == [(None, "pending"), ("pending", "approved")]
    with registry.services.db.read() as s:
        states = s.execute(select(Transition.old_state, Transition.new_state, Transition.actor)
                           .order_by(Transition.id)).all()
        assert [tuple(r) for r in states] == [(None, "pending", "admin"), ("pending", "approved", "admin")]
        assert "version.approve" in s.scalars(select(AuditEvent.action)).all()
        assert "version.state" in s.scalars(select(Change.kind)).all()


@pytest.mark.parametrize("name, decision, expected", [
    ("@auto/a", hooks.Decision.APPROVE, "approved"),
    ("@auto/b", hooks.Decision.NEEDS_REVIEW, "approved"),
    ("@auto/c", hooks.Decision.REJECT, "rejected"),
    ("@auto/d", None, "approved"),
    ("@strict/a", hooks.Decision.APPROVE, "approved"),
    ("@strict/b", hooks.Decision.NEEDS_REVIEW, "pending"),
    ("@strict/c", hooks.Decision.REJECT, "rejected"),
    ("@strict/d", None, "pending"),
    ("manual-a", hooks.Decision.APPROVE, "pending"),
    ("manual-b", hooks.Decision.REJECT, "rejected"),
])
def test_vote_combinations(registry: Registry, recorder: Recorder, name: str,
                           decision: hooks.Decision | None, expected: str) -> None:
    recorder.decision = decision
    resp = registry.publish(ModuleSpec(name, "1.0.0"))
    assert resp.status_code == 201
    assert resp.json["state"] == expected
    with registry.services.db.read() as s:
        assert s.scalar(select(func.count()).select_from(VoteRecord)) == (0 if decision is None else 1)


def test_a_failing_plugin_never_approves(registry: Registry, recorder: Recorder) -> None:
    recorder.fail = True
    assert registry.publish(ModuleSpec("@strict/buggy", "1.0.0")).json["state"] == "pending"
    with registry.services.db.read() as s:
        vote = s.scalars(select(VoteRecord)).one()
    assert vote.decision == "needs-review" and "plugin bug" in vote.reasons[0]


def test_transitions_and_permissions(registry: Registry) -> None:
    registry.add_user("pat", "publisher")
    registry.add_user("ann", "approver")
    pat, ann = registry.token("pat", "publish"), registry.token("ann", "approve")
    admin = registry.token("admin", "admin")
    assert registry.publish(ModuleSpec("flow", "1.0.0"), token=pat).status_code == 201
    assert registry.publish(ModuleSpec("flow", "1.0.1"), token=pat).status_code == 201
    # a publisher sees their own queue but may not decide
    mine = registry.client.get("/api/approvals", headers=registry.headers(pat)).json
    assert {i["version"] for i in mine["items"]} == {"1.0.0", "1.0.1"}
    assert approve_via_api(registry, "flow", "1.0.0", "approve", pat).status_code == 403
    assert registry.client.get("/api/approvals").status_code == 401
    # bad input changes nothing
    assert approve_via_api(registry, "flow", "1.0.0", "reject", ann, reason="  ").status_code == 400
    assert approve_via_api(registry, "flow", "1.0.0", "explode", ann).status_code == 404
    assert approve_via_api(registry, "flow", "9.9.9", "approve", ann).status_code == 404
    assert registry.client.get("/api/approvals?state=bogus", headers=registry.headers(ann)).status_code == 400
    # the approver decides
    assert approve_via_api(registry, "flow", "1.0.0", "approve", ann).status_code == 200
    assert approve_via_api(registry, "flow", "1.0.1", "reject", ann, reason="secrets").status_code == 200
    assert approve_via_api(registry, "flow", "1.0.1", "approve", ann).status_code == 403   # reversing needs an admin
    assert approve_via_api(registry, "flow", "1.0.0", "reject", ann, reason="x").status_code == 409  # approved → rejected is no transition
    assert list(registry.doc("flow")["versions"]) == ["1.0.0"]
    # quarantine pulls an approved version back from installs
    assert approve_via_api(registry, "flow", "1.0.0", "quarantine", ann, reason="CVE").status_code == 200
    assert registry.packument("flow").status_code == 404
    assert registry.tarball("flow", "1.0.0").status_code == 404
    # an admin may reverse a rejection and a quarantine
    assert approve_via_api(registry, "flow", "1.0.1", "approve", admin).status_code == 200
    assert approve_via_api(registry, "flow", "1.0.0", "approve", admin).status_code == 200
    assert sorted(registry.doc("flow")["versions"]) == ["1.0.0", "1.0.1"]
    everything = registry.client.get("/api/approvals?state=all", headers=registry.headers(ann)).json
    assert {i["state"] for i in everything["items"]} == {"approved"}


def test_stage_endpoints_refuse_bad_input(registry: Registry) -> None:
    from gati_private_registry.testing import publish_body

    h = registry.headers(registry.token("admin", "approve"))
    body = publish_body(ModuleSpec("staged-one", "1.0.0"))
    resp = registry.client.post("/npm/-/stage/package/staged-one", json=body,
                                headers=registry.headers(registry.token()))
    assert resp.status_code == 201 and resp.json["state"] == "pending"
    stage_id = resp.json["stageId"]
    assert registry.client.get("/npm/-/stage?page=x", headers=h).status_code == 400
    listed = registry.client.get("/npm/-/stage?page=0&perPage=1", headers=h).json
    assert listed["total"] == 1 and listed["items"][0]["id"] == stage_id
    assert registry.client.get("/npm/-/stage/not-a-stage-id", headers=h).status_code == 404
    assert registry.client.get("/npm/-/stage", ).status_code == 401
    # a staged body that fails validation stores nothing and gets no stage id
    bad = publish_body(ModuleSpec("staged-two", "1.0.0"))
    bad["versions"]["1.0.0"]["dependencies"] = {"evil": "*"}
    refused = registry.client.post("/npm/-/stage/package/staged-two", json=bad,
                                   headers=registry.headers(registry.token()))
    assert refused.status_code == 400 and "stageId" not in refused.json
    assert registry.client.get("/npm/-/stage", headers=h).json["total"] == 1


def test_held_versions_move_no_tags_until_approved(registry: Registry) -> None:
    approver = registry.token("admin", "approve")
    for version in ("1.0.0", "2.0.0"):
        registry.publish(ModuleSpec("tagged", version))
    approve_via_api(registry, "tagged", "1.0.0", "approve", approver)
    assert registry.doc("tagged")["dist-tags"] == {"latest": "1.0.0"}
    # 1.1.0 asks for latest, 3.0.0-beta.1 for next: nothing moves while they wait
    registry.publish(ModuleSpec("tagged", "1.1.0"))
    registry.publish(ModuleSpec("tagged", "3.0.0-beta.1"), tag="next")
    assert registry.doc("tagged")["dist-tags"] == {"latest": "1.0.0"}
    with registry.services.db.read() as s:
        from gati_private_registry.storage.models import DistTag
        assert {t.tag: t.version for t in s.scalars(select(DistTag))} == {"latest": "1.0.0"}
    # a rejection leaves them where they were
    approve_via_api(registry, "tagged", "1.1.0", "reject", approver, reason="no")
    assert registry.doc("tagged")["dist-tags"] == {"latest": "1.0.0"}
    # approval applies the requested tag
    approve_via_api(registry, "tagged", "3.0.0-beta.1", "approve", approver)
    assert registry.doc("tagged")["dist-tags"] == {"latest": "1.0.0", "next": "3.0.0-beta.1"}
    approve_via_api(registry, "tagged", "2.0.0", "approve", approver)
    assert registry.doc("tagged")["dist-tags"]["latest"] == "2.0.0"
    # a version approved late does not take latest back from a newer one
    registry.publish(ModuleSpec("tagged", "1.5.0"))
    approve_via_api(registry, "tagged", "1.5.0", "approve", approver)
    assert registry.doc("tagged")["dist-tags"]["latest"] == "2.0.0"


def test_queue_pages_in_the_database(registry: Registry) -> None:
    approver = registry.headers(registry.token("admin", "approve"))
    for i in range(7):
        registry.publish(ModuleSpec(f"paged-{i}", "1.0.0"))
    page = registry.client.get("/api/approvals?limit=3&offset=3", headers=approver).json
    assert page["total"] == 7 and [i["name"] for i in page["items"]] == ["paged-3", "paged-4", "paged-5"]
    assert registry.client.get("/api/approvals?limit=x", headers=approver).status_code == 400
    staged = registry.client.get("/npm/-/stage?page=2&perPage=3", headers=approver).json
    assert staged["total"] == 7 and [i["packageName"] for i in staged["items"]] == ["paged-6"]


def test_a_disabled_plugin_hears_nothing(registry: Registry, recorder: Recorder) -> None:
    admin = registry.headers(registry.token("admin", "admin"))
    assert registry.client.patch("/api/plugins/recorder", json={"enabled": False},
                                 headers=admin).status_code == 200
    registry.publish(ModuleSpec("unheard", "1.0.0"))
    approve_via_api(registry, "unheard", "1.0.0", "approve", registry.token("admin", "approve"))
    assert recorder.seen == [] and recorder.changes == []
    assert registry.client.patch("/api/plugins/recorder", json={"enabled": True},
                                 headers=admin).status_code == 200
    approve_via_api(registry, "unheard", "1.0.0", "quarantine", registry.token("admin", "approve"),
                    reason="heard again")
    assert [(c.old_state, c.new_state) for c in recorder.changes] == [("approved", "quarantined")]
