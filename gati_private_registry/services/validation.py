"""Validation of what a publisher sends: package names, versions, dist-tags, the tarball
and the agreement between the manifest in the publish body and the tarball's package.json.

Everything here is pure (no database, no disk, no network) and thread-safe, so the web
layer can call it from any worker. Problems are reported as :class:`FieldError` lists or
raised as :class:`ValidationFailed` (every problem at once) / :class:`TooLarge`.

The npm behaviour reproduced here was read from npm's own sources (validate-npm-package-name
8.x, @npmcli/package-json 7.x ``lib/normalize.js`` and ``normalize-data.js``, hosted-git-info,
libnpmpublish) and checked against the PUT bodies real npm 11.19 sends; those bodies are the
fixtures in ``tests/unit/services/fixtures/publish_bodies``.
"""
from __future__ import annotations

import codecs
import copy
import io
import json
import re
import tarfile
import unicodedata
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Final, Self, cast
from urllib.parse import SplitResult, quote, unquote, urlsplit

import nodesemver

from ..errors import FieldError, TooLarge, ValidationFailed

__all__ = [
    "TarballFile",
    "TarballInfo",
    "VersionKey",
    "check_gati_module",
    "check_manifest_agreement",
    "highest_version",
    "inspect_tarball",
    "is_valid_tag",
    "normalize_manifest",
    "parse_version",
    "validate_package_name",
    "version_sort_key",
]

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


def _clean_loose(version: str) -> str | None:
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
        cleaned = _clean_loose(version)
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


@dataclass(frozen=True)
class TarballFile:
    """A file in the package: ``path`` relative to the package root ('/'-separated),
    ``size`` in bytes and permission ``mode`` bits."""

    path: str
    size: int
    mode: int


@dataclass(frozen=True)
class TarballInfo:
    """What :func:`inspect_tarball` learnt about a package tarball.

    ``root`` is the archive's single top-level folder (usually ``package``);
    ``package_json``/``gati_module`` the parsed JSON objects at that root (``gati_module``
    None when there is no ``gati-module.json``); ``readme`` the root README (first 1 MiB,
    UTF-8 with replacement characters) or None; ``files`` the regular files (hard links
    count as files) in archive order; ``file_count`` is ``len(files)`` and
    ``unpacked_size`` the sum of their sizes, as npm reports them.
    """

    root: str
    package_json: dict[str, Any]
    gati_module: dict[str, Any] | None
    readme: str | None
    files: tuple[TarballFile, ...]
    file_count: int
    unpacked_size: int


_GZIP_MAGIC: Final = b"\x1f\x8b"
_CHUNK: Final = 64 * 1024
_README_CAP: Final = 1024 * 1024
_MAX_DETAILS: Final = 100  # a hostile archive could otherwise produce one error per entry
_MAX_LINK_DEPTH: Final = 40  # like the kernel's ELOOP limit
# npm's readme step: a README.* whose extension is markdown-ish wins (this is npm's regex).
_MARKDOWN_README: Final = re.compile(r"\.m?a?r?k?d?o?w?n?$", re.IGNORECASE)
_CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f]")
_FILE_TYPES: Final = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)


def _invalid(details: list[FieldError]) -> ValidationFailed:
    return ValidationFailed("invalid package tarball", details=details)


def _tarball_error(message: str) -> ValidationFailed:
    return _invalid([FieldError("tarball", message)])


