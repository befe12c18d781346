"""Schema migrations with Alembic, run from code (no alembic.ini to ship).

Migrations are expand-only within a release (docs/operations.md, "Upgrade"), so during a
rolling upgrade the database may be *ahead* of a running release: the new release's
migration Job has run and the old replicas keep serving on the wider schema. This module
reports that state instead of failing on the revision it does not know, and never
downgrades."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
#: PostgreSQL advisory lock taken by every upgrade, so that concurrent ones (the migration
#: Job and a new replica's ``serve``) run one after the other; any fixed number will do
_UPGRADE_LOCK = 0x6761_7469_6462  # "gatidb"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchemaState:
    """Where the database's schema stands against this release's migrations."""

    #: revisions of this release that the database lacks, oldest first
    pending: tuple[str, ...] = ()
    #: revisions the database carries that this release does not know: a newer release
    #: migrated it (expand-only, so this release still reads and writes it correctly)
    ahead: tuple[str, ...] = ()

    @property
    def current(self) -> bool:
        return not self.pending and not self.ahead


def _config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@functools.lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    # the migration files do not change while the process runs
    return ScriptDirectory.from_config(_config())


def revisions() -> list[str]:
    """This release's revision ids, oldest first."""
    return [r.revision for r in _script().walk_revisions()][::-1]


def _state(conn: Connection) -> SchemaState:
    script = _script()
    current = set(MigrationContext.configure(conn).get_current_heads())
    known = {r.revision for r in script.walk_revisions()}
    unknown = current - known
    if unknown:
        # the history is linear, so a revision newer than every one we know implies
        # all of ours are applied; nothing here can say more about it than its id
        return SchemaState(ahead=tuple(sorted(unknown)))
    heads = set(script.get_heads())
    if current == heads:
        return SchemaState()
    applied: set[str] = set()
    for head in current:
        applied.update(r.revision for r in script.iterate_revisions(head, "base"))
    missing = [r.revision for head in heads for r in script.iterate_revisions(head, "base")
               if r.revision not in applied][::-1]
    return SchemaState(pending=tuple(missing))


def state(engine: Engine) -> SchemaState:
    """The schema against this release: current, behind (``pending``) or ahead. Raises
    what the driver raises when the database cannot be reached."""
    with engine.connect() as conn:
        return _state(conn)


def pending(engine: Engine) -> list[str]:
    """Revisions not yet applied (empty when the schema is current or ahead)."""
    return list(state(engine).pending)


def upgrade(engine: Engine, revision: str = "head") -> SchemaState:
    """Bring the schema to ``revision``. Safe to run when already there, and from several
    processes at once on PostgreSQL (they take turns). A schema ahead of this release is
    left as it is (never downgraded) and logged. Returns the state found before
    upgrading; raises Alembic's or the driver's errors when a migration fails (its
    transaction is rolled back)."""
    cfg = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # held until this transaction ends; the next upgrade then reads the version
            # this one committed (READ COMMITTED) and has nothing left to do
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        # checked in the migration's own transaction, so that "ahead" is decided on the
        # same connection that would otherwise trip over the unknown revision
        before = _state(conn)
        if before.ahead:
            log.warning("the database schema is ahead of this release (%s): a newer release "
                        "migrated it; leaving it as it is", ", ".join(before.ahead))
            return before
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return before


def revision(engine: Engine, message: str) -> None:
    """Developer helper: autogenerate a new migration against ``engine``."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
