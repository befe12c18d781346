"""With ``anonymous_read = true`` npm reads and installs without any token; writes still
need one."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.interop

REGISTRY_ENV = {"ANONYMOUS_READ": "true"}


def test_anonymous_install_and_authenticated_writes(registry_server):
    reg = registry_server
    name = "@gati-modules/it-open"
    pkg = reg.make_package(name, "1.0.0")
    reg.publish_dir(pkg.path, reg.token("admin", "publish")).ok()

    view = reg.npm("view", name, "--json").ok().json()  # no token at all
    assert view["version"] == "1.0.0"
    project = reg.make_project({name: "^1.0.0"})
    reg.npm("install", cwd=project).ok()
    root = project / "node_modules" / name
    assert json.loads((root / "package.json").read_text())["version"] == "1.0.0"
    for rel, data in pkg.files.items():
        assert (root / rel).read_bytes() == data, rel

    # writes without a token: npm refuses before sending; the server refuses a raw PUT
    newer = reg.make_package(name, "1.1.0")
    res = reg.npm("publish", cwd=newer.path).failed()
    assert "ENEEDAUTH" in res.output or "E401" in res.output, res
    body = reg.publish_body(newer.manifest, newer.tarball())
    raw = reg.http("PUT", f"/npm/{name.replace('/', '%2f')}", body=body)
    assert raw.status == 401, raw
    res = reg.npm("dist-tag", "add", f"{name}@1.0.0", "beta").failed()
    assert "ENEEDAUTH" in res.output or "E401" in res.output, res
    assert reg.packument(name).json()["dist-tags"] == {"latest": "1.0.0"}
