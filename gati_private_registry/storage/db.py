"""Engine and session set-up for SQLite (the embedded default) and PostgreSQL."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from datetime import datetime, timezone
from typing import Any, Iterator, overload

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, sessionmaker, Session

# Stable constraint names, so Alembic migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer; NORMAL sync is durable in WAL mode at commit
    # boundaries except for power loss, which the blob store's fsync covers for blobs.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # Writers from several gunicorn workers queue instead of failing at once.
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """An engine for ``url`` with the per-backend settings the registry relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False,
                                                             "timeout": 30},
                               pool_size=pool_size, max_overflow=20)
        event.listen(engine, "connect", _sqlite_pragmas)

        # pysqlite's own transaction handling defers BEGIN, so two writers both read
        # and then collide; BEGIN IMMEDIATE takes the write lock up front for
        # transactions that will write (see Database.write()).
        @event.listens_for(engine, "connect")
        def _no_pysqlite_txn(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            mode = conn.info.get("sqlite_begin", "BEGIN")
            conn.exec_driver_sql(mode)
        return engine
    return create_engine(url, echo=echo, pool_size=pool_size, max_overflow=20,
                         pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class Database:
    """The engine plus the two ways services use it: ``read()`` and ``write()``.

    ``write()`` is one transaction: everything done in the block commits together or
    not at all. On SQLite it starts with ``BEGIN IMMEDIATE`` so concurrent writers
    queue on the lock instead of failing half-way.
    """

    def __init__(self, engine: Engine, after_commit: Any = None,
                 lock_path: Path | None = None) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._after_commit = after_commit
        self._lock_path = lock_path

    @property
    def lock_path(self) -> Path | None:
        """The file whose flock serialises SQLite writers (None: no lock)."""
        return self._lock_path

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        # SQLite has one writer at a time. Its own busy handler makes waiting writers
        # sleep and poll (1, 2, 5 ... 100 ms), which under concurrent publishes costs far
        # more than the writes themselves; a blocking flock wakes the next writer the
        # moment the previous one commits, across threads and gunicorn workers alike.
        if not (self.is_sqlite and self._lock_path):
            yield
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._writer_lock(), self.engine.connect() as conn:
            if self.is_sqlite:
                conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
            try:
                with conn.begin():
                    with Session(bind=conn, expire_on_commit=False,
                                 join_transaction_mode="rollback_only") as session:
                        yield session
                        session.flush()
            finally:
                conn.info.pop("sqlite_begin", None)
        if self._after_commit is not None:
            self._after_commit()

    def ping(self) -> None:
        """Raise when the database cannot answer."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()


@overload
def aware(dt: datetime) -> datetime: ...
@overload
def aware(dt: None) -> None: ...
def aware(dt: datetime | None) -> datetime | None:
    """A stored datetime as an aware UTC one: SQLite hands back naive datetimes even for
    ``timezone=True`` columns, PostgreSQL aware ones."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt
