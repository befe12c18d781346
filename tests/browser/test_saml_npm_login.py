"""``npm login --auth-type=web`` through SAML, end to end: the real npm starts the web
login, headless Chromium opens its URL, chooses SSO, signs in at a real pysaml2 IdP (an
HTTP server in the test process), comes back signed in, confirms, and npm gets its
token."""
from __future__ import annotations

import os
import re
import select
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from gati_private_registry.testing import free_port

from ..saml_idp import FakeIdP, HttpIdP, make_cert
from .conftest import ADMIN_PASSWORD, Server

ALICE = {"uid": ["alice"], "mail": ["alice@example.org"], "displayName": ["Alice Example"],
         "groups": ["payments-devs"]}


@pytest.fixture(scope="module")
def idp_http() -> Iterator[HttpIdP]:
    idp = HttpIdP(None, {"alice": ("alice-idp-pw", ALICE)}).start()  # type: ignore[arg-type]
    idp.entity = FakeIdP(base=idp.url)
    yield idp
    idp.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, idp_http: HttpIdP) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("gati-browser-saml")
    data_dir = workdir / "data"
    data_dir.mkdir()
    sp_key, sp_cert = make_cert(str(workdir), "sp")
    config = workdir / "registry.toml"
    config.write_text(f"""
[saml]
enabled = true
idp_metadata_file = "{idp_http.entity.metadata_file()}"
key_file = "{sp_key}"
cert_file = "{sp_cert}"
[[sso.rules]]
group = "payments-devs"
team = "payments"
role = "publisher"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATI_REGISTRY_")}
    env.update({"GATI_REGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "GATI_REGISTRY_CONFIG": str(config)})
    srv = Server(port=free_port(), data_dir=data_dir, env=env, log_path=workdir / "server.log")
    try:
        srv.start()
        with urllib.request.urlopen(srv.url + "/saml/metadata", timeout=30) as r:
            idp_http.server = idp_http.entity.server(r.read().decode())
        yield srv
    finally:
        srv.stop()


def _read_until(proc: subprocess.Popen[bytes], pattern: str, seen: str,
                deadline: float) -> tuple[re.Match[str] | None, str]:
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    while time.monotonic() < deadline:
        m = re.search(pattern, seen)
        if m:
            return m, seen
        # raw reads: select() does not see what a buffered read already pulled in
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536).decode(errors="replace")
            if not chunk:
                break
            seen += chunk
    return re.search(pattern, seen), seen


def test_npm_web_login_through_the_saml_idp(server: Server, page: Any, tmp_path: Path,
                                            screenshots: Path) -> None:
    npmrc = tmp_path / ".npmrc"
    npmrc.write_text(f"registry={server.url}/npm/\n")
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("npm_config_")}
    env.update({"HOME": str(tmp_path), "NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1"})
    npm = ["npm", "--userconfig", str(npmrc), "--cache", str(tmp_path / "cache")]
    proc = subprocess.Popen(npm + ["login", "--auth-type=web", "--browser=false"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    try:
        m, seen = _read_until(proc, r"Login at:\s*(https?://\S+)\s", "", time.monotonic() + 60)
        assert m, f"npm printed no login URL:\n{seen}"
        page.goto(m.group(1))
        assert "Sign in to finish npm login" in page.inner_text("h1")
        page.click("#sso-login")
        page.wait_for_selector("#idp-form")
        assert page.url.startswith(f"http://127.0.0.1:") and "/sso?SAMLRequest=" in page.url
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "alice-idp-pw")
        page.click("#idp-submit")
        # the IdP's page posts the signed response to /saml/acs, which signs alice in
        # and returns her to npm's login page
        page.wait_for_selector("#confirm-form")
        assert "alice" in page.inner_text(".who")
        page.screenshot(path=str(screenshots / "saml-npm-login.png"), full_page=True)
        page.click("#confirm-form button[type=submit]")
        page.wait_for_selector("#npm-login-done")
        _, seen = _read_until(proc, r"(?!)", seen, time.monotonic() + 30)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    assert proc.returncode == 0, f"npm login (web) failed:\n{seen}"
    assert "_authToken=" in npmrc.read_text()
    who = subprocess.run(npm + ["whoami"], env=env, capture_output=True, text=True, timeout=60)
    assert who.returncode == 0 and who.stdout.strip() == "alice", who
