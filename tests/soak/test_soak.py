"""Soak (opt-in: ``scripts/test -m soak tests/soak``): five minutes of mixed traffic
(installs, revalidations, publishes, approvals, search, metrics) against a real
``gati-registry serve`` on loopback. No error answer is allowed, and the server's memory
(the master and its workers) must stay flat: under 10 % growth after the first minute.
``GATI_SOAK_SECONDS`` shortens or lengthens the run; ``GATI_SOAK_OUT`` keeps the figures."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gati_private_registry.testing import ModuleSpec, ServerProcess, free_port, publish_body, server_command

pytestmark = pytest.mark.soak

ROOT = Path(__file__).resolve().parents[2]


def _soak_module() -> Any:
    spec = importlib.util.spec_from_file_location("gati_soak", ROOT / "benchmarks" / "soak.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _first_exception(log: Path) -> str:
    """The traceback of the first exception in the server's JSON log (the tail of it,
    where the cause is)."""
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("exc"):
            return str(entry["exc"])[-3000:]
    return "(none logged)"


def test_five_minutes_of_mixed_traffic(tmp_path: Path) -> None:
    seconds = float(os.environ.get("GATI_SOAK_SECONDS", "300"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update({"GATI_REGISTRY_ADMIN_PASSWORD": "soak-admin-1",
                "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "manual"})
    server = ServerProcess(free_port(), tmp_path / "data", env, tmp_path / "server.log", workers=2)
    server.start()
    try:
        def token(scope: str) -> str:
            return subprocess.run(server_command() + ["token", "create", "--user", "admin", "--scope",
                                                      scope, "--data", str(tmp_path / "data")],
                                  env=env, capture_output=True, text=True, check=True).stdout.strip()

        soak = _soak_module()
        registry = server.url + "/npm/"
        names = [f"@soak/module-{i:03d}" for i in range(50)]

        def body(name: str, version: str) -> dict[str, Any]:
            return publish_body(ModuleSpec(name, version), registry=registry)

        runner = soak.Soak(server.url, token("publish"), token("approve"), names, body)
        # a registry in steady state: twenty versions a module, so the run's own writes
        # (about 3 %) add little, and what grows is what leaks (caches are bounded)
        for minor in range(20):
            for name in names:
                version = f"1.{minor}.0"
                runner._req("publish", "PUT", "/npm/" + name.replace("/", "%2f"), (201,),
                            body=body(name, version))
                runner._req("approve", "POST", f"/api/modules/{name}/{version}/approve", (200,),
                            token=runner.approve_token, body={"reason": "seed"})
        assert not runner.errors, runner.errors[:5]
        runner.counts.clear()
        runner.latencies.clear()
        result = runner.run(seconds, threads=8, pid=server.proc.pid)
    finally:
        server.stop()
    if os.environ.get("GATI_SOAK_OUT"):
        Path(os.environ["GATI_SOAK_OUT"]).write_text(json.dumps(result, indent=2))
    if result["errors"]:
        pytest.fail(f"{result['errors']} error answers, first: {result['first_errors'][:3]}\n"
                    f"the server's first logged exception:\n{_first_exception(tmp_path / 'server.log')}")
    assert result["requests"] > seconds * 10, result           # it really was under load
    assert result["rss_growth_after_warmup"] < 0.10, result["rss_kib"]
