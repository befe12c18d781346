"""Schema migrations with Alembic, run from code (no alembic.ini to ship)."""
from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Safe to run when already there."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


@functools.lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    # the migration files do not change while the process runs
    return ScriptDirectory.from_config(_config())


def pending(engine: Engine) -> list[str]:
    """Revisions not yet applied (empty when the schema is current)."""
    script = _script()
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    heads = set(script.get_heads())
    if current == heads:
        return []
    applied: set[str] = set()
    for head in current:
        applied.update(r.revision for r in script.iterate_revisions(head, "base"))
    return [r.revision for head in heads for r in script.iterate_revisions(head, "base")
            if r.revision not in applied][::-1]


def revision(engine: Engine, message: str) -> None:
    """Developer helper: autogenerate a new migration against ``engine``."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
