from __future__ import annotations

from pathlib import Path

import pytest

from gati_private_registry.errors import ValidationFailed
from gati_private_registry.settings import Settings, load_settings, parse_size


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s.port == 8080
    assert s.anonymous_read is False
    assert s.database_url.startswith("sqlite:///")
    assert s.database_url.endswith("registry-data/registry.db")


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "registry.toml"
    cfg.write_text('port = 9000\nanonymous_read = true\n[database]\nurl = "sqlite:///file.db"\n'
                   '[limits]\nmax_tarball_size = "5MB"\n')
    s = load_settings(cfg, environ={"GATI_REGISTRY_PORT": "9100",
                                    "GATI_REGISTRY_DATABASE__URL": "postgresql+psycopg://x/y"},
                      overrides={"port": 9200, "host": None})
    assert s.port == 9200                      # flag beats env beats file
    assert s.host == "127.0.0.1"               # a None flag is "not given"
    assert s.anonymous_read is True            # from the file
    assert s.database.url == "postgresql+psycopg://x/y"
    assert s.limits.max_tarball_size == 5 * 1024 * 1024


def test_config_file_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("workers = 5\n")
    assert load_settings(environ={"GATI_REGISTRY_CONFIG": str(cfg)}).workers == 5


def test_all_bad_values_reported_together() -> None:
    with pytest.raises(ValidationFailed) as err:
        load_settings(environ={"GATI_REGISTRY_PORT": "eighty", "GATI_REGISTRY_ANONYMOUS_READ": "maybe",
                               "GATI_REGISTRY_LIMITS__MAX_FILES": "many"})
    fields = {d.field for d in err.value.details}
    assert fields == {"port", "anonymous_read", "limits.max_files"}


def test_unknown_keys_warn(caplog: pytest.LogCaptureFixture) -> None:
    load_settings(environ={"GATI_REGISTRY_NO_SUCH_THING": "1"})
    assert "unknown setting no_such_thing" in caplog.text


def test_trusted_proxies_list() -> None:
    s = load_settings(environ={"GATI_REGISTRY_TRUSTED_PROXIES": "10.0.0.1, 10.1.0.0/16"})
    assert s.trusted_proxies == ("10.0.0.1", "10.1.0.0/16")


def test_sizes() -> None:
    assert parse_size("512k") == 512 * 1024
    assert parse_size("2GiB") == 2 * 1024**3
    with pytest.raises(ValueError):
        parse_size("lots")


def test_for_tests(tmp_path: Path) -> None:
    s = Settings.for_tests(tmp_path, anonymous_read=True)
    assert s.data == tmp_path and s.anonymous_read


def test_approval_webhook_and_signing_sections(tmp_path: Path) -> None:
    s = load_settings(environ={})
    assert s.approvals.default_mode == "manual"          # secure by default
    assert s.webhooks.enabled is True and s.webhooks.timeout == 10.0
    assert s.signing.passphrase == "" and s.signing.key_validity_days == 0
    cfg = tmp_path / "r.toml"
    cfg.write_text('[approvals]\ndefault_mode = "auto"\n'
                   '[[approvals.policies]]\npattern = "@corp/*"\nmode = "auto-if-approved"\n'
                   'approvers = "platform"\n'
                   '[webhooks]\ntimeout = 2.5\n[signing]\nkey_validity_days = 30\n')
    s = load_settings(cfg, environ={"GATI_REGISTRY_SIGNING__PASSPHRASE": "from-env",
                                    "GATI_REGISTRY_WEBHOOKS__RETRY_BASE": "0.5"})
    assert s.approvals.default_mode == "auto"
    [policy] = s.approvals.policies
    assert (policy.pattern, policy.mode, policy.approvers) == ("@corp/*", "auto-if-approved", "platform")
    assert s.webhooks.timeout == 2.5 and s.webhooks.retry_base == 0.5
    assert s.signing.key_validity_days == 30 and s.signing.passphrase == "from-env"


def test_bad_approval_and_webhook_values_are_reported() -> None:
    with pytest.raises(ValidationFailed) as err:
        Settings.for_tests(Path("/tmp/x"), approvals={
            "default_mode": "yolo",
            "policies": [{"pattern": "a*", "mode": "sometimes"}, {"mode": "auto"},
                         {"pattern": "b*", "approvers": ["x"]}]},
            webhooks={"timeout": "soon"})
    fields = {d.field for d in err.value.details}
    assert fields == {"approvals.default_mode", "approvals.policies[0].mode",
                      "approvals.policies[1]", "approvals.policies[2].approvers", "webhooks.timeout"}


