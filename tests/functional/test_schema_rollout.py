"""The schema against the running release during a rolling upgrade (both backends):
current and behind as before, and *ahead* (a newer release's migration Job has run): the
old release stays ready, keeps serving on the wider schema, and neither ``serve`` nor
``db upgrade`` tries to downgrade it or trips over the revision it does not know."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import Engine

from gati_private_registry.app import create_app, prepare
from gati_private_registry.cli.admin import main
from gati_private_registry.services import Services, build_services, ready
from gati_private_registry.settings import Settings
from gati_private_registry.storage import migrate
from gati_private_registry.storage.db import make_engine
from gati_private_registry.testing import ModuleSpec

from .driver import Registry

NEXT = "0010_from_a_newer_release"
# this release's revisions, oldest first (read from the files: other work adds more)
OURS = migrate.revisions()


def _stamp(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def _widen_as_a_newer_release(engine: Engine) -> None:
    """What an expand-only migration of the next release does: a nullable column on a
    table this release writes, a table it does not know, and the new revision id."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE versions ADD COLUMN rollout_note VARCHAR(200)"))
        conn.execute(text("CREATE TABLE rollout_marks (id INTEGER PRIMARY KEY, "
                          "note VARCHAR(50) NOT NULL)"))
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": NEXT})


def test_current_schema_is_ready(registry: Registry, services: Services) -> None:
    assert migrate.state(services.db.engine) == migrate.SchemaState()
    assert migrate.state(services.db.engine).current
    ready_ = registry.client.get("/readyz")
    assert ready_.status_code == 200 and ready_.json["checks"]["migrations"] == "ok"


def test_schema_ahead_stays_ready_and_serving(registry: Registry, services: Services,
                                              settings: Settings, database_url: str) -> None:
    registry.publish(ModuleSpec("before-rollout", "1.0.0"))
    engine = services.db.engine
    _widen_as_a_newer_release(engine)

    schema = migrate.state(engine)
    assert schema.ahead == (NEXT,) and schema.pending == () and not schema.current
    assert migrate.pending(engine) == []
    health = services.health()
    assert health["migrations"] == f"ahead: {NEXT}" and ready(health)
    answer = registry.client.get("/readyz")
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "ok" and answer.json["checks"]["migrations"] == f"ahead: {NEXT}"

    # the old release reads and writes the wider schema
    assert registry.doc("before-rollout")["versions"]["1.0.0"]["version"] == "1.0.0"
    registry.publish(ModuleSpec("after-rollout", "1.0.0"))
    assert registry.tarball("after-rollout", "1.0.0").status_code == 200
    assert registry.doc("after-rollout")["dist-tags"] == {"latest": "1.0.0"}
    with engine.connect() as conn:
        notes = conn.execute(text("SELECT rollout_note FROM versions")).scalars().all()
    assert notes == [None, None]

    # a restart of an old replica (``serve`` runs prepare) neither downgrades nor fails
    again, _ = prepare(settings)
    try:
        assert again.health()["migrations"] == f"ahead: {NEXT}"
    finally:
        again.close()
    assert migrate.upgrade(engine).ahead == (NEXT,)
    # nor does the old release's migration Job (a rollback of the Deployment and the Job)
    result = CliRunner().invoke(main, ["db", "upgrade"], catch_exceptions=False, env={
        "GATI_REGISTRY_DATABASE__URL": database_url, "GATI_REGISTRY_ADMIN_PASSWORD": "",
        "GATI_REGISTRY_DATA": str(settings.data)})
    assert result.exit_code == 0, result.output
    assert f"schema is ahead of this release ({NEXT}): left as it is" in result.output
    assert _stamp(engine) == NEXT


@pytest.fixture
def behind_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of its own (the ``services`` fixture's is already current)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'behind.db'}"
    factory: Any = request.getfixturevalue("postgres")
    return str(factory.url(factory.create()))


def test_schema_behind_is_not_ready_until_migrated(behind_url: str, tmp_path: Path) -> None:
    settings = Settings.for_tests(tmp_path / "behind-data", database={"url": behind_url})
    services = build_services(settings)
    try:
        migrate.upgrade(services.db.engine, "0004")
        schema = migrate.state(services.db.engine)
        assert schema.pending == tuple(OURS[4:]) and OURS[3] == "0004" and not schema.ahead
        answer = create_app(settings, services).test_client().get("/readyz")
        assert answer.status_code == 503
        assert answer.json["checks"]["migrations"] == "pending: " + ", ".join(OURS[4:])
        assert answer.json["checks"]["database"] == "ok"
    finally:
        services.close()
    # what ``serve`` does on one machine: apply them at start, then be ready
    started, _ = prepare(settings)
    try:
        assert migrate.state(started.db.engine).current and _stamp(started.db.engine) == OURS[-1]
        answer = create_app(settings, started).test_client().get("/readyz")
        assert answer.status_code == 200 and answer.json["checks"]["migrations"] == "ok"
    finally:
        started.close()


def test_empty_database_is_behind_by_every_migration(behind_url: str) -> None:
    engine = make_engine(behind_url)
    try:
        assert migrate.state(engine).pending == tuple(OURS)
        assert migrate.upgrade(engine).pending == tuple(OURS)
        assert migrate.state(engine).current
    finally:
        engine.dispose()


def test_ready_counts_only_ok_and_ahead() -> None:
    assert ready({"database": "ok", "migrations": "ok", "blobs": "ok"})
    assert ready({"database": "ok", "migrations": "ahead: 0010", "blobs": "ok"})
    assert not ready({"database": "ok", "migrations": "pending: 0009", "blobs": "ok"})
    assert not ready({"database": "error: OperationalError", "blobs": "ok"})
    assert not ready({"database": "ok", "migrations": "ok", "blobs": "error: OSError"})



def test_concurrent_upgrades_apply_each_migration_once(postgres: Any, tmp_path: Path) -> None:
    """The migration Job and the first new replica (``serve`` migrates at start) may run
    at the same time, e.g. after ``kubectl apply -f packaging/kubernetes/``: one applies
    the migrations, the other waits for it and finds the schema current. Separate
    processes, as in production (Alembic's context is process-global)."""
    import os
    import subprocess

    from gati_private_registry.testing import server_command

    url = str(postgres.url(postgres.create()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update({"GATI_REGISTRY_DATABASE__URL": url, "GATI_REGISTRY_ADMIN_PASSWORD": ""})
    procs = [subprocess.Popen(server_command() + ["--data", str(tmp_path / f"d{i}"), "db", "upgrade"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(o.strip().splitlines()[-1] for o in outputs) == [
        f"applied {len(OURS)} migration(s)", "schema is current"], outputs
    engine = make_engine(url)
    try:
        assert migrate.state(engine).current
    finally:
        engine.dispose()
