"""Gati Private Registry: a self-hosted npm-protocol registry for Gati modules."""
from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See :func:`gati_private_registry.app.create_app` (imported lazily)."""
    from .app import create_app as _create

    return _create(*args, **kwargs)
