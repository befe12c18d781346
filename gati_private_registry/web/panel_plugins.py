"""The plugin admin pages of the panel: the list of policy plugins with their state,
and a settings form per plugin generated from the plugin's JSON Schema. Admins only.

The form is built here from the schema (which widget per property) and the posted
values are turned back into typed JSON here; whether they are acceptable is decided by
the service (:class:`PluginAdminService`), which validates against the same schema.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from flask import (Blueprint, flash, g, redirect, render_template, request, url_for)
from flask.typing import ResponseReturnValue

from ..errors import FieldError, ValidationFailed
from ..services.plugin_admin import PluginInfo
from . import auth
from .panel import login_required
from .common import services as _services

bp = Blueprint("panel_plugins", __name__, url_prefix="/admin")

_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class FormField:
    """One setting as a form widget. ``kind`` is checkbox, select, text, number,
    lines (array of strings, one per line), choices (array of enum values, as
    checkboxes) or json (anything else, edited as JSON)."""

    key: str
    kind: str
    label: str
    help: str
    #: what the widget shows: a bool (checkbox), a list (choices) or a string
    value: Any
    default: str
    is_default: bool
    options: tuple[str, ...] = ()
    attrs: Mapping[str, str] = field(default_factory=dict)


def _kind(prop: Mapping[str, Any]) -> str:
    kind = prop.get("type")
    enum = prop.get("enum")
    if kind == "boolean":
        return "checkbox"
    if isinstance(enum, list) and enum and kind in ("string", "integer", "number", None):
        return "select"
    if kind == "string":
        return "text"
    if kind in ("integer", "number"):
        return "number"
    if kind == "array":
        items = prop.get("items")
        if isinstance(items, Mapping) and items.get("type", "string") == "string":
            return "choices" if isinstance(items.get("enum"), list) else "lines"
    return "json"  # objects, unions, arrays of anything else: edited as JSON


def _shown(kind: str, value: Any) -> Any:
    """``value`` (typed JSON) as the widget shows it."""
    if kind == "checkbox":
        return bool(value)
    if kind == "choices":
        return [str(v) for v in value] if isinstance(value, list) else []
    if kind == "lines":
        return "\n".join(str(v) for v in value) if isinstance(value, list) else ""
    if kind == "json":
        return "" if value is None else json.dumps(value, indent=2, sort_keys=True)
    return "" if value is None else str(value)


def _attrs(kind: str, prop: Mapping[str, Any]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if kind == "number":
        attrs["step"] = "1" if prop.get("type") == "integer" else "any"
        for key, attr in (("minimum", "min"), ("maximum", "max")):
            if isinstance(prop.get(key), (int, float)):
                attrs[attr] = str(prop[key])
    elif kind == "text":
        if isinstance(prop.get("maxLength"), int):
            attrs["maxlength"] = str(prop["maxLength"])
    return attrs


def form_fields(info: PluginInfo, posted: Mapping[str, Any] | None = None) -> list[FormField]:
    """The widgets for ``info``'s schema, showing ``posted`` (what the admin sent, on a
    re-render after errors) or else the plugin's current settings."""
    props = (info.schema or {}).get("properties") or {}
    out: list[FormField] = []
    for key, prop in props.items():
        if not isinstance(prop, Mapping):
            continue
        kind = _kind(prop)
        if posted is not None and key in posted:
            value = posted[key]
        else:
            value = _shown(kind, info.config.get(key))
        choices: Any = ()
        if kind == "select":
            choices = prop.get("enum")
        elif kind == "choices":
            choices = (prop.get("items") or {}).get("enum")
        options = tuple(str(v) for v in choices or ())
        default = info.defaults.get(key)
        out.append(FormField(
            key=key, kind=kind, label=str(prop.get("title") or key.replace("_", " ")),
            help=str(prop.get("description") or ""), value=value,
            default="" if key not in info.defaults else _default_text(kind, default),
            is_default=key not in info.stored, options=options, attrs=_attrs(kind, prop)))
    return out


def _default_text(kind: str, value: Any) -> str:
    if kind in ("lines", "choices"):
        return ", ".join(str(v) for v in value) if value else "(none)"
    if kind == "checkbox":
        return "on" if value else "off"
    if kind == "json":
        return json.dumps(value, sort_keys=True)
    return str(value)


def _number(raw: str, integer: bool) -> Any:
    """The posted number as JSON; the raw text when it is not one (the schema check
    then reports it at its field)."""
    text = raw.strip()
    if _INT.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return raw
    if integer and value.is_integer():
        return int(value)
    return value


