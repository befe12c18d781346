"""Back up a live registry, wipe it (data directory and database), restore, and use it
again through the real npm: the same users and tokens, installable modules with the same
bytes and the same signatures (npm's own verification), held versions still held, and
new publishes work. ``GATI_TEST_FROM_BACKUP=1`` also runs the whole interop suite on
servers restored from a backup (see tests/interop/conftest.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

REGISTRY_ENV = {"APPROVALS__DEFAULT_MODE": "auto"}


def _wipe_database(reg) -> None:
    if reg.backend == "postgres":
        from sqlalchemy import create_engine, inspect, text

        engine = create_engine(reg.env["GATI_REGISTRY_DATABASE__URL"], isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as c:
                c.execute(text("DROP SCHEMA public CASCADE"))
                c.execute(text("CREATE SCHEMA public"))
            assert inspect(engine).get_table_names() == []
        finally:
            engine.dispose()


def test_backup_wipe_restore_then_use_it_again(registry_server, tmp_path: Path):
    reg = registry_server
    names = [f"@gati-modules/br-{i}" for i in range(5)]
    for name in names:
        reg.publish_dir(reg.make_package(name, "1.0.0").path, reg.token("admin", "publish")).ok()
    held = reg.make_package("@held/secret-plan", "1.0.0")   # a staged version always waits
    staged = reg.http("POST", "/npm/-/stage/package/@held/secret-plan", token=reg.token("admin", "publish"),
                      body=reg.publish_body(held.manifest, held.tarball()))
    assert staged.status == 201, staged
    reg.add_user("bob", "publisher", password="bob-password-1")
    bob = reg.token("bob", "publish")                  # must still work after the restore
    project = reg.make_project({name: "^1.0.0" for name in names})
    reg.npm("install", cwd=project, token=reg.token("admin", "read")).ok()
    before = {name: json.loads(reg.packument(name).body) for name in names}

    backup = tmp_path / "backup"
    reg.cli("backup", "--to", str(backup)).ok()
    reg.stop()
    shutil.rmtree(reg.data_dir)                         # the disaster
    reg.data_dir.mkdir()
    _wipe_database(reg)
    reg.cli("restore", "--from", str(backup)).ok()
    reg.start()

    for name in names:
        assert json.loads(reg.packument(name, bob).body)["versions"] == before[name]["versions"]
    fresh = reg.make_project({name: "^1.0.0" for name in names}, name="after-restore")
    reg.npm("install", cwd=fresh, token=bob).ok()
    for name in names:
        a = (project / "node_modules" / name / "index.js").read_bytes()
        assert (fresh / "node_modules" / name / "index.js").read_bytes() == a
    # the held version is still held
    assert "not approved" in reg.http("GET", "/npm/@held/secret-plan", token=bob).body.decode()
    # and the registry takes new work, signed with the restored keys
    reg.publish_dir(reg.make_package("@gati-modules/br-new", "1.0.0").path, bob).ok()
    doc = json.loads(reg.packument("@gati-modules/br-new", bob).body)
    signature = doc["versions"]["1.0.0"]["dist"]["signatures"][0]
    assert signature["keyid"] == before[names[0]]["versions"]["1.0.0"]["dist"]["signatures"][0]["keyid"]
    assert json.loads(reg.cli("fsck", "--json").ok().stdout)["remaining"] == 0
