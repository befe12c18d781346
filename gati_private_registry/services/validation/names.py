"""Package names, versions and dist-tags by npm's rules (validate-npm-package-name,
node-semver)."""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

import nodesemver

from ...errors import FieldError, ValidationFailed


# --------------------------------------------------------------------------- helpers


def _uri_component_safe(text: str) -> bool:
    """True when JavaScript's ``encodeURIComponent(text) === text``.

    encodeURIComponent leaves ``A-Z a-z 0-9 - _ . ! ~ * ' ( )`` alone; ``quote`` always
    keeps letters, digits and ``_.-~``, so the remaining five are passed as ``safe``."""
    try:
        return quote(text, safe="!*'()") == text
    except UnicodeEncodeError:  # lone surrogates: encodeURIComponent throws on them too
        return False


# --------------------------------------------------------------------------- package names

#: Node's built-in module names (``require('module').builtinModules`` of Node 20 plus the
#: ``node:``-only ones that validate-npm-package-name lists). An unscoped package with one
#: of these names would be shadowed by the built-in in ``require()``.
_NODE_BUILTINS: Final = frozenset({
    "_http_agent", "_http_client", "_http_common", "_http_incoming", "_http_outgoing",
    "_http_server", "_stream_duplex", "_stream_passthrough", "_stream_readable",
    "_stream_transform", "_stream_wrap", "_stream_writable", "_tls_common", "_tls_wrap",
    "assert", "assert/strict", "async_hooks", "buffer", "child_process", "cluster",
    "console", "constants", "crypto", "dgram", "diagnostics_channel", "dns", "dns/promises",
    "domain", "events", "fs", "fs/promises", "http", "http2", "https", "inspector",
    "inspector/promises", "module", "net", "os", "path", "path/posix", "path/win32",
    "perf_hooks", "process", "punycode", "querystring", "readline", "readline/promises",
    "repl", "stream", "stream/consumers", "stream/promises", "stream/web", "string_decoder",
    "sys", "timers", "timers/promises", "tls", "trace_events", "tty", "url", "util",
    "util/types", "v8", "vm", "wasi", "worker_threads", "zlib",
    "node:sea", "node:sqlite", "node:test", "node:test/reporters",
})
_EXCLUDED_NAMES: Final = ("node_modules", "favicon.ico")
_MAX_NAME_LENGTH: Final = 214
_SPECIAL_CHARS: Final = re.compile(r"[~'!()*]")


def _name_part_problems(part: str, what: str) -> list[str]:
    """The rules every name segment obeys (the whole unscoped name, or each half of a
    scoped one); returns human-readable problems, empty when the segment is fine."""
    problems: list[str] = []
    if not part:
        problems.append(f"{what} cannot be empty")
        return problems
    if part.startswith("."):
        problems.append(f"{what} cannot start with a period")
    if part.startswith("_"):
        problems.append(f"{what} cannot start with an underscore")
    if part.startswith("-"):
        # validate-npm-package-name 6+ refuses new names with a leading hyphen
        problems.append(f"{what} cannot start with a hyphen")
    if part.lower() in _EXCLUDED_NAMES:
        problems.append(f"{part.lower()} is not a valid {what}")
    if not _uri_component_safe(part):
        problems.append(f"{what} can only contain URL-friendly characters")
    return problems


def validate_package_name(name: str) -> list[FieldError]:
    """Check ``name`` against npm's rules for *new* packages (what validate-npm-package-name
    calls ``validForNewPackages``), with the scoped form ``@scope/name`` checked half by half.

    Returns every problem found as ``FieldError("name", ...)``; an empty list means the
    name is acceptable. Never raises.

    Deliberate differences from npm: the leading ``.``/``_``/``-`` and exclusion-list rules
    are applied to both halves of a scoped name (npm only checks the whole string, so
    ``@scope/_x`` slips through there), and ``~'!()*`` are refused anywhere. The core-module
    rule applies to unscoped names only: ``@scope/http`` cannot shadow ``require('http')``.
    """
    if not isinstance(name, str):  # the server passes JSON values; be defensive
        return [FieldError("name", "name must be a string")]
    problems: list[str] = []
    if not name:
        return [FieldError("name", "name length must be greater than zero")]
    if name.strip() != name:
        problems.append("name cannot contain leading or trailing spaces")
    if len(name) > _MAX_NAME_LENGTH:
        problems.append(f"name can no longer contain more than {_MAX_NAME_LENGTH} characters")
    if name.lower() != name:
        problems.append("name can no longer contain capital letters")
    if _SPECIAL_CHARS.search(name):
        problems.append("name can no longer contain special characters (\"~'!()*\")")

    if name.startswith("@"):
        scope, slash, rest = name[1:].partition("/")
        if not slash or "/" in rest:
            problems.append("a scoped name must look like @scope/name")
        else:
            problems += _name_part_problems(scope, "scope")
            problems += _name_part_problems(rest, "name")
    else:
        if "/" in name:
            problems.append("name can only contain URL-friendly characters")
            # still report the other rules on the whole string
            problems += [p for p in _name_part_problems(name, "name")
                         if "URL-friendly" not in p]
        else:
            problems += _name_part_problems(name, "name")
        if name.lower() in _NODE_BUILTINS:
            problems.append(f"{name} is a core module name")

    # the same rule can fire twice (e.g. on the whole name and on a half): report it once
    return [FieldError("name", p) for p in dict.fromkeys(problems)]


# --------------------------------------------------------------------------- versions

