"""A/B throughput of the two hot read paths (a full packument and a tarball) between
source trees of the registry, measured side by side on this machine.

The machines are shared and noisy, so a single run of one build and then another says
little. This starts one ``gati-registry serve`` per variant (the same gunicorn settings as
``benchmarks/side-by-side.sh``: the defaults, SQLite, anonymous reads, auto-approval, the
JSON access log on unless a variant turns it off), publishes the same few modules into
each, and then runs wrk (the load generator of ../shared/bench, same ``-t2 -c16``) against
one packument URL and one tarball URL of each variant in turn, round after round, with
the order of the variants rotated every round. Only one server is loaded at a time (the
others idle). It prints every run and the median req/s per variant and path, and the
ratio of each median to the first variant's.

    # a variant is LABEL=TREE[,ENV=VALUE...]: TREE is put first on PYTHONPATH (a
    # checkout or `git archive` of the commit to measure); ENV is set for its server
    git archive HEAD | (mkdir -p /tmp/ab/base && tar -x -C /tmp/ab/base)
    python benchmarks/ab_readpath.py --variant base=/tmp/ab/base \\
        --variant base-nolog=/tmp/ab/base,GATI_REGISTRY_ACCESS_LOG=false \\
        --variant new=. --rounds 5 --duration 5

Run it with the project's virtualenv python (the servers are started with
``<that python's bin>/gati-registry``). Needs ``wrk`` on PATH. ``--keep`` leaves the
servers running and prints their ports and data directories (for profiling a worker with
py-spy); stop them yourself then. Loopback only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE.parent.parent / "shared" / "bench" / "wrk_json.lua"


@dataclass
class Variant:
    label: str
    tree: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    data: Path | None = None
    proc: Any = None
    packument: str = ""
    tarball: str = ""


def parse_variant(text: str) -> Variant:
    label, _, rest = text.partition("=")
    tree, *envs = rest.split(",")
    if not label or not tree:
        raise SystemExit(f"--variant {text!r}: expected LABEL=TREE[,ENV=VALUE...]")
    env = dict(e.split("=", 1) for e in envs)
    return Variant(label, Path(tree).resolve(), env)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(v: Variant) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update({
        "PYTHONPATH": str(v.tree),
        # the same access policy as benchmarks/side-by-side.sh
        "GATI_REGISTRY_ANONYMOUS_READ": "true",
        "GATI_REGISTRY_ADMIN_PASSWORD": "bench-admin-pass-1",
        "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "auto",
    })
    env.update(v.env)
    return env


def gati_registry() -> str:
    exe = Path(sys.executable).parent / "gati-registry"
    return str(exe) if exe.exists() else shutil.which("gati-registry") or "gati-registry"


def start(v: Variant, workers: int | None, threads: int | None, root: Path) -> None:
    v.port = free_port()
    v.data = root / v.label
    v.data.mkdir(parents=True)
    cmd = [gati_registry(), "serve", "--host", "127.0.0.1", "--port", str(v.port),
           "--data", str(v.data)]
    if workers:
        cmd += ["--workers", str(workers)]
    if threads:
        cmd += ["--threads", str(threads)]
    log = open(v.data / "server.log", "ab")
    v.proc = subprocess.Popen(cmd, env=base_env(v), stdout=log, stderr=subprocess.STDOUT,
                              cwd=v.data, start_new_session=True)
    log.close()


def wait_ready(v: Variant, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if v.proc.poll() is not None:
            raise SystemExit(f"{v.label}: server exited; see {v.data}/server.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{v.port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{v.label}: not ready after {timeout}s; see {v.data}/server.log")


def seed(v: Variant, modules: int, versions: int) -> None:
    """Publish ``modules`` scoped modules with ``versions`` versions each; the targets
    are the first module's packument and its newest tarball."""
    from gati_private_registry.testing import ModuleSpec, publish_body

    token = subprocess.run(
        [gati_registry(), "token", "create", "--user", "admin", "--scope", "publish",
         "--data", str(v.data)], env=base_env(v), capture_output=True, text=True,
        check=True).stdout.strip().splitlines()[-1]
    base = f"http://127.0.0.1:{v.port}"
    for m in range(1, modules + 1):
        name = f"@ab/pkg-{m}"
        for n in range(1, versions + 1):
            spec = ModuleSpec(name, f"1.{n}.0", description=f"A/B module {m}",
                              dependencies={"@ab/pkg-1": "^1.0.0"} if m > 1 else {},
                              keywords=["ab", "bench"])
            body = json.dumps(publish_body(spec, registry=base + "/npm/")).encode()
            req = urllib.request.Request(
                f"{base}/npm/{name.replace('/', '%2f')}", data=body, method="PUT",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status in (200, 201), r.status
    v.packument = f"{base}/npm/@ab/pkg-1"
    v.tarball = f"{base}/npm/@ab/pkg-1/-/pkg-1-1.{versions}.0.tgz"
    for url in (v.packument, v.tarball):
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200, (url, r.status)


def wrk(url: str, seconds: int, threads: int, connections: int) -> dict[str, Any]:
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
           "--timeout", "10s", "-H", "Accept: application/json"]
    if WRK_SCRIPT.exists():
        cmd += ["-s", str(WRK_SCRIPT)]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is not None:
        d = json.loads(line[len("WRKJSON "):])
        errors = sum(d["errors"].values())
        return {"rps": d["requests"] / (d["duration_us"] / 1e6), "errors": errors,
                "p99_ms": d["latency_us"]["p99"] / 1000}
    if "Requests/sec" not in out:
        raise SystemExit(f"wrk failed on {url}:\n{out[-400:]}")
    rps = next((float(ln.split()[1]) for ln in out.splitlines() if ln.startswith("Requests/sec")), 0.0)
    return {"rps": rps, "errors": int("Non-2xx" in out), "p99_ms": None}


