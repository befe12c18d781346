"""The Gati REST API for plugin administration (JSON, bearer tokens with the admin
scope): list the policy plugins, enable or disable one, change or reset its settings."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from ..errors import FieldError, ValidationFailed
from ..services.packuments import iso
from ..services.plugin_admin import PluginInfo
from . import auth
from .common import services as _services, json_response as _json, api_principal as _who

bp = Blueprint("api_plugins", __name__, url_prefix="/api")

#: the keys a PATCH body may have; anything else is reported, not ignored
PATCH_KEYS = ("enabled", "config")


def plugin_json(info: PluginInfo) -> dict[str, Any]:
    """The API representation of one plugin."""
    return {"name": info.name, "installed": info.installed,
            "distribution": info.distribution, "version": info.version,
            "hooks": list(info.hooks), "votes": info.votes, "enabled": info.enabled,
            "config": info.config, "stored": info.stored, "defaults": info.defaults,
            "schema": info.schema,
            "updated_at": iso(info.updated_at) if info.updated_at else None,
            "updated_by": info.updated_by or None}


@bp.route("/plugins")
def list_plugins() -> Response:
    """Every policy plugin, installed or configured, with its settings (admins)."""
    items = _services().plugin_admin.list(_who())
    return _json({"items": [plugin_json(i) for i in items], "total": len(items)})


@bp.route("/plugins/<name>", methods=["GET"])
def get_plugin(name: str) -> Response:
    """One policy plugin: hooks, votes, settings, defaults and schema (admins)."""
    return _json(plugin_json(_services().plugin_admin.get(_who(), name)))


@bp.route("/plugins/<name>", methods=["PATCH"])
def patch_plugin(name: str) -> Response:
    """Body ``{"enabled": bool, "config": {...}}``, both optional. ``config`` is a
    merge patch over the stored settings: ``null`` puts a setting back to its default."""
    who = _who()
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object",
                               details=[FieldError("body", "not a JSON object")])
    unknown = sorted(k for k in body if k not in PATCH_KEYS)
    if unknown:
        raise ValidationFailed("unknown keys in the body", details=[
            FieldError(k, "not a plugin property (use enabled or config)") for k in unknown])
    services = _services()
    info = services.plugin_admin.update(who, name, enabled=body.get("enabled"),
                                        config=body.get("config"),
                                        origin=auth.origin(request.environ, services.settings))
    return _json(plugin_json(info))


@bp.route("/plugins/<name>/config", methods=["DELETE"])
def reset_plugin(name: str) -> Response:
    """Every setting back to its default; the enabled flag stays as it is."""
    who = _who()
    services = _services()
    info = services.plugin_admin.reset(who, name, auth.origin(request.environ, services.settings))
    return _json(plugin_json(info))
