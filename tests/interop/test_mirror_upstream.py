"""The mirror end to end: a second ``gati-registry serve`` is the upstream (behind a
small TCP relay that records requests and can cut or slow the line), the real npm
installs through the mirror under test."""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from gati_private_registry.testing import ServerProcess, free_port

PROXY_PORT = free_port()
UPSTREAM_ADMIN_PASSWORD = "upstream-admin-pw-1"

REGISTRY_ENV = {
    "UPSTREAMS__UP__URL": f"http://127.0.0.1:{PROXY_PORT}/npm/",
    "UPSTREAMS__UP__MAX_AGE": "1s",
    "UPSTREAMS__UP__TIMEOUT": "20s",
    "UPSTREAMS__UP__STALE_TIMEOUT": "2s",
    "PACKAGES": "@corp/*=local,*=up",
}


class Relay:
    """127.0.0.1:PROXY_PORT → the upstream; ``mode`` is pass, down or slow."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.target = 0
        self.mode = "pass"
        self.delay = 30.0
        self.requests: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            if self.mode == "down":
                return
            conn.settimeout(30)
            try:
                first = conn.recv(65536)
            except OSError:
                return
            self.requests.append(first.split(b"\r\n", 1)[0].decode("latin-1"))
            if self.mode == "slow":
                time.sleep(self.delay)
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=30)
            except OSError:
                return
            with up:
                up.sendall(first)
                done = threading.Event()

                def pump(src: socket.socket, dst: socket.socket) -> None:
                    try:
                        while chunk := src.recv(65536):
                            dst.sendall(chunk)
                    except OSError:
                        pass
                    done.set()

                threading.Thread(target=pump, args=(conn, up), daemon=True).start()
                pump(up, conn)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    r = Relay(PROXY_PORT)
    yield r
    r.close()


class Upstream:
    def __init__(self, server: ServerProcess, token: str) -> None:
        self.server = server
        self.token = token

    def publish(self, registry: Any, name: str, version: str,
                dependencies: dict[str, str] | None = None, marker: str = "") -> bytes:
        pkg = registry.make_package(name, version, dependencies=dependencies,
                                    extra_files={"marker.txt": marker.encode()})
        tgz = pkg.tarball()
        body = registry.publish_body(pkg.manifest, tgz)
        req = urllib.request.Request(
            f"{self.server.url}/npm/{name.replace('/', '%2f')}", data=json.dumps(body).encode(),
            method="PUT", headers={"Content-Type": "application/json",
                                   "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 201
        return tgz


@pytest.fixture(scope="module")
def upstream(registry_server: Any, relay: Relay,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    from gati_private_registry.testing import server_command
    import subprocess

    work = tmp_path_factory.mktemp("upstream")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update({"GATI_REGISTRY_ADMIN_PASSWORD": UPSTREAM_ADMIN_PASSWORD,
                "GATI_REGISTRY_ANONYMOUS_READ": "true",
                "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "auto"})
    server = ServerProcess(free_port(), work / "data", env, work / "server.log", workers=1,
                           cwd=work)
    server.start()
    relay.target = server.port
    token = subprocess.run(server_command() + ["token", "create", "--user", "admin", "--scope",
                                               "publish", "--data", str(work / "data")],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    yield Upstream(server, token)
    server.stop()


def install(registry: Any, deps: dict[str, str]) -> Any:
    project = registry.make_project(deps)
    return registry.npm("install", "--fetch-retries=0", cwd=project,
                        token=registry.token("admin", "read")), project


def test_install_through_the_mirror_then_with_the_upstream_down(
        registry_server: Any, upstream: Upstream, relay: Relay) -> None:
    r = registry_server
    upstream.publish(r, "mirror-dep", "1.0.0", marker="dep")
    upstream.publish(r, "mirror-app", "1.0.0", dependencies={"mirror-dep": "^1.0.0"},
                     marker="app")
    res, project = install(r, {"mirror-app": "^1.0.0"})
    res.ok()
    assert (project / "node_modules/mirror-dep/marker.txt").read_text() == "dep"
    assert (project / "node_modules/mirror-app/marker.txt").read_text() == "app"
    lock = json.loads((project / "package-lock.json").read_text())
    resolved = lock["packages"]["node_modules/mirror-app"]["resolved"]
    assert resolved.startswith(r.npm_url)            # served by the mirror, not the upstream
    # the upstream goes away: a clean npm cache still installs, from the mirror's cache
    relay.mode = "down"
    try:
        time.sleep(1.5)  # past max_age: the mirror must fall back to its stale copy
        res, project = install(r, {"mirror-app": "^1.0.0"})
        res.ok()
        assert (project / "node_modules/mirror-dep/marker.txt").read_text() == "dep"
        meta = r.http("GET", "/npm/mirror-app", token=r.token("admin", "read"))
        assert meta.status == 200 and "110" in meta.headers.get("Warning", "")
    finally:
        relay.mode = "pass"


def test_corrupt_upstream_tarball_is_refused_and_not_kept(
        registry_server: Any, upstream: Upstream) -> None:
    r = registry_server
    tgz = upstream.publish(r, "mirror-corrupt", "1.0.0", marker="good")
    import hashlib
    digest = hashlib.sha512(tgz).hexdigest()
    blob = upstream.server.data_dir / "blobs" / digest[:2] / digest[2:4] / digest
    blob.write_bytes(tgz[:-20] + bytes(20))          # the upstream now serves bad bytes
    res, _ = install(r, {"mirror-corrupt": "1.0.0"})
    res.failed()
    kept = [p.name for p in (r.data_dir / "blobs").rglob("*") if p.is_file()]
    assert digest not in kept
    assert hashlib.sha512(blob.read_bytes()).hexdigest() not in kept
    refused = r.http("GET", "/npm/mirror-corrupt/-/mirror-corrupt-1.0.0.tgz",
                     token=r.token("admin", "read"))
    assert refused.status == 404 and b"refused the upstream's tarball" in refused.body


def test_local_corp_name_is_never_taken_from_the_upstream(
        registry_server: Any, upstream: Upstream, relay: Relay) -> None:
    r = registry_server
    upstream.publish(r, "@corp/x", "1.0.0", marker="UPSTREAM")
    upstream.publish(r, "@corp/only-upstream", "1.0.0", marker="UPSTREAM")
    local = r.make_package("@corp/x", "1.0.0", extra_files={"marker.txt": b"LOCAL"})
    r.publish_dir(local.path).ok()
    res, project = install(r, {"@corp/x": "1.0.0"})
    res.ok()
    assert (project / "node_modules/@corp/x/marker.txt").read_text() == "LOCAL"
    res, _ = install(r, {"@corp/only-upstream": "1.0.0"})
    res.failed()
    assert not [q for q in relay.requests if "@corp" in q]
    # and a local publish of a name the upstream has is refused
    taken = r.make_package("mirror-dep", "9.0.0")
    out = r.publish_dir(taken.path).failed().output
    assert "403" in out and "mirrored from the upstream up" in out


def test_throttled_upstream_gets_stale_metadata_within_the_clients_timeout(
        registry_server: Any, upstream: Upstream, relay: Relay) -> None:
    r = registry_server
    upstream.publish(r, "mirror-slow", "1.0.0", marker="slow")
    install(r, {"mirror-slow": "1.0.0"})[0].ok()
    relay.mode, relay.delay = "slow", 30.0
    try:
        time.sleep(1.5)
        started = time.monotonic()
        res, project = install(r, {"mirror-slow": "1.0.0"})
        res.ok()
        assert time.monotonic() - started < 25  # well before the upstream would answer
        assert (project / "node_modules/mirror-slow/marker.txt").read_text() == "slow"
    finally:
        relay.mode = "pass"


def test_prefetch_a_lockfile_then_npm_ci_with_the_upstream_down(
        registry_server: Any, upstream: Upstream, relay: Relay) -> None:
    r = registry_server
    seen = len(relay.requests)  # the relay outlives each backend's servers
    upstream.publish(r, "pf-leaf", "1.0.0", marker="leaf")
    upstream.publish(r, "pf-mid", "1.0.0", dependencies={"pf-leaf": "^1.0.0"}, marker="mid")
    upstream.publish(r, "pf-app", "2.0.0", dependencies={"pf-mid": "^1.0.0"}, marker="app")
    project = r.make_project({"pf-app": "^2.0.0"})
    token = r.token("admin", "read")
    # the lockfile is made from metadata only: no tarball goes through the mirror yet
    r.npm("install", "--package-lock-only", cwd=project, token=token).ok()
    assert not [q for q in relay.requests[seen:] if "/-/pf-" in q]
    lock = json.loads((project / "package-lock.json").read_text())
    resp = r.http("POST", "/api/mirror/prefetch", body={"lockfile": lock},
                  token=r.token("admin", "admin"))
    assert resp.status == 201, resp.body
    job_id = json.loads(resp.body)["id"]
    deadline = time.monotonic() + 60
    while True:  # the server's prefetch worker (the lease holder) does the job
        job = json.loads(r.http("GET", f"/api/mirror/prefetch/{job_id}",
                                token=r.token("admin", "admin")).body)
        if job["status"] == "done" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert (job["status"], job["done"], job["failed"], job["total"]) == ("done", 3, 0, 3), job
    assert len([q for q in relay.requests[seen:] if "/-/pf-" in q]) == 3  # each tarball once
    relay.mode = "down"
    try:
        res = r.npm("ci", "--fetch-retries=0", cwd=project, token=token)  # a fresh npm cache
        res.ok()
        for name, marker in (("pf-app", "app"), ("pf-mid", "mid"), ("pf-leaf", "leaf")):
            assert (project / f"node_modules/{name}/marker.txt").read_text() == marker
    finally:
        relay.mode = "pass"
