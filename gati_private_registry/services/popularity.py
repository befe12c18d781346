"""Downloads, and the popularity figures built on them and on stars and ratings.

A tarball read must stay one dict lookup and a sendfile, so a download is counted in
memory (:meth:`DownloadCounter.hit`: a lock and a dict increment) and the counts reach
the ``download_counts`` table in batches, from a thread in each server process. Counts
still in memory when a process is killed are lost; a clean shutdown flushes them.

Trending is growth against the previous period, damped for small numbers::

    trending = (week - previous_week) / (previous_week + DAMPING)

so 0 -> 5 downloads scores 0.25 while 100 -> 400 scores 2.5: a handful of downloads
cannot put a module at the top.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..errors import NotFound
from ..storage.db import Database
from ..storage.models import DownloadCount, Package, Rating, Star

log = logging.getLogger(__name__)

DAMPING = 20.0


def trending_score(week: int, previous: int) -> float:
    """Growth of ``week`` over ``previous``, damped for small numbers (see above)."""
    return (week - previous) / (previous + DAMPING)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def _upsert(dialect: str) -> Any:
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert_(DownloadCount)
    return stmt.on_conflict_do_update(
        index_elements=[DownloadCount.package_id, DownloadCount.version, DownloadCount.day],
        set_={"count": DownloadCount.count + stmt.excluded.count})


class DownloadCounter:
    """Counts downloads in memory and adds them to the database in batches."""

    def __init__(self, db: Database, lock_path: Path | None,
                 today: Callable[[], date] = utc_today) -> None:
        # the counts change nothing readers cache: writing them must not bump the data
        # generation (that would empty every packument cache every few seconds); same
        # engine and write lock as build_services
        self.db = Database(db.engine, after_commit=None, lock_path=lock_path)
        self._today = today
        self._counts: Counter[tuple[str, str, date]] = Counter()
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}
        self._flush_lock = threading.Lock()

    def hit(self, name: str, version: str) -> None:
        """Count one download of ``name@version`` (today, UTC)."""
        key = (name, version, self._today())
        with self._lock:
            self._counts[key] += 1

    def pending(self) -> int:
        """Downloads counted and not yet written."""
        with self._lock:
            return sum(self._counts.values())

    def flush(self) -> int:
        """Add the counts to the database in one transaction; returns how many downloads
        were written. On a database error the counts are put back for the next flush."""
        with self._flush_lock:
            with self._lock:
                counts, self._counts = self._counts, Counter()
            if not counts:
                return 0
            try:
                missing = sorted({n for n, _, _ in counts if n not in self._ids})
                if missing:
                    with self.db.read() as s:
                        self._ids.update(s.execute(select(Package.name, Package.id).where(
                            Package.name.in_(missing))).all())
                rows: list[dict[str, Any]] = [{"package_id": self._ids[n], "version": v, "day": d, "count": c}
                        for (n, v, d), c in counts.items() if n in self._ids]
                if rows:
                    with self.db.write() as s:
                        conn = s.connection()
                        conn.execute(_upsert(conn.dialect.name), rows)
            except Exception:
                with self._lock:
                    self._counts.update(counts)
                raise
            return sum(int(r["count"]) for r in rows)


class DownloadFlusher:
    """The thread that flushes a :class:`DownloadCounter` every ``interval`` seconds,
    and once more when the process exits."""

    def __init__(self, counter: DownloadCounter, interval: float) -> None:
        self.counter = counter
        self.interval = max(interval, 0.1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gati-downloads", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        try:
            self.counter.flush()
        except Exception:  # shutting down: log and go
            log.exception("downloads: final flush failed")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.counter.flush()
            except Exception:  # kept in memory and retried at the next flush
                log.exception("downloads: flush failed; retrying later")


@dataclass(frozen=True)
class Metrics:
    """A package's popularity figures."""

    downloads_week: int = 0
    downloads_previous_week: int = 0
    downloads_month: int = 0
    downloads_total: int = 0
    stars: int = 0
    rating: float = 0.0
    ratings: int = 0

    @property
    def trending(self) -> float:
        return trending_score(self.downloads_week, self.downloads_previous_week)

    def as_dict(self) -> dict[str, Any]:
        return {"downloads": {"week": self.downloads_week, "month": self.downloads_month,
                              "total": self.downloads_total},
                "trending": round(self.trending, 4), "stars": self.stars,
                "rating": {"average": round(self.rating, 2), "count": self.ratings}}