def server_cpu(v: Variant) -> float:
    """CPU seconds (user + system) used so far by the server's master and workers."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[2] is the ppid, [11] utime, [12] stime (stat(5), counted after the name)
        if int(entry) == v.proc.pid or int(fields[1]) == v.proc.pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def stop(v: Variant) -> None:
    if v.proc is not None and v.proc.poll() is None:
        os.killpg(v.proc.pid, signal.SIGTERM)
        try:
            v.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(v.proc.pid, signal.SIGKILL)
            v.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", required=True, type=parse_variant,
                    help="LABEL=TREE[,ENV=VALUE...] (repeat; the first is the reference)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="seconds of wrk per run")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=None, help="default: the serve default")
    ap.add_argument("--threads", type=int, default=None, help="default: the serve default")
    ap.add_argument("--modules", type=int, default=3)
    ap.add_argument("--versions", type=int, default=5)
    ap.add_argument("--paths", default="packument,tarball")
    ap.add_argument("--json", type=Path, default=None, help="also write the runs here")
    ap.add_argument("--keep", action="store_true", help="leave the servers running")
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (apt-get install wrk)")
    variants: list[Variant] = a.variant
    paths = a.paths.split(",")
    root = Path(tempfile.mkdtemp(prefix="gati-ab-"))
    runs: dict[tuple[str, str], list[float]] = {(v.label, p): [] for v in variants for p in paths}
    cpus: dict[tuple[str, str], list[float]] = {(v.label, p): [] for v in variants for p in paths}
    try:
        for v in variants:
            start(v, a.workers, a.threads, root)
        for v in variants:
            wait_ready(v)
            seed(v, a.modules, a.versions)
            print(f"# {v.label}: {v.tree} {v.env or ''} port {v.port} data {v.data}", flush=True)
        print(f"# load before: {open('/proc/loadavg').read().strip()}", flush=True)
        for r in range(a.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for p in paths:
                for v in order:
                    url = v.packument if p == "packument" else v.tarball
                    if a.warmup:
                        wrk(url, a.warmup, a.wrk_threads, a.wrk_connections)
                    cpu = server_cpu(v)
                    res = wrk(url, a.duration, a.wrk_threads, a.wrk_connections)
                    cpu = server_cpu(v) - cpu
                    us = cpu / (res["rps"] * a.duration) * 1e6 if res["rps"] else 0.0
                    runs[(v.label, p)].append(res["rps"])
                    cpus[(v.label, p)].append(us)
                    print(f"round {r + 1} {p:9} {v.label:14} {res['rps']:8.0f} req/s "
                          f"{us:6.0f} us server CPU/req  p99 {res['p99_ms']} ms "
                          f"errors {res['errors']}", flush=True)
        print(f"# load after: {open('/proc/loadavg').read().strip()}")
        ref = variants[0].label
        for title, table, fmt in (("req/s", runs, "{:10.0f}"), ("server CPU us/request", cpus, "{:10.1f}")):
            print(f"\nmedian {title} (ratio to {ref})")
            print(f"{'variant':14} " + " ".join(f"{p:>10} {'ratio':>6}" for p in paths))
            for v in variants:
                cells = []
                for p in paths:
                    med = statistics.median(table[(v.label, p)])
                    base = statistics.median(table[(ref, p)])
                    cells.append(fmt.format(med) + f" {med / base if base else 0:6.2f}")
                print(f"{v.label:14} " + " ".join(cells))
        if a.json:
            a.json.write_text(json.dumps({f"{k[0]}/{k[1]}": {"rps": x, "cpu_us": cpus[k]}
                                          for k, x in runs.items()}, indent=1))
    finally:
        if a.keep:
            for v in variants:
                print(f"# kept {v.label}: pid {v.proc.pid} port {v.port} data {v.data}")
        else:
            for v in variants:
                stop(v)
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
