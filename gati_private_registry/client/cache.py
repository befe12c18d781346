"""The content-addressed cache (``~/.cache/gati``): tarballs named by their sha512, so a
second install needs no network, and packuments with their ETag, revalidated with
``If-None-Match``.

A tarball is hashed on the way in and again on the way out: a cache file that was
changed on disk is dropped and fetched again, never installed.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import VerificationFailed


def sha512_of(integrity: str) -> bytes:
    """The sha512 digest an SRI string names. Raises :class:`VerificationFailed` when it
    names none (a registry that gives only sha1 is not trusted)."""
    for part in integrity.split():
        algo, _, b64 = part.partition("-")
        if algo == "sha512":
            try:
                digest = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                break
            if len(digest) == 64:
                return digest
    raise VerificationFailed(f"unusable integrity {integrity[:40]!r}: gati needs sha512")


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def tarball_path(self, integrity: str) -> Path:
        hexd = sha512_of(integrity).hex()
        return self.root / "content" / "sha512" / hexd[:2] / hexd[2:]

    def get_tarball(self, integrity: str) -> bytes | None:
        """The cached tarball, checked against ``integrity``; None when absent or bad."""
        path = self.tarball_path(integrity)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha512(data).digest() != sha512_of(integrity):
            with contextlib.suppress(OSError):
                path.unlink()  # damaged on disk: fetch it again
            return None
        return data

    def put_tarball(self, spec: str, integrity: str, data: bytes) -> None:
        """Store ``data`` after checking it. Raises :class:`VerificationFailed` when it
        does not match ``integrity``."""
        if hashlib.sha512(data).digest() != sha512_of(integrity):
            raise VerificationFailed(
                f"{spec}: the downloaded tarball does not match its integrity "
                f"({integrity_of(data)[:27]}… instead of {integrity[:27]}…)",
                hint="nothing was installed; try again, and tell your registry "
                     "administrators if it persists")
        _atomic_write(self.tarball_path(integrity), data)

    # ---- packuments

    def _packument_path(self, root: str, name: str) -> Path:
        site = hashlib.sha256(root.encode()).hexdigest()[:16]
        return self.root / "packuments" / site / (quote(name, safe="") + ".json")

    def packument(self, root: str, name: str) -> tuple[str, dict[str, Any]] | None:
        try:
            doc = json.loads(self._packument_path(root, name).read_text(encoding="utf-8"))
            return str(doc["etag"]), doc["packument"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put_packument(self, root: str, name: str, etag: str, packument: dict[str, Any]) -> None:
        _atomic_write(self._packument_path(root, name),
                      json.dumps({"etag": etag, "packument": packument}).encode())
