"""Run-time administration of the policy plugins: admins enable, disable and configure
them; the settings live in the ``plugin_configs`` table, which every publish reads.

A stored config holds only what admins set; the plugin sees it merged over the
defaults of its JSON Schema (see :meth:`PluginHost.review`). Every change is validated
against that schema first and then stored with its audit event and a change row in
one transaction, so a bad value never reaches a plugin.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import entry_points
from typing import Any, Iterable, Mapping

import jsonschema
from jsonschema.exceptions import SchemaError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .. import hooks
from ..domain import Origin, Principal
from ..errors import FieldError, Forbidden, NotFound, ValidationFailed
from ..storage import changes
from ..storage.db import Database
from ..storage.models import PluginConfig
from . import audit
from .plugins import PluginHost

#: the longest plugin name the table holds (``plugin_configs.name``)
MAX_NAME = 100

# aliases, because inside PluginAdminService the name ``list`` is its method
Problems = list[FieldError]


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as admins see it."""

    name: str
    #: False for a row left behind by a plugin that is no longer installed (or blocked)
    installed: bool
    #: the distribution that ships it and its version, when it came from an entry point
    distribution: str | None
    version: str | None
    #: the hooks it implements (``gati_registry_*``)
    hooks: tuple[str, ...]
    enabled: bool
    #: what the plugin gets: the schema defaults with the stored settings over them
    config: dict[str, Any]
    #: only what admins set (empty: every setting is at its default)
    stored: dict[str, Any]
    defaults: dict[str, Any]
    schema: Mapping[str, Any] | None
    updated_at: datetime | None
    updated_by: str

    @property
    def votes(self) -> bool:
        """Whether it reviews versions at all (some plugins only listen)."""
        return "gati_registry_review_version" in self.hooks


def _path(parts: Iterable[Any]) -> str:
    """``["allow", 2]`` → ``config.allow[2]``."""
    out = "config"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def schema_errors(schema: Mapping[str, Any] | None, config: Mapping[str, Any],
                  patch: Mapping[str, Any]) -> Problems:
    """Every problem of ``config`` (the effective settings) against ``schema``, one
    :class:`FieldError` per problem, sorted by field; empty when valid. ``patch`` is
    what the caller sent: a plugin without a schema accepts no settings at all."""
    if schema is None:
        return [FieldError(_path([key]), "this plugin has no settings")
                for key in sorted(patch)]
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except SchemaError as exc:  # the plugin's bug; say so rather than accept anything
        return [FieldError("config", f"the plugin's settings schema is invalid: {exc.message}")]
    errors: list[FieldError] = []
    for err in cls(schema).iter_errors(dict(config)):
        where = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            # one error per unexpected key, at that key, instead of one for the object
            known = set((err.schema.get("properties") or {}))
            patterns = [re.compile(p) for p in (err.schema.get("patternProperties") or {})]
            for key in sorted(str(k) for k in err.instance):
                if key not in known and not any(p.search(key) for p in patterns):
                    errors.append(FieldError(_path([*where, key]),
                                             "is not a setting of this plugin"))
            continue
        errors.append(FieldError(_path(where), err.message))
    return sorted(set(errors), key=lambda e: (e.field, e.message))


def _now() -> datetime:
    return datetime.now(timezone.utc)


