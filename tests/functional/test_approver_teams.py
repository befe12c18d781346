"""Secure by default, and approvers restricted to a team per package pattern (both backends)."""
from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gati_private_registry.cli.admin import main as admin_cli
from gati_private_registry.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gati_private_registry.settings import Settings
from gati_private_registry.storage.models import AuditEvent, TeamMember
from gati_private_registry.testing import ModuleSpec

from .driver import Registry


@pytest.fixture
def approval_mode() -> None:
    return None  # this module runs on the shipped default


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"approvals": {"policies": [
        {"pattern": "@corp/*", "mode": "manual", "approvers": "platform"},
        {"pattern": "@ghost/*", "mode": "manual", "approvers": "no-such-team"}]}}


def decide(registry: Registry, name: str, version: str, action: str, token: str) -> Any:
    return registry.client.post(f"/api/modules/{name}/{version}/{action}",
                                json={"reason": "checked"}, headers=registry.headers(token))


def test_a_fresh_install_holds_every_version_for_a_person(registry: Registry) -> None:
    assert Settings().approvals.default_mode == "manual"
    assert registry.services.settings.approvals.default_mode == "manual"
    resp = registry.publish(ModuleSpec("plain", "1.0.0"))
    assert resp.status_code == 201 and resp.json["state"] == "pending"
    assert registry.packument("plain").status_code == 404
    assert registry.tarball("plain", "1.0.0").status_code == 404


def test_only_the_policy_team_decides_under_its_pattern(registry: Registry) -> None:
    teams = registry.services.teams
    for user in ("ann", "bob"):
        registry.add_user(user, "approver")
    teams.create(None, "platform", "runs the platform")
    teams.add_member(None, "platform", "ann")
    ann, bob = registry.token("ann", "approve"), registry.token("bob", "approve")
    admin = registry.token("admin", "admin")
    for name in ("@corp/db", "@corp/cache", "open-one", "@ghost/x"):
        assert registry.publish(ModuleSpec(name, "1.0.0")).json["state"] == "pending"

    # bob approves anything no team holds, but not under @corp/*
    assert decide(registry, "open-one", "1.0.0", "approve", bob).status_code == 200
    refused = decide(registry, "@corp/db", "1.0.0", "approve", bob)
    assert refused.status_code == 403
    assert "team platform" in refused.json["error"]["message"]
    assert registry.packument("@corp/db").status_code == 404
    # ann is in the team
    assert decide(registry, "@corp/db", "1.0.0", "approve", ann).status_code == 200
    assert registry.packument("@corp/db").status_code == 200
    # admins are never locked out, even of a pattern whose team does not exist
    assert decide(registry, "@ghost/x", "1.0.0", "approve", bob).status_code == 403
    assert decide(registry, "@ghost/x", "1.0.0", "approve", admin).status_code == 200
    # npm stage approve goes through the same check
    queue = registry.client.get("/npm/-/stage", headers=registry.headers(bob)).json
    cache = next(i for i in queue["items"] if i["packageName"] == "@corp/cache")
    assert registry.client.post(f"/npm/-/stage/{cache['id']}/approve",
                                headers=registry.headers(bob)).status_code == 403
    # leaving the team takes the power away
    teams.remove_member(None, "platform", "ann")
    assert decide(registry, "@corp/cache", "1.0.0", "approve", ann).status_code == 403
    assert registry.services.approvals.may_decide(
        registry.services.accounts.principal_for_user(
            registry.services.accounts.get_user("admin")), "@corp/cache")


def test_team_changes_validate_and_are_audited(registry: Registry) -> None:
    teams = registry.services.teams
    registry.add_user("ann", "approver")
    with pytest.raises(ValidationFailed):
        teams.create(None, "Bad Name!")
    with pytest.raises(ValidationFailed):
        teams.create(None, "")
    teams.create(None, "platform")
    with pytest.raises(Conflict):
        teams.create(None, "platform")
    with pytest.raises(NotFound):
        teams.add_member(None, "platform", "nobody")
    with pytest.raises(NotFound):
        teams.add_member(None, "nope", "ann")
    with pytest.raises(NotFound):
        teams.remove_member(None, "platform", "ann")
    ann = registry.services.accounts.principal_for_user(registry.services.accounts.get_user("ann"))
    with pytest.raises(Forbidden):
        teams.create(ann, "sneaky")
    with pytest.raises(Forbidden):
        teams.add_member(ann, "platform", "ann")
    teams.add_member(None, "platform", "ann")
    teams.add_member(None, "platform", "ann")  # already a member: no second row
    assert [(t.name, t.members) for t in teams.list()] == [("platform", ("ann",))]
    with registry.services.db.read() as s:
        assert len(s.scalars(select(TeamMember)).all()) == 1
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("team.%"))).all()
    assert sorted(actions) == ["team.create", "team.member.add"]


def test_team_commands(settings: Settings, registry: Registry) -> None:
    data = ["--data", str(settings.data)]
    env = {"GATI_REGISTRY_DATABASE__URL": settings.database_url,
           "GATI_REGISTRY_ADMIN_PASSWORD": "admin-pass-1"}
    run = CliRunner().invoke
    assert run(admin_cli, ["team", "create", "platform", *data], env=env).exit_code == 0
    assert run(admin_cli, ["team", "add-member", "platform", "admin", *data], env=env).exit_code == 0
    listed = run(admin_cli, ["team", "list", *data], env=env)
    assert listed.exit_code == 0 and listed.output.strip() == "platform\tadmin"
    bad = run(admin_cli, ["team", "add-member", "platform", "ghost", *data], env=env)
    assert bad.exit_code == 1 and "no user ghost" in bad.output
    dup = run(admin_cli, ["team", "create", "platform", *data], env=env)
    assert dup.exit_code == 1 and "exists" in dup.output
