"""The gati-registry command: bootstrap, users, tokens, migrations (both backends)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gati_private_registry.cli.admin import main
from gati_private_registry.services import build_services
from gati_private_registry.settings import load_settings
from gati_private_registry.storage import migrate


@pytest.fixture
def cli_env(tmp_path: Path, database_url: str) -> dict[str, Any]:
    return {"GATI_REGISTRY_DATABASE__URL": database_url,
            "GATI_REGISTRY_ADMIN_PASSWORD": "",
            "GATI_REGISTRY_DATA": str(tmp_path / "data")}


def run(env: dict[str, Any], *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def test_db_upgrade_then_current(cli_env: dict[str, Any]) -> None:
    first = run(cli_env, "db", "upgrade")
    assert first.exit_code == 0, first.output
    again = run(cli_env, "db", "upgrade")
    assert again.exit_code == 0 and "schema is current" in again.output


def test_first_token_bootstraps_admin_with_generated_password(cli_env: dict[str, Any]) -> None:
    result = run(cli_env, "token", "create", "--user", "admin", "--scope", "publish")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("gati_") and "\n" not in token and " " not in token
    assert "Created user 'admin' with password:" in result.stderr
    settings = load_settings(environ=cli_env)
    services = build_services(settings)
    try:
        assert services.tokens.authenticate_token(token).username == "admin"
        # the generated password is shown once: a second run creates nothing
        again = run(cli_env, "token", "create", "--user", "admin", "--scope", "read")
        assert "Created user" not in again.stderr
    finally:
        services.close()


def test_user_add_and_token_for_them(cli_env: dict[str, Any]) -> None:
    added = run(cli_env, "user", "add", "carol", "--role", "publisher", "--password-stdin",
                input="carol-password-1\n")
    assert added.exit_code == 0, added.output
    dup = run(cli_env, "user", "add", "carol", "--role", "publisher", "--password-stdin",
              input="carol-password-1\n")
    assert dup.exit_code != 0 and "already exists" in dup.output
    short = run(cli_env, "user", "add", "dave", "--role", "publisher", "--password-stdin",
                input="short\n")
    assert short.exit_code != 0 and "password" in short.output
    too_much = run(cli_env, "token", "create", "--user", "carol", "--scope", "admin")
    assert too_much.exit_code != 0 and "cannot hold" in too_much.output
    ok = run(cli_env, "token", "create", "--user", "carol", "--scope", "publish",
             "--expires-days", "3")
    assert ok.exit_code == 0 and ok.stdout.strip().startswith("gati_")
    nobody = run(cli_env, "token", "create", "--user", "nobody")
    assert nobody.exit_code != 0 and "no user" in nobody.output


def test_bad_settings_are_reported(cli_env: dict[str, Any]) -> None:
    env = dict(cli_env, GATI_REGISTRY_LIMITS__MAX_FILES="lots")
    result = run(env, "db", "upgrade")
    assert result.exit_code != 0 and "limits.max_files" in result.output


def test_models_and_migrations_agree(cli_env: dict[str, Any]) -> None:
    """An autogenerate against the migrated schema finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gati_private_registry.storage.db import Base

    settings = load_settings(environ=cli_env)
    services = build_services(settings)
    try:
        migrate.upgrade(services.db.engine)
        assert migrate.pending(services.db.engine) == []
        with services.db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        services.close()


def test_reindex_rebuilds_the_search_index(cli_env: dict[str, Any]) -> None:
    from gati_private_registry.app import prepare
    from gati_private_registry.testing import ModuleSpec, publish_body

    settings = load_settings(environ={**cli_env, "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "auto",
                                      "GATI_REGISTRY_ADMIN_PASSWORD": "admin-pass-1"})
    services, _ = prepare(settings)
    try:
        admin = services.accounts.principal_for_user(services.accounts.get_user("admin"))
        for name in ("alpha-db", "beta-queue"):
            services.publish.publish(admin, name, publish_body(ModuleSpec(name)))
        assert services.index.doc_count() == 0   # nothing followed the feed yet
    finally:
        services.close()
    result = run(cli_env, "reindex")
    assert result.exit_code == 0, result.output
    assert "indexed 2 package(s)" in result.output
    services, _ = prepare(settings)
    try:
        assert services.index.doc_count() == 2
        assert services.indexer.run_once().indexed == 0   # the cursor came with the rebuild
    finally:
        services.close()
