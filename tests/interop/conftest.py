"""Interop fixtures: the real server as a subprocess, driven by the real npm, pnpm and yarn.

``registry_server`` starts one ``gati-registry serve`` per test module (and per backend:
``sqlite`` and ``postgres``) and hands the tests a :class:`Registry` driver with domain
verbs: ``token``, ``add_user``, ``npm``, ``publish_dir``, ``make_package``,
``raw_publish``... Everything a test needs comes through the driver or a fixture, so the
test modules import nothing from here (works with any pytest import mode).

A module may set ``REGISTRY_ENV = {"ALLOW_SIGNUP": "true", ...}``: extra
``GATI_REGISTRY_*`` variables for its server.

pnpm and yarn are installed once into ``~/.cache/gati-tests/node-tools/<versions>`` with the
machine's npm and its configured registry (never globally); override the versions with
``GATI_TEST_PNPM_VERSION`` / ``GATI_TEST_YARN_VERSION``.
"""
from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from gati_private_registry.testing import (ServerProcess, ServerStartError, free_port,
                                          read_log_tail, server_command)

PG_ADMIN_URL = os.environ.get(
    "GATI_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PNPM_VERSION = os.environ.get("GATI_TEST_PNPM_VERSION", "12.21.0")
YARN_VERSION = os.environ.get("GATI_TEST_YARN_VERSION", "4.18.1")
ADMIN_PASSWORD = "admin-interop-pw-1"
SERVER_START_TIMEOUT = 60.0
CLIENT_TIMEOUT = 180.0

BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interop: drives the real npm/pnpm/yarn against a real server process")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.interop)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        server = getattr(item, "funcargs", {}).get("registry_server")
        if isinstance(server, Registry):
            report.sections.append(
                (f"gati-registry server log ({server.backend}, tail)", server.log_tail()))


# --------------------------------------------------------------------------- helpers


def client_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for npm/pnpm/yarn: a private HOME, no inherited npm/yarn/pnpm
    settings, no update notifier, no funding or audit noise."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().startswith(("npm_config_", "yarn_", "pnpm_", "npm_package_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "NO_UPDATE_NOTIFIER": "1",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        "npm_config_progress": "false",
        "npm_config_color": "false",
        "FORCE_COLOR": "0",
        "NO_COLOR": "1",
        "COREPACK_ENABLE_STRICT": "0",
        "YARN_ENABLE_TELEMETRY": "0",
    })
    if extra:
        env.update(extra)
    return env


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr

    def __str__(self) -> str:
        return (f"$ {' '.join(self.args)}\n-> exit {self.returncode}\n"
                f"--- stdout\n{self.stdout[-6000:]}\n--- stderr\n{self.stderr[-6000:]}")

    def ok(self) -> "Result":
        assert self.returncode == 0, f"command failed:\n{self}"
        return self

    def failed(self) -> "Result":
        assert self.returncode != 0, f"command unexpectedly succeeded:\n{self}"
        return self

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"output is not JSON:\n{self}") from None


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        input: str | None = None, timeout: float = CLIENT_TIMEOUT) -> Result:
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.PIPE if input is not None
                            else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout}s: {' '.join(args)}\n{out}\n{err}")
    return Result([str(a) for a in args], proc.returncode, out, err)


class PtySession:
    """A tiny ``expect``: runs a command on a pseudo-terminal so that interactive prompts
    (npm's username/password/email/OTP questions) can be answered."""

    def __init__(self, args: list[str], *, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        import pty

        self.args = [str(a) for a in args]
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(self.args, cwd=cwd, env=env, stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True, close_fds=True)
        os.close(slave)
        self.fd = master
        self.buffer = ""
        self.seen = ""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not data:
            return False
        text = data.decode("utf-8", "replace")
        self.buffer += text
        self.seen += text
        return True

    def expect(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        regex = re.compile(pattern, re.I)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.buffer)
            if m:
                self.buffer = self.buffer[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)) and self.proc.poll() is not None:
                self.close()
                raise AssertionError(
                    f"{' '.join(self.args)}: did not see /{pattern}/ "
                    f"(exit={self.proc.poll()}); output so far:\n{self.seen[-4000:]}")

    def close(self) -> None:
        """Kill the child (if still running) and release the terminal."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def sendline(self, text: str) -> None:
        os.write(self.fd, (text + "\r").encode())

    def wait(self, timeout: float = 120) -> Result:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        if self.proc.poll() is None:
            self.close()
            raise AssertionError(f"timed out: {' '.join(self.args)}\n{self.seen[-4000:]}")
        while self._read(0.05) and select.select([self.fd], [], [], 0)[0]:
            pass
        self.close()
        return Result(self.args, self.proc.returncode, self.seen, "")


# --------------------------------------------------------------------------- packages


def sha512_integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def build_tarball(files: dict[str, bytes]) -> bytes:
    """A tarball the way npm packs one: every entry under ``package/``, 0644, fixed mtime."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo("package/" + rel)
            info.size = len(files[rel])
            info.mode = 0o644
            info.mtime = 499162500  # npm's 1985-10-26T08:15:00Z
            tar.addfile(info, io.BytesIO(files[rel]))
    return gzip.compress(raw.getvalue(), mtime=0)


