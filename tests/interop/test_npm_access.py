"""Who may read and publish, refused publishes store nothing, and concurrent publishes of
one version race to exactly one winner."""
from __future__ import annotations

import json
import re
import threading

import pytest

pytestmark = pytest.mark.interop


# --------------------------------------------------------------------------- 8


def test_reads_need_a_token_when_anonymous_read_is_off(registry_server):
    reg = registry_server
    name = "@gati-modules/it-private"
    pkg = reg.make_package(name, "1.0.0")
    assert reg.raw_publish(pkg).status in (200, 201)

    res = reg.npm("view", name, "--json").failed()
    assert "E401" in res.output, res
    res = reg.npm("install", cwd=reg.make_project({name: "1.0.0"})).failed()
    assert "E401" in res.output, res

    assert reg.http("GET", f"/npm/{name.replace('/', '%2f')}").status == 401
    assert reg.http("GET", f"/npm/{name}/-/it-private-1.0.0.tgz").status == 401
    # a bad token is no better than none
    assert reg.http("GET", f"/npm/{name.replace('/', '%2f')}", token="not-a-token").status == 401

    # and with a read token it works
    view = reg.npm("view", name, "--json", token=reg.token("admin", "read")).ok().json()
    assert view["version"] == "1.0.0"


def test_read_only_token_cannot_publish(registry_server):
    reg = registry_server
    name = "gati-it-readonly"
    pkg = reg.make_package(name, "1.0.0")
    res = reg.publish_dir(pkg.path, reg.token("admin", "read")).failed()
    assert "E403" in res.output, res
    assert reg.packument(name).status == 404

    reader_pw = reg.add_user(f"it-reader-{reg.backend}", "reader")
    assert reader_pw
    res = reg.publish_dir(pkg.path, reg.token(f"it-reader-{reg.backend}", "read")).failed()
    assert "E403" in res.output, res
    assert reg.packument(name).status == 404


def test_same_version_twice_is_refused_with_the_server_text(registry_server):
    reg = registry_server
    name = "@gati-modules/it-twice"
    admin = reg.token("admin", "publish")
    pkg = reg.make_package(name, "1.0.0")
    reg.publish_dir(pkg.path, admin).ok()
    first = reg.packument(name).json()

    raw = reg.raw_publish(pkg)
    assert raw.status in (403, 409), raw
    error = raw.json().get("error")
    assert isinstance(error, str) and error, f"4xx without an 'error' string: {raw}"

    # --force skips npm's own "cannot publish over" pre-check, so the PUT reaches the server
    res = reg.publish_dir(pkg.path, admin, "--force").failed()
    assert re.search(r"E40[39]", res.output), res
    assert error in res.output, f"npm did not print the server's error text {error!r}:\n{res}"

    # without --force npm refuses by itself (it read the packument)
    res = reg.publish_dir(pkg.path, admin).failed()
    assert "previously published" in res.output or re.search(r"E40[39]", res.output), res

    after = reg.packument(name).json()
    assert after["versions"]["1.0.0"]["dist"] == first["versions"]["1.0.0"]["dist"]


@pytest.mark.parametrize("field,tar_value", [
    ("name", "@gati-modules/it-someone-else"),
    ("version", "9.9.9"),
    ("dependencies", {"left-pad": "1.3.0"}),
])
def test_manifest_confusion_is_refused_and_nothing_stored(registry_server, field, tar_value):
    reg = registry_server
    name = f"@gati-modules/it-confused-{field}"
    honest = reg.make_package(name, "1.0.0")
    # the tarball says one thing ...
    tar_manifest = dict(honest.manifest, **{field: tar_value})
    files = dict(honest.files, **{"package.json": json.dumps(tar_manifest, indent=2).encode()})
    from_disk = type(honest)(honest.path, name, "1.0.0", files)
    # ... the metadata npm would send says another
    body = reg.publish_body(honest.manifest, from_disk.tarball())
    res = reg.raw_publish(honest, body=body)
    assert 400 <= res.status < 500, f"a {field} mismatch was not refused: {res}"
    assert isinstance(res.json().get("error"), str), res
    assert reg.packument(name).status == 404
    if field == "name":
        assert reg.packument(tar_value).status == 404
    assert reg.http("GET", f"/npm/{name}/-/{name.split('/')[1]}-1.0.0.tgz",
                    token=reg.token("admin", "read")).status == 404

    # the honest publish afterwards works: the refused one reserved nothing
    assert reg.raw_publish(honest).status in (200, 201)


# --------------------------------------------------------------------------- 9


def test_concurrent_publishes_of_one_version_have_one_winner(registry_server):
    reg = registry_server
    name = f"@gati-modules/it-race-{reg.backend}"
    pkg = reg.make_package(name, "1.0.0")
    token = reg.token("admin", "publish")
    body = reg.publish_body(pkg.manifest, pkg.tarball())
    n = 16
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def publish(i):
        barrier.wait()
        try:
            results[i] = reg.http("PUT", f"/npm/{name.replace('/', '%2f')}", body=body,
                                  token=token, timeout=120)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    statuses = [getattr(r, "status", repr(r)) for r in results]
    winners = [s for s in statuses if isinstance(s, int) and 200 <= s < 300]
    losers = [s for s in statuses if isinstance(s, int) and 400 <= s < 500]
    assert len(winners) == 1 and len(losers) == n - 1, \
        f"statuses: {statuses}; bodies: {[str(r)[:200] for r in results if getattr(r, 'status', 0) >= 500]}"

    doc = reg.packument(name)
    assert doc.status == 200, doc
    assert list(doc.json()["versions"]) == ["1.0.0"]
    assert len(re.findall(rf'"_id"\s*:\s*"{re.escape(name)}@1\.0\.0"', doc.body.decode())) == 1
    assert doc.json()["dist-tags"] == {"latest": "1.0.0"}
    # and the tarball is the one that was sent
    tgz = reg.http("GET", doc.json()["versions"]["1.0.0"]["dist"]["tarball"], token=token)
    assert tgz.status == 200 and tgz.body == pkg.tarball()


def test_adduser_of_a_new_user_is_refused_when_signup_is_off(registry_server):
    reg = registry_server
    client = reg.npm_client()
    session = client.pty("adduser", "--auth-type=legacy")
    session.expect(r"username:")
    session.sendline(f"it-nosignup-{reg.backend}")
    session.expect(r"password:")
    session.sendline("nosignup-pass-1")
    session.expect(r"email")
    session.sendline("nosignup@example.test")
    res = session.wait()
    assert res.returncode != 0, res
    assert re.search(r"E40[0-9]", res.output), res
    assert client.stored_token is None
    # and the account does not exist afterwards: login with the same password fails too
    session = client.pty("login", "--auth-type=legacy")
    session.expect(r"username:")
    session.sendline(f"it-nosignup-{reg.backend}")
    session.expect(r"password:")
    session.sendline("nosignup-pass-1")
    assert session.wait().returncode != 0
    assert client.stored_token is None
