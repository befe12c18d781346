"""Upstream documents (packuments, keys, attestations), cached in two layers: this
process's memory and the ``upstream_packuments`` table (shared by every process and
replica, and what is served when the upstream is down or the mirror is offline).

Within ``max_age`` a copy is used without asking. After it, the upstream is asked with
its own validators (If-None-Match / If-Modified-Since) when it gave any; an upstream
that sends none simply answers 200 again and the TTL is all there is. When the upstream
fails or is slower than ``stale_timeout``, the old copy is served, marked stale, with a
log line per package every :data:`STALE_LOG_EVERY` seconds while it lasts. One fetch per
name at a time: concurrent requests wait for it instead of asking too.

A 404 is remembered for ``max_age`` too, in memory and as a body-less row (digest
:data:`MISSING`), so no process asks again for what the upstream does not have (the
``/-/npm/v1/keys`` of an upstream without signing keys is asked on every merge). The
memory layer holds at most ``[mirror] memory_cache_bytes`` of documents, least recently
used first out; the database keeps everything.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ...storage.db import aware as _aware
from ...errors import NotFound, Unavailable
from ...settings import Settings
from ...storage.db import Database
from ...storage.models import UpstreamPackument
from .client import Fetched, UpstreamClient, UpstreamUnavailable

log = logging.getLogger(__name__)

#: seconds an upstream that just failed is not asked again for names we have a copy of
BACKOFF = 15.0
#: the digest of a row recording that the upstream answered 404
MISSING = "404"
#: seconds between two "serving stale metadata" log lines for one package
STALE_LOG_EVERY = 300.0


@dataclass
class Doc:
    """An upstream document as this process holds it."""

    name: str
    upstream: str
    data: dict[str, Any]
    digest: str
    etag: str
    last_modified: str
    fetched_at: datetime
    #: monotonic time the upstream last confirmed it (or when we learnt it did)
    confirmed: float
    stale: bool = False
    #: bytes of the upstream's body (what the memory cap counts)
    size: int = 0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UpstreamDocuments:
    def __init__(self, db: Database, settings: Settings, clients: dict[str, UpstreamClient],
                 count: Callable[[str, int], None]) -> None:
        # cache bookkeeping changes nothing that local caches hold: no generation bump
        self.db = Database(db.engine, after_commit=None, lock_path=db.lock_path)
        self.settings = settings
        self.clients = clients
        self._count = count
        self._docs: OrderedDict[str, Doc] = OrderedDict()
        self._bytes = 0
        self._cap = settings.mirror.memory_cache_bytes
        self._missing: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._warned: dict[str, float] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _remember(self, doc: Doc) -> None:
        """Keep ``doc`` in memory, evicting the least recently used beyond the cap."""
        with self._guard:
            old = self._docs.pop(doc.name, None)
            if old is not None:
                self._bytes -= old.size
            self._docs[doc.name] = doc
            self._bytes += doc.size
            while self._bytes > self._cap and len(self._docs) > 1:
                _, dropped = self._docs.popitem(last=False)
                self._bytes -= dropped.size

    def _drop(self, key: str) -> None:
        with self._guard:
            old = self._docs.pop(key, None)
            if old is not None:
                self._bytes -= old.size

    def _hit(self, doc: Doc) -> Doc:
        self._count("hits", 1)
        with self._guard:
            if doc.name in self._docs:
                self._docs.move_to_end(doc.name)
        return doc

    @property
    def memory_bytes(self) -> int:
        """Bytes of upstream documents this process holds in memory."""
        return self._bytes

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            if len(self._locks) > 10_000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault(key, threading.Lock())

    def get(self, key: str, upstream: str, *, packument: bool = True) -> Doc:
        """The document ``key`` (a package name, or a path below the upstream URL when
        ``packument`` is false) from ``upstream``.

        Raises :class:`NotFound` (the upstream has no such thing, or offline and not
        cached) or :class:`Unavailable` (upstream unreachable and nothing cached)."""
        max_age = self._max_age(upstream)
        doc = self._docs.get(key)
        if doc is not None and time.monotonic() - doc.confirmed < max_age:
            return self._hit(doc)
        missing = self._missing.get(key)
        if missing is not None and time.monotonic() - missing < max_age and \
                not self.settings.mirror.offline:
            raise NotFound(f"{key} is not in the upstream registry {upstream}")
        with self._lock_for(key):
            doc = self._docs.get(key)
            if doc is not None and time.monotonic() - doc.confirmed < max_age:
                return self._hit(doc)
            return self._refresh(key, upstream, packument, doc, max_age)

    def _max_age(self, upstream: str) -> float:
        up = self.settings.upstream(upstream)
        return up.max_age if up is not None else 600.0

    def _from_db(self, key: str, have: Doc | None, upstream: str, max_age: float) -> Doc | None:
        """The stored copy (None when there is none); raises :class:`NotFound` when the
        stored answer is a 404 younger than ``max_age`` (or any 404 when offline)."""
        with self.db.read() as s:
            row = s.execute(select(UpstreamPackument.digest, UpstreamPackument.etag,
                                   UpstreamPackument.last_modified, UpstreamPackument.fetched_at,
                                   UpstreamPackument.upstream)
                            .where(UpstreamPackument.name == key)).first()
            if row is None:
                return None
            age = (_utcnow() - _aware(row.fetched_at)).total_seconds()
            confirmed = time.monotonic() - max(age, 0.0)
            if row.digest == MISSING:
                if age < max_age or self.settings.mirror.offline:
                    self._missing[key] = confirmed
                    raise NotFound(f"{key} is not in the upstream registry {upstream}")
                return None
            if have is not None and have.digest == row.digest:
                have.confirmed, have.fetched_at = confirmed, _aware(row.fetched_at)
                return have
            body = s.scalar(select(UpstreamPackument.body).where(UpstreamPackument.name == key))
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return None
        return Doc(key, row.upstream, data, row.digest, row.etag, row.last_modified,
                   _aware(row.fetched_at), confirmed, size=len(body or b""))

    def _refresh(self, key: str, upstream: str, packument: bool, doc: Doc | None,
                 max_age: float) -> Doc:
        doc = self._from_db(key, doc, upstream, max_age) or doc
        if doc is not None:
            self._remember(doc)
            if time.monotonic() - doc.confirmed < max_age:
                return self._hit(doc)
        if self.settings.mirror.offline:
            if doc is None:
                raise NotFound(f"{key} is not cached, and this mirror is offline")
            self._count("hits", 1)
            return doc
        client = self.clients.get(upstream)
        if client is None:
            raise Unavailable(f"no upstream called {upstream} is configured")
        if doc is not None and self._backoff.get(upstream, 0.0) > time.monotonic():
            return self._stale(doc, "the upstream failed moments ago")
        self._count("misses", 1)
        up = self.settings.upstream(upstream)
        timeout = (up.stale_timeout if doc is not None else up.timeout) if up else None
        etag = doc.etag if doc else ""
        last_modified = doc.last_modified if doc else ""
        try:
            if packument:
                fetched = client.packument(key, etag=etag, last_modified=last_modified,
                                           timeout=timeout)
            else:
                fetched = client.document(key, etag=etag, last_modified=last_modified,
                                          timeout=timeout)
            return self._store(key, upstream, fetched, doc)
        except UpstreamUnavailable as exc:
            self._backoff[upstream] = time.monotonic() + BACKOFF
            if doc is None:
                raise Unavailable(f"the upstream {upstream} cannot be reached and {key} is not "
                                  f"cached ({exc})") from None
            return self._stale(doc, str(exc))

    def _stale(self, doc: Doc, why: str) -> Doc:
        self._count("stale", 1)
        if time.monotonic() - self._warned.get(doc.name, -STALE_LOG_EVERY) >= STALE_LOG_EVERY:
            if len(self._warned) > 10_000:
                self._warned.clear()
            self._warned[doc.name] = time.monotonic()
            log.warning("serving stale metadata for %s from %s (fetched %s): %s", doc.name,
                        doc.upstream, doc.fetched_at.isoformat(), why)
        return Doc(**{**doc.__dict__, "stale": True})

    def _store(self, key: str, upstream: str, fetched: Fetched, doc: Doc | None) -> Doc:
        now = _utcnow()
        self._backoff.pop(upstream, None)
        self._warned.pop(key, None)
        if fetched.status == 404:
            self._remember_missing(key, upstream, now)
            raise NotFound(f"{key} is not in the upstream registry {upstream}")
        if fetched.status == 304 and doc is not None:
            with self.db.write() as s:
                s.execute(update(UpstreamPackument).where(UpstreamPackument.name == key)
                          .values(fetched_at=now))
            doc.confirmed, doc.fetched_at, doc.stale = time.monotonic(), now, False
            return doc
        try:
            data = json.loads(fetched.body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or (key[:1] != "-" and not isinstance(data.get("versions"), dict)):
            # an unpublished package ({"time": {"unpublished": ...}}) or garbage
            self._remember_missing(key, upstream, now)
            raise NotFound(f"{key} has no versions in the upstream registry {upstream}")
        digest = hashlib.sha256(fetched.body).hexdigest()
        etag, last_modified = fetched.etag[:200], fetched.last_modified[:100]
        values: dict[str, Any] = {"upstream": upstream, "body": fetched.body, "digest": digest,
                                  "etag": etag, "last_modified": last_modified, "fetched_at": now}
        try:
            self._save(key, values, now)
        except IntegrityError:  # another process inserted it first (PostgreSQL): update
            self._save(key, values, now)
        fresh = Doc(key, upstream, data, digest, etag, last_modified, now, time.monotonic(),
                    size=len(fetched.body))
        self._remember(fresh)
        self._missing.pop(key, None)
        return fresh

    def _remember_missing(self, key: str, upstream: str, now: datetime) -> None:
        self._missing[key] = time.monotonic()
        self._drop(key)
        values: dict[str, Any] = {"upstream": upstream, "body": b"", "digest": MISSING,
                                  "etag": "", "last_modified": "", "fetched_at": now}
        try:
            self._save(key, values, now)
        except IntegrityError:  # another process inserted it first (PostgreSQL)
            self._save(key, values, now)

    def _save(self, key: str, values: dict[str, Any], now: datetime) -> None:
        with self.db.write() as s:
            done = s.connection().execute(update(UpstreamPackument).where(
                UpstreamPackument.name == key).values(**values)).rowcount
            if not done:
                s.add(UpstreamPackument(name=key, created_at=now, **values))

    def forget(self, key: str) -> None:
        """Drop this process's copy (tests, admin refresh)."""
        self._drop(key)
        self._missing.pop(key, None)
