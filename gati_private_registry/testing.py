"""Helpers for tests of the registry and of plugins: build real tarballs and publish
bodies exactly as npm 11 sends them, and a driver with domain verbs."""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any, Mapping


def build_tarball(files: Mapping[str, bytes | str], root: str = "package") -> bytes:
    """A gzip'd tar with ``files`` (relative paths) under ``root/``, like ``npm pack``."""
    buf = io.BytesIO()
    # an uncompressed tar, gzip'd with a fixed header time: the same files give the
    # same bytes (tarfile's own "w:gz" stamps the current time into the gzip header)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 499162500  # npm's fixed date: 1985-10-26
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@dataclass
class ModuleSpec:
    """A Gati module to publish: ``package.json`` fields plus extra files."""

    name: str
    version: str = "1.0.0"
    dependencies: dict[str, str] = field(default_factory=dict)
    description: str = "a test module"
    keywords: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes | str] = field(default_factory=dict)
    gati_module: dict[str, Any] | None = None

    def package_json(self) -> dict[str, Any]:
        pj: dict[str, Any] = {"name": self.name, "version": self.version,
                              "description": self.description, "main": "index.js"}
        if self.keywords:
            pj["keywords"] = self.keywords
        if self.dependencies:
            pj["dependencies"] = dict(self.dependencies)
        pj.update(self.extra)
        return pj

    def all_files(self) -> dict[str, bytes | str]:
        files: dict[str, bytes | str] = {
            "package.json": json.dumps(self.package_json(), indent=2) + "\n",
            "index.js": f"module.exports = {{ name: {json.dumps(self.name)}, "
                        f"version: {json.dumps(self.version)} }};\n",
            "README.md": f"# {self.name}\n\n{self.description}\n",
        }
        gm = self.gati_module if self.gati_module is not None else {
            "name": self.name, "version": self.version, "type": "database",
            "contracts": ["gati.db/v1"]}
        if gm:
            files["gati-module.json"] = json.dumps(gm, indent=2) + "\n"
        files.update(self.files)
        return files


def publish_body(spec: ModuleSpec, *, tag: str = "latest", tarball: bytes | None = None,
                 manifest_overrides: Mapping[str, Any] | None = None,
                 registry: str = "http://localhost/npm/") -> dict[str, Any]:
    """The JSON npm 11 PUTs for ``npm publish`` of ``spec``."""
    data = tarball if tarball is not None else build_tarball(spec.all_files())
    manifest = spec.package_json()
    manifest.update({
        "readme": f"# {spec.name}\n\n{spec.description}\n", "readmeFilename": "README.md",
        "_id": f"{spec.name}@{spec.version}", "_nodeVersion": "20.20.2", "_npmVersion": "11.19.1",
        "dist": {"integrity": integrity_of(data), "shasum": hashlib.sha1(data).hexdigest(),
                 "tarball": f"{registry}{spec.name}/-/{spec.name}-{spec.version}.tgz"},
    })
    manifest.update(manifest_overrides or {})
    return {
        "_id": spec.name, "name": spec.name, "description": spec.description,
        "dist-tags": {tag: spec.version}, "versions": {spec.version: manifest}, "access": None,
        "_attachments": {f"{spec.name}-{spec.version}.tgz": {
            "content_type": "application/octet-stream",
            "data": base64.b64encode(data).decode(), "length": len(data)}},
    }


# -- a real server process, for interop and browser tests (and plugin authors) ----------


def http_call(method: str, url: str, token: str, body: Any = None,
              timeout: float = 30) -> tuple[int, bytes]:
    """One JSON request with a bearer token: ``(status, body)``, an HTTP error status
    included. Raises OSError when no answer came (a refused or dropped connection)."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        try:
            return e.code, e.read()
        finally:
            e.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command() -> list[str]:
    """``gati-registry`` from this interpreter's environment, else from PATH, else -m."""
    import shutil
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "gati-registry"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("gati-registry")
    return [found] if found else [sys.executable, "-m", "gati_private_registry.cli.admin"]


class ServerStartError(RuntimeError):
    """``gati-registry serve`` exited or did not answer ``/healthz`` in time."""


@dataclass
class ServerProcess:
    """``gati-registry serve`` as a subprocess in its own session, logging to a file.

    ``start()`` returns once ``/healthz`` answers 200 and raises :class:`ServerStartError`
    (with the log's tail) otherwise; ``stop()`` sends SIGTERM to the whole group and
    waits (SIGKILL after 20 s)."""

    port: int
    data_dir: Any
    env: dict[str, str]
    log_path: Any
    workers: int = 2
    cwd: Any = None
    start_timeout: float = 60.0
    proc: Any = None
    _log: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import subprocess
        import time
        import urllib.error
        import urllib.request

        cmd = server_command() + ["serve", "--host", "127.0.0.1", "--port", str(self.port),
                                  "--data", str(self.data_dir), "--workers", str(self.workers)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.cwd,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"gati-registry serve exited with {self.proc.returncode} during start-up "
                    f"({' '.join(cmd)}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                e.close()
            except OSError as e:
                last = repr(e)
            time.sleep(0.2)
        self.stop()
        raise ServerStartError(f"gati-registry serve not ready after {self.start_timeout}s "
                               f"(last /healthz: {last}):\n{self.log_tail()}")

    def stop(self) -> None:
        import os
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash, not a stop)."""
        import os
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 150) -> str:
        return read_log_tail(self.log_path, lines)


def read_log_tail(path: Any, lines: int = 150) -> str:
    """The last ``lines`` lines of a server log, for failure reports."""
    try:
        with open(path, errors="replace") as fh:
            return "\n".join(fh.read().splitlines()[-lines:])
    except OSError:
        return "(no log)"
