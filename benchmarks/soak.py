"""Soak: mixed traffic against a running ``gati-registry serve`` on loopback for a fixed
time, sampling the server's memory (RSS of the master and every worker) as it goes.

    python benchmarks/soak.py --registry http://127.0.0.1:PORT --token TOKEN \
        --approve-token TOKEN --pid MASTER_PID --seconds 300 --out result.json

Traffic per thread, per mille: abbreviated packument 620, tarball 160, full packument 80,
304 revalidation 80, publish a new version 15, approve it 15, search 15, /metrics 15:
a registry's day is reads, with writes around 3 %.

Writes grow the data, and with it the caches, so by default the data is held constant:
once a module has ``--keep`` versions from the run approved, every approval is followed by
an ``npm unpublish`` of that module's oldest one (the same GET ``?write=true`` then PUT
``/-rev/REV`` that npm sends). Then memory growth means a leak, not a bigger registry.
``--growing`` turns that off, to measure the cost of growth instead.
Every answer must be the expected status; the result counts anything else as an error.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ABBREVIATED = "application/vnd.npm.install-v1+json"


def rss_kib(pid: int) -> int:
    """RSS of ``pid`` and its children (gunicorn's workers), in KiB."""
    def one(p: int) -> int:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    total = one(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(one(int(c)) for c in children)


class Soak:
    def __init__(self, registry: str, token: str, approve_token: str, seed_names: list[str],
                 publish_body: Any) -> None:
        self.base = registry.rstrip("/")
        self.token, self.approve_token = token, approve_token
        self.names = list(seed_names)
        self.publish_body = publish_body
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.pending: list[tuple[str, str]] = []
        self.serial = 0
        self.etags: dict[str, str] = {}
        # versions this run published and approved, oldest first, per module
        self.approved: dict[str, list[str]] = {}
        self.keep: int | None = 3  # None: the data grows (no unpublish)
        self.conflicts = 0  # unpublishes read again after a 409 (a concurrent change)
        self.gone: set[str] = set()  # "name@version" this run unpublished (or is about to)

    def _req(self, kind: str, method: str, path: str, expect: tuple[int, ...], *,
             token: str | None = None, body: Any = None, headers: dict[str, str] | None = None) -> bytes:
        """One request; an answer whose status is not in ``expect`` counts as an error.
        Returns the body."""
        return self._call(kind, method, path, expect, token=token, body=body, headers=headers)[1]

    def _call(self, kind: str, method: str, path: str, expect: tuple[int, ...], *,
              token: str | None = None, body: Any = None,
              headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        hdrs = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        started = time.perf_counter()
        status, payload, etag = 0, b"", ""
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, payload, etag = r.status, r.read(), r.headers.get("ETag", "")
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
            e.close()
        except OSError as e:
            self._error(f"{kind} {method} {path}: {e!r}")
            return 0, b""
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latencies.setdefault(kind, []).append(elapsed)
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if etag and kind == "abbreviated":
                self.etags[path] = etag
        if status not in expect:
            self._error(f"{kind} {method} {path}: HTTP {status} {payload[:200]!r}")
        return status, payload

    def _error(self, msg: str) -> None:
        with self.lock:
            self.errors.append(msg)

    reads_only = False

    def step(self, rng: random.Random) -> None:
        name = rng.choice(self.names)
        path = "/npm/" + name.replace("/", "%2f")
        roll = rng.randrange(1000)
        if self.reads_only and 940 <= roll < 970:
            roll = 0  # a read instead of a publish or an approval
        if roll < 620:
            self._req("abbreviated", "GET", path, (200,), headers={"Accept": ABBREVIATED})
        elif roll < 780:
            doc = json.loads(self._req("abbreviated", "GET", path, (200,),
                                       headers={"Accept": ABBREVIATED}) or b"{}")
            versions = list((doc.get("versions") or {}).values())
            if versions:
                chosen = rng.choice(versions)
                tarball = "/" + chosen["dist"]["tarball"].split("://", 1)[1].split("/", 1)[1]
                status, _ = self._call("tarball", "GET", tarball, (200, 404))
                # 404 is right for a version this run unpublished after the document was
                # read (the client's race, not the server's); anything else is an error
                if status == 404 and f"{name}@{chosen['version']}" not in self.gone:
                    self._error(f"tarball GET {tarball}: HTTP 404 for a live version")
        elif roll < 860:
            self._req("full", "GET", path, (200,))
        elif roll < 940:
            etag = self.etags.get(path)
            if etag:
                self._req("revalidate", "GET", path, (304, 200),
                          headers={"Accept": ABBREVIATED, "If-None-Match": etag})
        elif roll < 955:
            with self.lock:
                self.serial += 1
                version = f"2.0.{self.serial}"
            self._req("publish", "PUT", path, (200, 201), body=self.publish_body(name, version))
            with self.lock:
                self.pending.append((name, version))
        elif roll < 970:
            with self.lock:
                item = self.pending.pop(0) if self.pending else None
            if item:
                self._req("approve", "POST", f"/api/modules/{item[0]}/{item[1]}/approve", (200,),
                          token=self.approve_token, body={"reason": "soak"})
                self._hold_constant(item[0], item[1])
        elif roll < 985:
            self._req("search", "GET", f"/npm/-/v1/search?text={name.rsplit('-', 1)[0][-6:]}&size=5", (200,))
        else:
            self._req("metrics", "GET", "/metrics", (200,))

    def _hold_constant(self, name: str, version: str) -> None:
        """After ``version`` was approved: unpublish the module's oldest run version once
        it has more than ``keep``, the way ``npm unpublish NAME@VERSION`` does it."""
        if self.keep is None:
            return
        with self.lock:
            mine = self.approved.setdefault(name, [])
            mine.append(version)
            oldest = mine.pop(0) if len(mine) > self.keep else None
        if oldest is None:
            return
        with self.lock:
            self.gone.add(f"{name}@{oldest}")
        path = "/npm/" + name.replace("/", "%2f")
        for _attempt in range(5):
            # 409: another thread changed the module between our read and our write (a
            # stale revision would unpublish its version too); read again, as npm would
            doc = json.loads(self._req("unpublish", "GET", path + "?write=true", (200,)) or b"{}")
            if oldest not in doc.get("versions", {}):
                self._error(f"unpublish {name}@{oldest}: not in the document")
                return
            del doc["versions"][oldest]
            doc.get("time", {}).pop(oldest, None)
            status, _ = self._call("unpublish", "PUT", f"{path}/-rev/{doc.get('_rev', '0')}",
                                   (200, 201, 409), body=doc)
            if status != 409:
                return
            with self.lock:
                self.conflicts += 1
        self._error(f"unpublish {name}@{oldest}: five conflicts in a row")

    def run(self, seconds: float, threads: int, pid: int | None, sample_every: float = 10.0) -> dict[str, Any]:
        stop = time.monotonic() + seconds
        started = time.monotonic()
        samples: list[tuple[float, int]] = []

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                self.step(rng)

        pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
        for t in pool:
            t.start()
        while time.monotonic() < stop:
            if pid:
                samples.append((round(time.monotonic() - started, 1), rss_kib(pid)))
            time.sleep(min(sample_every, max(0.0, stop - time.monotonic())))
        for t in pool:
            t.join()
        if pid:
            samples.append((round(time.monotonic() - started, 1), rss_kib(pid)))
        total = sum(self.counts.values())
        per_kind = {}
        for kind, values in sorted(self.latencies.items()):
            values.sort()
            per_kind[kind] = {"count": len(values),
                              "p50_ms": round(statistics.median(values) * 1000, 2),
                              "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 2)}
        # memory growth: from the end of the first minute (caches warm) to the end
        warm = [kib for t, kib in samples if t >= min(60.0, seconds / 5)]
        growth = (warm[-1] - warm[0]) / warm[0] if len(warm) >= 2 and warm[0] else 0.0
        return {"seconds": seconds, "threads": threads, "requests": total,
                "requests_per_second": round(total / seconds, 1), "errors": len(self.errors),
                "first_errors": self.errors[:10], "by_kind": per_kind,
                "unpublish_conflicts_retried": self.conflicts,
                "rss_kib": samples, "rss_growth_after_warmup": round(growth, 4)}


def main() -> None:
    from gati_private_registry.testing import ModuleSpec, publish_body

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--approve-token", required=True)
    ap.add_argument("--pid", type=int, default=0, help="the gunicorn master's pid, for RSS")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--packages", type=int, default=50)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--reads-only", action="store_true", help="no publishes or approvals")
    ap.add_argument("--keep", type=int, default=3,
                    help="run versions kept per module before the oldest is unpublished")
    ap.add_argument("--growing", action="store_true", help="never unpublish: the data grows")
    args = ap.parse_args()

    def body(name: str, version: str) -> dict[str, Any]:
        return publish_body(ModuleSpec(name, version), registry=args.registry.rstrip("/") + "/npm/")

    names = [f"@soak/module-{i:03d}" for i in range(args.packages)]
    soak = Soak(args.registry, args.token, args.approve_token, names, body)
    soak.reads_only = args.reads_only
    soak.keep = None if args.growing else args.keep
    for name in names:  # seed: one approved version each
        soak._req("publish", "PUT", "/npm/" + name.replace("/", "%2f"), (200, 201),
                  body=body(name, "1.0.0"))
        soak._req("approve", "POST", f"/api/modules/{name}/1.0.0/approve", (200, 409),
                  token=args.approve_token, body={"reason": "seed"})
    soak.counts.clear()
    soak.latencies.clear()
    result = soak.run(args.seconds, args.threads, args.pid or None)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