def tarball_files(tgz: bytes) -> dict[str, bytes]:
    """``{relative path: bytes}`` of a package tarball (the first path component dropped)."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile():
                rel = member.name.split("/", 1)[1]
                f = tar.extractfile(member)
                assert f is not None
                out[rel] = f.read()
    return out


def read_tree(root: Path, skip: tuple[str, ...] = ("node_modules",)) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every file under root, not descending into ``skip``."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            p = Path(dirpath) / name
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def publish_body(manifest: dict[str, Any], tgz: bytes, *, registry_npm_url: str,
                 tag: str = "latest", access: str | None = None) -> dict[str, Any]:
    """The body ``npm publish`` (npm 11.19) sends, as captured (NPM-PROTOCOL.md 4.1)."""
    name, version = manifest["name"], manifest["version"]
    version_doc = dict(manifest)
    version_doc.setdefault("readme", "ERROR: No README data found!")
    version_doc.update({
        "_id": f"{name}@{version}",
        "_nodeVersion": "20.20.2",
        "_npmVersion": "11.19.1",
        "dist": {
            "integrity": sha512_integrity(tgz),
            "shasum": hashlib.sha1(tgz).hexdigest(),
            "tarball": f"{registry_npm_url.rstrip('/')}/{name}/-/{name}-{version}.tgz",
        },
    })
    body: dict[str, Any] = {"_id": name, "name": name}
    if "description" in manifest:
        body["description"] = manifest["description"]
    body.update({
        "dist-tags": {tag: version},
        "versions": {version: version_doc},
        "access": access,
        "_attachments": {
            f"{name}-{version}.tgz": {
                "content_type": "application/octet-stream",
                "data": base64.b64encode(tgz).decode(),
                "length": len(tgz),
            }
        },
    })
    return body


def escape_name(name: str) -> str:
    return name.replace("/", "%2f")


@dataclass
class Package:
    """A package source on disk and the exact files a publish of it contains."""

    path: Path
    name: str
    version: str
    files: dict[str, bytes]

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(self.files["package.json"])

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def tarball(self) -> bytes:
        return build_tarball(self.files)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"not JSON ({self.status}): {self.body[:500]!r}") from None

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.body[:800]!r}"


# --------------------------------------------------------------------------- the driver


@dataclass
class Registry:
    """A running ``gati-registry serve`` and verbs to drive it."""

    backend: str
    port: int
    data_dir: Path
    workdir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _server: ServerProcess | None = None
    _counter: int = 0
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def npm_url(self) -> str:
        return f"{self.url}/npm/"

    @property
    def npmrc_auth_key(self) -> str:
        return f"//127.0.0.1:{self.port}/npm/:_authToken"

    admin_password: str = ADMIN_PASSWORD

    # ---- process

    def start(self) -> None:
        self._server = ServerProcess(self.port, self.data_dir, self.env, self.log_path,
                                     workers=2, cwd=self.workdir)
        try:
            self._server.start()
        except ServerStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        self.proc = self._server.proc

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def log_tail(self, lines: int = 150) -> str:
        return read_log_tail(self.log_path, lines)

    def tmp(self, prefix: str) -> Path:
        self._counter += 1
        p = self.workdir / f"{prefix}-{self._counter}"
        p.mkdir(parents=True)
        return p

    # ---- admin CLI

    def cli(self, *args: str, input: str | None = None) -> Result:
        return run(server_command() + list(args) + ["--data", str(self.data_dir)],
                   env=self.env, input=input, cwd=self.workdir, timeout=60)

    def token(self, user: str = "admin", scope: str = "publish", *,
              expires_days: int | None = None, cached: bool = True) -> str:
        key = (user, scope)
        if cached and expires_days is None and key in self._tokens:
            return self._tokens[key]
        args = ["token", "create", "--user", user, "--scope", scope]
        if expires_days is not None:
            args += ["--expires-days", str(expires_days)]
        res = self.cli(*args).ok()
        token = res.stdout.strip()
        assert token and "\n" not in token and " " not in token, \
            f"token create must print only the token:\n{res}"
        if cached and expires_days is None:
            self._tokens[key] = token
        return token

    def add_user(self, name: str, role: str = "publisher", password: str | None = None) -> str:
        password = password or f"pw-{name}-{uuid.uuid4().hex[:8]}"
        self.cli("user", "add", name, "--role", role, "--password-stdin",
                 input=password + "\n").ok()
        return password

    # ---- raw HTTP

    def http(self, method: str, path: str, *, body: Any = None, token: str | None = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None,
             timeout: float = 60) -> Response:
        url = path if path.startswith("http") else self.url + path
        data = raw
        hdrs = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        hdrs.update(headers or {})
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            try:
                return Response(e.code, dict(e.headers), e.read())
            finally:
                e.close()

    def packument(self, name: str, token: str | None = None) -> Response:
        return self.http("GET", f"/npm/{escape_name(name)}", token=token or self.token("admin", "read"))

    def publish_body(self, manifest: dict[str, Any], tgz: bytes, *, tag: str = "latest",
                     access: str | None = None) -> dict[str, Any]:
        """The body ``npm publish`` sends; metadata and tarball may disagree on purpose."""
        return publish_body(manifest, tgz, registry_npm_url=self.npm_url, tag=tag, access=access)

    build_tarball = staticmethod(build_tarball)
    tarball_files = staticmethod(tarball_files)
    read_tree = staticmethod(read_tree)

    def raw_publish(self, pkg: Package, token: str | None = None, *, tag: str = "latest",
                    body: dict[str, Any] | None = None) -> Response:
        if body is None:
            body = publish_body(pkg.manifest, pkg.tarball(), registry_npm_url=self.npm_url, tag=tag)
        return self.http("PUT", f"/npm/{escape_name(pkg.name)}", body=body,
                         token=token or self.token("admin", "publish"))

    # ---- packages on disk

    def make_package(self, name: str, version: str = "1.0.0", *,
                     dependencies: dict[str, str] | None = None, keywords: list[str] | None = None,
                     description: str | None = None, extra_files: dict[str, bytes] | None = None,
                     root: Path | None = None) -> Package:
        """package.json + gati-module.json + a few text and binary files, written to disk."""
        path = (root or self.tmp("pkg")) / f"{name.replace('/', '__')}-{version}"
        manifest: dict[str, Any] = {
            "name": name,
            "version": version,
            "description": description or f"Gati interop test module {name}",
            "main": "index.js",
            "keywords": keywords or ["gati-module"],
            "license": "MIT",
        }
        if dependencies:
            manifest["dependencies"] = dependencies
        seed = hashlib.sha256(f"{name}@{version}".encode()).digest()
        files = {
            "package.json": (json.dumps(manifest, indent=2) + "\n").encode(),
            "gati-module.json": (json.dumps({
                "name": name, "version": version, "type": "database",
                "contracts": ["gati.db/v1"], "main": "index.js",
            }, indent=2) + "\n").encode(),
            "index.js": f"module.exports = {{ name: {json.dumps(name)}, version: '{version}' }};\n"
                        .encode(),
            "lib/util.js": f"// {name}@{version}\nexports.answer = 42;\n".encode(),
            "README.md": f"# {name}\n\nVersion {version}.\n".encode(),
            "data/blob.bin": b"".join(hashlib.sha256(seed + bytes([i])).digest()
                                      for i in range(64)) + bytes(range(256)),
        }
        files.update(extra_files or {})
        for rel, content in files.items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return Package(path, name, version, files)

    def make_project(self, dependencies: dict[str, str], *, name: str = "gati-it-project") -> Path:
        path = self.tmp("project")
        (path / "package.json").write_text(json.dumps({
            "name": name, "version": "0.0.0", "private": True, "dependencies": dependencies,
        }, indent=2) + "\n")
        return path

    # ---- npm

    def npm_client(self, token: str | None = None) -> "NpmClient":
        return NpmClient(self, self.tmp("npm-home"), token)

    def npm(self, *args: str, cwd: Path | None = None, token: str | None = None,
            input: str | None = None, cache: Path | None = None) -> Result:
        """The real npm with a fresh isolated userconfig (registry + optional token) and,
        unless given, a fresh cache."""
        return self.npm_client(token).run(*args, cwd=cwd, input=input, cache=cache)

    def publish_dir(self, path: Path, token: str | None = None, *args: str) -> Result:
        return self.npm("publish", *args, cwd=path, token=token or self.token("admin", "publish"))


class NpmClient:
    """One npm "user": a private HOME, its own ``.npmrc`` (which login/logout modify) and cache."""

    def __init__(self, registry: Registry, home: Path, token: str | None) -> None:
        self.registry = registry
        self.home = home
        self.userconfig = home / ".npmrc"
        self.cache = home / "npm-cache"
        lines = [f"registry={registry.npm_url}", "update-notifier=false", "fund=false",
                 "audit=false", "progress=false", "color=false", "loglevel=notice"]
        if token:
            lines.append(f"{registry.npmrc_auth_key}={token}")
        self.userconfig.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        return client_env(self.home, {"npm_config_userconfig": str(self.userconfig)})

    def base_args(self, cache: Path | None) -> list[str]:
        return ["npm", "--userconfig", str(self.userconfig), "--cache", str(cache or self.cache),
                "--no-audit", "--no-fund", "--no-update-notifier"]

    def run(self, *args: str, cwd: Path | None = None, input: str | None = None,
            cache: Path | None = None, timeout: float = CLIENT_TIMEOUT) -> Result:
        return run(self.base_args(cache) + list(args), cwd=cwd or self.home, env=self.env(),
                   input=input, timeout=timeout)

    def pty(self, *args: str, cwd: Path | None = None) -> PtySession:
        return PtySession(self.base_args(None) + list(args), cwd=cwd or self.home, env=self.env())

    def popen(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(self.base_args(None) + list(args), cwd=cwd or self.home,
                                env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    @property
    def stored_token(self) -> str | None:
        prefix = self.registry.npmrc_auth_key + "="
        for line in self.userconfig.read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        return None


# --------------------------------------------------------------------------- node tools


@dataclass
class NodeTools:
    prefix: Path

    @property
    def pnpm(self) -> str:
        return str(self.prefix / "node_modules/.bin/pnpm")

    @property
    def yarn(self) -> str:
        return str(self.prefix / "node_modules/.bin/yarn")

    def run_pnpm(self, *args: str, cwd: Path, home: Path, env: dict[str, str] | None = None,
                 timeout: float = CLIENT_TIMEOUT) -> Result:
        return run([self.pnpm, *args], cwd=cwd, env=client_env(home, env), timeout=timeout)

    def run_yarn(self, *args: str, cwd: Path, home: Path, env: dict[str, str] | None = None,
                 timeout: float = CLIENT_TIMEOUT) -> Result:
        return run([self.yarn, *args], cwd=cwd, env=client_env(home, env), timeout=timeout)


@pytest.fixture(scope="session")
def node_tools(tmp_path_factory: pytest.TempPathFactory) -> NodeTools:
    """pnpm and yarn 4 in a cached private prefix (installed with the machine's npm)."""
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not on PATH: the interop tests need the real clients")
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    prefix = cache_root / "gati-tests/node-tools" / f"pnpm-{PNPM_VERSION}_yarn-{YARN_VERSION}"
    tools = NodeTools(prefix)
    if not (Path(tools.pnpm).exists() and Path(tools.yarn).exists()):
        staging = prefix.with_name(prefix.name + f".tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        res = run(["npm", "install", "--prefix", str(staging), "--no-save", "--no-audit",
                   "--no-fund", "--loglevel=warn", f"pnpm@{PNPM_VERSION}",
                   f"@yarnpkg/cli-dist@{YARN_VERSION}"], cwd=staging, timeout=300)
        if res.returncode != 0:
            pytest.fail(f"could not install pnpm/yarn from the configured npm registry:\n{res}")
        shutil.rmtree(prefix, ignore_errors=True)
        try:
            staging.rename(prefix)
        except OSError:  # another process won the race
            shutil.rmtree(staging, ignore_errors=True)
    for binary, want in ((tools.pnpm, PNPM_VERSION), (tools.yarn, YARN_VERSION)):
        res = run([binary, "--version"], cwd=tmp_path_factory.getbasetemp(),
                  env=client_env(tmp_path_factory.mktemp("tool-home")), timeout=60)
        assert res.returncode == 0 and res.stdout.strip() == want, f"broken {binary}:\n{res}"
    return tools


