"""This replica's full-text index of packages (Whoosh), rebuildable from the database.

Layout of the index directory::

    CURRENT          the name of the live generation ("g3")
    g3/              a Whoosh index, plus ``cursor``: the last changes-feed seq it holds
    generation       a shared-memory counter bumped after every commit, so that every
                     process on the machine reopens its searchers
    follower.lock    flock held by the one process that writes (see services.indexer)

A rebuild (``gati-registry reindex``) writes a new generation beside the live one and
switches ``CURRENT`` with a rename: searches never see a half-built index.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from whoosh import index as whoosh_index
from whoosh.analysis import LowercaseFilter, RegexTokenizer, StemmingAnalyzer
from whoosh.fields import ID, KEYWORD, NUMERIC, STORED, TEXT, Schema
from whoosh.searching import Searcher

from .changes import Generation

#: names split into their alphanumeric parts: ``@gati-modules/postgres-driver`` is found
#: by "gati", "modules", "postgres" and "driver"
NAME_ANALYZER = RegexTokenizer(r"[a-z0-9]+") | LowercaseFilter()


def schema() -> Schema:
    """The fields of a package document. Boosts make a name match outrank a keyword
    match, which outranks the description, which outranks the README."""
    return Schema(
        name=ID(stored=True, unique=True, sortable=True),
        bare=ID(field_boost=6.0),
        name_parts=TEXT(analyzer=NAME_ANALYZER, field_boost=5.0, phrase=False),
        description=TEXT(analyzer=StemmingAnalyzer(), field_boost=2.0, phrase=False),
        keywords=KEYWORD(lowercase=True, commas=True, scorable=True, field_boost=3.0),
        readme=TEXT(analyzer=StemmingAnalyzer(), phrase=False),
        category=ID(sortable=True),
        contracts=KEYWORD(lowercase=True, commas=True, scorable=True, field_boost=2.0),
        author=TEXT(analyzer=NAME_ANALYZER, phrase=False),
        maintainers=KEYWORD(lowercase=True, commas=True, scorable=True),
        deps=KEYWORD(commas=True, scorable=True),
        trust=ID(sortable=True),
        #: "1" when an approved version can be installed
        visible=ID(),
        #: "1" when a version waits for a decision
        pending=ID(),
        #: user ids of the publishers of pending versions
        pending_for=KEYWORD(commas=True),
        #: milliseconds since the epoch of the last change
        modified=NUMERIC(numtype=int, bits=64, sortable=True),
        #: what a search result shows, so answering needs no database
        summary=STORED(),
    )


class SearchIndex:
    """The index directory; safe to share between threads and processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.generation = Generation(root / "generation")
        self._local = threading.local()
        self._open_lock = threading.Lock()

    # -- generations ----------------------------------------------------------------------

    def _current_name(self) -> str | None:
        try:
            return (self.root / "CURRENT").read_text().strip() or None
        except FileNotFoundError:
            return None

    def _switch(self, name: str) -> None:
        tmp = self.root / f"CURRENT.{os.getpid()}.tmp"
        tmp.write_text(name)
        os.replace(tmp, self.root / "CURRENT")

    def _new_generation(self) -> tuple[str, Path]:
        numbers = [int(p.name[1:]) for p in self.root.glob("g*") if p.name[1:].isdigit()]
        number = max(numbers, default=0) + 1
        while True:
            path = self.root / f"g{number}"
            try:
                path.mkdir()
                break
            except FileExistsError:  # another process took this number
                number += 1
        whoosh_index.create_in(str(path), schema())
        return path.name, path

    def _ensure(self) -> Path:
        """The live generation's directory, made (empty) on first use. Never takes the
        writer lock (callers may hold it: a second flock from this process would wait
        for itself); two processes making the first generation at once each make one,
        and the last switch wins, both empty."""
        name = self._current_name()
        if name is not None and (self.root / name).is_dir():
            return self.root / name
        name, _ = self._new_generation()
        self._switch(name)
        return self.root / name

    # -- reading --------------------------------------------------------------------------

    @contextmanager
    def searcher(self) -> Iterator[Searcher]:
        """This thread's searcher on the live index, reopened when a commit or a rebuild
        happened since it was opened (one shared-memory read when nothing did)."""
        gen = self.generation.value()
        local = self._local
        cached = getattr(local, "entry", None)
        if cached is None or cached[0] != gen:
            # not Searcher.refresh(): it reuses segment readers by segment id and so
            # keeps serving documents deleted (replaced) in a reused segment
            path, searcher = self._open()
            if cached is not None:
                cached[2].close()
            local.entry = cached = (gen, path, searcher)
        yield cached[2]

    def _open(self) -> tuple[Path, Searcher]:
        """The live generation and a searcher on its newest commit. Whoosh lists the
        directory for the newest table of contents, then opens it and its segments; the
        follower's next commit (in another process) may delete those files in between,
        and a rebuild may retire the generation. A file that vanished means something
        newer exists: look again. Raises FileNotFoundError if it keeps vanishing."""
        attempts = 20
        for attempt in range(attempts):
            path = self._ensure()
            try:
                return path, whoosh_index.open_dir(str(path)).searcher()
            except FileNotFoundError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    def cursor(self) -> int:
        """The last changes-feed seq the live index holds (0 when new)."""
        path = self._ensure() / "cursor"
        try:
            return int(path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def doc_count(self) -> int:
        with self.searcher() as s:
            return int(s.doc_count())

    # -- writing (only under writer_lock) -----------------------------------------------

    @contextmanager
    def writer_lock(self, blocking: bool = True) -> Iterator[bool]:
        """Hold the follower lock of this index directory; yields whether it is held
        (always True when ``blocking``)."""
        fd = os.open(self.root / "follower.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    @staticmethod
    def _write_cursor(path: Path, cursor: int) -> None:
        tmp = path / "cursor.tmp"
        tmp.write_text(str(cursor))
        os.replace(tmp, path / "cursor")

    def apply(self, documents: Iterable[dict[str, Any]], deleted: Iterable[str],
              cursor: int) -> None:
        """Replace the documents of the named packages, drop ``deleted`` ones, and
        remember ``cursor``, in one commit. The caller holds :meth:`writer_lock`."""
        path = self._ensure()
        ix = whoosh_index.open_dir(str(path))
        writer = ix.writer()
        try:
            for name in deleted:
                writer.delete_by_term("name", name)
            for doc in documents:
                writer.update_document(**doc)
        except BaseException:
            writer.cancel()
            raise
        writer.commit()
        self._write_cursor(path, cursor)
        self.generation.bump()

    def segments(self) -> int:
        """How many segments the live index has (each one costs every query a little)."""
        ix = whoosh_index.open_dir(str(self._ensure()))
        with ix.reader() as reader:
            return 1 if reader.is_atomic() else len(list(reader.leaf_readers()))

    def optimize(self) -> None:
        """Merge the live index into one segment. The caller holds :meth:`writer_lock`."""
        whoosh_index.open_dir(str(self._ensure())).optimize()
        self.generation.bump()

    def rebuild(self, documents: Iterable[dict[str, Any]], cursor: int) -> int:
        """Build a new generation from ``documents`` and make it live; returns how many
        documents it holds. The caller holds :meth:`writer_lock`. The generation before
        the previous one is deleted (a searcher may still be reading the previous one)."""
        previous = self._current_name()
        name, path = self._new_generation()
        ix = whoosh_index.open_dir(str(path))
        writer = ix.writer(limitmb=128)
        count = 0
        try:
            for doc in documents:
                writer.add_document(**doc)
                count += 1
        except BaseException:
            writer.cancel()
            shutil.rmtree(path, ignore_errors=True)
            raise
        writer.commit(optimize=True)
        self._write_cursor(path, cursor)
        self._switch(name)
        self.generation.bump()
        keep = {name, previous}
        for old in self.root.glob("g*"):
            if old.is_dir() and old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        return count


def summary_json(summary: dict[str, Any]) -> str:
    """Stored summaries as compact JSON text (whoosh pickles what it stores; text keeps
    the index readable by any version)."""
    return json.dumps(summary, separators=(",", ":"), ensure_ascii=False)
