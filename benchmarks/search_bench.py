#!/usr/bin/env python3
"""Search benchmark: publish a generated corpus (gati_private_registry.testing_corpus) to
any npm-protocol registry, then measure ``/-/v1/search``: sequential latency (p50, p99)
over a mix of queries, and requests per second with wrk (or, without wrk, a threaded
keep-alive client).

    python benchmarks/search_bench.py --registry http://127.0.0.1:8080/npm/ --token T \\
        --count 10000 --label gati [--skip-publish]

Loopback only. The same corpus (same seed) goes to every registry compared.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gati_private_registry.testing import ModuleSpec, publish_body  # noqa: E402
from gati_private_registry.testing_corpus import generate  # noqa: E402

QUERIES = ["postgres", "redis cache", "kafka", "oauth", "prometheus metrics", "postgrs",
           "keywords:database", "stripe", "vector", "zzz-no-match"]


class Client:
    def __init__(self, url: str, token: str | None, auth: str | None) -> None:
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.prefix = u.hostname or "127.0.0.1", u.port or 80, u.path.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif auth:
            self.headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        self.local = threading.local()

    def conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPConnection(self.host, self.port, timeout=60)
        return c

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                c = self.conn()
                c.request(method, self.prefix + path, body=body, headers=self.headers)
                r = c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self.local.c = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def publish_all(client: Client, count: int, workers: int) -> float:
    modules = generate(count)
    done = [0]
    start = time.monotonic()

    def one(m: object) -> None:
        spec = ModuleSpec(**m.spec_kwargs())  # type: ignore[attr-defined]
        body = json.dumps(publish_body(spec)).encode()
        status, text = client.request("PUT", "/" + spec.name.replace("/", "%2f"), body)
        if status not in (200, 201, 409):
            raise SystemExit(f"publish {spec.name}: HTTP {status} {text[:200]!r}")
        done[0] += 1
        if done[0] % 500 == 0:
            print(f"  published {done[0]}/{count} ({done[0] / (time.monotonic() - start):.1f}/s)",
                  flush=True)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, modules))
    return time.monotonic() - start


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def latency(client: Client, rounds: int) -> dict[str, object]:
    per_query: dict[str, object] = {}
    all_ms: list[float] = []
    for q in QUERIES:
        path = "/-/v1/search?size=20&text=" + urllib.parse.quote(q)
        ms, total, names = [], None, []
        for _ in range(rounds):
            t = time.perf_counter()
            status, body = client.request("GET", path)
            ms.append((time.perf_counter() - t) * 1000)
            if status != 200:
                raise SystemExit(f"search {q!r}: HTTP {status} {body[:200]!r}")
        doc = json.loads(body)
        total = doc.get("total")
        names = [o["package"]["name"] for o in doc.get("objects", [])][:3]
        all_ms += ms
        per_query[q] = {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(pct(ms, 99), 2),
                        "total": total, "first": names}
    return {"queries": per_query, "p50_ms": round(statistics.median(all_ms), 2),
            "p99_ms": round(pct(all_ms, 99), 2), "requests": len(all_ms)}


def distinct_queries(count: int, seed: int = 11) -> list[str]:
    """Queries never asked before: corpus words, some with a one-letter typo, some as a
    prefix being typed, some two words (no cache of any kind can answer them early)."""
    import random
    from gati_private_registry.testing_corpus import ADJECTIVES, WORDS
    rng = random.Random(seed)
    vocab = sorted({w for ws in WORDS.values() for w in ws} | set(ADJECTIVES))
    out = []
    while len(out) < count:
        w = rng.choice(vocab)
        kind = rng.random()
        if kind < 0.3 and len(w) > 4:
            i = rng.randrange(1, len(w))
            w = w[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + w[i + 1:]
        elif kind < 0.5 and len(w) > 4:
            w = w[:rng.randrange(3, len(w))]
        elif kind < 0.8:
            w = f"{w} {rng.choice(vocab)}"
        if w not in out:
            out.append(w)
    return out


def latency_distinct(client: Client, count: int) -> dict[str, object]:
    ms = []
    for q in distinct_queries(count):
        t = time.perf_counter()
        status, body = client.request("GET", "/-/v1/search?size=20&text=" + urllib.parse.quote(q))
        ms.append((time.perf_counter() - t) * 1000)
        if status != 200:
            raise SystemExit(f"search {q!r}: HTTP {status} {body[:200]!r}")
    return {"queries": count, "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(pct(ms, 99), 2)}


def throughput(client: Client, url: str, seconds: int, connections: int) -> dict[str, object]:
    target = url.rstrip("/") + "/-/v1/search?size=20&text=postgres"
    if shutil.which("wrk"):
        args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
        if "Authorization" in client.headers:
            args += ["-H", f"Authorization: {client.headers['Authorization']}"]
        out = subprocess.run(args + [target], capture_output=True, text=True, check=True).stdout
        rps = float(next(line.split()[1] for line in out.splitlines()
                         if line.startswith("Requests/sec")))
        p99 = next((line.split()[1] for line in out.splitlines() if line.strip().startswith("99%")), "")
        return {"tool": "wrk", "connections": connections, "rps": rps, "p99": p99}
    count, stop = [0], time.monotonic() + seconds
    lock = threading.Lock()

    def loop() -> None:
        n = 0
        while time.monotonic() < stop:
            client.request("GET", "/-/v1/search?size=20&text=postgres")
            n += 1
        with lock:
            count[0] += n
    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"tool": "python threads", "connections": connections, "rps": count[0] / seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", required=True)
    ap.add_argument("--token")
    ap.add_argument("--auth", help="user:password for basic auth (Verdaccio publishes)")
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--label", default="registry")
    ap.add_argument("--skip-publish", action="store_true")
    ap.add_argument("--publish-only", action="store_true")
    ap.add_argument("--publish-workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    client = Client(a.registry, a.token, a.auth)
    result: dict[str, object] = {"label": a.label, "count": a.count,
                                 "load": os.getloadavg()}
    if not a.skip_publish:
        print(f"publishing {a.count} modules to {a.registry}", flush=True)
        result["publish_seconds"] = round(publish_all(client, a.count, a.publish_workers), 1)
        if a.publish_only:
            print(json.dumps(result))
            return
    time.sleep(2)  # let an index catch up
    result["latency"] = latency(client, a.rounds)
    result["latency_distinct"] = latency_distinct(client, 300)
    result["throughput"] = throughput(client, a.registry, a.seconds, a.connections)
    result["load_after"] = os.getloadavg()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    path = Path(a.out) / f"search-{a.label}-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
