"""Directory users between sign-ins: their tokens and panel sessions are re-checked
against a real slapd (tests/slapd.py) once ``[ldap] recheck_interval`` has passed, the
admin's forced re-check (``gati-registry user sync``, ``POST /api/users/NAME/sync``),
and a directory outage: the last answer stands for ``recheck_grace``, then 503 (both
backends). Time passes by moving the re-check's clock."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from gati_private_registry.cli.admin import main as admin_cli
from gati_private_registry.services import directory_sync
from gati_private_registry.settings import Settings

from ..slapd import PEOPLE, Slapd, ldap_settings, seed_ldif
from .driver import Registry
from .test_ldap import events, teams_of, whoami


@pytest.fixture
def settings_overrides(slapd: Slapd) -> dict[str, Any]:
    return ldap_settings(slapd.uri)


class Clock:
    """Moves the re-check's idea of now forward."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = timedelta()
        monkeypatch.setattr(directory_sync, "_now",
                            lambda: datetime.now(timezone.utc) + self.offset)

    def advance(self, minutes: float) -> None:
        self.offset += timedelta(minutes=minutes)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def frank(slapd: Slapd) -> Iterator[str]:
    """A person of this test only (the directory is shared by the session): in
    payments-devs, so an engineer, a publisher and in team payments. Removed after."""
    import ldap

    slapd.load(f"dn: uid=frank,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: frank\ncn: Frank F\n"
               f"sn: F\nmail: frank@example.org\nuserPassword: frank-pw\n")
    slapd.set_member("payments-devs", "frank", True)
    yield "frank"
    conn = slapd.admin()
    try:
        conn.delete_s(f"uid=frank,{PEOPLE}")
    except ldap.NO_SUCH_OBJECT:
        pass
    finally:
        conn.unbind_s()


def npm_login(registry: Registry, name: str) -> str:
    resp = registry.client.put(f"/npm/-/user/org.couchdb.user:{name}", json={
        "_id": f"org.couchdb.user:{name}", "name": name, "password": f"{name}-pw",
        "type": "user", "roles": []})
    assert resp.status_code == 201, resp.json
    return str(resp.json["token"])


def test_leaving_the_allowed_groups_ends_tokens_at_the_next_recheck(
        registry: Registry, slapd: Slapd, clock: Clock, frank: str) -> None:
    token = npm_login(registry, frank)
    assert teams_of(registry, frank) == {"payments"}
    slapd.set_member("payments-devs", frank, False)     # no longer an engineer
    # within the interval the last answer stands: one directory search per interval
    clock.advance(14)
    assert whoami(registry, token).status_code == 200
    clock.advance(2)
    refused = whoami(registry, token)
    assert refused.status_code == 401 and "no longer allowed" in refused.json["error"]
    [lost] = events(registry, "user.directory.lost")
    assert (lost.actor, lost.subject, lost.details["reason"], lost.details["via"]) == (
        "sso", frank, "not in an allowed group", "token")
    # the groups were read: the rule-managed team went with them
    assert teams_of(registry, frank) == set()
    # refused on every later use too, without asking again, and for new uses of Basic
    assert whoami(registry, token).status_code == 401
    assert len(events(registry, "user.directory.lost")) == 1
    # back in the group: the next re-check lets the same token in again
    slapd.set_member("payments-devs", frank, True)
    clock.advance(16)
    assert whoami(registry, token).status_code == 200
    [restored] = events(registry, "user.directory.restored")
    assert restored.details["via"] == "token"
    assert teams_of(registry, frank) == {"payments"}


def test_group_changes_reach_tokens_without_a_sign_in(
        registry: Registry, slapd: Slapd, clock: Clock, frank: str) -> None:
    token = npm_login(registry, frank)
    slapd.set_member("registry-admins", frank, True)
    try:
        clock.advance(16)
        assert whoami(registry, token).status_code == 200
        assert registry.services.accounts.get_user(frank).role == "admin"
        slapd.set_member("registry-admins", frank, False)
        slapd.set_member("payments-devs", frank, False)
        slapd.set_member("search-devs", frank, True)
        clock.advance(16)
        assert whoami(registry, token).status_code == 200
        assert registry.services.accounts.get_user(frank).role == "publisher"
        assert teams_of(registry, frank) == {"search"}
        # the lower role holds for the token at once (its admin powers are gone)
        assert registry.client.get("/api/audit", headers=registry.headers(token)).status_code == 403
    finally:
        for group in ("registry-admins", "search-devs"):
            try:
                slapd.set_member(group, frank, False)
            except Exception:  # already out after a failed assertion
                pass
    changes = [(e.details["old"], e.details["new"]) for e in events(registry, "user.role.change")]
    assert changes == [("publisher", "admin"), ("admin", "publisher")]


def _panel_sign_in(registry: Registry, name: str) -> None:
    page = registry.client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    ok = registry.client.post("/login", data={"username": name, "password": f"{name}-pw",
                                              "csrf_token": csrf})
    assert ok.status_code == 302


def test_deleted_from_the_directory_ends_tokens_and_sessions(
        registry: Registry, slapd: Slapd, clock: Clock, frank: str) -> None:
    token = npm_login(registry, frank)
    _panel_sign_in(registry, frank)
    assert registry.client.get("/my/versions").status_code == 200
    conn = slapd.admin()
    conn.delete_s(f"uid=frank,{PEOPLE}")
    conn.unbind_s()
    clock.advance(16)
    # the session is checked first here: it ends, and the person is sent to sign in
    gone = registry.client.get("/my/versions")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]
    assert registry.client.get("/my/versions").status_code == 302
    assert whoami(registry, token).status_code == 401
    [lost] = events(registry, "user.directory.lost")
    assert (lost.details["reason"], lost.details["via"]) == ("not in the directory", "session")
    # nor can the name sign in again
    page = registry.client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    assert registry.client.post("/login", data={"username": frank, "password": "frank-pw",
                                                "csrf_token": csrf}).status_code == 401


