"""Content-addressed blob store: tarballs named by their sha512 digest."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator, Protocol

from ..errors import NotFound

if TYPE_CHECKING:
    from ..settings import BlobSettings


class BlobStore(Protocol):
    """Where tarball bytes live. Implementations must make ``put`` atomic: a reader
    never sees a partial blob under its final name."""

    def put(self, data: bytes) -> str:
        """Store ``data``; return its sha512 hex digest. Storing existing bytes is a no-op."""

    def open(self, digest: str) -> BinaryIO:
        """A binary file object; raises :class:`NotFound`."""

    def path(self, digest: str) -> Path | None:
        """A local path for zero-copy serving, or None when the store has none."""

    def exists(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int:
        """Raises :class:`NotFound`."""

    def delete(self, digest: str) -> None: ...

    def check(self) -> None:
        """Raise ``OSError`` when the store cannot be written."""

    def digests(self) -> Iterator[str]:
        """Every stored digest (for fsck and backup)."""

    def stray_temp_files(self) -> list[Path]:
        """Temporary files a crash left behind (never blobs under a real name)."""

    def writer(self) -> "BlobWriter":
        """A blob written piece by piece (a tarball streamed from an upstream)."""


class BlobWriter(Protocol):
    """Bytes on their way into the store: nothing is visible under a digest until
    :meth:`commit`; :meth:`abort` (or a failed commit) leaves nothing behind."""

    size: int

    def write(self, data: bytes) -> None: ...

    def data(self) -> bytes:
        """Everything written so far (for checks that need the whole file)."""

    def commit(self) -> str:
        """Move the bytes into place under their sha512 digest; returns it."""

    def abort(self) -> None: ...


_DIGEST = re.compile(r"[0-9a-f]{128}")


def _valid_digest(digest: str) -> bool:
    """A sha512 in lowercase hex (and so a safe file name)."""
    # one regex call, not a generator over 128 characters: this is on every tarball read
    return _DIGEST.fullmatch(digest) is not None


class FileBlobStore:
    """Blobs under ``root/ab/cd/<digest>``; written to a temp file in the same
    directory, fsynced, then renamed into place, so a crash leaves at most a temp file
    (named ``.tmp-*``), never a half blob under a real name."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._root = str(self.root)

    def _file(self, digest: str) -> str:
        """The blob's path as a string (a tarball read opens it without making Path
        objects). Raises :class:`NotFound` for anything but a digest."""
        if not _valid_digest(digest):
            raise NotFound(f"no blob {digest[:16]}")
        return os.path.join(self._root, digest[:2], digest[2:4], digest)

    def _path(self, digest: str) -> Path:
        return Path(self._file(digest))

    def put(self, data: bytes) -> str:
        digest = hashlib.sha512(data).hexdigest()
        final = self._path(digest)
        if final.exists():
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        # the rename itself must survive a crash too
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return digest

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self._file(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"no blob {digest[:16]}") from None

    def path(self, digest: str) -> Path | None:
        return self._path(digest)

    def exists(self, digest: str) -> bool:
        try:
            return self._path(digest).exists()
        except NotFound:
            return False

    def size(self, digest: str) -> int:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no blob {digest[:16]}") from None

    def delete(self, digest: str) -> None:
        try:
            self._path(digest).unlink()
        except FileNotFoundError:
            pass

    def writer(self) -> "_FileBlobWriter":
        self.root.mkdir(parents=True, exist_ok=True)
        return _FileBlobWriter(self)

    def _install(self, tmp: str, digest: str) -> None:
        final = self._path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            os.unlink(tmp)
            return
        os.replace(tmp, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-ready-", dir=self.root)
        os.close(fd)
        os.unlink(tmp)

    def digests(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for first in sorted(self.root.iterdir()):
            if not first.is_dir() or len(first.name) != 2:
                continue
            for second in sorted(first.iterdir()):
                if not second.is_dir():
                    continue
                for entry in sorted(second.iterdir()):
                    if _valid_digest(entry.name) and entry.name.startswith(first.name + second.name):
                        yield entry.name

    def stray_temp_files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.rglob(".tmp-*") if p.is_file())


def open_blob_store(settings: "BlobSettings", default_dir: Path) -> BlobStore:
    """The configured store: a directory (``default_dir`` unless ``path`` is set) or an
    S3-compatible bucket."""
    if settings.backend == "s3":
        from .s3blobs import S3BlobStore

        return S3BlobStore(settings.bucket, prefix=settings.prefix,
                           endpoint_url=settings.endpoint_url, region=settings.region,
                           access_key=settings.access_key, secret_key=settings.secret_key)
    return FileBlobStore(Path(settings.path) if settings.path else default_dir)


class _FileBlobWriter:
    """A temp file (``.tmp-*`` in the store's root, so the rename stays on one file
    system) and a running sha512."""

    def __init__(self, store: FileBlobStore) -> None:
        self._store = store
        fd, self._tmp = tempfile.mkstemp(prefix=".tmp-", dir=store.root)
        self._fh = os.fdopen(fd, "w+b")
        self._hash = hashlib.sha512()
        self.size = 0
        self._done = False

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self.size += len(data)

    def data(self) -> bytes:
        self._fh.flush()
        self._fh.seek(0)
        out = self._fh.read()
        self._fh.seek(0, os.SEEK_END)
        return out

    def commit(self) -> str:
        digest = self._hash.hexdigest()
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._store._install(self._tmp, digest)
            self._done = True
        finally:
            if not self._done:
                self.abort()
        return digest

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass
        self._done = True