# The semver.org 2.0.0 grammar, written out rather than taken from node-semver because
# node-semver's "strict" parser still accepts a leading "v"/"=", surrounding blanks and (in
# the Python port) a trailing newline, none of which npm ever sends as a version key.
_NUM: Final = r"0|[1-9]\d*"
_PRE_ID: Final = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_STRICT_SEMVER: Final = re.compile(
    rf"(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?",
    re.ASCII,
)
_MAX_VERSION_LENGTH: Final = 256  # node-semver's MAX_LENGTH
_MAX_SAFE_INTEGER: Final = 2**53 - 1  # node-semver refuses larger major/minor/patch

#: Sort key of a version: ``(is_semver, major, minor, patch, is_release, prerelease, raw)``.
VersionKey = tuple[int, int, int, int, int, tuple[tuple[int, int, str], ...], str]


def parse_version(version: str) -> str:
    """Parse a strict semver 2.0.0 version, as ``npm publish`` sends it.

    Returns the normalised form, which is what node-semver's ``valid()``/``clean()``
    return and what npm publishes: ``major.minor.patch[-prerelease]`` with any
    ``+build`` metadata dropped (npm's client strips it before publishing, and build
    metadata never takes part in precedence).

    Raises :class:`ValidationFailed` with a ``FieldError("version", ...)`` for anything
    else: a leading ``v`` or ``=``, blanks, missing parts (``1.0``), leading zeros
    (``01.0.0``, ``1.0.0-01``), or numbers above 2**53-1.
    """
    def fail(why: str) -> ValidationFailed:
        return ValidationFailed("invalid version",
                                details=[FieldError("version", f"{version!r} {why}")])

    if not isinstance(version, str):
        raise ValidationFailed("invalid version",
                               details=[FieldError("version", "version must be a string")])
    if len(version) > _MAX_VERSION_LENGTH:
        raise fail(f"is longer than {_MAX_VERSION_LENGTH} characters")
    m = _STRICT_SEMVER.fullmatch(version)
    if m is None:
        raise fail("is not a strict semver version (expected MAJOR.MINOR.PATCH[-PRE][+BUILD])")
    for part in ("major", "minor", "patch"):
        if int(m.group(part)) > _MAX_SAFE_INTEGER:
            raise fail(f"has a {part} number larger than {_MAX_SAFE_INTEGER}")
    # Cross-check with node-semver so we never accept what npm's own parser refuses.
    parsed = nodesemver.make_semver(version, False)
    normalised = str(parsed.version)
    expected = f"{m['major']}.{m['minor']}.{m['patch']}" + (f"-{m['pre']}" if m["pre"] else "")
    if normalised != expected:  # pragma: no cover - would mean the two grammars disagree
        raise fail("is not a strict semver version")
    return normalised


def clean_loose_version(version: str) -> str | None:
    """node-semver's ``clean(version, loose=True)``: trim, drop leading ``=``/``v``, parse
    loosely and return the normalised version; None when it does not parse."""
    text = re.sub(r"^[=v]+", "", version.strip())
    try:
        return str(nodesemver.make_semver(text, True).version)
    except (ValueError, TypeError):
        return None


def version_sort_key(version: str) -> VersionKey:
    """A sort key ordering versions by semver precedence.

    Prereleases sort below their release (``1.0.0-rc.1 < 1.0.0``), prerelease identifiers
    compare numerically when numeric and below alphanumeric ones, and build metadata is
    ignored for precedence (the raw string only breaks ties, so sorting is deterministic).
    Strings that are not semver at all (legacy data) sort below every real version.
    Returns the key; never raises.
    """
    m = _STRICT_SEMVER.fullmatch(version) if isinstance(version, str) else None
    if m is None and isinstance(version, str):
        cleaned = clean_loose_version(version)
        m = _STRICT_SEMVER.fullmatch(cleaned) if cleaned else None
    if m is None:
        return (0, 0, 0, 0, 0, (), str(version))
    pre = m["pre"]
    ids: tuple[tuple[int, int, str], ...] = ()
    if pre:
        # numeric identifiers rank below alphanumeric ones (semver 2.0.0, rule 11.4.3)
        ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (1, int(m["major"]), int(m["minor"]), int(m["patch"]), 0 if pre else 1, ids, version)


def highest_version(versions: Iterable[str], *, include_prerelease: bool = False) -> str | None:
    """The version ``latest`` should point at: the highest release, or, when there is no
    release at all (or ``include_prerelease`` is true), the highest version including
    prereleases. This is how npm resets ``latest`` after an unpublish.

    Strings that are not semver are ignored. Returns None for an empty input.
    """
    candidates = [v for v in versions if version_sort_key(v)[0] == 1]
    if not candidates:
        return None
    releases = [v for v in candidates if version_sort_key(v)[4] == 1]
    pool = candidates if include_prerelease or not releases else releases
    return max(pool, key=version_sort_key)


# --------------------------------------------------------------------------- dist-tags


def is_valid_tag(tag: str) -> bool:
    """True when ``tag`` can be a dist-tag: non-empty, unchanged by ``encodeURIComponent``
    (npm-package-arg's rule) and *not* a valid semver range, because ``npm install
    name@<tag>`` would otherwise be read as a range (npm publish refuses such tags:
    "Tag name must not be a valid SemVer range"). So ``latest``/``next``/``beta-1`` are
    fine, ``1.x``/``^1``/``1``/``x`` are not. Never raises."""
    if not isinstance(tag, str) or not tag or not _uri_component_safe(tag):
        return False
    try:
        is_range = nodesemver.valid_range(tag, False) is not None
    except (ValueError, TypeError, IndexError):  # the port's parser is not total
        is_range = True  # refuse what we cannot classify
    return not is_range


# --------------------------------------------------------------------------- tarballs
