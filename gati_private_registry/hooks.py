"""Hook specifications: the API that policy plugins implement.

Every hook is prefixed ``gati_registry_``, typed, and called only through the typed
facade in :mod:`gati_private_registry.services.plugins` with keyword arguments. Plugins
are registered from the ``gati_registry`` entry-point group (plus the built-ins listed
there); ``check_pending()`` at start-up refuses implementations of hooks that do not
exist, so a typo in a plugin fails loudly. To change a hook, add a new one.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pluggy

PROJECT = "gati_registry"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Decision(str, enum.Enum):
    APPROVE = "approve"
    REJECT = "reject"
    NEEDS_REVIEW = "needs-review"


@dataclass(frozen=True)
class CandidateFile:
    path: str
    size: int


@dataclass(frozen=True)
class Candidate:
    """A version waiting for a decision, as plugins see it."""

    name: str
    version: str
    #: the version's package.json as published
    manifest: Mapping[str, Any]
    #: gati-module.json, when the tarball has one
    gati_module: Mapping[str, Any] | None
    files: tuple[CandidateFile, ...]
    #: who published it (username), or the upstream's name for mirrored versions
    publisher: str
    #: "local" or "upstream"
    source: str
    #: the contents of one file of the package (path relative to the package root);
    #: raises KeyError for a path the package does not have
    read_file: Callable[[str], bytes] = field(repr=False, compare=False)
    #: names of the other packages in the registry (for typosquatting checks)
    existing_names: Callable[[], frozenset[str]] = field(repr=False, compare=False,
                                                         default=lambda: frozenset())


@dataclass(frozen=True)
class Vote:
    """A plugin's verdict on a candidate, with the reasons a reviewer reads."""

    decision: Decision
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class StateChange:
    """A version moved from one lifecycle state to another."""

    name: str
    version: str
    old_state: str | None
    new_state: str
    actor: str
    reason: str


class GatiRegistrySpec:
    """The hooks. Each docstring says when it is called, what it gets and returns."""

    @hookspec
    def gati_registry_review_version(self, candidate: Candidate,
                                     config: Mapping[str, Any]) -> Vote | None:
        """Called once for every new version (local publish or upstream fetch), before
        its state is decided, outside any database transaction. ``config`` is this
        plugin's settings as configured by admins (validated against the schema from
        :meth:`gati_registry_plugin_settings`). Return a :class:`Vote`, or None to
        abstain. All results are collected (not firstresult) and every vote is recorded.
        A plugin that raises counts as ``needs-review`` with the error as its reason."""

    @hookspec
    def gati_registry_version_state_changed(self, change: StateChange) -> None:
        """Called after a state change has been committed (publish, approve, reject,
        quarantine). Must not block: slow work belongs in a webhook. Return value
        ignored; exceptions are logged and swallowed."""

    @hookspec
    def gati_registry_plugin_settings(self) -> Mapping[str, Any] | None:
        """Called once at start-up: a JSON Schema (an object schema with defaults) of
        this plugin's settings, which the panel renders as a form; None when the plugin
        has none."""