def test_upstreams_and_package_patterns(tmp_path: Path) -> None:
    s = load_settings(environ={})
    assert s.upstreams == () and s.packages == ()      # no patterns: everything stays local
    assert s.mirror.offline is False
    cfg = tmp_path / "m.toml"
    cfg.write_text('[upstreams.public]\nurl = "https://registry.example.internal/"\n'
                   'token_env = "PUBLIC_TOKEN"\nmax_age = "10m"\ntimeout = "30s"\n'
                   'ca_file = "/etc/corp-ca.pem"\nretries = 4\nmax_concurrent = 3\n'
                   '[[packages]]\npattern = "@corp/*"\nsource = "local"\n'
                   '[[packages]]\npattern = "@gati-modules/*"\nsource = "public"\n'
                   'approval = "auto"\nmin_age = "7d"\n'
                   '[[packages]]\npattern = "*"\nsource = "public"\n[mirror]\noffline = true\n')
    s = load_settings(cfg, environ={"PUBLIC_TOKEN": "secret-1",
                                    "GATI_REGISTRY_UPSTREAMS__PUBLIC__TIMEOUT": "5s"})
    [up] = s.upstreams
    assert (up.name, up.url, up.token, up.ca_file) == (
        "public", "https://registry.example.internal/", "secret-1", "/etc/corp-ca.pem")
    assert (up.max_age, up.timeout, up.retries, up.max_concurrent) == (600.0, 5.0, 4, 3)
    assert up.stale_timeout == 3.0
    assert s.upstream("public") is up and s.upstream("other") is None
    assert [(p.pattern, p.source, p.approval, p.min_age) for p in s.packages] == [
        ("@corp/*", "local", "", 0.0), ("@gati-modules/*", "public", "auto", 7 * 86400.0),
        ("*", "public", "", 0.0)]
    assert s.mirror.offline is True
    assert (s.mirror.prefetch_concurrency, s.mirror.memory_cache_bytes) == (4, 64 * 1024 * 1024)
    s = load_settings(environ={"GATI_REGISTRY_MIRROR__MEMORY_CACHE_BYTES": "1000",
                               "GATI_REGISTRY_MIRROR__PREFETCH_CONCURRENCY": "8"})
    assert (s.mirror.prefetch_concurrency, s.mirror.memory_cache_bytes) == (8, 1000)


def test_upstreams_from_the_environment() -> None:
    s = load_settings(environ={"GATI_REGISTRY_UPSTREAMS__PUBLIC__URL": "http://127.0.0.1:9/npm/",
                               "GATI_REGISTRY_UPSTREAMS__PUBLIC__MAX_AGE": "90",
                               "GATI_REGISTRY_PACKAGES": "@corp/*=local, *=public",
                               "GATI_REGISTRY_MIRROR__OFFLINE": "true"})
    assert s.upstreams[0].url == "http://127.0.0.1:9/npm/" and s.upstreams[0].max_age == 90.0
    assert [(p.pattern, p.source) for p in s.packages] == [("@corp/*", "local"), ("*", "public")]
    assert s.mirror.offline is True


def test_bad_mirror_values_are_reported() -> None:
    with pytest.raises(ValidationFailed) as err:
        load_settings(environ={}, overrides={
            "upstreams": {"public": {"url": "ftp://x", "timeout": "soon", "retries": -1,
                                     "token_env": "NOT_SET_ANYWHERE", "colour": "red"},
                          "local": {"url": "http://x/"}},
            "packages": [{"pattern": "@a/*", "source": "elsewhere"}, {"source": "local"},
                         {"pattern": "b*", "source": "public", "approval": "maybe"},
                         {"pattern": "c*", "source": "public", "min_age": "a while"},
                         {"pattern": "d*", "source": "deny", "extra": 1}]})
    fields = {d.field for d in err.value.details}
    assert fields == {"upstreams.public.url", "upstreams.public.timeout",
                      "upstreams.public.retries", "upstreams.public.token_env",
                      "upstreams.public.colour", "upstreams.local", "packages[0].source",
                      "packages[1]", "packages[2].approval", "packages[3].min_age",
                      "packages[4]"}


def test_durations() -> None:
    from gati_private_registry.settings_mirror import parse_duration
    assert parse_duration("10m") == 600 and parse_duration("500ms") == 0.5
    assert parse_duration(7) == 7.0 and parse_duration("2d") == 172800
    for bad in ("soon", -1, True):
        with pytest.raises(ValueError):
            parse_duration(bad)