# --------------------------------------------------------------------------- postgres


@pytest.fixture(scope="session")
def pg_admin_engine() -> Iterator[Any]:
    """An AUTOCOMMIT engine on the admin URL. PostgreSQL missing is a failure, not a skip:
    every database test runs on both backends."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(text("select 1"))
    except Exception as e:  # noqa: BLE001 - reported, not swallowed
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {e!r}", pytrace=False)
    yield engine
    engine.dispose()


@contextlib.contextmanager
def throwaway_database(engine: Any) -> Iterator[str]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = "gati_it_" + uuid.uuid4().hex[:12]
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_throwaway_url(pg_admin_engine: Any) -> Iterator[str]:
    """The URL of an empty PostgreSQL database, dropped after the test."""
    with throwaway_database(pg_admin_engine) as url:
        yield url


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def registry_env() -> dict[str, str]:
    """Extra ``GATI_REGISTRY_*`` variables (named without the prefix) that fixtures
    compute, such as a test directory's URL; a module overrides this fixture."""
    return {}


def _start_from_a_restored_backup(registry: "Registry") -> None:
    """``GATI_TEST_FROM_BACKUP=1``: initialise the registry (schema, admin, signing keys),
    back it up, wipe the data directory and the database, and restore, so the module's
    tests run on restored data."""
    from sqlalchemy import create_engine, text

    registry.cli("token", "create", "--user", "admin", "--scope", "read").ok()
    backup = registry.workdir / "seed-backup"
    registry.cli("backup", "--to", str(backup)).ok()
    shutil.rmtree(registry.data_dir)
    registry.data_dir.mkdir()
    url = registry.env.get("GATI_REGISTRY_DATABASE__URL")
    if url:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as c:
                c.execute(text("DROP SCHEMA public CASCADE"))
                c.execute(text("CREATE SCHEMA public"))
        finally:
            engine.dispose()
    registry.cli("restore", "--from", str(backup)).ok()


