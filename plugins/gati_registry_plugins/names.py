"""Name policy: a deny list of name globs, and typosquatting detection against the
names already in the registry.

A new name is *similar* to an existing one when (compared case-insensitively):

* they are within ``max_distance`` Damerau-Levenshtein edits (insert, delete,
  substitute, swap two neighbours), for names of at least ``min_length`` characters;
  compared on the full names, and on the unscoped part when the new name is scoped and
  the existing one is not (``@x/expresss`` imitating ``express``);
* they differ only in separators (``-``, ``_``, ``.``), including trailing ones
  (``lodash_`` vs ``lodash``);
* they differ only by a ``js``/``node`` prefix or suffix (``node-fetch`` vs ``fetch``,
  ``chalkjs`` vs ``chalk``);
* they have the same unscoped part and scopes that are themselves similar
  (``@gati-modules/postgres`` vs ``@gati-module/postgres``).

The same name already existing is not typosquatting (it is a new version), and a scoped
package reusing an unscoped name exactly (``@types/express``) is the normal way scopes
are used, so neither is flagged.
"""
from __future__ import annotations

import functools

import re
from typing import Any, Iterable, Mapping

from rapidfuzz.distance import OSA

from gati_private_registry.hooks import Candidate, Decision, Vote, hookimpl

from ._common import action_schema, decision_of, globs_schema, matches_any

_SEPARATORS = re.compile(r"[-_.]+")
_AFFIXES = re.compile(r"^(?:node|js)-?|-?(?:node|js)$")
_MAX_LISTED = 10


@hookimpl
def gati_registry_plugin_settings() -> Mapping[str, Any]:
    """Returns the JSON Schema of this plugin's settings."""
    return {
        "type": "object",
        "title": "Package names",
        "additionalProperties": False,
        "properties": {
            "deny": globs_schema(["node_modules", "favicon.ico", "*-malware*"],
                                 "Name globs that can never be published."),
            "max_distance": {"type": "integer", "minimum": 0, "maximum": 3, "default": 1,
                             "description": "Largest edit distance at which two names "
                                            "count as similar."},
            "min_length": {"type": "integer", "minimum": 1, "default": 5,
                           "description": "Names shorter than this are only compared "
                                          "for separator, scope and js/node variants "
                                          "(short names are all a few edits apart)."},
            "allow": globs_schema([], "Name globs never flagged as typosquats (e.g. "
                                      "your own scope, '@acme/*')."),
            "action": action_schema("needs-review", "What to do with a name similar to "
                                    "an existing one."),
        },
    }


@hookimpl
def gati_registry_review_version(candidate: Candidate, config: Mapping[str, Any]) -> Vote:
    """Returns reject for a denied name, ``config["action"]`` listing the similar
    existing names for a likely typosquat, approve otherwise. Raises ValueError for an
    ``action`` that is not a decision."""
    name = candidate.name
    denied = matches_any(name.lower(), [p.lower() for p in config.get("deny", ())])
    if denied is not None:
        return Vote(Decision.REJECT, (f"the name {name!r} is denied (matches {denied!r})",))
    if matches_any(name, config.get("allow", ())) is not None:
        return Vote(Decision.APPROVE, (f"the name {name!r} is exempt from similarity "
                                       f"checks",))
    action = decision_of(config, "action", Decision.NEEDS_REVIEW)
    similar = similar_names(name, candidate.existing_names(),
                            max_distance=int(config.get("max_distance", 1)),
                            min_length=int(config.get("min_length", 5)))
    if not similar:
        return Vote(Decision.APPROVE, (f"the name {name!r} is not similar to any existing "
                                       f"package",))
    listed = [f"{other!r} ({why})" for other, why in similar[:_MAX_LISTED]]
    more = f" and {len(similar) - _MAX_LISTED} more" if len(similar) > _MAX_LISTED else ""
    return Vote(action, (f"the name {name!r} is similar to existing "
                         f"{'package' if len(similar) == 1 else 'packages'} "
                         f"{', '.join(listed)}{more}: possible typosquatting",))


def similar_names(name: str, existing: Iterable[str], *, max_distance: int = 1,
                  min_length: int = 5) -> list[tuple[str, str]]:
    """The existing names similar to ``name`` (never ``name`` itself), each with a
    short explanation, sorted by name."""
    found: list[tuple[str, str]] = []
    me = name.lower()
    for other in sorted(set(existing)):
        if other.lower() == me:
            continue
        why = _similarity(me, other.lower(), max_distance, min_length)
        if why is not None:
            found.append((other, why))
    return found


def _similarity(a: str, b: str, max_distance: int, min_length: int) -> str | None:
    scope_a, bare_a = _split(a)
    scope_b, bare_b = _split(b)
    if _canonical(a) == _canonical(b):
        return "differs only in separators"
    if scope_a == scope_b and _core(a) == _core(b):
        return "differs only by a js/node prefix or suffix"
    if scope_a and scope_b and scope_a != scope_b and _canonical(bare_a) == _canonical(bare_b):
        if (_canonical(scope_a) == _canonical(scope_b)
                or _distance(scope_a, scope_b, max(max_distance, 1)) <= max(max_distance, 1)):
            return f"same package name under a look-alike scope (@{scope_a} vs @{scope_b})"
    if max_distance > 0 and min(len(a), len(b)) >= min_length:
        d = _distance(a, b, max_distance)
        if d <= max_distance:
            return f"{d} edit{'s' if d > 1 else ''} apart"
    if scope_a and not scope_b and bare_a != bare_b:
        # '@evil/expresss' imitates 'express'; '@types/express' (exact) is legitimate
        if _canonical(bare_a) == _canonical(bare_b):
            return "scoped copy differing only in separators"
        if max_distance > 0 and min(len(bare_a), len(bare_b)) >= min_length:
            d = _distance(bare_a, bare_b, max_distance)
            if d <= max_distance:
                return f"scoped, and its name is {d} edit{'s' if d > 1 else ''} apart"
    return None


# Every publish compares against every existing name, and those names barely change
# between publishes: memoising their canonical forms keeps a review far below a
# millisecond per thousand names.
@functools.lru_cache(maxsize=65536)
def _split(name: str) -> tuple[str, str]:
    """``("scope", "bare")`` for ``@scope/bare``, ``("", name)`` when unscoped."""
    if name.startswith("@") and "/" in name:
        scope, _, bare = name[1:].partition("/")
        return scope, bare
    return "", name


@functools.lru_cache(maxsize=65536)
def _canonical(name: str) -> str:
    scope, bare = _split(name)
    bare = _SEPARATORS.sub("-", bare).strip("-")
    return f"@{_SEPARATORS.sub('-', scope).strip('-')}/{bare}" if scope else bare


@functools.lru_cache(maxsize=65536)
def _core(name: str) -> str:
    """The canonical bare name without js/node affixes (``node-fetch`` → ``fetch``),
    keeping it when stripping would leave nothing (``node`` itself)."""
    _, bare = _split(name)
    bare = _canonical(bare)
    stripped = _AFFIXES.sub("", bare).strip("-")
    return stripped or bare


def _distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (optimal string alignment) of ``a`` and ``b``,
    or ``limit + 1`` when it is larger than ``limit`` (rapidfuzz, in C: a publish
    compares against every existing name)."""
    return int(OSA.distance(a, b, score_cutoff=limit))
