"""The composition root: settings → storage → services → web. Nothing runs at import."""
from __future__ import annotations

import logging
import os
import secrets

from flask import Flask

from .services import Services, build_services
from .settings import Settings, load_settings
from .storage import migrate

log = logging.getLogger(__name__)


def secret_key(settings: Settings) -> str:
    """The configured secret, or one generated once and kept (mode 0600) in the data dir,
    so every worker and restart signs sessions the same way."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    settings.data.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker wrote it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def prepare(settings: Settings) -> tuple[Services, str | None]:
    """Open everything, bring the schema up to date and make sure an admin exists.
    Returns the services and a generated admin password (None when none was made)."""
    services = build_services(settings)
    migrate.upgrade(services.db.engine)
    generated = services.accounts.ensure_admin()
    # every approved version is signed from the first start on
    services.keys.ensure()
    return services, generated


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """The WSGI application. Reads the environment only when ``settings`` is None."""
    from .web import create_wsgi_app

    settings = settings or load_settings()
    if services is None:
        services = build_services(settings)
    return create_wsgi_app(services, secret_key(settings))
