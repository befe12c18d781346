"""Browser fixtures: a real ``gati-registry serve`` subprocess, driven by Playwright's sync
API on Debian's Chromium (never a downloaded browser: no ``playwright install``).

One server per test module. SQLite is enough here: these tests check the panel's pages
and forms; the services behind them run on SQLite and PostgreSQL in tests/functional and
tests/interop.

Chromium missing is a failure with a clear message, not a skip: a skipped UI suite looks
green while testing nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from gati_private_registry.testing import (ServerProcess, ServerStartError, free_port,
                                          read_log_tail, server_command)

from gati_private_registry.testing import ModuleSpec, publish_body

ADMIN_PASSWORD = "admin-browser-pw-1"
SERVER_START_TIMEOUT = 60.0
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A running registry and the verbs the browser tests need besides the browser."""

    port: int
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _server: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = ServerProcess(self.port, self.data_dir, self.env, self.log_path,
                                     workers=1, cwd=None)
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

    def cli(self, *args: str, input: str | None = None) -> str:
        res = subprocess.run(server_command() + list(args) + ["--data", str(self.data_dir)],
                             env=self.env, input=input, capture_output=True, text=True,
                             check=False, timeout=60)
        assert res.returncode == 0, f"gati-registry {' '.join(args)} failed:\n{res.stderr}"
        return res.stdout

    def token(self, user: str = "admin", scope: str = "publish") -> str:
        return self.cli("token", "create", "--user", user, "--scope", scope).strip()

    def add_user(self, name: str, role: str, password: str) -> None:
        self.cli("user", "add", name, "--role", role, "--password-stdin", input=password + "\n")

    def http(self, method: str, path: str, token: str | None = None,
             body: Any = None) -> Response:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return Response(r.status, r.read())
        except urllib.error.HTTPError as e:
            with e:
                return Response(e.code, e.read())

    def publish(self, spec: ModuleSpec, token: str) -> None:
        """A raw ``npm publish`` PUT; the version waits in the queue (manual mode)."""
        quoted = spec.name.replace("/", "%2f")
        res = self.http("PUT", f"/npm/{quoted}", token,
                        publish_body(spec, registry=self.url + "/npm/"))
        assert res.status in (200, 201), f"publish failed: {res.status} {res.body[:500]!r}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("gati-browser")
    data_dir = workdir / "data"
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update({
        "GATI_REGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "GATI_REGISTRY_APPROVALS__DEFAULT_MODE": "manual",
        "GATI_REGISTRY_ANONYMOUS_READ": "false",
    })
    srv = Server(port=free_port(), data_dir=data_dir, env=env, log_path=workdir / "server.log")
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def _chromium() -> str:
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    pytest.fail("Chromium not found: the browser tests need Debian's chromium "
                f"(looked for {', '.join(CHROMIUM_CANDIDATES)}); install it with "
                "`apt-get install chromium`", pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed: pip install 'playwright>=1.45' "
                    "(its wheel bundles the driver; no `playwright install` needed)",
                    pytrace=False)
    executable = _chromium()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh browser context (no cookies) per test, with every JS dialog recorded in
    ``page.dialogs`` and dismissed."""
    context = browser.new_context(base_url=server.url, viewport={"width": 1200, "height": 900})
    context.set_default_timeout(15_000)
    p = context.new_page()
    dialogs: list[str] = []

    def on_dialog(d: Any) -> None:
        dialogs.append(d.message)
        d.dismiss()

    p.on("dialog", on_dialog)
    p.dialogs = dialogs
    try:
        yield p
    finally:
        context.close()


@pytest.fixture
def sign_in(server: Server) -> Any:
    def do(page: Any, username: str = "admin", password: str = ADMIN_PASSWORD,
           next_path: str = "/approvals") -> None:
        page.goto(next_path)
        # not signed in: every panel page sends us to /login?next=...
        assert "/login" in page.url
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("#login-form button[type=submit]")
        page.wait_for_url(f"**{next_path}*")
    return do


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
