"""``gati registry login | logout | whoami``."""
from __future__ import annotations

import sys
import time
import webbrowser
from datetime import datetime, timezone

import click

from ..errors import AuthProblem, ClientError, UsageProblem, VerificationFailed
from ..http import Http
from ..trust import PinnedKey, Trust, same_fingerprint, server_keys
from . import common, session
from .session import Session

WEB_LOGIN_TIMEOUT = 300.0


@click.group()
def registry() -> None:
    """Sign in to a registry and pin its organisation keys."""


def _whoami(http: Http, token: str) -> str:
    doc = http.check(http.send("GET", http.npm("-/whoami"), token=token),
                     "checking the token").json()
    name = doc.get("username") if isinstance(doc, dict) else None
    if not isinstance(name, str):
        raise AuthProblem("the registry did not accept the token",
                          hint="create a new token in the registry's web panel")
    return name


def _password_login(http: Http, username: str, password: str) -> str:
    body = {"_id": f"org.couchdb.user:{username}", "name": username, "password": password,
            "type": "user", "roles": [],
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    resp = http.send("PUT", http.npm(f"-/user/org.couchdb.user:{username}"), body=body,
                     auth=False)
    if resp.status == 401:
        raise AuthProblem(f"wrong username or password for {username}",
                          hint="check them, or use --token with a token from the web panel")
    doc = http.check(resp, "signing in").json()
    token = doc.get("token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise AuthProblem("the registry answered the login without a token")
    return token


def _web_login(s: Session, http: Http) -> str | None:
    """npm's web login; None when the registry does not offer it."""
    resp = http.send("POST", http.npm("-/v1/login"), body={}, auth=False)
    if resp.status >= 400:
        return None
    doc = resp.json()
    login_url, done_url = doc.get("loginUrl"), doc.get("doneUrl")
    if not isinstance(login_url, str) or not isinstance(done_url, str):
        return None
    s.out.line(f"Open this page to sign in: {login_url}")
    if sys.stdout.isatty():
        webbrowser.open(login_url)
    s.out.line("Waiting for the browser…")
    deadline = time.monotonic() + WEB_LOGIN_TIMEOUT
    while time.monotonic() < deadline:
        resp = http.send("GET", done_url, auth=False)
        if resp.status == 202:
            try:
                wait = float(resp.header("retry-after") or 1)
            except ValueError:
                wait = 1.0
            time.sleep(min(max(wait, 0.5), 10))
            continue
        doc = http.check(resp, "finishing the web login").json()
        if isinstance(doc, dict) and isinstance(doc.get("token"), str):
            return str(doc["token"])
        raise AuthProblem("the web login ended without a token")
    raise AuthProblem("the web login timed out", hint="run gati registry login again")


def _pin_keys(s: Session, http: Http, trust_key: str | None, yes: bool) -> tuple[Trust, list[PinnedKey]]:
    """Decide which of the registry's keys to trust (nothing is stored here)."""
    doc = http.get_json(http.api("keys"), "reading the organisation keys")
    offered = server_keys(doc)
    trust = s.trust()
    trust.refresh(offered)
    new = trust.untrusted(offered)
    if trust_key:
        match = [k for k in offered if same_fingerprint(k.fingerprint, trust_key)]
        if not match:
            raise VerificationFailed(
                f"the registry serves no organisation key with fingerprint {trust_key}",
                hint="served: " + (", ".join(k.fingerprint for k in offered) or "none")
                     + "; check the fingerprint with your administrators")
        if match[0].revoked:
            raise VerificationFailed(f"the key {trust_key} is revoked")
        new = [k for k in new if k.keyid == match[0].keyid]
    elif new and not yes:
        if not sys.stdin.isatty() or s.out.json_mode:
            raise UsageProblem(
                "the registry's organisation key is not pinned yet: "
                + ", ".join(k.fingerprint for k in new),
                hint="compare the fingerprint with your administrators', then pass "
                     "--trust-key FINGERPRINT (or --yes to trust what is served)")
        for k in new:
            s.out.line(f"Organisation key {k.keyid}\n  fingerprint {k.fingerprint}")
        if not click.confirm("Trust these keys for verifying modules?", err=True):
            raise VerificationFailed("keys not trusted; nothing was stored")
    for k in new:
        trust.pin(k)
    return trust, new


@registry.command()
@common
@click.option("--token", metavar="TOKEN", help="Use an existing token (from the web panel).")
@click.option("--username", metavar="NAME", help="Sign in with a username...")
@click.option("--password-stdin", is_flag=True, help="...and a password read from stdin.")
@click.option("--trust-key", metavar="FINGERPRINT",
              help="Pin only the organisation key with this fingerprint.")
@click.option("--yes", "-y", is_flag=True, help="Trust the keys the registry serves.")
def login(registry: str | None, json_mode: bool, token: str | None, username: str | None,
          password_stdin: bool, trust_key: str | None, yes: bool) -> None:
    """Sign in (web login, username and password, or a token), store the token (mode
    0600) and pin the organisation keys."""
    s = session(registry, json_mode)
    root = s.root
    http = Http(root)
    if token and username:
        raise UsageProblem("give either --token or --username, not both")
    if password_stdin and not username:
        raise UsageProblem("--password-stdin needs --username")
    if username:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        elif sys.stdin.isatty():
            password = click.prompt("Password", hide_input=True, err=True)
        else:
            raise UsageProblem("no password", hint="pass --password-stdin and pipe it in")
        token = _password_login(http, username, password)
    elif not token:
        token = _web_login(s, http)
        if token is None:
            if not sys.stdin.isatty():
                raise UsageProblem("this registry has no web login",
                                   hint="use --token TOKEN or --username NAME --password-stdin")
            username = click.prompt("Username", err=True)
            token = _password_login(http, username,
                                    click.prompt("Password", hide_input=True, err=True))
    name = _whoami(http, token)
    trust, new = _pin_keys(s, http, trust_key, yes)
    s.config.store_login(root, token, name)
    s.save_trust(trust)
    if not s.config.settings().get("registry"):
        s.config.set_default_registry(root)
    s.out.success(f"signed in to {root} as {name}")
    for k in new:
        s.out.line(f"  pinned organisation key {k.fingerprint}")
    s.out.data({"registry": root, "username": name,
                "pinned": [k.fingerprint for k in trust.keys.values()],
                "newly_pinned": [k.fingerprint for k in new]})


@registry.command()
@common
def logout(registry: str | None, json_mode: bool) -> None:
    """Revoke the stored token on the registry and forget it here (pinned keys stay)."""
    s = session(registry, json_mode)
    stored = s.config.stored_login(s.root)
    if stored is None:
        raise AuthProblem(f"not signed in to {s.root}")
    http = Http(s.root, stored["token"])
    try:
        resp = http.send("DELETE", http.npm(f"-/user/token/{stored['token']}"))
        revoked = resp.status < 300
    except ClientError:
        revoked = False
    s.config.forget_login(s.root)
    if not revoked:
        s.out.warn("the registry did not confirm the token's revocation; it was removed "
                   "here, revoke it in the web panel if it is still listed")
    s.out.success(f"signed out of {s.root}")
    s.out.data({"registry": s.root, "revoked": revoked})


@registry.command()
@common
def whoami(registry: str | None, json_mode: bool) -> None:
    """Show who the stored token belongs to."""
    s = session(registry, json_mode)
    if not s.http.token:
        raise AuthProblem(f"not signed in to {s.root}",
                          hint=f"run gati registry login --registry {s.root}")
    name = _whoami(s.http, s.http.token)
    s.out.line(name)
    s.out.data({"registry": s.root, "username": name})
