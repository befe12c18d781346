"""The changes feed, and the generation counter that tells this machine's processes
that something changed."""
from __future__ import annotations

import fcntl
import mmap
import os
import struct
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from .models import Change


def append(session: Session, kind: str, *, package: str | None = None,
           version: str | None = None, **payload: Any) -> None:
    """Add a change row to the caller's transaction (never commits)."""
    session.connection().execute(_INSERT, {"kind": kind, "package": package, "version": version,
                                           "payload": payload, "at": datetime.now(timezone.utc)})


_INSERT = insert(Change)


class Generation:
    """A counter in a small shared-memory file in the data directory, bumped after
    every committed write. Readers compare it with what their caches saw: one memory
    read per request instead of a database round trip. Other machines (replicas on a
    shared PostgreSQL) are covered by the caches' short revalidation interval."""

    _FMT = "<Q"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)
        self._path = path

    def value(self) -> int:
        return int(struct.unpack_from(self._FMT, self._map, 0)[0])

    def bump(self) -> int:
        fd = os.open(self._path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            new = self.value() + 1
            struct.pack_into(self._FMT, self._map, 0, new)
            return new
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