def parse_form(info: PluginInfo, form: Any) -> tuple[dict[str, Any], dict[str, Any],
                                                      list[FieldError]]:
    """The posted settings form as a merge patch of typed JSON (an emptied number or
    JSON field is None: back to the default), what to show again on errors, and the
    fields that could not be read (JSON that does not parse). Settings are posted as
    ``config.<key>``, so a setting may be called anything (``action``, ``csrf_token``)
    without colliding with the form's own fields."""
    props = (info.schema or {}).get("properties") or {}
    patch: dict[str, Any] = {}
    shown: dict[str, Any] = {}
    unreadable: list[FieldError] = []
    for key, prop in props.items():
        if not isinstance(prop, Mapping):
            continue
        kind = _kind(prop)
        name = f"config.{key}"
        if kind == "checkbox":
            patch[key] = shown[key] = name in form
        elif kind == "choices":
            chosen = form.getlist(name)
            patch[key], shown[key] = list(chosen), list(chosen)
        elif kind == "lines":
            text = form.get(name, "")
            shown[key] = text
            patch[key] = [line.strip() for line in text.splitlines() if line.strip()]
        elif kind == "select":
            raw = form.get(name, "")
            shown[key] = raw
            # enums may hold numbers: post back the member whose text was chosen
            patch[key] = next((v for v in prop["enum"] if str(v) == raw), raw)
        elif kind == "number":
            raw = form.get(name, "")
            shown[key] = raw
            patch[key] = _number(raw, prop.get("type") == "integer") if raw.strip() else None
        elif kind == "json":
            raw = form.get(name, "")
            shown[key] = raw
            if not raw.strip():
                patch[key] = None
                continue
            try:
                patch[key] = json.loads(raw)
            except ValueError as exc:
                unreadable.append(FieldError(f"config.{key}", f"is not valid JSON: {exc}"))
        else:
            patch[key] = shown[key] = form.get(name, "")
    return patch, shown, unreadable


def errors_by_field(details: list[FieldError]) -> tuple[dict[str, list[str]], list[str]]:
    """Field errors keyed by the top-level setting they belong to (``config.allow[2]``
    → ``allow``, shown as ``allow[2]: …``), and the ones that belong to no field."""
    by_key: dict[str, list[str]] = {}
    general: list[str] = []
    for d in details:
        m = re.match(r"config\.([^.\[]+)(.*)", d.field)
        if m is None:
            general.append(f"{d.field}: {d.message}")
            continue
        key, rest = m.group(1), m.group(2)
        by_key.setdefault(key, []).append(f"{key}{rest}: {d.message}" if rest else d.message)
    return by_key, general


# -- views -------------------------------------------------------------------------------

@bp.route("/plugins")
@login_required
def plugins() -> ResponseReturnValue:
    services = _services()
    items = services.plugin_admin.list(services.accounts.principal_for_user(g.user))
    return render_template("admin/plugins.html", plugins=items)


def _render_plugin(info: PluginInfo, posted: Mapping[str, Any] | None = None,
                   details: list[FieldError] | None = None) -> str:
    by_key, general = errors_by_field(details or [])
    return render_template("admin/plugins_edit.html", p=info,
                           fields=form_fields(info, posted), errors=by_key,
                           general_errors=general,
                           schema_json=json.dumps(info.schema, indent=2, sort_keys=True))


@bp.route("/plugins/<name>", methods=["GET", "POST"])
@login_required
def plugin(name: str) -> ResponseReturnValue:
    """The settings form; it posts back here (save, or reset to the defaults)."""
    services = _services()
    principal = services.accounts.principal_for_user(g.user)
    info = services.plugin_admin.get(principal, name)
    if request.method == "GET":
        return _render_plugin(info)
    origin = auth.origin(request.environ, services.settings)
    if request.form.get("action") == "reset":
        services.plugin_admin.reset(principal, name, origin)
        flash(f"Every setting of {name} is back to its default.", "success")
        if not info.installed:
            return redirect(url_for("panel_plugins.plugins"))
        return redirect(url_for("panel_plugins.plugin", name=name))
    patch, shown, unreadable = parse_form(info, request.form)
    try:
        if unreadable:
            # report these together with everything else wrong, and store nothing
            raise ValidationFailed("invalid plugin settings", details=unreadable + [
                d for d in services.plugin_admin.check(principal, name, patch)
                if d.field not in {u.field for u in unreadable}])
        services.plugin_admin.update(principal, name, config=patch, origin=origin)
    except ValidationFailed as exc:
        return _render_plugin(info, shown, exc.details), 400
    flash(f"Saved the settings of {name}.", "success")
    return redirect(url_for("panel_plugins.plugin", name=name))


@bp.route("/plugins/<name>/enabled", methods=["POST"])
@login_required
def set_enabled(name: str) -> ResponseReturnValue:
    """Enable (``enabled=on``) or disable (``enabled=off``) a plugin, then go back to
    the list or the plugin's page (``back``)."""
    services = _services()
    value = request.form.get("enabled", "")
    enabled: object = {"on": True, "off": False}.get(value, value)
    services.plugin_admin.update(services.accounts.principal_for_user(g.user), name,
                                 enabled=enabled,
                                 origin=auth.origin(request.environ, services.settings))
    flash(f"{'Enabled' if enabled is True else 'Disabled'} {name}.", "success")
    if request.form.get("back") == "plugin":
        return redirect(url_for("panel_plugins.plugin", name=name))
    return redirect(url_for("panel_plugins.plugins"))
