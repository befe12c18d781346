"""The real npm's account commands: adduser, login (legacy and web), whoami, token, logout."""
from __future__ import annotations

import html.parser
import http.cookiejar
import os
import re
import select
import time
import urllib.parse
import urllib.request

import pytest

pytestmark = pytest.mark.interop

REGISTRY_ENV = {"ALLOW_SIGNUP": "true"}


def legacy_login(client, command, username, password, email=None):
    """Answer npm's username/password(/email) prompts on a terminal."""
    session = client.pty(command, "--auth-type=legacy")
    session.expect(r"username:")
    session.sendline(username)
    session.expect(r"password:")
    session.sendline(password)
    if email is not None:
        session.expect(r"email")
        session.sendline(email)
    return session.wait()


def whoami(client):
    return client.run("whoami")


class FormParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms = []  # [(action, method, {name: value})]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append((a.get("action"), (a.get("method") or "get").lower(), {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][2][a["name"]] = a.get("value") or ""


def submit_login_form(login_url, username, password):
    """What a person does in the browser: open loginUrl, fill the form, submit it."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(login_url, timeout=30) as r:
        assert r.status == 200
        page = r.read().decode()
    parser = FormParser()
    parser.feed(page)
    forms = [f for f in parser.forms if "password" in f[2]]
    assert forms, f"no login form with a password field on {login_url}:\n{page[:2000]}"
    action, method, fields = forms[0]
    assert "csrf_token" in fields and fields["csrf_token"], f"no csrf_token in the form: {fields}"
    assert method == "post"
    fields.update({"username": username, "password": password})
    target = urllib.parse.urljoin(login_url, action) if action else login_url
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(target, data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with opener.open(req, timeout=30) as r:
        assert r.status in (200, 201, 204), r.status
        return r.read().decode()


# --------------------------------------------------------------------------- 2


def test_adduser_creates_a_user(registry_server):
    reg = registry_server
    client = reg.npm_client()
    name = f"it-signup-{reg.backend}"
    res = legacy_login(client, "adduser", name, "signup-pass-123", f"{name}@example.test")
    assert res.returncode == 0, res
    assert client.stored_token, f"adduser stored no token:\n{client.userconfig.read_text()}"
    assert whoami(client).ok().stdout.strip() == name
    # the new user can also log in again with the password
    again = reg.npm_client()
    assert legacy_login(again, "login", name, "signup-pass-123").returncode == 0
    assert whoami(again).ok().stdout.strip() == name


def test_legacy_login_existing_user_and_wrong_password(registry_server):
    reg = registry_server
    password = reg.add_user(f"it-bob-{reg.backend}", "publisher", "bob-pass-1234")
    name = f"it-bob-{reg.backend}"

    client = reg.npm_client()
    res = legacy_login(client, "login", name, password)
    assert res.returncode == 0, res
    assert whoami(client).ok().stdout.strip() == name

    bad = reg.npm_client()
    res = legacy_login(bad, "login", name, "not-the-password")
    assert res.returncode != 0, res
    assert re.search(r"E401|incorrect or missing password|unauthorized", res.output, re.I), res
    assert bad.stored_token is None
    whoami(bad).failed()
    assert re.search(r"ENEEDAUTH|E401", whoami(bad).output), whoami(bad)


def test_web_login(registry_server):
    reg = registry_server
    name = f"it-web-{reg.backend}"
    password = reg.add_user(name, "publisher", "web-pass-12345")
    client = reg.npm_client()
    proc = client.popen("login", "--browser=false")
    seen = ""
    login_url = None
    deadline = time.monotonic() + 60
    try:
        fd = proc.stdout.fileno()
        while login_url is None and time.monotonic() < deadline:
            # raw reads: select() does not see what a buffered readline() already pulled in
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                chunk = os.read(fd, 65536).decode(errors="replace")
                if not chunk and proc.poll() is not None:
                    break
                seen += chunk
                # npm prints "npm notice Log in on <registry>" first, then "Login at:\n<url>"
                m = re.search(r"Login at:\s*(https?://\S+)\s", seen)
                if m:
                    login_url = m.group(1)
        assert login_url, f"npm login printed no login URL (exit {proc.poll()}):\n{seen}"
        submit_login_form(login_url, name, password)
        while proc.poll() is None or select.select([fd], [], [], 0)[0]:
            if time.monotonic() > deadline + 60:
                raise AssertionError(f"npm login did not finish:\n{seen}")
            if select.select([fd], [], [], 0.5)[0]:
                chunk = os.read(fd, 65536).decode(errors="replace")
                if not chunk:
                    break
                seen += chunk
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == 0, f"npm login (web) failed:\n{seen}"
    assert client.stored_token, seen
    assert whoami(client).ok().stdout.strip() == name


# --------------------------------------------------------------------------- 3


def test_tokens_list_create_revoke_and_logout(registry_server):
    reg = registry_server
    name = f"it-carol-{reg.backend}"
    password = reg.add_user(name, "publisher", "carol-pass-123")
    client = reg.npm_client(reg.token(name, "publish"))
    assert whoami(client).ok().stdout.strip() == name

    before = client.run("token", "list", "--json").ok().json()
    assert isinstance(before, list) and len(before) >= 1, before

    session = client.pty("token", "create", "--json")
    session.expect(r"password:")
    session.sendline(password)
    res = session.wait()
    assert res.returncode == 0, res
    created = re.search(r'"token"\s*:\s*"([^"]+)"', res.output)
    assert created, res
    new_token = created.group(1)
    assert whoami(reg.npm_client(new_token)).ok().stdout.strip() == name

    after = client.run("token", "list", "--json").ok().json()
    assert len(after) == len(before) + 1, (before, after)
    assert new_token not in str(after), "token list must not show tokens in clear"
    # the keys as the server sends them (npm's output may redact them, see the test below)
    listed = reg.http("GET", "/npm/-/npm/v1/tokens", token=client.stored_token).json()
    keys_now = [t["key"] for t in listed["objects"]]
    assert len(keys_now) == len(after)
    new_keys = [k for k in keys_now if k not in {t["key"] for t in before}] \
        if all(t["key"] != "***" for t in before) else None
    if new_keys is None:  # npm redacted every key: find the new one by its creation time
        newest = max(listed["objects"], key=lambda t: t["created"])
        new_keys = [newest["key"]]
    assert len(new_keys) == 1, (before, listed)
    key = new_keys[0]

    res = client.run("token", "revoke", key[:8] if len(key) > 8 else key).ok()
    assert "Removed 1 token" in res.stdout, res
    remaining = {t["key"] for t in client.run("token", "list", "--json").ok().json()}
    assert key not in remaining
    res = whoami(reg.npm_client(new_token)).failed()
    assert "E401" in res.output, res
    assert reg.http("GET", "/npm/-/whoami", token=new_token).status == 401

    # npm logout deletes the token on the server and from .npmrc
    old = client.stored_token
    client.run("logout").ok()
    assert client.stored_token is None, client.userconfig.read_text()
    assert reg.http("GET", "/npm/-/whoami", token=old).status == 401
    res = whoami(reg.npm_client(old)).failed()
    assert "E401" in res.output, res


def test_token_list_shows_ids_npm_users_can_revoke_by(registry_server):
    """npm 11 redacts UUID-shaped strings in its output (@npmcli/redact), so a token key
    that is a UUID shows as "***" and the user has no id to give ``npm token revoke``."""
    reg = registry_server
    client = reg.npm_client(reg.token("admin", "publish"))
    res = client.run("token", "list").ok()
    ids = re.findall(r"with id (\S+)", res.stdout)
    assert ids, res
    assert all(i != "***" for i in ids), f"npm shows the token ids redacted:\n{res}"
    res = client.run("token", "revoke", ids[0]).ok()
    assert "Removed 1 token" in res.stdout, res


def test_wrong_password_for_token_create(registry_server):
    reg = registry_server
    name = f"it-dave-{reg.backend}"
    reg.add_user(name, "publisher", "dave-pass-1234")
    client = reg.npm_client(reg.token(name, "publish"))
    before = len(client.run("token", "list", "--json").ok().json())
    session = client.pty("token", "create")
    session.expect(r"password:")
    session.sendline("wrong-password")
    res = session.wait()
    assert res.returncode != 0, res
    assert re.search(r"E401|E403|password", res.output, re.I), res
    assert len(client.run("token", "list", "--json").ok().json()) == before
