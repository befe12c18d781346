"""npm's staged publishing answered by the approval queue: real `npm stage` commands."""
from __future__ import annotations

import hashlib
import json
import re
import tarfile

import pytest

pytestmark = pytest.mark.interop

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_stage_publish_list_view_download_approve_reject(registry_server, tmp_path):
    reg = registry_server
    name = "@gati-modules/it-staged"
    publisher, approver = reg.token("admin", "publish"), reg.token("admin", "approve")
    # someone who did not publish: npm view shows a publisher their own held versions
    reg.add_user("rita", "reader")
    reader = reg.token("rita", "read")
    pkg = reg.make_package(name, "1.0.0")

    staged = reg.npm("stage", "publish", "--json", cwd=pkg.path, token=publisher).ok()
    stage_id = UUID.search(staged.stdout).group(0)
    # staged means not installable
    project = reg.make_project({name: "^1.0.0"})
    assert "E404" in reg.npm("install", cwd=project, token=reader).failed().output

    listed = reg.npm("stage", "list", "--json", token=approver).ok().json()
    assert [(i["id"], i["packageName"], i["version"]) for i in listed] == [(stage_id, name, "1.0.0")]
    assert reg.npm("stage", "list", name, "--json", token=approver).ok().json()[0]["id"] == stage_id
    view = reg.npm("stage", "view", stage_id, "--json", token=approver).ok().json()
    assert (view["packageName"], view["version"], view["tag"]) == (name, "1.0.0", "latest")

    downloads = tmp_path / "dl"
    downloads.mkdir()
    reg.npm("stage", "download", stage_id, cwd=downloads, token=approver).ok()
    (tgz,) = downloads.glob("*.tgz")
    assert hashlib.sha1(tgz.read_bytes()).hexdigest() == view["shasum"]
    with tarfile.open(tgz) as tar:
        got = {m.name.partition("/")[2]: tar.extractfile(m).read() for m in tar if m.isfile()}
    assert got == pkg.files

    reg.npm("stage", "approve", stage_id, token=approver).ok()
    reg.npm("install", cwd=project, token=reader).ok()
    installed = json.loads((project / "node_modules" / name / "package.json").read_text())
    assert installed["version"] == "1.0.0"
    assert reg.npm("stage", "list", "--json", token=approver).ok().json() == []

    # reject: never installable, and gone from the list
    newer = reg.make_package(name, "1.1.0")
    second = UUID.search(reg.npm("stage", "publish", "--json", cwd=newer.path,
                                 token=publisher).ok().stdout).group(0)
    reg.npm("stage", "reject", second, token=approver).ok()
    assert reg.npm("stage", "list", "--json", token=approver).ok().json() == []
    assert reg.npm("view", name, "versions", "--json", token=reader).ok().json() == ["1.0.0"]
    # unknown ids are 404
    third = UUID.search(reg.npm("stage", "publish", "--json", cwd=reg.make_package(name, "1.2.0").path,
                                token=publisher).ok().stdout).group(0)
    # the publisher sees it but may not approve it; someone else does not even see it
    assert "E403" in reg.npm("stage", "approve", third, token=publisher).failed().output
    assert "E404" in reg.npm("stage", "approve", third, token=reader).failed().output
    assert "E404" in reg.npm("stage", "view", "00000000-0000-4000-8000-000000000000",
                             token=approver).failed().output