EMPTY = Metrics()


@dataclass(frozen=True)
class DailyDownloads:
    day: date
    count: int


class PopularityService:
    """Popularity figures for every package, read in a few aggregate queries and reused
    for ``max_age`` seconds (they order search results; exact figures for one package
    come from :meth:`metrics_for`)."""

    def __init__(self, db: Database, max_age: float,
                 today: Callable[[], date] = utc_today) -> None:
        self.db = db
        self.max_age = max_age
        self._today = today
        self._cache: tuple[float, dict[str, Metrics]] | None = None
        self._lock = threading.Lock()

    def all_metrics(self) -> dict[str, Metrics]:
        """Package name -> figures (packages without any are absent)."""
        cached = self._cache
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.max_age:
            return cached[1]
        with self._lock:
            cached = self._cache
            if cached is not None and time.monotonic() - cached[0] < self.max_age:
                return cached[1]
            data = self._read(None)
            self._cache = (time.monotonic(), data)
            return data

    def invalidate(self) -> None:
        self._cache = None

    def metrics_for(self, name: str) -> Metrics:
        """Fresh figures for one package."""
        return self._read(name).get(name, EMPTY)

    def _read(self, name: str | None) -> dict[str, Metrics]:
        today = self._today()
        week_start, prev_start = today - timedelta(days=6), today - timedelta(days=13)
        month_start = today - timedelta(days=29)
        dc = DownloadCount
        downloads = (select(dc.package_id,
                            func.sum(case((dc.day >= week_start, dc.count), else_=0)),
                            func.sum(case(((dc.day >= prev_start) & (dc.day < week_start),
                                           dc.count), else_=0)),
                            func.sum(case((dc.day >= month_start, dc.count), else_=0)),
                            func.sum(dc.count))
                     .group_by(dc.package_id))
        stars = select(Star.package_id, func.count()).group_by(Star.package_id)
        ratings = select(Rating.package_id, func.avg(Rating.score), func.count()).group_by(
            Rating.package_id)
        names = select(Package.id, Package.name)
        with self.db.read() as s:
            if name is not None:
                pid = s.scalar(select(Package.id).where(Package.name == name))
                if pid is None:
                    return {}
                downloads = downloads.where(dc.package_id == pid)
                stars = stars.where(Star.package_id == pid)
                ratings = ratings.where(Rating.package_id == pid)
                names = names.where(Package.id == pid)
            parts: dict[int, dict[str, Any]] = {}
            for pid, week, prev, month, total in s.execute(downloads):
                parts.setdefault(pid, {}).update(
                    downloads_week=int(week or 0), downloads_previous_week=int(prev or 0),
                    downloads_month=int(month or 0), downloads_total=int(total or 0))
            for pid, count in s.execute(stars):
                parts.setdefault(pid, {})["stars"] = int(count)
            for pid, avg, count in s.execute(ratings):
                parts.setdefault(pid, {}).update(rating=float(avg or 0), ratings=int(count))
            id_names = dict(s.execute(names.where(Package.id.in_(list(parts)))).all()) \
                if parts else {}
        return {id_names[pid]: Metrics(**fields) for pid, fields in parts.items()
                if pid in id_names}

    def daily(self, name: str, days: int = 90) -> list[DailyDownloads]:
        """Downloads of ``name`` per day for the last ``days`` days, oldest first, with
        the days without downloads as zeros. Raises :class:`NotFound`."""
        today = self._today()
        start = today - timedelta(days=days - 1)
        with self.db.read() as s:
            pid = s.scalar(select(Package.id).where(Package.name == name))
            if pid is None:
                raise NotFound(f"no package {name}")
            rows = dict(s.execute(select(DownloadCount.day, func.sum(DownloadCount.count))
                                  .where(DownloadCount.package_id == pid,
                                         DownloadCount.day >= start)
                                  .group_by(DownloadCount.day)).all())
        return [DailyDownloads(start + timedelta(days=i), int(rows.get(start + timedelta(days=i), 0)))
                for i in range(days)]

    def by_version(self, name: str) -> dict[str, int]:
        """All-time downloads of each version of ``name``."""
        with self.db.read() as s:
            return {v: int(c) for v, c in s.execute(
                select(DownloadCount.version, func.sum(DownloadCount.count))
                .join(Package, Package.id == DownloadCount.package_id)
                .where(Package.name == name).group_by(DownloadCount.version)).all()}
