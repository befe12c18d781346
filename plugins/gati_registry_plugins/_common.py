"""Small helpers shared by the built-in plugins (not part of any public API)."""
from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Mapping

from gati_private_registry.hooks import Decision

#: the decisions an admin can choose for a finding ("approve" means "only record it")
ACTIONS: tuple[str, ...] = tuple(d.value for d in Decision)


def action_schema(default: str, description: str,
                  choices: Iterable[str] = ("needs-review", "reject")) -> dict[str, Any]:
    """A JSON Schema property for an ``action`` setting. Returns the property dict."""
    return {"type": "string", "enum": list(choices), "default": default,
            "description": description}


def globs_schema(default: list[str], description: str) -> dict[str, Any]:
    """A JSON Schema property for a list of glob patterns. Returns the property dict."""
    return {"type": "array", "items": {"type": "string", "minLength": 1},
            "default": default, "description": description}


def decision_of(config: Mapping[str, Any], key: str, default: Decision) -> Decision:
    """The :class:`Decision` named by ``config[key]``; ``default`` when the key is
    missing. Raises ValueError for a value that is not a decision, so a misconfigured
    plugin counts as needs-review (the host's rule for a failing plugin) rather than
    silently approving."""
    value = config.get(key)
    if value is None:
        return default
    return Decision(value)


def matches_any(value: str, patterns: Iterable[str]) -> str | None:
    """The first glob pattern (case-sensitive, ``fnmatch`` syntax) matching ``value``,
    or None."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(value, pattern):
            return pattern
    return None


def human_size(size: int) -> str:
    """``size`` bytes as a short human-readable string, in decimal units as npm
    reports package sizes (``1.5 MB``)."""
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