@pytest.fixture(scope="module", params=BACKENDS)
def registry_server(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    backend = request.param
    workdir = tmp_path_factory.mktemp(f"gati-it-{backend}")
    data_dir = workdir / "data"
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update({
        "GATI_REGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "GATI_REGISTRY_ANONYMOUS_READ": "false",
        "GATI_REGISTRY_ALLOW_SIGNUP": "false",
        "GATI_REGISTRY_LOG_LEVEL": "INFO",
        # publish-then-install tests opt into auto approval; approval tests set manual
        "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "auto",
    })
    env.update({f"GATI_REGISTRY_{k}": v
                for k, v in getattr(request.module, "REGISTRY_ENV", {}).items()})
    env.update({f"GATI_REGISTRY_{k}": v
                for k, v in request.getfixturevalue("registry_env").items()})
    with contextlib.ExitStack() as stack:
        if backend == "postgres":
            engine = request.getfixturevalue("pg_admin_engine")
            env["GATI_REGISTRY_DATABASE__URL"] = stack.enter_context(throwaway_database(engine))
        registry = Registry(backend=backend, port=free_port(), data_dir=data_dir,
                            workdir=workdir, env=env, log_path=workdir / "server.log")
        stack.callback(registry.stop)
        if os.environ.get("GATI_TEST_FROM_BACKUP") == "1":
            _start_from_a_restored_backup(registry)
        registry.start()
        yield registry
        code = registry.proc.poll() if registry.proc else None
        if code is not None:
            pytest.fail(f"the server died during the module (exit {code}):\n{registry.log_tail()}",
                        pytrace=False)
