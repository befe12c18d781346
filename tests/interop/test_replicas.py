"""Beyond one machine: three ``gati-registry serve`` replicas (own data directories, own
caches) on one PostgreSQL, with one shared blob directory and one shared keys directory.
Concurrent publishes, approvals and installs go through all three; afterwards every
packument is the same from each replica, each webhook event was delivered exactly once
although every replica follows the changes feed, and nothing was lost."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from gati_private_registry.testing import (ModuleSpec, ServerProcess, free_port, http_call,
                                           publish_body, server_command)
from tests.functional.webhook_receiver import Receiver

pytestmark = pytest.mark.interop

PACKAGES = [f"@gati-modules/rep-{i}" for i in range(6)]
VERSIONS = ["1.0.0", "1.1.0", "1.2.0", "2.0.0"]


@pytest.fixture
def replicas(tmp_path: Path, pg_throwaway_url: str) -> Iterator[list[ServerProcess]]:
    shared = {"GATI_REGISTRY_DATABASE__URL": pg_throwaway_url,
              "GATI_REGISTRY_BLOBS__PATH": str(tmp_path / "shared-blobs"),
              "GATI_REGISTRY_SIGNING__KEYS_DIR": str(tmp_path / "shared-keys"),
              "GATI_REGISTRY_SECRET_KEY": "one-secret-for-every-replica",
              "GATI_REGISTRY_ADMIN_PASSWORD": "admin-pass-1",
              "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "manual",
              "GATI_REGISTRY_ACCESS_LOG": "false"}
    ports = [free_port() for _ in range(3)]
    # behind one load balancer: every replica builds the same tarball URLs
    shared["GATI_REGISTRY_PUBLIC_URL"] = f"http://127.0.0.1:{ports[0]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update(shared)
    servers = [ServerProcess(port, tmp_path / f"data-{i}", env, tmp_path / f"replica-{i}.log",
                             workers=2) for i, port in enumerate(ports)]
    try:
        for server in servers:  # the first applies the migrations and makes the keys
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _token(server: ServerProcess, scope: str) -> str:
    return subprocess.run(server_command() + ["token", "create", "--user", "admin", "--scope", scope,
                                              "--data", str(server.data_dir)],
                          env=server.env, capture_output=True, text=True, check=True).stdout.strip()


def test_three_replicas_one_database(replicas: list[ServerProcess], tmp_path: Path) -> None:
    publish, approve, read, admin = (_token(replicas[0], s) for s in
                                     ("publish", "approve", "read", "admin"))
    receiver = Receiver()
    try:
        status, body = http_call("POST", f"{replicas[1].url}/api/webhooks", admin,
                             {"url": receiver.url("/all"), "events": ["version.publish", "version.state"]})
        assert status == 201, body

        # concurrent publishes through all three; two threads share each package, so
        # replicas contend for the same package rows
        acknowledged: list[tuple[str, str]] = []
        lock = threading.Lock()

        def publisher(worker: int) -> None:
            for n, (name, version) in enumerate((p, v) for p in PACKAGES for v in VERSIONS):
                if n % 3 != worker:
                    continue
                server = replicas[(n + worker) % 3]
                doc = publish_body(ModuleSpec(name, version))
                code, _ = http_call("PUT", f"{server.url}/npm/{name.replace('/', '%2f')}", publish, doc)
                if code in (200, 201):
                    with lock:
                        acknowledged.append((name, version))

        threads = [threading.Thread(target=publisher, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(acknowledged) == sorted((p, v) for p in PACKAGES for v in VERSIONS)

        # approvals, also concurrent and spread over the replicas
        def approver(worker: int) -> None:
            for n, (name, version) in enumerate(sorted(acknowledged)):
                if n % 3 == worker:
                    code, out = http_call("POST", f"{replicas[worker].url}/api/modules/{name}/{version}/approve",
                                      approve, {"reason": "replica test"})
                    assert code == 200, out

        threads = [threading.Thread(target=approver, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        # installs through the replicas: every tarball from every replica, integrity checked
        time.sleep(1.5)  # a replica's packument cache revalidates within a second
        docs = []
        for server in replicas:
            view = {}
            for name in PACKAGES:
                code, raw = http_call("GET", f"{server.url}/npm/{name.replace('/', '%2f')}", read)
                assert code == 200, raw
                view[name] = json.loads(raw)
            docs.append(view)
        assert docs[0] == docs[1] == docs[2], "replicas disagree on a packument"
        for i, server in enumerate(replicas):
            for name in PACKAGES:
                for version, entry in docs[0][name]["versions"].items():
                    url = entry["dist"]["tarball"].replace(replicas[0].url, server.url)
                    code, data = http_call("GET", url, read)
                    assert code == 200
                    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
                    assert digest == entry["dist"]["integrity"]
                    assert len(entry["dist"]["signatures"]) == 1
        for name in PACKAGES:
            assert sorted(docs[0][name]["versions"]) == VERSIONS
            assert docs[0][name]["dist-tags"]["latest"] == "2.0.0"

        # every event exactly once, although six gunicorn workers follow the feed
        expected = 2 * len(acknowledged)
        deadline = time.monotonic() + 60
        while len(receiver.requests) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # any duplicate would arrive now
        seen = Counter((r.json["event"], r.json["package"], r.json["version"])
                       for r in receiver.requests)
        assert len(receiver.requests) == expected, [replica.log_tail(30) for replica in replicas]
        assert set(seen.values()) == {1}
        assert len({r.headers["X-Gati-Delivery"] for r in receiver.requests}) == expected
    finally:
        receiver.close()
