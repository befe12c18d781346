"""npm's version semantics through ``node-semver`` (the Python port of npm's own
``semver`` package): ranges with ``^ ~``, x-ranges, hyphen ranges, ``||`` and npm's
prerelease rule (a prerelease only satisfies a range that names a prerelease of the same
``major.minor.patch``). ``tests/client/test_semver.py`` checks it against the ``semver``
that ships inside the installed npm.

And npm-pick-manifest's choice of a version for a spec: the ``latest`` dist-tag when it
satisfies, otherwise the highest satisfying version, non-deprecated ones first.
"""
from __future__ import annotations

import functools
import re
from typing import Any

import nodesemver

from .errors import InvalidInput, NotFoundProblem


@functools.lru_cache(maxsize=4096)
def valid_version(version: str) -> str | None:
    """The normalised version, or None when it is not strict semver."""
    try:
        parsed = nodesemver.valid(version, loose=False)
    except (ValueError, TypeError):
        return None
    return None if parsed is None else str(parsed.version)


@functools.lru_cache(maxsize=4096)
def valid_range(spec: str) -> bool:
    try:
        return nodesemver.valid_range(spec, loose=False) is not None
    except (ValueError, TypeError):
        return False


@functools.lru_cache(maxsize=65536)
def satisfies(version: str, spec: str) -> bool:
    try:
        return bool(nodesemver.satisfies(version, spec or "*", loose=False))
    except (ValueError, TypeError):
        return False


def sort_key(version: str) -> Any:
    return functools.cmp_to_key(lambda a, b: nodesemver.compare(a, b, loose=False))(version)


def max_satisfying(versions: list[str], spec: str) -> str | None:
    found = [v for v in versions if satisfies(v, spec)]
    return max(found, key=sort_key) if found else None


def gt(a: str, b: str) -> bool:
    return bool(nodesemver.gt(a, b, loose=False))


def is_tag(spec: str) -> bool:
    """A dist-tag name (npm refuses tags that are ranges, and tags are URI-safe)."""
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)) and not valid_range(spec)


def is_registry_spec(spec: str) -> bool:
    """Whether ``spec`` is something a registry answers (a range or a dist-tag), not a
    URL, path, git or alias spec, which this client does not install."""
    return not any(spec.startswith(p) for p in (
        "file:", "link:", "git", "http:", "https:", "npm:", "workspace:", ".", "/", "~/")) \
        and "/" not in spec.split("#")[0].replace("||", "")


def pick(packument: dict[str, Any], spec: str, preferred: frozenset[str] = frozenset()) -> str:
    """The version of ``packument`` npm would install for ``spec`` (a range or a tag).
    ``preferred`` versions (those in the lockfile) win when they satisfy. Raises
    :class:`NotFoundProblem` when nothing matches, :class:`InvalidInput` for a spec that
    is neither a range nor a tag."""
    name = packument.get("name", "?")
    versions = packument.get("versions") or {}
    tags = packument.get("dist-tags") or {}
    spec = spec.strip() or "*"
    if not valid_range(spec):
        if spec in tags and tags[spec] in versions:
            return str(tags[spec])
        if not is_registry_spec(spec):
            raise InvalidInput(f"{name}@{spec}: only registry versions, ranges and tags "
                               f"can be installed by gati")
        raise NotFoundProblem(f"{name} has no dist-tag or version matching {spec!r}",
                              hint=f"see the versions with: gati module info {name}")
    for v in sorted(preferred, key=sort_key, reverse=True):
        if v in versions and satisfies(v, spec):
            return v
    latest = tags.get("latest")
    if isinstance(latest, str) and latest in versions and satisfies(latest, spec) \
            and not versions[latest].get("deprecated"):
        return latest
    candidates = [v for v in versions if satisfies(v, spec)]
    if not candidates:
        raise NotFoundProblem(
            f"no version of {name} satisfies {spec!r}",
            hint=f"available: {', '.join(sorted(versions, key=sort_key)[-8:]) or 'none'}")
    fresh = [v for v in candidates if not versions[v].get("deprecated")]
    return str(max(fresh or candidates, key=sort_key))
