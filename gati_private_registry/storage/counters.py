"""Counters shared by every process on this machine: a small memory-mapped file of
64-bit slots in the data directory (like the generation counter), so ``/metrics`` and
the panel show one machine's totals whichever gunicorn worker answers."""
from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

_SLOT = struct.Struct("<q")


class Counters:
    """Named 64-bit counters and gauges. ``names`` fixes the layout: every process must
    build it with the same names in the same order (they come from the settings)."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self._index = {name: i for i, name in enumerate(names)}
        size = max(len(names), 1) * _SLOT.size
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._path = path

    def _update(self, name: str, delta: int | None, value: int | None) -> None:
        i = self._index.get(name)
        if i is None:
            return
        fd = os.open(self._path, os.O_RDWR)
        try:
            # a read-modify-write across processes: serialised by the file lock
            fcntl.flock(fd, fcntl.LOCK_EX)
            old = int(_SLOT.unpack_from(self._map, i * _SLOT.size)[0])
            _SLOT.pack_into(self._map, i * _SLOT.size, old + delta if delta is not None
                            else int(value or 0))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def add(self, name: str, delta: int = 1) -> None:
        """Add ``delta`` to ``name`` (unknown names are ignored)."""
        self._update(name, delta, None)

    def set(self, name: str, value: int) -> None:
        """Set the gauge ``name`` to ``value``."""
        self._update(name, None, value)

    def get(self, name: str) -> int:
        i = self._index.get(name)
        return 0 if i is None else int(_SLOT.unpack_from(self._map, i * _SLOT.size)[0])

    def snapshot(self) -> dict[str, int]:
        return {name: self.get(name) for name in self._index}
