"""Inspection of a package tarball without extracting it: structure, paths, links and
size limits (gzip bombs), and the files the registry needs from it."""
from __future__ import annotations

import codecs
import io
import json
import re
import tarfile
import unicodedata
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Final, Self, cast


from ...errors import FieldError, TooLarge, ValidationFailed


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
