"""Background followers of the changes feed, run as daemon threads in every server
process (a lease in the database lets one of them work at a time; see leases.py):
webhook delivery and re-signing after a key change."""
from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ..storage.changes import Generation

if TYPE_CHECKING:
    from . import Services

log = logging.getLogger(__name__)


#: seconds between two passes at the least: an idle follower runs as soon as a commit
#: lands, a busy one takes the commits of the last fraction of a second together (each
#: pass renews its lease, a write, and reads the feed: once per commit under a burst of
#: publishes, that cost as much as the publishes' own transactions)
MIN_GAP = 0.2


class Runner:
    """A daemon thread that calls ``run_once`` right after each commit on this machine
    (the generation counter moves) and at least every ``poll_interval`` seconds. It logs
    errors, backs off, and keeps going; :meth:`stop` releases the job's lease."""

    def __init__(self, name: str, run_once: Callable[[], Any], release: Callable[[], None],
                 generation: Generation, poll_interval: float,
                 min_gap: float = MIN_GAP) -> None:
        self.name = name
        self.min_gap = min_gap
        self.run_once = run_once
        self.release = release
        self.generation = generation
        self.poll_interval = max(poll_interval, 0.05)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, wait for the pass in progress (up to ``timeout``) and release
        the lease. Never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.release()
        except Exception:  # shutting down: nothing left to do about it
            log.exception("%s: could not release the lease", self.name)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            seen = self.generation.value()
            earliest = time.monotonic() + self.min_gap
            try:
                self.run_once()
                failures = 0
            except Exception:  # a database hiccup must not end the job for good
                failures += 1
                log.exception("%s: pass failed (%d in a row); trying again", self.name, failures)
            pause = self.poll_interval if not failures else min(2.0 ** failures, 30.0)
            deadline = time.monotonic() + pause
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self._stop.wait(min(0.05, pause)):
                    break
                if not failures and self.generation.value() != seen \
                        and time.monotonic() >= earliest:
                    break


def start_background(services: "Services") -> list[Runner]:
    """Start this process's background work and stop it when the process exits: the
    followers of the changes feed (webhooks when enabled, re-signing, the search index
    when ``search.follow``, mirror prefetch when packages come from an upstream) and
    the batched writer of download counts."""
    from .indexer import start_in_process as start_indexer
    from .popularity import DownloadFlusher
    from .resign_worker import ResignFollower
    from .upstream.prefetch_worker import PrefetchRunner, PrefetchWorker
    from .webhook_worker import start_in_process

    # the search index: an flock on the index directory lets one worker per replica
    # write it, the others read it
    start_indexer(services.settings, services.indexer, services.generation)
    # download counts: each worker counts in memory and writes in batches
    DownloadFlusher(services.downloads,
                    services.settings.marketplace.download_flush_interval).start()

    runners: list[Runner] = []
    webhooks = start_in_process(services.settings, services.db, services.generation)
    if webhooks is not None:
        runners.append(webhooks)
    follower = ResignFollower(services.db, services.keys)
    resign = Runner("gati-resign", follower.run_once, follower.release, services.generation,
                    poll_interval=2.0)
    resign.start()
    atexit.register(resign.stop)
    runners.append(resign)
    if services.mirror.enabled:
        mirror = services.settings.mirror
        prefetch = PrefetchRunner(PrefetchWorker(services.mirror, services.db,
                                                 mirror.prefetch_concurrency),
                                  services.generation, mirror.poll_interval)
        prefetch.start()
        atexit.register(prefetch.stop)
        runners.append(prefetch)
    return runners