def test_sign_on_sections(tmp_path: Path) -> None:
    s = load_settings(environ={})
    assert s.ldap.enabled is False and s.ldap.user_filter == "(uid={username})"
    assert s.saml.enabled is False and s.saml.allow_idp_initiated is True
    assert s.sso.default_role == "reader" and s.sso.rules == () and s.sso.lockout_failures == 5
    cfg = tmp_path / "r.toml"
    cfg.write_text('[ldap]\nenabled = true\nurl = "ldaps://dir.corp:636"\ntimeout = 2\n'
                   'user_base = "ou=people,dc=corp"\n'
                   '[saml]\nenabled = true\nidp_metadata_url = "https://idp.corp/md"\n'
                   '[sso]\ndefault_role = "publisher"\nallowed_groups = ["staff"]\n'
                   '[[sso.rules]]\ngroup = "payments-devs"\nteam = "payments"\n'
                   '[[sso.rules]]\ngroup = "registry-admins"\nrole = "admin"\n')
    s = load_settings(cfg, environ={"GATI_REGISTRY_LDAP__BIND_PASSWORD": "from-env",
                                    "GATI_REGISTRY_SSO__LOCKOUT_FAILURES": "3"})
    assert s.ldap.url == "ldaps://dir.corp:636" and s.ldap.timeout == 2.0
    assert s.ldap.bind_password == "from-env"
    assert s.saml.idp_metadata_url == "https://idp.corp/md"
    assert s.sso.default_role == "publisher" and s.sso.allowed_groups == ("staff",)
    assert s.sso.lockout_failures == 3
    assert [(r.group, r.team, r.role) for r in s.sso.rules] == [
        ("payments-devs", "payments", ""), ("registry-admins", "", "admin")]


def test_bad_sign_on_values_are_reported() -> None:
    with pytest.raises(ValidationFailed) as err:
        Settings.for_tests(Path("/tmp/x"), ldap={"enabled": True, "url": "http://dir"},
                           saml={"enabled": True},
                           sso={"default_role": "boss", "rules": [
                               {"team": "x"}, {"group": "g"}, {"group": "g", "role": "king"}]})
    fields = {d.field for d in err.value.details}
    assert fields == {"ldap.url", "saml.idp_metadata_file", "sso.default_role",
                      "sso.rules[0]", "sso.rules[1]", "sso.rules[2].role"}


def test_directory_recheck_settings(tmp_path: Path) -> None:
    s = load_settings(environ={})
    assert (s.ldap.recheck_interval, s.ldap.recheck_grace) == (900.0, 3600.0)
    assert s.saml.session_lifetime == 8 * 3600.0
    s = load_settings(environ={"GATI_REGISTRY_LDAP__RECHECK_INTERVAL": "5m",
                               "GATI_REGISTRY_LDAP__RECHECK_GRACE": "0",
                               "GATI_REGISTRY_SAML__SESSION_LIFETIME": "1h"})
    assert (s.ldap.recheck_interval, s.ldap.recheck_grace) == (300.0, 0.0)
    assert s.saml.session_lifetime == 3600.0
    # a re-check on every request (or every few seconds) is refused, as are nonsense values
    with pytest.raises(ValidationFailed) as err:
        Settings.for_tests(tmp_path, ldap={"recheck_interval": "10s", "recheck_grace": "-1"},
                           saml={"session_lifetime": "30s"})
    assert {d.field for d in err.value.details} == {"ldap.recheck_interval", "ldap.recheck_grace",
                                                    "saml.session_lifetime"}
    with pytest.raises(ValidationFailed) as err:
        Settings.for_tests(tmp_path, ldap={"recheck_interval": "often"})
    assert {d.field for d in err.value.details} == {"ldap.recheck_interval"}
def test_search_and_marketplace_sections(tmp_path: Path) -> None:
    s = load_settings(environ={})
    assert s.search.follow is True and s.search.poll_interval == 0.5
    assert s.index_dir == Path("registry-data") / "index"
    assert s.marketplace.official_teams == () and s.marketplace.trusted_approvers == 2
    cfg = tmp_path / "r.toml"
    cfg.write_text('[search]\nindex_dir = "/var/tmp/idx"\n'
                   '[marketplace]\nofficial_teams = ["platform", "core"]\n')
    s = load_settings(cfg, environ={"GATI_REGISTRY_MARKETPLACE__TRUSTED_APPROVERS": "3",
                                    "GATI_REGISTRY_SEARCH__FOLLOW": "false"})
    assert s.index_dir == Path("/var/tmp/idx") and s.search.follow is False
    assert s.marketplace.official_teams == ("platform", "core")
    assert s.marketplace.trusted_approvers == 3
    with pytest.raises(ValidationFailed) as err:
        Settings.for_tests(tmp_path, search={"poll_interval": "often"},
                           marketplace={"trusted_approvers": "many"})
    assert {d.field for d in err.value.details} == {"search.poll_interval",
                                                    "marketplace.trusted_approvers"}
