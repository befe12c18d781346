"""Teams own package patterns: only their members publish, tag, deprecate or unpublish
matching packages; names no team owns stay first-come (both backends)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gati_private_registry.cli.admin import main as admin_cli
from gati_private_registry.errors import Forbidden, NotFound, ValidationFailed
from gati_private_registry.settings import Settings
from gati_private_registry.storage.models import AuditEvent, Package, TeamPackage
from gati_private_registry.testing import ModuleSpec

from .driver import Registry


@pytest.fixture
def teams(registry: Registry) -> Registry:
    for user in ("pat", "quinn", "outsider"):
        registry.add_user(user, "publisher")
    t = registry.services.teams
    t.create(None, "payments")
    t.create(None, "search")
    t.add_member(None, "payments", "pat")
    t.add_member(None, "search", "quinn")
    t.own(None, "payments", "@payments/*")
    t.own(None, "search", "search-*")
    return registry


def test_only_the_owning_team_publishes_under_its_pattern(teams: Registry) -> None:
    pat, quinn, outsider = (teams.token(u) for u in ("pat", "quinn", "outsider"))
    assert teams.publish(ModuleSpec("@payments/core"), pat).status_code == 201
    refused = teams.publish(ModuleSpec("@payments/evil"), quinn)
    assert refused.status_code == 403
    assert "team payments" in refused.json["error"]
    assert teams.publish(ModuleSpec("search-index"), quinn).status_code == 201
    assert teams.publish(ModuleSpec("search-hijack"), pat).status_code == 403
    # names no team owns: anyone with a publish token, first come
    assert teams.publish(ModuleSpec("free-thing"), outsider).status_code == 201
    with teams.services.db.read() as s:
        names = set(s.scalars(select(Package.name)).all())
    # a refused publish stores nothing, not even the package row
    assert names == {"@payments/core", "search-index", "free-thing"}


def test_team_members_share_ownership_and_admins_always_may(teams: Registry) -> None:
    teams.add_user("pia", "publisher")
    teams.services.teams.add_member(None, "payments", "pia")
    assert teams.publish(ModuleSpec("@payments/core", "1.0.0"), teams.token("pat")).status_code == 201
    # another member publishes the next version and moves tags, though pat published first
    pia = teams.token("pia")
    assert teams.publish(ModuleSpec("@payments/core", "1.1.0"), pia).status_code == 201
    tag = teams.client.put("/npm/-/package/@payments%2fcore/dist-tags/beta", json="1.0.0",
                           headers=teams.headers(pia))
    assert tag.status_code == 200
    outsider = teams.client.put("/npm/-/package/@payments%2fcore/dist-tags/beta", json="1.1.0",
                                headers=teams.headers(teams.token("quinn")))
    assert outsider.status_code == 403
    admin = teams.token("admin", "admin")
    assert teams.publish(ModuleSpec("@payments/core", "1.2.0"), admin).status_code == 201


def test_leaving_the_team_takes_the_right_away(teams: Registry) -> None:
    pat = teams.token("pat")
    assert teams.publish(ModuleSpec("@payments/core", "1.0.0"), pat).status_code == 201
    teams.services.teams.remove_member(None, "payments", "pat")
    # maintainer of the package, but the team owns it: no longer allowed
    assert teams.publish(ModuleSpec("@payments/core", "1.0.1"), pat).status_code == 403


def test_own_validates_and_audits(teams: Registry) -> None:
    t = teams.services.teams
    with pytest.raises(ValidationFailed) as err:
        t.own(None, "payments", "@Bad Scope/*")
    assert err.value.details[0].field == "pattern"
    with pytest.raises(NotFound):
        t.own(None, "no-team", "@x/*")
    pat = teams.services.accounts.principal_for_user(teams.services.accounts.get_user("pat"))
    with pytest.raises(Forbidden):
        t.own(pat, "payments", "@more/*")
    t.own(None, "payments", "@payments/*")  # already owned: no second row
    with pytest.raises(NotFound):
        t.disown(None, "search", "@payments/*")
    t.disown(None, "search", "search-*")
    with teams.services.db.read() as s:
        rows = s.execute(select(TeamPackage.pattern)).scalars().all()
        actions = s.scalars(select(AuditEvent.action)
                            .where(AuditEvent.action.like("team.package.%"))).all()
    assert rows == ["@payments/*"]
    assert sorted(actions) == ["team.package.add", "team.package.add", "team.package.remove"]
    assert [(i.name, i.packages) for i in t.list()] == [("payments", ("@payments/*",)),
                                                        ("search", ())]


def test_team_own_command(settings: Settings, registry: Registry) -> None:
    data = ["--data", str(settings.data)]
    env = {"GATI_REGISTRY_DATABASE__URL": settings.database_url,
           "GATI_REGISTRY_ADMIN_PASSWORD": "admin-pass-1"}
    run = CliRunner().invoke
    assert run(admin_cli, ["team", "create", "payments", *data], env=env).exit_code == 0
    assert run(admin_cli, ["team", "own", "payments", "@payments/*", *data], env=env).exit_code == 0
    listed = run(admin_cli, ["team", "list", *data], env=env)
    assert listed.output.strip() == "payments\t\t@payments/*"
    bad = run(admin_cli, ["team", "own", "payments", "not a pattern", *data], env=env)
    assert bad.exit_code == 1 and "pattern" in bad.output