class _BoundedGunzip(io.RawIOBase):
    """A read-only stream of the gunzipped ``data`` that raises :class:`TooLarge` as soon as
    more than ``budget`` bytes have come out, so a gzip bomb is stopped after inflating at
    most ``budget`` bytes, in chunks, never as a whole. Concatenated gzip members are read
    in turn (gzip allows them); anything after the last member other than NUL padding is
    refused, since other unpackers might read it."""

    def __init__(self, data: bytes, budget: int, limit: int) -> None:
        super().__init__()
        self._limit = limit  # the configured limit, for the message (budget adds headers)
        self._src = memoryview(data)
        self._pos = 0
        self._budget = budget
        self._total = 0
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16+: gzip wrapper only
        self._pending = b""  # compressed input handed to the inflater but not consumed yet
        self._done = False

    @property
    def total(self) -> int:
        """Bytes produced so far."""
        return self._total

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._inflate(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self._inflate(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        return self._inflate(size)

    def _inflate(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size and not self._done:
            if not self._pending:
                if self._pos >= len(self._src):
                    if not self._inflater.eof:
                        raise _tarball_error("the gzip stream is truncated")
                    self._done = True
                    break
                self._pending = bytes(self._src[self._pos:self._pos + _CHUNK])
                self._pos += len(self._pending)
            try:
                chunk = self._inflater.decompress(self._pending, size - len(out))
            except zlib.error as exc:
                raise _tarball_error(f"corrupt gzip data ({exc})") from None
            self._pending = self._inflater.unconsumed_tail
            out += chunk
            self._total += len(chunk)
            if self._total > self._budget:
                raise TooLarge(f"the tarball unpacks to more than {self._limit} bytes",
                               extra={"limit": self._limit, "kind": "unpacked"})
            if self._inflater.eof:
                self._next_member()
        return bytes(out)

    def _next_member(self) -> None:
        rest = self._inflater.unused_data + bytes(self._src[self._pos:])
        self._src, self._pos, self._pending = memoryview(rest), 0, b""
        if rest.startswith(_GZIP_MAGIC):
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif rest.strip(b"\0"):
            raise _tarball_error("there is data after the end of the gzip stream")
        else:
            self._src = memoryview(b"")
            self._done = True


@dataclass
class _EndState:
    """Why tarfile stopped: it treats a bad header after the first entry as a silent end of
    the archive, while node-tar skips it and keeps going, so we must notice."""

    reason: str = ""


def _recording_tarinfo(state: _EndState) -> type[tarfile.TarInfo]:
    """A TarInfo subclass that records header errors in ``state`` (one class per call, so
    concurrent inspections never share the state)."""

    class _RecordingTarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            try:
                return super().frombuf(buf, encoding, errors)
            except tarfile.HeaderError:
                if not buf:
                    state.reason = "empty"  # the stream simply ended
                elif not buf.strip(b"\0"):
                    state.reason = "eof"  # end-of-archive marker (or zero padding)
                else:
                    state.reason = "invalid"
                raise

    return _RecordingTarInfo


@dataclass
class _Entry:
    index: int
    raw: str
    rel: tuple[str, ...]  # path components below the root; () is the root itself
    kind: str  # "file", "dir", "symlink", "hardlink"
    size: int
    mode: int
    linkname: str


def _printable(name: str) -> str:
    """``name`` with control characters escaped, for use in error fields."""
    return _CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", name)


def _has_surrogates(text: str) -> bool:
    # tarfile decodes undecodable bytes with surrogateescape
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _path_problems(path: str, what: str, *, relative_parts_ok: bool = False) -> list[str]:
    """Problems with an archive path (an entry name or a link target). With
    ``relative_parts_ok`` (symlink targets, which are resolved later), ``..``, ``.`` and
    empty components are not problems."""
    problems: list[str] = []
    if "\x00" in path:
        problems.append(f"{what} contains a NUL character")
    if "\\" in path:
        problems.append(f"{what} contains a backslash")
    if _CONTROL_CHARS.search(path.replace("\x00", "")):
        problems.append(f"{what} contains control characters")
    if _has_surrogates(path):
        problems.append(f"{what} is not valid UTF-8")
    absolute = path.startswith("/") or re.match(r"[A-Za-z]:", path) is not None
    if absolute:
        problems.append(f"{what} is an absolute path")
    parts = (path.lstrip("/") if absolute else path).split("/")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]  # a trailing slash marks a directory
    if relative_parts_ok:
        return problems
    if ".." in parts:
        problems.append(f"{what} contains a '..' component")
    if not path or any(p in ("", ".") for p in parts):
        problems.append(f"{what} has an empty or '.' path component")
    return problems


def _fold(parts: Iterable[str]) -> str:
    """A key under which names collide on case-insensitive, normalisation-insensitive file
    systems (macOS, Windows): two entries with the same key overwrite each other there."""
    text = "/".join(parts)
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", text).casefold())


def _parse_json_object(raw: bytes, label: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse ``raw`` as a JSON object the way JSON.parse would (a UTF-8 BOM is tolerated
    like npm's parser does; NaN/Infinity are refused). Returns (object, None) or
    (None, problem)."""
    def no_constants(token: str) -> Any:
        raise ValueError(f"{token} is not valid JSON")

    try:
        text = raw.decode("utf-8-sig")
        value = json.loads(text, parse_constant=no_constants)
    except UnicodeDecodeError:
        return None, f"{label} is not valid UTF-8"
    except RecursionError:
        return None, f"{label} is nested too deeply"
    except ValueError as exc:  # JSONDecodeError is a ValueError
        return None, f"{label} is not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"{label} must contain a JSON object"
    return value, None


def _decode_capped(raw: bytes) -> str:
    """Decode at most the first 1 MiB of ``raw`` as UTF-8 (errors replaced), without
    leaving a broken character at the cut."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(raw[:_README_CAP], final=len(raw) <= _README_CAP)


class _LinkLoop(Exception):
    pass


@dataclass
class _Steps:
    """What is left of the work allowed for resolving links, for the whole archive: links
    whose targets go through other links several times can otherwise cost 2**depth."""

    remaining: int = 200_000


def _resolve(start: list[str], target: str, links: Mapping[str, str], steps: _Steps,
             depth: int = 0) -> list[str] | None:
    """Resolve ``target`` (a symlink target, relative to the directory ``start`` below the
    root), following the archive's own symlinks, as the file system would after extraction.
    Returns the resolved components below the root, or None when the path leaves the root.
    Raises _LinkLoop after too many hops or when ``steps`` runs out."""
    if target.startswith("/") or re.match(r"[A-Za-z]:", target):
        return None
    stack = list(start)
    for comp in target.split("/"):
        steps.remaining -= 1
        if steps.remaining < 0:
            raise _LinkLoop
        if comp in ("", "."):
            continue
        if comp == "..":
            if not stack:
                return None
            stack.pop()
            continue
        stack.append(comp)
        link = links.get(_fold(stack))
        if link is not None:
            if depth >= _MAX_LINK_DEPTH:
                raise _LinkLoop
            resolved = _resolve(stack[:-1], link, links, steps, depth + 1)
            if resolved is None:
                return None
            stack = resolved
    return stack


def inspect_tarball(data: bytes, *, max_compressed: int, max_unpacked: int,
                    max_files: int) -> TarballInfo:
    """Check a package tarball (``.tgz``) without extracting it, and read what the registry
    needs from it.

    The archive is streamed: ``tarfile`` in ``r|`` mode over a decompressor that stops once
    the inflated size exceeds ``max_unpacked`` (plus room for tar headers), so a gzip bomb
    is never inflated in memory. Nothing is written to disk.

    Returns a :class:`TarballInfo`.

    Raises :class:`TooLarge` when ``len(data) > max_compressed``, when the sizes of the
    members add up to more than ``max_unpacked`` or the decompressed stream grows past it,
    or when there are more than ``max_files`` members.

    Raises :class:`ValidationFailed` listing every problem (fields ``"tarball"``,
    ``"tarball:<entry name>"``, ``"gati-module.json"``) for: data that is not gzip, not a
    tar, or has bytes after the end of the archive; an empty archive; entries not all under
    one top-level folder (any folder name is accepted, e.g. @types packages use their own);
    absolute paths, ``..``/empty/``.`` components, backslashes, NUL or control characters
    in names; symlinks whose target is absolute or resolves outside the root; hard links
    to anything but an earlier regular file inside the root; device, FIFO, sparse or
    unknown entry types; entries that would overwrite each other (same name, or names that
    differ only in case/Unicode normalisation, which collide on macOS and Windows);
    entries placed inside a symlink or a file; a missing or non-regular
    ``<root>/package.json`` or one that is not a JSON object; a ``gati-module.json`` at the
    root that is not a JSON object.
    """
    if len(data) > max_compressed:
        raise TooLarge(f"the tarball is larger than {max_compressed} bytes",
                       extra={"limit": max_compressed, "kind": "compressed"})
    if not data.startswith(_GZIP_MAGIC):
        raise _tarball_error("not a gzip file")

    # Room for tar's own bytes on top of the file contents: a header (plus a possible
    # long-name/pax header) and up to 511 bytes of padding per member, and end blocks.
    budget = max_unpacked + (max_files + 2) * 2048 + 20 * 1024
    stream = _BoundedGunzip(data, budget, max_unpacked)
    state = _EndState()
    errors: list[FieldError] = []
    entries: list[_Entry] = []
    top_levels: dict[str, None] = {}  # ordered set of the top-level names seen
    root: str | None = None
    package_json_raw: bytes | None = None
    gati_raw: bytes | None = None
    readme_raw: bytes | None = None
    readme_is_markdown = False
    declared_total = 0

    def entry_error(name: str, message: str) -> None:
        errors.append(FieldError(f"tarball:{_printable(name)}", message))

    try:
        with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|",
                          tarinfo=_recording_tarinfo(state)) as tar:
            for index, member in enumerate(tar):
                if index + 1 > max_files:
                    raise TooLarge(f"the tarball has more than {max_files} entries",
                                   extra={"limit": max_files, "kind": "files"})
                if member.size < 0:  # base-256 sizes can be negative; tarfile would seek back
                    raise _tarball_error(f"{member.name!r} has a negative size")
                declared_total += member.size
                if declared_total > max_unpacked:
                    raise TooLarge(f"the tarball unpacks to more than {max_unpacked} bytes",
                                   extra={"limit": max_unpacked, "kind": "unpacked"})
                name = member.name
                problems = _path_problems(name, "the entry name")
                if problems:
                    for p in problems:
                        entry_error(name, p)
                    continue
                parts = tuple(p for p in name.split("/") if p)
                top_levels.setdefault(parts[0], None)
                if root is None:
                    root = parts[0]
                if parts[0] != root:
                    continue  # reported once below, with the list of top-level names
                rel = parts[1:]

                if member.type in _FILE_TYPES:
                    kind = "file"
                elif member.type == tarfile.DIRTYPE:
                    kind = "dir"
                elif member.type == tarfile.SYMTYPE:
                    kind = "symlink"
                elif member.type == tarfile.LNKTYPE:
                    kind = "hardlink"
                elif member.type in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
                    entry_error(name, "device and FIFO entries are not allowed")
                    continue
                elif member.type == tarfile.GNUTYPE_SPARSE:
                    entry_error(name, "sparse files are not allowed")
                    continue
                else:
                    entry_error(name, f"unsupported entry type {member.type!r}")
                    continue
                if not rel and kind != "dir":
                    entry_error(name, "is at the top level of the archive; everything "
                                      "must be inside one folder")
                    continue
                if kind in ("symlink", "hardlink"):
                    link = member.linkname
                    what = "the link target"
                    link_problems = _path_problems(link, what,
                                                   relative_parts_ok=kind == "symlink")
                    if not link:
                        link_problems = ["the link target is empty"]
                    if link_problems:
                        for p in link_problems:
                            entry_error(name, p)
                        continue
                entries.append(_Entry(index, name, rel, kind, member.size,
                                      member.mode & 0o7777, member.linkname))

                if kind != "file":
                    continue
                # Read the few files we need while the stream is positioned on them.
                if rel == ("package.json",):
                    package_json_raw = _read_member(tar, member, None)
                elif rel == ("gati-module.json",):
                    gati_raw = _read_member(tar, member, None)
                elif len(rel) == 1 and (rel[0].lower() == "readme"
                                        or rel[0].lower().startswith("readme.")):
                    markdown = bool(_MARKDOWN_README.search(rel[0]))
                    # npm takes the first markdown-ish README, else a bare README
                    if (readme_raw is None and (markdown or rel[0].lower() == "readme")) \
                            or (markdown and not readme_is_markdown):
                        readme_raw = _read_member(tar, member, _README_CAP + 4)
                        readme_is_markdown = markdown

            if state.reason == "invalid":
                raise _tarball_error("the archive has data after its last entry that is "
                                     "not a tar header")
            # Everything after the end-of-archive marker must be padding: another
            # unpacker could find entries there that we never saw. Reading it also
            # keeps a bomb hidden behind the end marker within the budget.
            tail = tar.fileobj
            if tail is not None:
                while chunk := tail.read(_CHUNK):
                    if chunk.strip(b"\0"):
                        raise _tarball_error("there is data after the end of the tar archive")
    except tarfile.ReadError as exc:
        if stream.total == 0 or str(exc) == "empty file":
            raise _tarball_error("the archive is empty") from None
        raise _tarball_error(f"not a valid tar archive ({exc})") from None
    except (tarfile.TarError, EOFError, ValueError, OverflowError, UnicodeError) as exc:
        raise _tarball_error(f"corrupt tar archive ({exc.__class__.__name__}: {exc})") from None

    if not entries and not errors:
        raise _tarball_error("the archive is empty")
    if len(top_levels) > 1:
        shown = ", ".join(repr(t) for t in list(top_levels)[:5])
        errors.append(FieldError(
            "tarball", f"entries must all be inside one top-level folder; found {shown}"
            + (" and more" if len(top_levels) > 5 else "")))
    if root is None:  # every entry had a bad name
        raise _invalid(_capped(errors))

    files = _check_entries(entries, root, entry_error)
    package_json: dict[str, Any] | None = None
    if package_json_raw is None:
        if not any(e.rel == ("package.json",) for e in entries):
            errors.append(FieldError("tarball", f"there is no {root}/package.json"))
        else:
            errors.append(FieldError(f"tarball:{root}/package.json",
                                     "package.json must be a regular file"))
    else:
        package_json, problem = _parse_json_object(package_json_raw, "package.json")
        if problem:
            errors.append(FieldError(f"tarball:{root}/package.json", problem))
    gati_module: dict[str, Any] | None = None
    if gati_raw is not None:
        gati_module, problem = _parse_json_object(gati_raw, "gati-module.json")
        if problem:
            errors.append(FieldError("gati-module.json", problem))
    elif any(e.rel == ("gati-module.json",) for e in entries):
        errors.append(FieldError("gati-module.json", "gati-module.json must be a regular file"))

    if errors or package_json is None:
        raise _invalid(_capped(errors))
    readme = _decode_capped(readme_raw) if readme_raw is not None else None
    return TarballInfo(root=root, package_json=package_json, gati_module=gati_module,
                       readme=readme, files=files, file_count=len(files),
                       unpacked_size=sum(f.size for f in files))


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, cap: int | None) -> bytes:
    """The contents of the current member (at most ``cap`` bytes when given)."""
    handle = tar.extractfile(member)
    if handle is None:  # pragma: no cover - only regular files are passed in
        return b""
    with handle:
        return handle.read() if cap is None else handle.read(cap)


def _capped(errors: list[FieldError]) -> list[FieldError]:
    if len(errors) <= _MAX_DETAILS:
        return errors
    return errors[:_MAX_DETAILS] + [
        FieldError("tarball", f"... and {len(errors) - _MAX_DETAILS} more problems")]


def _check_entries(entries: list[_Entry], root: str, entry_error: Any
                   ) -> tuple[TarballFile, ...]:
    """The checks that need the whole archive: collisions, entries inside links or files,
    and where links lead. Reports through ``entry_error(name, message)``; returns the
    files (regular files and valid hard links) in archive order."""
    by_key: dict[str, _Entry] = {}
    links: dict[str, str] = {}
    for e in entries:
        key = _fold(e.rel)
        seen = by_key.get(key)
        if seen is not None:
            if seen.kind == "dir" and e.kind == "dir":
                continue  # a directory listed twice is harmless
            if seen.raw == e.raw:
                entry_error(e.raw, "appears more than once in the archive")
            else:
                entry_error(e.raw, f"collides with {seen.raw!r} (names differing only in "
                                   "case or Unicode normalisation overwrite each other on "
                                   "macOS and Windows)")
            continue
        by_key[key] = e
        if e.kind == "symlink":
            links[key] = e.linkname

    for e in entries:
        for depth in range(1, len(e.rel)):
            parent = by_key.get(_fold(e.rel[:depth]))
            if parent is None or parent.kind == "dir":
                continue
            if parent.kind == "symlink":
                entry_error(e.raw, f"is inside the symbolic link {parent.raw!r}")
            else:
                entry_error(e.raw, f"is inside {parent.raw!r}, which is not a directory")
            break

    files: list[TarballFile] = []
    steps = _Steps()
    for e in entries:
        if e.kind == "symlink":
            try:
                resolved = _resolve(list(e.rel[:-1]), e.linkname, links, steps)
            except _LinkLoop:
                entry_error(e.raw, "symbolic link loop (or links nested too deeply)")
                continue
            if resolved is None:
                entry_error(e.raw, f"the symbolic link target {e.linkname!r} points "
                                   "outside the package folder")
        elif e.kind == "hardlink":
            parts = [p for p in e.linkname.split("/") if p]
            if not parts or parts[0] != root:
                entry_error(e.raw, f"the hard link target {e.linkname!r} is outside the "
                                   "package folder")
                continue
            try:
                resolved = _resolve([], "/".join(parts[1:]), links, steps)
            except _LinkLoop:
                entry_error(e.raw, "symbolic link loop (or links nested too deeply)")
                continue
            target = by_key.get(_fold(resolved)) if resolved is not None else None
            if resolved is None:
                entry_error(e.raw, f"the hard link target {e.linkname!r} is outside the "
                                   "package folder")
            elif target is None or target.kind != "file" or target.index > e.index:
                entry_error(e.raw, f"the hard link target {e.linkname!r} is not a regular "
                                   "file earlier in the archive")
            else:
                files.append(TarballFile("/".join(e.rel), target.size, e.mode))
        elif e.kind == "file":
            files.append(TarballFile("/".join(e.rel), e.size, e.mode))
    return tuple(files)


# --------------------------------------------------------------------------- gati-module.json


def check_gati_module(gati_module: dict[str, Any], *, name: str, version: str
                      ) -> list[FieldError]:
    """When ``gati-module.json`` declares ``name`` or ``version``, they must be the
    package's. Versions are compared after npm's cleaning (so ``v1.0.0`` matches
    ``1.0.0``). Returns the problems as ``FieldError("gati-module.json", ...)``; never
    raises."""
    errors: list[FieldError] = []
    if "name" in gati_module:
        declared = gati_module["name"]
        if declared != name:
            errors.append(FieldError("gati-module.json",
                                     f"name is {declared!r} but the package is {name!r}"))
    if "version" in gati_module:
        declared = gati_module["version"]
        same = isinstance(declared, str) and (
            declared == version
            or (_clean_loose(declared) is not None
                and _clean_loose(declared) == _clean_loose(version)))
        if not same:
            errors.append(FieldError("gati-module.json",
                                     f"version is {declared!r} but the package version is "
                                     f"{version!r}"))
    return errors


# --------------------------------------------------------------------------- manifests


def _unixify(ref: str) -> str:
    return re.sub(r"[\\:]", "/", ref)


def _secure_path(ref: str) -> str:
    """npm's ``secureAndUnixifyPath``: backslashes and colons become slashes, the path is
    resolved as if rooted (so ``..`` cannot climb out) and made relative; ``''`` when
    nothing is left. A trailing slash survives, as with Node's path.join."""
    unix = _unixify(ref)
    segs: list[str] = []
    for part in unix.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if segs:
                segs.pop()
            continue
        segs.append(part)
    if not segs:
        return ""
    return "/".join(segs) + ("/" if unix.endswith("/") else "")


def _basename(path: str) -> str:
    """Node's path.posix.basename (trailing slashes ignored)."""
    return path.rstrip("/").rpartition("/")[2]


def _normalize_bin(data: dict[str, Any]) -> None:
    """npm's normalizePackageBin: a string becomes ``{<name without scope>: path}``, an
    array ``{basename: path}``; keys are reduced to their basename, targets secured;
    invalid entries and an empty result are removed."""
    bin_ = data.get("bin")
    if not _js_truthy(bin_):
        data.pop("bin", None)
        return
    name = data.get("name")
    if isinstance(bin_, str):
        if not name or not isinstance(name, str):
            data.pop("bin", None)
            return
        bin_ = {name: bin_}  # the scope goes away below, with the basename of the key
    elif isinstance(bin_, list):
        bin_ = {_basename(k): k for k in bin_ if isinstance(k, str)}
    if not isinstance(bin_, dict):
        data.pop("bin", None)
        return
    result = dict(bin_)
    # Mirror npm's in-place for..in loop: renaming "sub/x" to "x" overwrites an "x" entry
    # that is visited later, so order of processing matters for colliding keys.
    for key in list(bin_):
        if key not in result:
            continue
        value = result[key]
        if not isinstance(value, str):
            del result[key]
            continue
        base = _basename(_secure_path(key))
        target = _secure_path(value)
        if not base or not target:
            del result[key]
            continue
        if base != key:
            del result[key]
        result[base] = target
    if result:
        data["bin"] = result
    else:
        data.pop("bin", None)


_SCRIPT_BIN_PREFIX: Final = re.compile(r"^(\.[/\\])?node_modules[/\\].bin[\\/]")  # npm's


def _normalize_scripts(data: dict[str, Any]) -> None:
    """npm's ``scriptpath`` step (non-string scripts dropped, a leading
    ``node_modules/.bin/`` removed), and a missing/invalid ``scripts`` becomes ``{}``."""
    scripts = data.get("scripts")
    if isinstance(scripts, dict):
        data["scripts"] = {k: _SCRIPT_BIN_PREFIX.sub("", v, count=1)
                           for k, v in scripts.items() if isinstance(v, str)}
    elif not isinstance(scripts, list):
        data["scripts"] = {}


def _js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value (objects and arrays are truthy even empty)."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    return True


def _js_keys(value: Any) -> list[str]:
    """``Object.keys(value || {})`` for a JSON value."""
    if isinstance(value, dict):
        return list(value)
    if isinstance(value, (list, str)):
        return [str(i) for i in range(len(value))]
    return []


def _normalize_bundle(data: dict[str, Any]) -> None:
    """npm's bundledDependencies/bundleDependencies steps: the misspelling is unified,
    ``true`` becomes the dependency names, ``false`` ``[]``, an object its keys, anything
    else is dropped. (The names are added to dependencies later, in _fix_bundle_deps.)"""
    if "bundleDependencies" not in data and "bundledDependencies" in data:
        data["bundleDependencies"] = data["bundledDependencies"]
    data.pop("bundledDependencies", None)
    if "bundleDependencies" not in data:
        return
    bd = data["bundleDependencies"]
    if bd is False:
        data["bundleDependencies"] = []  # npm 11.19 sends [] (seen in the captured bodies)
    elif bd is True:
        data["bundleDependencies"] = _js_keys(data.get("dependencies"))
    elif isinstance(bd, dict):
        data["bundleDependencies"] = list(bd)
    elif not isinstance(bd, list):
        del data["bundleDependencies"]


def _fix_dependencies(data: dict[str, Any]) -> None:
    """npm's fixDependencies: string and array forms become objects; for dependencies and
    devDependencies, invalid values are dropped and hosted-git shortcuts/URLs are rewritten
    to hosted-git-info's canonical form. (npm no longer copies optionalDependencies into
    dependencies here, and neither do we.)"""
    for field in ("dependencies", "devDependencies", "optionalDependencies"):
        value = data.get(field)
        if not _js_truthy(value):
            continue
        if isinstance(value, str):
            value = re.split(r"[\n\r\s\t ,]+", value.strip())
        if isinstance(value, list):
            converted: dict[str, Any] = {}
            for item in value:
                if isinstance(item, str):
                    pieces = re.split(r"(:?[@\s><=])", item.strip())
                    dep_name = pieces[0]
                    converted[dep_name] = re.sub(r"^@", "", "".join(pieces[1:])).strip()
            value = converted
        data[field] = value
    for field in ("dependencies", "devDependencies"):
        if field not in data:
            continue
        deps = data[field]
        if not _js_truthy(deps) or not isinstance(deps, dict):
            del data[field]
            continue
        fixed: dict[str, Any] = {}
        for dep, spec in deps.items():
            if not isinstance(spec, str):
                continue
            fixed[dep] = _canonical_git_spec(spec) or spec
        data[field] = fixed


def _fix_bundle_deps(data: dict[str, Any]) -> None:
    """normalize-data's fixBundleDependenciesField: bundled names missing from
    dependencies are added there with the range ``*`` (seen in real npm bodies)."""
    bd = data.get("bundleDependencies")
    if _js_truthy(bd) and not isinstance(bd, list):
        del data["bundleDependencies"]
        return
    if not bd:
        return
    kept = []
    for dep in bd:
        if not dep or not isinstance(dep, str):
            continue
        kept.append(dep)
        deps = data.get("dependencies")
        if not _js_truthy(deps):
            deps = data["dependencies"] = {}
        if isinstance(deps, dict) and dep not in deps:
            deps[dep] = "*"
    data["bundleDependencies"] = kept


# -- hosted git specs (a subset of hosted-git-info: GitHub, GitLab, Bitbucket) -------------

_HOSTS: Final = {
    "github": ("github.com", ("git:", "http:", "git+ssh:", "git+https:", "ssh:", "https:")),
    "gitlab": ("gitlab.com", ("git+ssh:", "git+https:", "ssh:", "https:")),
    "bitbucket": ("bitbucket.org", ("git+ssh:", "git+https:", "ssh:", "https:")),
}
_HOST_BY_DOMAIN: Final = {domain: host for host, (domain, _) in _HOSTS.items()}
_GIT_PROTOCOLS: Final = ("git+ssh:", "ssh:", "git+https:", "git:", "http:", "https:",
                         "git+http:")
_AUTH_PROTOCOLS: Final = ("git+https:", "git:", "http:", "https:", "git+http:")


@dataclass(frozen=True)
class _Hosted:
    host: str
    user: str
    project: str
    committish: str
    auth: str
    representation: str  # shortcut, sshurl, https, git


def _is_github_shorthand(arg: str) -> bool:
    """hosted-git-info's test for ``user/repo[#ref]``."""
    hash_ = arg.find("#")
    slash = arg.find("/")
    second_slash = arg.find("/", slash + 1)
    colon = arg.find(":")
    space = re.search(r"\s", arg)
    at = arg.find("@")
    space_ok = space is None or (hash_ > -1 and space.start() > hash_)
    at_ok = at == -1 or (hash_ > -1 and at > hash_)
    colon_ok = colon == -1 or (hash_ > -1 and colon > hash_)
    second_ok = second_slash == -1 or (hash_ > -1 and second_slash > hash_)
    no_trailing = arg[hash_ - 1] != "/" if hash_ > -1 else not arg.endswith("/")
    return (space_ok and slash > 0 and no_trailing and not arg.startswith(".")
            and at_ok and colon_ok and second_ok)


def _try_url(text: str) -> SplitResult | None:
    """``text`` as a ``scheme://host/...`` URL, or None where WHATWG's URL parser would
    throw (no scheme, no host, a non-numeric port)."""
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        return None
    try:
        parsed = urlsplit(text)
        _ = parsed.port  # raises ValueError for "host:user" (scp style)
    except ValueError:
        return None
    return parsed if parsed.hostname else None


def _parse_hosted(spec: str) -> _Hosted | None:
    """Recognise a dependency spec naming a GitHub/GitLab/Bitbucket repository (shortcut,
    ``user/repo`` shorthand, https/ssh/git URL or scp-style), as hosted-git-info's
    ``fromUrl`` does, or None. Never raises."""
    if not spec:
        return None
    text = f"github:{spec}" if _is_github_shorthand(spec) else spec
    m = re.fullmatch(r"(github|gitlab|bitbucket):(?!//)([^#]*)(?:#(.*))?", text, re.DOTALL)
    if m:
        path = m.group(2).lstrip("/")
        path = path[path.find("@") + 1:]  # auth is ignored for shortcuts
        user, slash, project = path.rpartition("/")
        if not slash or not user or not project:
            return None
        project = project[:-4] if project.endswith(".git") else project
        return _Hosted(m.group(1), unquote(user), unquote(project),
                       unquote(m.group(3) or ""), "", "shortcut")
    # hosted-git-info's correctProtocol: "<host>:<path>@..." is taken as git+ssh
    colon = text.find(":")
    proto = text[: colon + 1] if colon > -1 else ""
    if proto not in _GIT_PROTOCOLS and text[colon:colon + 3] != "://":
        at = text.find("@")
        if at > colon > -1:
            text = f"git+ssh://{text}"
    parsed = _try_url(text)
    if parsed is None:
        # correctUrl: scp style "user@host:path" -> "git+ssh://user@host/path"
        before_hash = text.split("#", 1)[0]
        at, last_colon = before_hash.rfind("@"), before_hash.rfind(":")
        if last_colon > at:
            text = text[:last_colon] + "/" + text[last_colon + 1:]
        if ":" not in text.split("#", 1)[0] and "//" not in text:
            text = f"git+ssh://{text}"
        parsed = _try_url(text)
    if parsed is None:
        return None
    hostname = parsed.hostname or ""
    hostname = hostname[4:] if hostname.startswith("www.") else hostname
    host = _HOST_BY_DOMAIN.get(hostname)
    scheme = f"{parsed.scheme.lower()}:"
    if host is None or scheme not in _HOSTS[host][1]:
        return None
    segments = parsed.path.split("/")
    committish = parsed.fragment
    if host == "github":
        user, project = (segments + ["", ""])[1:3]
        kind = segments[3] if len(segments) > 3 else ""
        if kind and kind != "tree":
            return None
        if kind:
            committish = segments[4] if len(segments) > 4 else ""
    elif host == "gitlab":
        path = parsed.path[1:]
        if "/-/" in path or "/archive.tar.gz" in path:
            return None
        user, _, project = path.rpartition("/")
    else:
        user, project = (segments + ["", ""])[1:3]
        if len(segments) > 3 and segments[3] == "get":
            return None
    project = project[:-4] if project.endswith(".git") else project
    if not user or not project:
        return None
    auth = ""
    username, password = parsed.username, parsed.password
    if scheme in _AUTH_PROTOCOLS and (username or password):
        auth = (username or "") + (f":{password}" if password else "")
    # hosted-git-info's default representation; "http:"/"git+http:" have no template of
    # their own and fall back to sshurl
    representation = {"git+ssh:": "sshurl", "ssh:": "sshurl", "git+https:": "https",
                      "https:": "https", "git:": "git"}.get(scheme, "sshurl")
    return _Hosted(host, unquote(user), unquote(project), unquote(committish), auth,
                   representation)


def _canonical_git_spec(spec: str) -> str | None:
    """The spec as hosted-git-info's ``fromUrl(spec).toString()`` writes it (what npm puts
    in the published dependencies), or None when ``spec`` is not a known hosted repo."""
    h = _parse_hosted(spec)
    if h is None:
        return None
    ref = f"#{h.committish}" if h.committish else ""
    domain = _HOSTS[h.host][0]
    auth = f"{h.auth}@" if h.auth else ""
    if h.representation == "shortcut":
        return f"{h.host}:{h.user}/{h.project}{ref}"
    if h.representation == "https":
        return f"git+https://{auth}{domain}/{h.user}/{h.project}.git{ref}"
    if h.representation == "git" and h.host == "github":
        return f"git://{auth}{domain}/{h.user}/{h.project}.git{ref}"
    return f"git+ssh://git@{domain}/{h.user}/{h.project}.git{ref}"


def normalize_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``manifest`` normalised the way ``npm publish`` (npm 11,
    @npmcli/package-json's ``prepare`` steps) normalises package.json before sending it,
    for the fields that matter when comparing a publish body with the tarball:

    * ``name`` trimmed; ``version`` cleaned (``v1.2.3`` -> ``1.2.3``, build metadata
      dropped) when it parses loosely, else left as is;
    * ``bin``: a string becomes ``{<name without scope>: path}``, an array
      ``{basename: path}``; keys reduced to basenames; paths secured (``./x`` -> ``x``,
      ``a//b`` -> ``a/b``, ``..`` cannot climb, ``\\`` -> ``/``); invalid entries dropped;
    * ``scripts``: missing becomes ``{}``; non-string entries dropped; a leading
      ``node_modules/.bin/`` removed (npm's ``scriptpath`` step);
    * ``dependencies``/``devDependencies``/``optionalDependencies`` in string or array form
      become objects; ``dependencies``/``devDependencies`` lose non-string values and have
      GitHub/GitLab/Bitbucket specs rewritten as hosted-git-info does
      (``user/repo`` -> ``github:user/repo``, ``https://github.com/u/r`` ->
      ``git+https://github.com/u/r.git``);
    * ``bundledDependencies`` unified into ``bundleDependencies``; ``true`` expanded to the
      dependency names; bundled names missing from dependencies added there as ``*``.

    Not done, because npm needs the package's files for them: ``directories.bin`` is not
    expanded into ``bin``, and neither ``scripts.install = "node-gyp rebuild"`` (when a
    ``*.gyp`` file exists) nor ``scripts.start = "node server.js"`` (when server.js exists)
    is added; :func:`check_manifest_agreement` tolerates exactly those differences.
    Also not done: optionalDependencies are *not* merged into dependencies. npm 11 sends
    them separately (npm <= 6 used to copy them over); the comparison tolerates both.

    Returns the new dict; the argument is not modified. Never raises.
    """
    data = copy.deepcopy(manifest)
    name = data.get("name")
    if isinstance(name, str):
        data["name"] = name.strip()
    version = data.get("version")
    if isinstance(version, str) and version:
        cleaned = _clean_loose(version)
        if cleaned is not None:
            data["version"] = cleaned
    # npm's order: bin (async step) first, then bundle, scripts, dependencies, normalizeData
    _normalize_bin(data)
    _normalize_bundle(data)
    _normalize_scripts(data)
    _fix_dependencies(data)
    _fix_bundle_deps(data)
    return data


# -- agreement ---------------------------------------------------------------------------

_GYP_INSTALL: Final = "node-gyp rebuild"
_SERVER_START: Final = "node server.js"
_MAX_LISTED: Final = 10


def _as_dict(value: Any) -> dict[str, Any] | None:
    """A dependency-like field as a dict: missing/null is ``{}``, a non-object None."""
    if value is None:
        return {}
    return value if isinstance(value, dict) else None


def _same_spec(a: Any, b: Any) -> bool:
    """Two dependency specs are the same: equal, or naming the same hosted repository and
    ref in different notations (``github:u/r`` vs ``git+ssh://git@github.com/u/r.git``)."""
    if a == b:
        return True
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    ha, hb = _parse_hosted(a), _parse_hosted(b)
    return ha is not None and hb is not None and \
        (ha.host, ha.user, ha.project, ha.committish) == (hb.host, hb.user, hb.project,
                                                          hb.committish)


def _describe(field: str, sent: dict[str, Any], packed: dict[str, Any], sep: str) -> str:
    """'<field> differ from the tarball's package.json: sent a@1, tarball a@2; ...'."""
    def show(key: str, value: Any) -> str:
        return f"{key}{sep}{value}" if sep == "@" else f"{key}{sep}{json.dumps(value)}"

    changed = [f"sent {show(k, sent[k])}, tarball {show(k, packed[k])}"
               for k in sent if k in packed and not _same_spec(sent[k], packed[k])]
    only_sent = [f"only sent {show(k, sent[k])}" for k in sent if k not in packed]
    only_packed = [f"only in the tarball {show(k, packed[k])}" for k in packed if k not in sent]
    parts = changed + only_sent + only_packed
    more = f"; and {len(parts) - _MAX_LISTED} more" if len(parts) > _MAX_LISTED else ""
    return (f"{field} differ from the tarball's package.json: "
            + "; ".join(parts[:_MAX_LISTED]) + more)


def _compare_mapping(field: str, sent: Any, packed: Any, sep: str,
                     allowed: Mapping[str, tuple[Any, ...]] | None = None
                     ) -> FieldError | None:
    """Compare one object-valued field; ``allowed[name]`` lists extra values (None meaning
    "absent") the sent side may have for that name."""
    s, p = _as_dict(sent), _as_dict(packed)
    if s is None or p is None:
        if sent == packed:
            return None
        return FieldError(field, f"{field} differ from the tarball's package.json: sent "
                                 f"{json.dumps(sent)}, tarball {json.dumps(packed)}")
    s = dict(s)
    for key, values in (allowed or {}).items():
        if key in s and any(v is not None and _same_spec(s[key], v) for v in values):
            if key in p:
                s[key] = p[key]
            else:
                del s[key]
        elif key not in s and None in values and key in p:
            s[key] = p[key]
    if s.keys() == p.keys() and all(_same_spec(s[k], p[k]) for k in s):
        return None
    return FieldError(field, _describe(field, s, p, sep))


def check_manifest_agreement(sent: dict[str, Any], packed: dict[str, Any]) -> list[FieldError]:
    """Compare the version manifest of a publish body (``sent``) with the tarball's
    package.json (``packed``), both through :func:`normalize_manifest`, for ``name``,
    ``version``, ``dependencies``, ``optionalDependencies``, ``peerDependencies``,
    ``scripts`` and ``bin``. A mismatch is "manifest confusion": installers trust the
    registry's copy while the tarball carries another.

    Tolerated, because real clients produce them from files we do not see here:
    ``scripts.install == "node-gyp rebuild"`` when package.json has neither install nor
    preinstall and ``gypfile`` is not false; ``scripts.start == "node server.js"`` when it
    has no start; a ``bin`` expanded from ``directories.bin`` (every entry inside that
    folder, named after its file); and, for a name that is also in the tarball's
    optionalDependencies, a ``dependencies`` entry that is absent, the tarball's, or the
    optional one (old npm copied optional dependencies into dependencies).

    Returns one ``FieldError(<field>, <what differs>)`` per disagreeing field; never raises.
    """
    s, p = normalize_manifest(sent), normalize_manifest(packed)
    errors: list[FieldError] = []
    for field in ("name", "version"):
        if s.get(field) != p.get(field):
            errors.append(FieldError(field, f"{field} differs from the tarball's package.json: "
                                            f"sent {s.get(field)!r}, tarball {p.get(field)!r}"))

    optional = p.get("optionalDependencies")
    allowed: dict[str, tuple[Any, ...]] = {}
    packed_deps = p.get("dependencies") if isinstance(p.get("dependencies"), dict) else {}
    if isinstance(optional, dict):
        for dep, spec in optional.items():
            allowed[dep] = (None, spec, (packed_deps or {}).get(dep))
    for field, sep, extra in (("dependencies", "@", allowed),
                              ("optionalDependencies", "@", None),
                              ("peerDependencies", "@", None)):
        err = _compare_mapping(field, s.get(field), p.get(field), sep, extra)
        if err:
            errors.append(err)

    sent_scripts, packed_scripts = s.get("scripts"), p.get("scripts")
    if isinstance(sent_scripts, dict) and isinstance(packed_scripts, dict):
        sent_scripts = dict(sent_scripts)
        if (sent_scripts.get("install") == _GYP_INSTALL and not packed_scripts.get("install")
                and not packed_scripts.get("preinstall") and p.get("gypfile") is not False):
            del sent_scripts["install"]
        if sent_scripts.get("start") == _SERVER_START and not packed_scripts.get("start"):
            del sent_scripts["start"]
    err = _compare_mapping("scripts", sent_scripts, packed_scripts, "=")
    if err:
        errors.append(err)

    sent_bin, packed_bin = s.get("bin"), p.get("bin")
    directories = p.get("directories")
    bin_dir = directories.get("bin") if isinstance(directories, dict) else None
    if packed_bin is None and isinstance(bin_dir, str) and bin_dir and isinstance(sent_bin, dict):
        prefix = _secure_path(bin_dir).rstrip("/")
        if all(isinstance(v, str) and (not prefix or v.startswith(prefix + "/"))
               and k == _basename(v) for k, v in sent_bin.items()):
            sent_bin = None  # npm expanded directories.bin from the files; fine
    err = _compare_mapping("bin", sent_bin, packed_bin, "=")
    if err:
        errors.append(err)
    return errors
