"""The rule that makes rolling upgrades work (docs/operations.md, "Upgrade"): within a
release, migrations only expand the schema (new tables, nullable columns or columns with
a server default, indexes, backfills), because the previous release keeps serving on the
migrated schema until its last replica is gone. Dropping, renaming or retyping comes in
a later release, as a *contract step* listed here with the release that stopped using
what it removes.

Checked on the DDL each migration really sends to PostgreSQL, captured while applying
them one by one. PostgreSQL only, on purpose: SQLite's batch mode rebuilds tables (copy,
drop, rename) for ordinary additive changes, so its DDL cannot tell the two apart."""
from __future__ import annotations

import re
from typing import Any, Iterator

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from gati_private_registry.storage import migrate
from gati_private_registry.storage.db import make_engine

#: revision -> why it may contract the schema (which release stopped using what it drops)
CONTRACT_STEPS: dict[str, str] = {}

_CONTRACTING = re.compile(
    r"\bDROP\s+(TABLE|COLUMN|CONSTRAINT|INDEX|VIEW|TYPE)\b|\bRENAME\b|\bALTER\s+COLUMN\b"
    r"|^\s*(TRUNCATE|DELETE\s+FROM)\b", re.I)
_ADD_COLUMN = re.compile(r"\bADD\s+COLUMN\b(?P<rest>[^,]*)", re.I)


def contracting(statement: str) -> bool:
    """Whether ``statement`` would break the previous release still serving: it removes,
    renames or retypes something, deletes rows, or adds a NOT NULL column that the
    previous release's inserts (which do not name it) cannot fill."""
    if "alembic_version" in statement:
        return False
    if _CONTRACTING.search(statement):
        return True
    return any("NOT NULL" in m["rest"].upper() and "DEFAULT" not in m["rest"].upper()
               for m in _ADD_COLUMN.finditer(statement))


@pytest.fixture
def pg_engine(postgres: Any) -> Iterator[Engine]:
    engine = make_engine(postgres.url(postgres.create()))
    yield engine
    engine.dispose()


def _ddl_per_revision(engine: Engine, steps: list[str]) -> dict[str, list[str]]:
    """The statements sent while moving to each of ``steps`` in turn (upgrades and
    downgrades alike)."""
    from alembic import command

    seen: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    out: dict[str, list[str]] = {}
    try:
        for target in steps:
            seen.clear()
            if target.startswith("-"):
                cfg = migrate._config()
                with engine.begin() as conn:
                    cfg.attributes["connection"] = conn
                    command.downgrade(cfg, target[1:])
            else:
                migrate.upgrade(engine, target)
            out[target] = [s for s in seen if not s.lstrip().upper().startswith("SELECT")]
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return out


def test_every_migration_only_expands_the_schema(pg_engine: Engine) -> None:
    revisions = migrate.revisions()
    ddl = _ddl_per_revision(pg_engine, revisions)
    assert all(ddl[r] for r in revisions), "no DDL captured: the check would see nothing"
    offending = {r: [s for s in ddl[r] if contracting(s)] for r in revisions
                 if r not in CONTRACT_STEPS}
    assert offending == {r: [] for r in offending}, (
        "a migration contracts the schema while the previous release may still serve on "
        "it: make it expand-only, or ship it a release later and list it in CONTRACT_STEPS "
        "(see docs/operations.md, 'Upgrade')")
    assert set(CONTRACT_STEPS) <= set(revisions)


def test_the_check_sees_contracting_ddl(pg_engine: Engine) -> None:
    """Every downgrade drops what its upgrade added: the same capture flags each one."""
    revisions = migrate.revisions()
    migrate.upgrade(pg_engine)
    steps = ["-" + r for r in reversed(["base"] + revisions[:-1])]
    ddl = _ddl_per_revision(pg_engine, steps)
    assert all(any(contracting(s) for s in ddl[step]) for step in steps), \
        {step: ddl[step] for step in steps if not any(contracting(s) for s in ddl[step])}


def test_added_columns_need_null_or_a_default() -> None:
    assert contracting("ALTER TABLE versions ADD COLUMN note VARCHAR(20) NOT NULL")
    assert not contracting("ALTER TABLE versions ADD COLUMN note VARCHAR(20)")
    assert not contracting("ALTER TABLE users ADD COLUMN display_name VARCHAR(200) "
                           "DEFAULT '' NOT NULL")
    assert contracting("ALTER TABLE versions RENAME COLUMN note TO remark")
    assert contracting("ALTER TABLE versions ALTER COLUMN note TYPE TEXT")
    assert not contracting("CREATE INDEX ix_versions_note ON versions (note)")
    assert contracting("DELETE FROM votes WHERE votes.version_id = 3")
    assert not contracting("CREATE TRIGGER t BEFORE TRUNCATE ON audit_events "
                           "FOR EACH STATEMENT EXECUTE FUNCTION f()")
    assert not contracting("UPDATE alembic_version SET version_num='0010' "
                           "WHERE alembic_version.version_num = '0009'")
