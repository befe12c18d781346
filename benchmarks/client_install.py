#!/usr/bin/env python3
"""``gati module install`` against ``npm install`` for the same 100-module project, cold
and warm, against one ``gati-registry serve`` started here (loopback, throwaway data).

    PYTHONPATH=. .venv/bin/python benchmarks/client_install.py [--runs 5] [--modules 100]

The project has ``modules/2`` direct dependencies, each of which depends on one more
module: ``modules`` packages land in node_modules. Each tool gets its own HOME and cache.
Measured (median of ``--runs``, wall clock of the whole command):

* cold: empty cache, no lockfile, no node_modules;
* warm: cache and lockfile kept, node_modules removed (npm: ``package-lock.json``;
  gati: ``gati-lock.json``);
* warm, no lockfile: cache kept, lockfile and node_modules removed (both tools then
  ask the registry for every packument again and revalidate).

Results go to ``benchmarks/results/client-<date>.json``; the table is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gati_private_registry.testing import (ModuleSpec, ServerProcess, free_port, publish_body,
                                           server_command)

GATI = str(Path(sys.executable).parent / "gati")


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def reset(project: Path, *names: str) -> None:
    for n in names:
        p = project / n
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modules", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gati-client-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update({"GATI_REGISTRY_ADMIN_PASSWORD": "bench-admin-pass-1",
                "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "auto",
                "GATI_REGISTRY_ANONYMOUS_READ": "false"})
    (work / "data").mkdir()
    server = ServerProcess(port, work / "data", env, work / "server.log", workers=2, cwd=work)
    server.start()
    try:
        token = subprocess.run(server_command() + ["token", "create", "--user", "admin",
                                                   "--scope", "publish", "--data",
                                                   str(work / "data")],
                               env=env, capture_output=True, text=True,
                               check=True).stdout.strip()
        half = args.modules // 2
        for i in range(args.modules):
            deps = {f"@bench/m{i + half}": "^1.0.0"} if i < half else {}
            spec = ModuleSpec(f"@bench/m{i}", "1.0.0", dependencies=deps,
                              files={"lib/util.js": "exports.x = 1;\n" * 50})
            body = publish_body(spec, registry=f"{server.url}/npm/")
            req = urllib.request.Request(
                f"{server.url}/npm/@bench%2fm{i}", data=json.dumps(body).encode(), method="PUT",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            urllib.request.urlopen(req).close()
        deps = {f"@bench/m{i}": "^1.0.0" for i in range(half)}
        results: dict[str, dict[str, float]] = {}
        for tool in ("npm", "gati"):
            home = work / f"home-{tool}"
            project = work / f"project-{tool}"
            home.mkdir()
            project.mkdir()
            (project / "package.json").write_text(json.dumps(
                {"name": "bench", "version": "1.0.0", "private": True, "dependencies": deps}))
            tenv = {k: v for k, v in os.environ.items()
                    if not k.lower().startswith(("npm_config_", "gati_"))}
            tenv.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                         "XDG_CACHE_HOME": str(home / ".cache"), "NO_COLOR": "1",
                         "GATI_REGISTRY": server.url})
            if tool == "npm":
                (home / ".npmrc").write_text(
                    f"registry={server.url}/npm/\n//127.0.0.1:{port}/npm/:_authToken={token}\n"
                    "audit=false\nfund=false\nupdate-notifier=false\nprogress=false\n")
                cmd = ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund"]
                lock = "package-lock.json"
            else:
                subprocess.run([GATI, "registry", "login", "--token", token, "--yes"],
                               env=tenv, check=True, capture_output=True)
                cmd = [GATI, "module", "install"]
                lock = "gati-lock.json"
            cache = home / (".npm" if tool == "npm" else ".cache/gati")
            cold, warm, nolock = [], [], []
            for _ in range(args.runs):
                shutil.rmtree(cache, ignore_errors=True)
                reset(project, "node_modules", lock)
                cold.append(timed(cmd, project, tenv))
            for _ in range(args.runs):
                reset(project, "node_modules")
                warm.append(timed(cmd, project, tenv))
            for _ in range(args.runs):
                reset(project, "node_modules", lock)
                nolock.append(timed(cmd, project, tenv))
            installed = sum(1 for p in (project / "node_modules/@bench").iterdir())
            assert installed == args.modules, (tool, installed)
            results[tool] = {"cold": statistics.median(cold), "warm": statistics.median(warm),
                             "warm_no_lockfile": statistics.median(nolock)}
        out = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "modules": args.modules, "runs": args.runs,
               "load": Path("/proc/loadavg").read_text().split()[:3],
               "npm_version": subprocess.run(["npm", "--version"], capture_output=True,
                                             text=True).stdout.strip(),
               "results": results}
        dest = Path(__file__).parent / "results" / f"client-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
        dest.parent.mkdir(exist_ok=True)
        dest.write_text(json.dumps(out, indent=2) + "\n")
        print(f"{'':22}{'npm':>10}{'gati':>10}{'gati/npm':>10}")
        for k in ("cold", "warm", "warm_no_lockfile"):
            n, g = results["npm"][k], results["gati"][k]
            print(f"{k:22}{n:>9.2f}s{g:>9.2f}s{g / n:>10.2f}")
        print(f"written to {dest}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
