"""An in-memory npm registry implementing the mirror's ``UpstreamClient`` contract, for
functional tests (the interop tests use a real ``gati-registry serve`` instead). It can
be taken down, slowed, or made to send corrupt or truncated tarballs."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from gati_private_registry.services.upstream.client import Fetched, UpstreamUnavailable
from gati_private_registry.testing import ModuleSpec, build_tarball, integrity_of

BASE = "https://upstream.example/"


@dataclass
class _Stream:
    data: bytes
    length: int | None

    def chunks(self) -> Iterator[bytes]:
        for i in range(0, len(self.data), 1000):
            yield self.data[i:i + 1000]

    def close(self) -> None:
        pass


@dataclass
class FakeUpstream:
    name: str = "public"
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tarballs: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    down: bool = False
    delay: float = 0.0
    corrupt: bool = False
    truncate: bool = False
    etags: bool = True
    keys: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, version: str, *, published: str = "2020-01-01T00:00:00.000Z",
            dependencies: dict[str, str] | None = None, tag: str | None = "latest",
            signatures: list[dict[str, str]] | None = None) -> bytes:
        spec = ModuleSpec(name=name, version=version, dependencies=dependencies or {},
                          description=f"upstream {name}", gati_module={})
        data = build_tarball(spec.all_files())
        url = f"{BASE}{name}/-/{name.split('/')[-1]}-{version}.tgz"
        self.tarballs[url] = data
        doc = self.docs.setdefault(name, {"_id": name, "name": name, "dist-tags": {},
                                          "versions": {}, "time": {}})
        dist: dict[str, Any] = {"integrity": integrity_of(data),
                                "shasum": hashlib.sha1(data).hexdigest(), "tarball": url}
        if signatures:
            dist["signatures"] = signatures
        doc["versions"][version] = {**spec.package_json(), "dist": dist}
        doc["time"][version] = published
        if tag:
            doc["dist-tags"][tag] = version
        return data

    def _check(self, what: str, timeout: float | None) -> None:
        self.requests.append(what)
        if self.delay:
            if timeout is not None and self.delay > timeout:
                time.sleep(timeout)
                raise UpstreamUnavailable(f"{self.name}: no answer in time")
            time.sleep(self.delay)
        if self.down:
            raise UpstreamUnavailable(f"{self.name}: connection refused")

    def packument(self, name: str, *, etag: str = "", last_modified: str = "",
                  timeout: float | None = None) -> Fetched:
        self._check(f"packument {name}", timeout)
        doc = self.docs.get(name)
        if doc is None:
            return Fetched(404)
        body = json.dumps(doc).encode()
        tag = f'"{hashlib.sha256(body).hexdigest()[:16]}"' if self.etags else ""
        if tag and etag == tag:
            return Fetched(304)
        return Fetched(200, body, tag)

    def document(self, path: str, *, etag: str = "", last_modified: str = "",
                 timeout: float | None = None) -> Fetched:
        self._check(f"document {path}", timeout)
        if path == "-/npm/v1/keys" and self.keys:
            return Fetched(200, json.dumps({"keys": self.keys}).encode())
        return Fetched(404)

    def tarball(self, url: str) -> _Stream:
        self._check(f"tarball {url}", None)
        data = self.tarballs.get(url)
        if data is None:
            raise UpstreamUnavailable(f"{url}: HTTP 404")
        if self.corrupt:
            data = data[:-10] + bytes(10)
        if self.truncate:
            return _Stream(data[: len(data) // 2], len(data))
        return _Stream(data, len(data))
