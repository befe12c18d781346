"""Alembic environment: the URL and connection come from ``config.attributes``."""
from __future__ import annotations

from alembic import context

from gati_private_registry.storage import models  # noqa: F401  (registers the tables)
from gati_private_registry.storage.db import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through gati_private_registry.storage.migrate")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
