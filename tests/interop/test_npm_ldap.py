"""The real npm against a registry that signs people in with a real LDAP directory
(slapd, tests/slapd.py): ``npm login`` with directory credentials, then ``npm publish``
into the user's team scope works and into another team's scope is refused."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def registry_env(slapd, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ldap = slapd.registry_settings()["ldap"]
    config = Path(tmp_path_factory.mktemp("ldap-config")) / "registry.toml"
    config.write_text(f"""
[ldap]
enabled = true
url = "{ldap['url']}"
bind_dn = "{ldap['bind_dn']}"
bind_password = "{ldap['bind_password']}"
user_base = "{ldap['user_base']}"
group_base = "{ldap['group_base']}"

[sso]
allowed_groups = ["engineering"]
[[sso.rules]]
group = "engineering"
role = "publisher"
[[sso.rules]]
group = "payments-devs"
team = "payments"
[[sso.rules]]
group = "search-devs"
team = "search"
""")
    return {"CONFIG": str(config)}


def legacy_login(client, username: str, password: str):
    """Answer npm's username and password prompts on a terminal."""
    session = client.pty("login", "--auth-type=legacy")
    session.expect(r"username:")
    session.sendline(username)
    session.expect(r"password:")
    session.sendline(password)
    return session.wait()


def test_npm_login_with_ldap_then_publish_only_into_the_own_team_scope(registry_server):
    reg = registry_server
    for team, pattern in (("payments", "@payments/*"), ("search", "@search/*")):
        reg.cli("team", "create", team).ok()
        reg.cli("team", "own", team, pattern).ok()

    bob = reg.npm_client()
    assert legacy_login(bob, "bob", "bob-pw").returncode == 0
    assert bob.stored_token, bob.userconfig.read_text()
    assert bob.run("whoami").ok().stdout.strip() == "bob"

    mine = reg.make_package(f"@payments/ldap-{reg.backend}")
    bob.run("publish", cwd=mine.path).ok()
    assert reg.packument(mine.name).status == 200

    theirs = reg.make_package(f"@search/ldap-{reg.backend}")
    refused = bob.run("publish", cwd=theirs.path).failed()
    assert re.search(r"E403|403 Forbidden", refused.output), refused
    assert "team search" in refused.output, refused
    assert reg.packument(theirs.name).status == 404

    carol = reg.npm_client()
    assert legacy_login(carol, "carol", "carol-pw").returncode == 0
    carol.run("publish", cwd=theirs.path).ok()


def test_npm_login_with_a_wrong_directory_password(registry_server):
    client = registry_server.npm_client()
    res = legacy_login(client, "carol", "not-carols")
    assert res.returncode != 0
    assert re.search(r"E401|incorrect or missing password", res.output, re.I), res
    assert client.stored_token is None


def test_a_user_the_directory_drops_is_refused_after_a_sync(registry_server, slapd):
    reg = registry_server
    erin = reg.npm_client()
    assert legacy_login(erin, "erin", "erin-pw").returncode == 0
    assert erin.run("whoami").ok().stdout.strip() == "erin"
    slapd.set_member("search-devs", "erin", False)   # no longer an engineer
    try:
        # the server would re-check at [ldap] recheck_interval; the admin forces it now
        assert reg.cli("user", "sync", "erin").ok().stdout == "erin\tlost: not in an allowed group\n"
        refused = erin.run("whoami").failed()
        assert re.search(r"E401|401 Unauthorized", refused.output), refused
    finally:
        slapd.set_member("search-devs", "erin", True)
    assert reg.cli("user", "sync", "--all").ok().stdout.count("\tok\n") >= 1
    assert erin.run("whoami").ok().stdout.strip() == "erin"
