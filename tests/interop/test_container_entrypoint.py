"""The container's entrypoint, run outside a container (there is no engine here): the
Dockerfile's own ENV and ENTRYPOINT, with /venv/bin mapped to this environment's bin
directory and /data to a fresh directory. It must start, pass its own HEALTHCHECK,
serve npm, and stop gracefully on SIGTERM (what `docker stop` sends)."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gati_private_registry.testing import free_port

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]


def _dockerfile() -> tuple[dict[str, str], list[str], list[str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", text, re.M):
        for token in shlex.split(line):
            key, _, value = token.partition("=")
            env[key] = value
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    health = json.loads(re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.M).group(1))
    return env, entrypoint, health


def test_entrypoint_starts_passes_its_healthcheck_and_stops_gracefully(tmp_path: Path) -> None:
    env, entrypoint, health = _dockerfile()
    assert env["GATI_REGISTRY_DATA"] == "/data" and env["GATI_REGISTRY_HOST"] == "0.0.0.0"
    bindir = Path(sys.executable).parent
    mapped = [part.replace("/venv/bin/", f"{bindir}/") for part in entrypoint]
    port = free_port()
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    run_env.update(env)
    run_env.update({"GATI_REGISTRY_DATA": str(tmp_path / "data"),   # the /data volume
                    "GATI_REGISTRY_PORT": str(port),
                    "GATI_REGISTRY_ADMIN_PASSWORD": "container-admin-1"})
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(mapped, env=run_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.2)
        checked = subprocess.run([part.replace("/venv/bin/", f"{bindir}/") for part in health],
                                 env=run_env, timeout=10)
        assert checked.returncode == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/npm/-/ping", timeout=5) as r:
            assert r.status == 200
        assert (tmp_path / "data" / "registry.db").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)   # docker stop
        try:
            code = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        log.close()
    assert code == 0, (tmp_path / "server.log").read_text()
