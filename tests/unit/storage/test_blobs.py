from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from gati_private_registry.errors import NotFound
from gati_private_registry.storage.blobs import FileBlobStore
from gati_private_registry.storage.changes import Generation


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    digest = store.put(b"hello")
    assert digest == hashlib.sha512(b"hello").hexdigest()
    assert store.put(b"hello") == digest
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p.name for p in files] == [digest]
    with store.open(digest) as fh:
        assert fh.read() == b"hello"
    assert store.size(digest) == 5


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileBlobStore(tmp_path)

    def boom(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        store.put(b"data")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_unknown_and_malformed_digests(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(NotFound):
        store.open("0" * 128)
    with pytest.raises(NotFound):
        store.open("../../etc/passwd")
    assert not store.exists("../x")


def test_generation_is_shared_between_instances(tmp_path: Path) -> None:
    a, b = Generation(tmp_path / "gen"), Generation(tmp_path / "gen")
    start = a.value()
    assert b.bump() == start + 1
    assert a.value() == start + 1


def test_writer_streams_into_place_only_on_commit(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    w = store.writer()
    w.write(b"hel")
    w.write(b"lo")
    assert w.size == 5 and w.data() == b"hello"
    digest = hashlib.sha512(b"hello").hexdigest()
    assert not store.exists(digest)                  # nothing visible before commit
    assert w.commit() == digest
    with store.open(digest) as fh:
        assert fh.read() == b"hello"
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_aborted_writer_leaves_nothing(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    w = store.writer()
    w.write(b"truncated upstream tarb")
    w.abort()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
