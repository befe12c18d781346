"""Crash safety: publish in a loop while ``gati-registry serve`` is killed with SIGKILL at
random points, restart it each time; then every publish that got a success answer must
be installable, and ``fsck`` must find nothing it cannot clean up (no half blob under a
final name, no version without its blob)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gati_private_registry.testing import (ModuleSpec, ServerProcess, free_port, publish_body,
                                           server_command)

pytestmark = pytest.mark.interop

KILLS = {"sqlite": 50, "postgres": 25}


def _put(url: str, body: bytes, token: str) -> int:
    req = urllib.request.Request(url, data=body, method="PUT", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        e.close()
        return e.code
    except OSError:
        return 0  # the server died under us


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_during_publishes_loses_nothing(backend: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    rng = random.Random(20261124)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update({"GATI_REGISTRY_ADMIN_PASSWORD": "admin-pass-1",
                "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "auto",
                "GATI_REGISTRY_ACCESS_LOG": "false", "GATI_REGISTRY_THREADS": "8"})
    if backend == "postgres":
        env["GATI_REGISTRY_DATABASE__URL"] = request.getfixturevalue("pg_throwaway_url")
    cli = server_command()
    token = subprocess.run(cli + ["token", "create", "--user", "admin", "--scope", "publish",
                                  "--data", str(data)], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    ok: list[tuple[str, str]] = []
    counter = iter(range(10**6))
    lock = threading.Lock()

    def publisher(base: str, stop: threading.Event) -> None:
        while not stop.is_set():
            with lock:
                n = next(counter)
            name, version = f"crash-{n % 7}", f"1.0.{n}"
            body = json.dumps(publish_body(ModuleSpec(name, version))).encode()
            if _put(f"{base}/npm/{name}", body, token) in (200, 201):
                with lock:
                    ok.append((name, version))

    port = free_port()
    for kill in range(KILLS[backend]):
        server = ServerProcess(port, data, env, tmp_path / "server.log", workers=1)
        server.start()
        stop = threading.Event()
        threads = [threading.Thread(target=publisher, args=(server.url, stop)) for _ in range(4)]
        before = len(ok)
        for t in threads:
            t.start()
        # somewhere in the middle of publishes. Every other round waits for its first
        # success and then kills while the other three are in flight: on a busy machine a
        # fresh worker's first publish can outlast the whole window, and then no round
        # would ever kill a publish past its first steps
        if kill % 2:
            deadline = time.monotonic() + 60
            while len(ok) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            time.sleep(rng.uniform(0.05, 0.6))
        server.kill()
        stop.set()
        for t in threads:
            t.join()
    assert len(ok) > KILLS[backend], "too few publishes got through to test anything"

    # every acknowledged publish is there, with the bytes it was published with
    server = ServerProcess(port, data, env, tmp_path / "server.log", workers=1)
    server.start()
    try:
        read = subprocess.run(cli + ["token", "create", "--user", "admin", "--scope", "read",
                                     "--data", str(data)], env=env, capture_output=True,
                              text=True, check=True).stdout.strip()
        docs: dict[str, dict] = {}
        for name, version in ok:
            if name not in docs:
                req = urllib.request.Request(f"{server.url}/npm/{name}",
                                             headers={"Authorization": f"Bearer {read}"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    docs[name] = json.load(r)
            entry = docs[name]["versions"].get(version)
            assert entry is not None, f"{name}@{version} was acknowledged and is gone"
        for name, version in rng.sample(ok, min(40, len(ok))):
            tarball = docs[name]["versions"][version]["dist"]["tarball"]
            req = urllib.request.Request(tarball, headers={"Authorization": f"Bearer {read}"})
            with urllib.request.urlopen(req, timeout=10) as r:
                got = "sha512-" + base64.b64encode(hashlib.sha512(r.read()).digest()).decode()
            assert got == docs[name]["versions"][version]["dist"]["integrity"]
    finally:
        server.stop()

    def fsck(*extra: str) -> dict:
        res = subprocess.run(cli + ["fsck", "--json", *extra, "--data", str(data)], env=env,
                             capture_output=True, text=True, timeout=600)
        return json.loads(res.stdout)

    found = fsck()
    assert found["broken_versions"] == [] and found["damaged_files"] == [], found
    repaired = fsck("--repair")
    assert repaired["remaining"] == 0, repaired
    clean = fsck()
    assert clean["remaining"] == 0 and clean["orphan_files"] == [] and clean["orphan_rows"] == []