class PluginAdminService:
    """Lists plugins and changes their run-time settings. Admins only."""

    def __init__(self, db: Database, plugins: PluginHost) -> None:
        self.db = db
        self.plugins = plugins
        self._dists: dict[str, tuple[str | None, str | None]] | None = None

    # -- reading -----------------------------------------------------------------------

    def _distributions(self) -> dict[str, tuple[str | None, str | None]]:
        # scanning entry points reads every installed distribution's metadata: once,
        # on first use, not at import or start-up
        if self._dists is None:
            found: dict[str, tuple[str | None, str | None]] = {}
            for ep in entry_points(group=hooks.PROJECT):
                dist = ep.dist
                found.setdefault(ep.name, (dist.name if dist else None,
                                           dist.version if dist else None))
            self._dists = found
        return self._dists

    def _hooks(self, name: str) -> tuple[str, ...]:
        plugin = self.plugins.pm.get_plugin(name)
        if plugin is None:
            return ()
        return tuple(sorted(c.name for c in self.plugins.pm.get_hookcallers(plugin) or ()))

    def _info(self, name: str, row: PluginConfig | None) -> PluginInfo:
        installed = name in self.plugins.names()
        defaults = self.plugins.defaults(name) if installed else {}
        stored = dict(row.config or {}) if row is not None else {}
        dist, version = self._distributions().get(name, (None, None))
        return PluginInfo(
            name=name, installed=installed, distribution=dist, version=version,
            hooks=self._hooks(name), enabled=row.enabled if row is not None else True,
            config={**copy.deepcopy(defaults), **copy.deepcopy(stored)}, stored=stored,
            defaults=defaults, schema=self.plugins.schema(name) if installed else None,
            updated_at=row.updated_at if row is not None else None,
            updated_by=row.updated_by if row is not None else "")

    @staticmethod
    def _require_admin(principal: Principal) -> None:
        if not principal.is_admin:
            raise Forbidden("plugin settings need an admin (and, for tokens, the admin scope)")

    def list(self, principal: Principal) -> tuple[PluginInfo, ...]:
        """Every loaded plugin, and every stored row of a plugin that is gone (marked
        ``installed=False``), sorted by name. Raises :class:`Forbidden` for non-admins."""
        self._require_admin(principal)
        with self.db.read() as s:
            rows = {r.name: r for r in s.scalars(select(PluginConfig))}
        names = sorted(set(self.plugins.names()) | set(rows))
        return tuple(self._info(n, rows.get(n)) for n in names)

    def get(self, principal: Principal, name: str) -> PluginInfo:
        """One plugin. Raises :class:`Forbidden` for non-admins, :class:`NotFound` for a
        name that is neither loaded nor stored."""
        self._require_admin(principal)
        with self.db.read() as s:
            row = s.get(PluginConfig, name) if len(name) <= MAX_NAME else None
        if row is None and name not in self.plugins.names():
            raise NotFound(f"no plugin {name!r} is installed")
        return self._info(name, row)

    # -- changing ----------------------------------------------------------------------

    def update(self, principal: Principal, name: str, enabled: object = None,
               config: object = None, origin: Origin | None = None) -> PluginInfo:
        """Enable or disable ``name`` and/or change its settings. ``config`` is a merge
        patch over the stored settings: a key with a value sets it, a key with None
        goes back to the default. The resulting settings (over the defaults) must
        satisfy the plugin's JSON Schema; a plugin without one accepts no settings.
        A request that changes nothing stores nothing.

        Raises :class:`Forbidden` (not an admin), :class:`NotFound` (not installed),
        :class:`ValidationFailed` with one field error per problem (``enabled`` not a
        boolean, ``config`` not an object, every schema violation at its path such as
        ``config.allow[2]``); nothing is stored then."""
        patch = self._checked_input(principal, name, enabled, config)
        with self.db.write() as s:
            # the row is read inside the write transaction (the write lock on SQLite,
            # a row lock on PostgreSQL), so two admins' patches apply one after the other
            row = s.execute(select(PluginConfig).where(PluginConfig.name == name)
                            .with_for_update()).scalar_one_or_none()
            old_stored = dict(row.config or {}) if row is not None else {}
            old_enabled = row.enabled if row is not None else True
            new_stored, problems = self._apply(name, old_stored, patch)
            if problems:
                raise ValidationFailed(f"invalid settings for plugin {name}", details=problems)
            new_enabled = old_enabled if enabled is None else bool(enabled)
            changed = sorted(k for k in set(old_stored) | set(new_stored)
                             if old_stored.get(k, _MISSING) != new_stored.get(k, _MISSING))
            if new_enabled == old_enabled and not changed:
                return self._info(name, row)
            row = self._store(s, row, name, new_enabled, new_stored, principal)
            changes.append(s, "plugin.config", plugin=name, enabled=new_enabled,
                           keys=changed)
            audit.record(s, principal, "plugin.update", name, origin,
                         old_enabled=old_enabled, new_enabled=new_enabled,
                         changed_keys=changed)
        return self._info(name, row)

    def check(self, principal: Principal, name: str, config: object) -> Problems:
        """What :meth:`update` would report for the settings patch ``config``, without
        storing anything (for forms that found problems of their own and must report
        everything at once). Raises :class:`Forbidden`, :class:`NotFound`, and
        :class:`ValidationFailed` when ``config`` is not an object."""
        patch = self._checked_input(principal, name, None, config)
        with self.db.read() as s:
            row = s.get(PluginConfig, name)
            stored = dict(row.config or {}) if row is not None else {}
        return self._apply(name, stored, patch)[1]

    def _checked_input(self, principal: Principal, name: str, enabled: object,
                       config: object) -> Mapping[str, Any]:
        """The settings patch, after the checks that need no stored state."""
        self._require_admin(principal)
        if name not in self.plugins.names():
            raise NotFound(f"no plugin {name!r} is installed")
        errors: Problems = []
        if enabled is not None and not isinstance(enabled, bool):
            errors.append(FieldError("enabled", "must be true or false"))
        if config is not None and not isinstance(config, Mapping):
            errors.append(FieldError("config", "must be an object of settings"))
        elif isinstance(config, Mapping) and not all(isinstance(k, str) for k in config):
            errors.append(FieldError("config", "setting names must be strings"))
        if errors:
            raise ValidationFailed("invalid plugin settings", details=errors)
        return config if isinstance(config, Mapping) else {}

    def _apply(self, name: str, stored: Mapping[str, Any],
               patch: Mapping[str, Any]) -> tuple[dict[str, Any], Problems]:
        """``patch`` merged into ``stored`` (None removes a key), and every problem of
        the result over the schema defaults. An empty patch is not checked: disabling a
        plugin must work even when its stored settings no longer fit a newer schema."""
        if not patch:
            return dict(stored), []
        new = dict(stored)
        for key, value in patch.items():
            if value is None:
                new.pop(key, None)
            else:
                new[key] = copy.deepcopy(value)
        problems = schema_errors(self.plugins.schema(name),
                                 {**self.plugins.defaults(name), **new},
                                 {k: v for k, v in patch.items() if v is not None})
        return new, problems

    def reset(self, principal: Principal, name: str,
              origin: Origin | None = None) -> PluginInfo:
        """Put every setting of ``name`` back to its default. The enabled flag is kept:
        a reset never brings back a plugin an admin disabled.

        For a plugin that is no longer installed (or blocked) the row is removed, unless
        it is disabled: then only its settings go, so a reinstall stays disabled.

        Raises :class:`Forbidden` (not an admin), :class:`NotFound` (neither installed
        nor stored)."""
        self._require_admin(principal)
        installed = name in self.plugins.names()
        if len(name) > MAX_NAME:
            raise NotFound(f"no plugin {name!r} is installed")
        with self.db.write() as s:
            row = s.execute(select(PluginConfig).where(PluginConfig.name == name)
                            .with_for_update()).scalar_one_or_none()
            if row is None and not installed:
                raise NotFound(f"no plugin {name!r} is installed")
            if row is None or (not row.config and (installed or not row.enabled)):
                return self._info(name, row)
            removed = sorted(row.config or {})
            if installed or not row.enabled:
                row = self._store(s, row, name, row.enabled, {}, principal)
            else:
                s.execute(delete(PluginConfig).where(PluginConfig.name == name))
                row = None
            changes.append(s, "plugin.config", plugin=name,
                           enabled=row.enabled if row is not None else None, keys=removed)
            audit.record(s, principal, "plugin.reset", name, origin, reset_keys=removed,
                         installed=installed)
        return self._info(name, row)

    @staticmethod
    def _store(s: Session, row: PluginConfig | None, name: str, enabled: bool,
               stored: dict[str, Any], principal: Principal) -> PluginConfig:
        if row is None:
            row = PluginConfig(name=name)
            s.add(row)
        row.enabled = enabled
        row.config = stored  # a new dict, so the JSON column sees the change
        row.updated_at = _now()
        row.updated_by = principal.username
        s.flush()
        return row


class _Missing:
    """Tells "not set" apart from a stored null-like value when diffing settings."""


_MISSING = _Missing()
