"""Fixtures shared by every test: settings, both database backends, services, an app.

Every test that takes ``services`` (or anything built on it) runs twice: on SQLite and
on the local PostgreSQL. PostgreSQL being unreachable is a failure, not a skip: set
GATI_TEST_PG_ADMIN_URL to point the suite at another server.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gati_private_registry.app import create_app, prepare
from gati_private_registry.services import Services
from gati_private_registry.settings import Settings

PG_ADMIN_URL = os.environ.get("GATI_TEST_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class PostgresFactory:
    """Throwaway databases cloned from a migrated template (cheap per test)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        try:
            self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with self.admin.connect() as c:
                c.execute(text("select 1"))
        except Exception as exc:  # the suite must fail loudly, never skip
            pytest.fail(f"PostgreSQL is required for the test suite and is not reachable at "
                        f"{admin_url} ({exc.__class__.__name__}: {exc}). Start it, or set "
                        f"GATI_TEST_PG_ADMIN_URL.", pytrace=False)
        self.created: list[str] = []
        self.template: str | None = None

    def url(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create(self, template: str | None = None) -> str:
        name = "gati_t_" + uuid.uuid4().hex[:12]
        tmpl = f' TEMPLATE "{template}"' if template else ""
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"{tmpl}'))
        self.created.append(name)
        return name

    def migrated(self) -> str:
        """A fresh database with the current schema."""
        if self.template is None:
            from gati_private_registry.storage import migrate
            from gati_private_registry.storage.db import make_engine

            self.template = self.create()
            engine = make_engine(self.url(self.template))
            migrate.upgrade(engine)
            engine.dispose()
        return self.create(self.template)

    def drop(self, name: str) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        for name in reversed(self.created):
            self.drop(name)
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresFactory]:
    factory = PostgresFactory(PG_ADMIN_URL)
    yield factory
    factory.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    factory: PostgresFactory = request.getfixturevalue("postgres")
    return factory.url(factory.migrated())


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its services."""
    return {}


@pytest.fixture
def approval_mode() -> str | None:
    """The approval mode the tests run with. The registry-core tests publish and then
    install, so they opt into ``auto``; approval tests set their own policies, and a
    module overriding this with None runs on the shipped (secure) default."""
    return "auto"


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def settings(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any],
             approval_mode: str | None) -> Settings:
    data = tmp_path / "data"
    base: dict[str, Any] = {"database": {"url": database_url}}
    if approval_mode is not None:
        base["approvals"] = {"default_mode": approval_mode}
    return Settings.for_tests(data, **_deep_merge(base, settings_overrides))


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    svc, _ = prepare(settings)
    yield svc
    svc.close()


@pytest.fixture
def app(settings: Settings, services: Services) -> Any:
    return create_app(settings, services)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture(scope="session")
def slapd() -> Iterator[Any]:
    """A real OpenLDAP server with the people and (nested) groups of tests/slapd.py.
    slapd missing is a failure, not a skip (scripts/test installs it)."""
    from .slapd import SLAPD, Slapd, seed_ldif

    if not os.access(SLAPD, os.X_OK):
        pytest.fail("slapd not found: the LDAP tests need a real OpenLDAP server "
                    "(apt-get install slapd ldap-utils)", pytrace=False)
    server = Slapd().start()
    try:
        server.load(seed_ldif())
        yield server
    finally:
        server.stop()
