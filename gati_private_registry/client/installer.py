"""From a resolved tree to ``node_modules``: fetch (cache first, in parallel), check
every tarball's integrity and organisation signature and every archive's safety, and only
then change ``node_modules`` (remove what changed, unpack what is new, parents first).

``node_modules/.gati-state.json`` remembers what gati put where, so a second install
touches only the difference.
"""
from __future__ import annotations

import json
import shutil
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any, Iterable, Mapping

from .cache import Cache
from .errors import ClientError, NetworkProblem, VerificationFailed
from .extract import Member, extract, read_members
from .http import ABBREVIATED, Http
from .output import Output
from .resolver import Entry
from .trust import Trust

STATE = ".gati-state.json"
WORKERS = 8


@dataclass
class Packuments:
    """Packuments by name, fetched in the background (``prefetch``) and revalidated
    against the cache with their ETag; the cached copy serves when the registry is
    unreachable."""

    http: Http
    cache: Cache
    out: Output
    pool: ThreadPoolExecutor
    _futures: dict[str, Future[dict[str, Any] | None]] = field(default_factory=dict)
    _lock: Lock = field(default_factory=Lock)
    fetched: int = 0

    def _submit(self, name: str) -> Future[dict[str, Any] | None]:
        with self._lock:
            fut = self._futures.get(name)
            if fut is None:
                fut = self._futures[name] = self.pool.submit(self._fetch, name)
            return fut

    def prefetch(self, names: Iterable[str]) -> None:
        for n in names:
            self._submit(n)

    def get(self, name: str) -> dict[str, Any] | None:
        return self._submit(name).result()

    def _fetch(self, name: str) -> dict[str, Any] | None:
        cached = self.cache.packument(self.http.root, name)
        headers = {"Accept": f"{ABBREVIATED}; q=1.0, application/json; q=0.8, */*"}
        if cached:
            headers["If-None-Match"] = cached[0]
        try:
            resp = self.http.send("GET", self.http.package_url(name), headers=headers)
        except NetworkProblem:
            if cached:
                return cached[1]
            raise
        self.fetched += 1
        if resp.status == 304 and cached:
            return cached[1]
        if resp.status == 404:
            return None
        doc = self.http.check(resp, f"reading {name}").json()
        if not isinstance(doc, dict) or not isinstance(doc.get("versions"), dict):
            raise ClientError(f"the registry's document for {name} has no versions")
        etag = resp.header("etag")
        if etag:
            self.cache.put_packument(self.http.root, name, etag, doc)
        return doc


@dataclass
class Installed:
    added: list[str]
    removed: list[str]
    unchanged: int
    downloaded: int


def read_state(project: Path) -> dict[str, dict[str, str]]:
    try:
        doc = json.loads((project / "node_modules" / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _write_state(project: Path, tree: Mapping[str, Entry]) -> None:
    nm = project / "node_modules"
    nm.mkdir(exist_ok=True)
    doc = {p: {"name": e.name, "version": e.version, "integrity": e.integrity}
           for p, e in sorted(tree.items())}
    tmp = nm / f".{STATE}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(nm / STATE)


class Installer:
    def __init__(self, http: Http, cache: Cache, out: Output, trust: Trust) -> None:
        self.http = http
        self.cache = cache
        self.out = out
        self.trust = trust

    def fetch(self, entries: Iterable[Entry], pool: ThreadPoolExecutor) -> tuple[dict[str, bytes], int]:
        """``({integrity: tarball}, downloads)`` for ``entries``: each from the cache or
        the registry, integrity-checked. Raises :class:`VerificationFailed`."""
        todo: dict[str, Entry] = {}
        for e in entries:
            todo.setdefault(e.integrity, e)
        found: dict[str, bytes] = {}
        missing: list[Entry] = []
        for integrity, e in todo.items():
            data = self.cache.get_tarball(integrity)
            if data is None:
                missing.append(e)
            else:
                found[integrity] = data

        def download(e: Entry) -> tuple[str, bytes]:
            resp = self.http.check(self.http.send("GET", e.resolved),
                                   f"downloading {e.spec}")
            self.cache.put_tarball(e.spec, e.integrity, resp.body)
            return e.integrity, resp.body

        with self.out.progress(len(missing), "Downloading") as bar:
            for integrity, data in _each(pool, download, missing, bar):
                found[integrity] = data
        return found, len(missing)

    def check(self, tree: Mapping[str, Entry], tarballs: Mapping[str, bytes]
              ) -> dict[str, list[Member]]:
        """Signatures of every entry and safety of every archive; raises on the first
        problem (:class:`VerificationFailed`), before anything is written."""
        members: dict[str, list[Member]] = {}
        for e in tree.values():
            self.trust.check(e.name, e.version, e.integrity, e.signature_list(), e.published)
            if e.integrity not in members:
                members[e.integrity] = read_members(tarballs[e.integrity], e.spec)
        return members

    def apply(self, project: Path, tree: Mapping[str, Entry], pool: ThreadPoolExecutor,
              force: bool = False) -> Installed:
        """Make ``node_modules`` hold exactly ``tree`` (what gati installed before and is
        no longer wanted is removed)."""
        tarballs, downloads = self.fetch(tree.values(), pool)
        self.check(tree, tarballs)
        nm = project / "node_modules"
        state = {} if force else read_state(project)
        current = {p: s for p, s in state.items()
                   if (project / p / "package.json").exists() or (project / p).is_dir()}
        stale = sorted((p for p, s in current.items()
                        if p not in tree or s.get("integrity") != tree[p].integrity),
                       key=len)
        removed: list[str] = []
        for p in stale:
            if any(p.startswith(r + "/") for r in removed):
                continue
            shutil.rmtree(project / p, ignore_errors=True)
            removed.append(p)
        current = {p: s for p, s in current.items()
                   if not any(p == r or p.startswith(r + "/") for r in removed)}
        to_add = [p for p in tree if p not in current]
        nm.mkdir(exist_ok=True)
        staging = nm / f".gati-staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            by_depth: dict[int, list[str]] = {}
            for p in to_add:
                by_depth.setdefault(p.count("/node_modules/"), []).append(p)

            def place(p: str) -> str:
                e = tree[p]
                tmp = staging / uuid.uuid4().hex
                extract(tarballs[e.integrity], tmp, e.spec)
                dest = project / p
                if dest.is_symlink() or dest.is_file():
                    dest.unlink()
                elif dest.exists():
                    # something gati did not install (npm's, a hand copy): replace it,
                    # keeping a nested node_modules that other entries may live in
                    nested = dest / "node_modules"
                    if nested.is_dir():
                        nested.rename(tmp / "node_modules")
                    shutil.rmtree(dest)
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp.rename(dest)
                return p

            with self.out.progress(len(to_add), "Installing") as bar:
                for depth in sorted(by_depth):
                    list(_each(pool, place, by_depth[depth], bar))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _write_state(project, tree)
        return Installed(added=sorted(to_add), removed=removed,
                         unchanged=len(tree) - len(to_add), downloaded=downloads)


def _each(pool: ThreadPoolExecutor, fn: Any, items: list[Any], bar: Any) -> Iterable[Any]:
    """``fn`` over ``items`` in the pool; the first error is raised after the others
    finished (no half-started work is left running)."""
    futures = [pool.submit(fn, item) for item in items]
    error: BaseException | None = None
    for fut in futures:
        try:
            result = fut.result()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            error = error or exc
            continue
        bar.advance()
        yield result
    if error is not None:
        raise error


__all__ = ["Installer", "Installed", "Packuments", "read_state", "VerificationFailed"]