def test_local_users_are_never_rechecked(registry: Registry, clock: Clock) -> None:
    token = registry.token("admin", "read")
    clock.advance(24 * 60)
    assert whoami(registry, token).status_code == 200
    assert events(registry, "user.directory.lost") == []


@pytest.fixture
def own_slapd() -> Iterator[Slapd]:
    server = Slapd().start()
    server.load(seed_ldif())
    yield server
    server.stop()


def test_directory_outage_fails_open_for_the_grace_period_then_closed(
        registry: Registry, services: Any, own_slapd: Slapd, clock: Clock) -> None:
    from gati_private_registry.services.directory import LdapDirectory
    from gati_private_registry.settings import LdapSettings

    services.signon.directory = LdapDirectory(LdapSettings(**ldap_settings(own_slapd.uri)["ldap"]))
    token = npm_login(registry, "bob")
    own_slapd.stop()
    # past the interval, within interval + grace (15 + 60 minutes): the last answer stands
    clock.advance(16)
    assert whoami(registry, token).status_code == 200
    clock.advance(60)
    down = whoami(registry, token)
    assert down.status_code == 503 and "cannot be reached" in down.json["error"]
    # nothing was decided about bob: no lost event, and his state is unchanged
    assert events(registry, "user.directory.lost") == []
    assert not registry.services.accounts.get_user("bob").directory_lost
    # the local break-glass admin is not affected
    assert whoami(registry, registry.token("admin", "read")).status_code == 200


@pytest.mark.parametrize("settings_overrides", [
    {**ldap_settings("ldap://127.0.0.1:1"), "ldap": {**ldap_settings("ldap://127.0.0.1:1")["ldap"],
                                                    "recheck_grace": 0}}])
def test_no_grace_fails_closed_at_once(registry: Registry, services: Any, slapd: Slapd,
                                       clock: Clock) -> None:
    from gati_private_registry.services.directory import LdapDirectory
    from gati_private_registry.settings import LdapSettings

    # sign in against the live directory, then point the registry at a dead one
    services.signon.directory = LdapDirectory(LdapSettings(**ldap_settings(slapd.uri)["ldap"]))
    token = npm_login(registry, "carol")
    services.signon.directory = LdapDirectory(services.settings.ldap)
    assert whoami(registry, token).status_code == 200
    clock.advance(16)
    assert whoami(registry, token).status_code == 503


def _cli(settings: Settings, *args: str) -> Any:
    """``gati-registry ARGS`` with this registry's database and the same [ldap] and
    [sso] settings, from a config file as an operator would have them."""
    config = settings.data / "registry.toml"
    if not config.exists():
        both = ldap_settings(settings.ldap.url)
        lines = ["[ldap]"] + [f"{k} = {json.dumps(v)}" for k, v in both["ldap"].items()]
        lines += ["[sso]", f"allowed_groups = {json.dumps(both['sso']['allowed_groups'])}"]
        for rule in both["sso"]["rules"]:
            lines += ["[[sso.rules]]"] + [f"{k} = {json.dumps(v)}" for k, v in rule.items()]
        config.write_text("\n".join(lines) + "\n")
    env = {"GATI_REGISTRY_DATABASE__URL": settings.database_url,
           "GATI_REGISTRY_ADMIN_PASSWORD": "admin-pass-1"}
    return CliRunner().invoke(admin_cli, ["--config", str(config), *args,
                                          "--data", str(settings.data)], env=env)


def test_forced_sync_by_command_and_api(registry: Registry, settings: Settings, slapd: Slapd,
                                        frank: str) -> None:
    token = npm_login(registry, frank)
    npm_login(registry, "carol")
    slapd.set_member("payments-devs", frank, False)
    # no time passes: the admin asks now
    out = _cli(settings, "user", "sync", frank)
    assert out.exit_code == 0, out.output
    assert out.stdout == f"{frank}\tlost: not in an allowed group\n"
    assert whoami(registry, token).status_code == 401
    slapd.set_member("payments-devs", frank, True)
    admin = registry.headers(registry.token("admin", "admin"))
    resp = registry.client.post(f"/api/users/{frank}/sync", headers=admin)
    assert resp.status_code == 200 and resp.json == {"username": frank, "allowed": True,
                                                     "reason": None}
    assert whoami(registry, token).status_code == 200
    everyone = _cli(settings, "user", "sync", "--all")
    assert everyone.exit_code == 0 and everyone.stdout == f"carol\tok\n{frank}\tok\n"
    # only admins; only directory users; a name or --all
    publisher = registry.headers(registry.token(frank, "publish"))
    assert registry.client.post(f"/api/users/{frank}/sync", headers=publisher).status_code == 403
    assert registry.client.post("/api/users/admin/sync", headers=admin).status_code == 404
    assert registry.client.post("/api/users/nobody/sync", headers=admin).status_code == 404
    assert _cli(settings, "user", "sync").exit_code == 2
    assert _cli(settings, "user", "sync", "admin").exit_code == 1
    assert [e.details["via"] for e in events(registry, "user.directory.lost")] == ["sync"]
    assert [e.details["via"] for e in events(registry, "user.directory.restored")] == ["sync"]
