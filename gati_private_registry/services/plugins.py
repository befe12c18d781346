"""The typed facade over pluggy: loads policy plugins, asks them to review versions,
tells them about state changes, and turns their votes into a state by policy."""
from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Iterable, Mapping

import pluggy

from .. import hooks
from ..domain import VersionState
from ..settings import ApprovalPolicy, ApprovalSettings

log = logging.getLogger(__name__)

#: built-in plugins that ship inside this package (the policy plugins are their own
#: distribution, loaded through the entry-point group like any third-party plugin)
BUILTIN_PLUGINS: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class RecordedVote:
    plugin: str
    decision: hooks.Decision
    reasons: tuple[str, ...]


class PluginHost:
    """Owns the pluggy plugin manager. Call hooks only through these methods."""

    def __init__(self, blocked: Iterable[str] = (), extra: Iterable[tuple[str, object]] = (),
                 load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hooks.PROJECT)
        self.pm.add_hookspecs(hooks.GatiRegistrySpec)
        for name in blocked:
            self.pm.set_blocked(name)
        for name, plugin in (*BUILTIN_PLUGINS, *extra):
            if not self.pm.is_blocked(name):
                self.pm.register(plugin, name=name)
        if load_entry_points:
            for ep in entry_points(group=hooks.PROJECT):
                if self.pm.is_blocked(ep.name) or self.pm.get_plugin(ep.name) is not None:
                    continue
                self.pm.register(ep.load(), name=ep.name)
        # a misspelt hook name in a plugin fails here, at start-up, not silently later
        self.pm.check_pending()
        self._schemas = self._collect_schemas()

    def names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin())

    def _collect_schemas(self) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        for impl in self.pm.hook.gati_registry_plugin_settings.get_hookimpls():
            schema: Any = impl.function()
            if schema:
                out[impl.plugin_name] = schema
        return out

    def schema(self, plugin: str) -> Mapping[str, Any] | None:
        return self._schemas.get(plugin)

    def defaults(self, plugin: str) -> dict[str, Any]:
        """The default settings from the plugin's schema (top-level ``default`` values)."""
        schema = self._schemas.get(plugin) or {}
        props = schema.get("properties") or {}
        return {k: v["default"] for k, v in props.items() if isinstance(v, Mapping) and "default" in v}

    def review(self, candidate: hooks.Candidate, configs: Mapping[str, Mapping[str, Any]],
               disabled: Iterable[str] = ()) -> list[RecordedVote]:
        """Ask every enabled plugin; a plugin that fails votes needs-review with the error,
        so a broken plugin can never approve anything."""
        skip = set(disabled)
        votes: list[RecordedVote] = []
        for impl in self.pm.hook.gati_registry_review_version.get_hookimpls():
            name = impl.plugin_name
            if name in skip:
                continue
            config = {**self.defaults(name), **dict(configs.get(name) or {})}
            try:
                vote: Any = impl.function(candidate=candidate, config=config)
            except Exception as exc:  # a plugin's bug must not decide, nor crash publish
                log.exception("plugin %s failed to review %s@%s", name, candidate.name,
                              candidate.version)
                votes.append(RecordedVote(name, hooks.Decision.NEEDS_REVIEW,
                                          (f"the plugin failed: {exc.__class__.__name__}: {exc}",)))
                continue
            if vote is None:
                continue
            votes.append(RecordedVote(name, hooks.Decision(vote.decision), tuple(vote.reasons)))
        return votes

    def state_changed(self, change: hooks.StateChange, disabled: Iterable[str] = ()) -> None:
        """Tell every enabled plugin; a plugin's failure is logged, never raised."""
        skip = set(disabled)
        for impl in self.pm.hook.gati_registry_version_state_changed.get_hookimpls():
            if impl.plugin_name in skip:
                continue
            try:
                impl.function(change=change)
            except Exception:  # notifications must not undo a committed decision
                log.exception("plugin %s failed on a state change", impl.plugin_name)


def policy_for(settings: ApprovalSettings, name: str) -> ApprovalPolicy | None:
    """The first policy whose pattern matches ``name``, or None."""
    for policy in settings.policies:
        if fnmatch.fnmatchcase(name, policy.pattern):
            return policy
    return None


def mode_for(settings: ApprovalSettings, name: str) -> str:
    """The approval mode of the first policy whose pattern matches ``name``."""
    policy = policy_for(settings, name)
    return policy.mode if policy is not None else settings.default_mode


def decide(mode: str, votes: list[RecordedVote]) -> tuple[VersionState, str]:
    """The state a new version starts in, and why. Any reject rejects, in every mode."""
    rejects = [v for v in votes if v.decision is hooks.Decision.REJECT]
    if rejects:
        return VersionState.REJECTED, "rejected by " + ", ".join(v.plugin for v in rejects)
    if mode == "manual":
        return VersionState.PENDING, "waiting for an approver (policy: manual)"
    if mode == "auto-if-approved":
        if votes and all(v.decision is hooks.Decision.APPROVE for v in votes):
            return VersionState.APPROVED, "every plugin approved (policy: auto-if-approved)"
        return VersionState.PENDING, "waiting for an approver: not every plugin approved"
    # auto: doubts are recorded for reviewers (and can lead to a quarantine later) but
    # do not hold the version back
    return VersionState.APPROVED, "approved on publish (policy: auto)"
