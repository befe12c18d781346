"""Safe extraction of package tarballs.

Every member is checked before anything is written: no absolute paths, no ``..``, no
link that points outside the package, no device files, no writing through a link, and
limits on the number of files, one file's size and the total unpacked size (a gzip bomb
is stopped by the sizes in the tar headers before its data is read). Like npm, the first
path component (``package/``) is dropped and modes are normalised to 0644/0755.
"""
from __future__ import annotations

import io
import os
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import VerificationFailed


class UnsafeTarball(VerificationFailed):
    """The tarball tries something a package has no business doing."""


@dataclass(frozen=True)
class Limits:
    max_files: int = 50_000
    max_file_size: int = 256 * 1024 * 1024
    max_total_size: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class Member:
    path: str  # relative to the package root, '/'-separated
    kind: str  # "file", "dir" or "symlink"
    data: bytes = b""
    target: str = ""
    executable: bool = False


def _relative(name: str, spec: str) -> str | None:
    """The member's path inside the package (first component dropped); None for the
    top-level entry itself. Raises :class:`UnsafeTarball` for an escaping path."""
    if "\x00" in name:
        raise UnsafeTarball(f"{spec}: a tarball entry name contains a NUL byte")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafeTarball(f"{spec}: the tarball entry {name!r} has an absolute path")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeTarball(f"{spec}: the tarball entry {name!r} climbs out of the package")
    if len(parts) <= 1:
        return None
    return "/".join(parts[1:])


def read_members(data: bytes, spec: str, limits: Limits = Limits()) -> list[Member]:
    """All members of a package tarball, checked. Raises :class:`UnsafeTarball`."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        raise UnsafeTarball(f"{spec}: the tarball cannot be read ({exc})") from None
    members: list[Member] = []
    files: dict[str, bytes] = {}
    total = 0
    with tar:
        try:
            infos = tar.getmembers()
        except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
            raise UnsafeTarball(f"{spec}: the tarball is damaged ({exc})") from None
        if len(infos) > limits.max_files:
            raise UnsafeTarball(f"{spec}: {len(infos)} entries, more than the limit of "
                                f"{limits.max_files}")
        for info in infos:
            rel = _relative(info.name, spec)
            if rel is None:
                continue
            if info.isreg():
                if info.size > limits.max_file_size:
                    raise UnsafeTarball(f"{spec}: {rel} is {info.size} bytes, more than the "
                                        f"limit of {limits.max_file_size}")
                total += info.size
                if total > limits.max_total_size:
                    raise UnsafeTarball(f"{spec}: unpacks to more than "
                                        f"{limits.max_total_size} bytes")
                fh = tar.extractfile(info)
                content = fh.read() if fh is not None else b""
                files[rel] = content
                members.append(Member(rel, "file", content, executable=bool(info.mode & 0o111)))
            elif info.isdir():
                members.append(Member(rel, "dir"))
            elif info.issym() or info.islnk():
                target = info.linkname.replace("\\", "/")
                if info.islnk():
                    # a hard link names another entry of the archive: copy its content
                    src = _relative(target, spec)
                    if src is None or src not in files:
                        raise UnsafeTarball(f"{spec}: the hard link {rel} points at "
                                            f"{info.linkname!r}, outside the package")
                    members.append(Member(rel, "file", files[src]))
                    continue
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
                if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                    raise UnsafeTarball(f"{spec}: the link {rel} points at {info.linkname!r}, "
                                        f"outside the package")
                members.append(Member(rel, "symlink", target=target))
            else:
                raise UnsafeTarball(f"{spec}: {rel} is a device or special file")
    links = {m.path for m in members if m.kind == "symlink"}
    for m in members:
        parts = m.path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise UnsafeTarball(f"{spec}: {m.path} would be written through the link "
                                    f"{'/'.join(parts[:i])}")
    return members


def extract(data: bytes, dest: Path, spec: str, limits: Limits = Limits()) -> None:
    """Unpack into ``dest`` (created; it must not exist). Everything is checked first, so
    an unsafe tarball writes nothing. Raises :class:`UnsafeTarball`."""
    members = read_members(data, spec, limits)
    dest.mkdir(parents=True)
    made = {dest}
    for m in members:
        target = dest.joinpath(*m.path.split("/"))
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        if m.kind == "dir":
            target.mkdir(exist_ok=True)
            made.add(target)
        elif m.kind == "symlink":
            if target.is_symlink() or target.exists():
                target.unlink()
            os.symlink(m.target, target)
        else:
            if target.is_symlink():
                target.unlink()
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                         0o755 if m.executable else 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(m.data)


def expected_files(data: bytes, spec: str) -> dict[str, bytes | str]:
    """``{relative path: content}`` of what :func:`extract` writes (symlinks as their
    target string), for ``gati module verify``."""
    out: dict[str, bytes | str] = {}
    for m in read_members(data, spec):
        if m.kind == "file":
            out[m.path] = m.data
        elif m.kind == "symlink":
            out[m.path] = m.target
    return out
