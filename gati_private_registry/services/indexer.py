"""Keeps this replica's search index current: a follower of the changes feed.

Why not the ``worker_leases`` table the webhook worker uses: a lease elects one process
in the whole cluster, but every replica keeps its own index (DESIGN.md), so what must be
elected is one writer per *index directory*. That is an ``flock`` on a file in it: on one
machine the gunicorn workers race for it, the winner follows the feed and the others
only read; on N machines each has its own winner. The cursor lives in the index
directory too, next to the data it describes, so a replica restored from another's disk
or rebuilt by ``gati-registry reindex`` is consistent by construction.

Every step is idempotent (a package's document is rebuilt from the database as it is
now), so a crash between the index commit and the cursor write only repeats work.
"""
from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

from sqlalchemy import func, select

from ..settings import Settings
from ..storage.changes import Generation
from ..storage.db import Database
from ..storage.models import Change
from ..storage.search_index import SearchIndex
from ..storage.db import aware
from .background import Runner
from .search_docs import TrustRules, build_documents

log = logging.getLogger(__name__)

#: changes read per transaction
BATCH = 1000
#: segments tolerated before an idle follower merges them
MAX_SEGMENTS = 4
#: a gap in the feed older than this is taken to be a rolled-back transaction
GAP_GRACE = timedelta(seconds=30)
#: change kinds that never alter a package's document
_IGNORED = frozenset({"package.star", "package.unstar", "package.rate", "review.create",
                      "review.edit", "review.delete", "review.hide", "review.unhide",
                      "keys.change", "plugin.config"})


@dataclass(frozen=True)
class FollowResult:
    """What one :meth:`IndexFollower.run_once` did."""

    held: bool
    cursor: int
    indexed: int = 0
    deleted: int = 0


def ready_prefix(cursor: int, seqs: Sequence[tuple[int, datetime]], now: datetime) -> int:
    """How far the cursor may move over ``seqs`` (ascending ``(seq, at)``): to the end of
    the run without gaps. On PostgreSQL a seq is taken at insert and seen at commit, so a
    missing number may be a transaction still open; it is waited for until it is older
    than GAP_GRACE (then it was rolled back; SQLite never has gaps)."""
    expected = cursor + 1
    for seq, at in seqs:
        if seq != expected and now - aware(at) < GAP_GRACE:
            return expected - 1
        expected = seq + 1
    return expected - 1


class IndexFollower:
    """Applies new changes to the index (:meth:`run_once`) and rebuilds it from scratch
    (:meth:`rebuild`). Any number of processes may call these; one writes at a time."""

    def __init__(self, settings: Settings, db: Database, index: SearchIndex) -> None:
        self.db = db
        self.index = index
        self.rules = TrustRules(settings.marketplace.official_teams,
                                settings.marketplace.trusted_approvers)
        self._merge_when_idle = True

    def run_once(self, *, blocking: bool = False, now: datetime | None = None) -> FollowResult:
        """Index the packages named by changes after the cursor. Returns at once with
        ``held=False`` when another process is the writer (unless ``blocking``)."""
        with self.index.writer_lock(blocking=blocking) as held:
            if not held:
                return FollowResult(held=False, cursor=self.index.cursor())
            cursor = self.index.cursor()
            indexed = deleted = 0
            while True:
                with self.db.read() as s:
                    rows = s.execute(select(Change.seq, Change.at, Change.kind, Change.package)
                                     .where(Change.seq > cursor).order_by(Change.seq)
                                     .limit(BATCH)).all()
                    if not rows:
                        break
                    names = {r.package for r in rows if r.package and r.kind not in _IGNORED}
                    # changes beyond a gap are indexed now too (fresh results), but the
                    # cursor stays before the gap, so they are seen again once it closes
                    new_cursor = ready_prefix(cursor, [(r.seq, r.at) for r in rows],
                                              now or datetime.now(timezone.utc))
                    docs, gone = build_documents(s, names, self.rules) if names else ([], [])
                if not docs and not gone and new_cursor == cursor:
                    break
                self.index.apply(docs, gone, new_cursor)
                indexed, deleted = indexed + len(docs), deleted + len(gone)
                if new_cursor == cursor or len(rows) < BATCH:
                    cursor = new_cursor
                    break
                cursor = new_cursor
            if indexed or deleted:
                self._merge_when_idle = True
            elif self._merge_when_idle:
                # idle after a burst of writes, which leaves many small segments: merge
                # them now rather than in a commit that a fresh publish waits for
                self._merge_when_idle = False
                if self.index.segments() > MAX_SEGMENTS:
                    self.index.optimize()
            return FollowResult(held=True, cursor=cursor, indexed=indexed, deleted=deleted)

    def rebuild(self) -> FollowResult:
        """Index every package again into a new generation and switch to it. Waits for
        the follower lock, so the server's follower pauses meanwhile."""
        with self.index.writer_lock(blocking=True):
            with self.db.read() as s:
                cursor = int(s.scalar(select(func.max(Change.seq))) or 0)
                docs, _ = build_documents(s, None, self.rules)
            count = self.index.rebuild(docs, cursor)
        log.info("search index rebuilt: %d packages, at change %d", count, cursor)
        return FollowResult(held=True, cursor=cursor, indexed=count)


#: seconds between two index passes at the least (the other followers: 0.2). Under a
#: burst of publishes the commits within this gap are indexed together, in one Whoosh
#: commit instead of one each (a commit writes and merges segments and makes every
#: searcher reopen)
MIN_GAP = 0.25


def start_in_process(settings: Settings, follower: IndexFollower,
                     generation: Generation) -> Runner | None:
    """Start the index follower thread in this server process (when ``search.follow``)
    and stop it when the process exits."""
    if not settings.search.follow:
        return None
    # no lease to give back: one writer per index directory is the follower's flock
    runner = Runner("gati-search-index", follower.run_once, lambda: None, generation,
                    settings.search.poll_interval, min_gap=MIN_GAP)
    runner.start()
    atexit.register(runner.stop)
    return runner
