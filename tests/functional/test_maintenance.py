"""fsck, backup and restore (both backends)."""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from gati_private_registry.app import prepare
from gati_private_registry.cli.admin import main as admin_cli
from gati_private_registry.errors import Conflict, ValidationFailed
from gati_private_registry.services import maintenance
from gati_private_registry.settings import Settings
from gati_private_registry.storage.models import Blob, Version
from gati_private_registry.testing import ModuleSpec

from .driver import Registry


def test_fsck_finds_and_repairs_what_a_crash_can_leave(registry: Registry) -> None:
    services = registry.services
    for name in ("fsck-a", "fsck-b"):
        assert registry.publish(ModuleSpec(name, "1.0.0")).status_code == 201
    clean = maintenance.fsck(services.db, services.blobs)
    assert clean.problems == 0 and clean.versions == 2 and clean.blobs == 2

    orphan = services.blobs.put(b"a tarball whose row never committed")
    with services.db.write() as s:
        s.execute(insert(Blob).values(digest="f" * 128, size=3, created_at=datetime.now(timezone.utc)))
    store_root = services.settings.blob_dir
    stale = store_root / ".tmp-crashed"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh = store_root / ".tmp-in-progress"
    fresh.write_bytes(b"still being written")
    with services.db.read() as s:
        victim = s.scalar(select(Version.blob_digest).join(Version.package).where(
            Version.version == "1.0.0").limit(1))
    path = services.blobs.path(victim)
    assert path is not None
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))

    report = maintenance.fsck(services.db, services.blobs)
    assert report.orphan_files == [orphan]
    assert report.orphan_rows == ["f" * 128]
    assert report.temp_files == [str(stale)]          # a young temp file may be a live publish
    assert report.damaged_files == []                 # reported with its version instead
    assert len(report.broken_versions) == 1 and "damaged" in report.broken_versions[0]
    assert report.problems == 4

    repaired = maintenance.fsck(services.db, services.blobs, repair=True)
    assert len(repaired.repaired) == 3 and repaired.unrepairable == 1
    after = maintenance.fsck(services.db, services.blobs)
    assert after.problems == 1 and after.broken_versions == repaired.broken_versions
    assert not services.blobs.exists(orphan) and not stale.exists() and fresh.exists()


def _fresh_target(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'restored' / 'registry.db'}"
    else:
        factory = request.getfixturevalue("postgres")
        url = factory.url(factory.create())
    return Settings.for_tests(tmp_path / "restored", database={"url": url})


def test_backup_wipe_restore_gives_back_the_same_registry(registry: Registry, settings: Settings,
                                                          tmp_path: Path, backend: str,
                                                          request: pytest.FixtureRequest) -> None:
    for i in range(3):
        registry.publish(ModuleSpec(f"kept-{i}", "1.0.0"))
    before = {f"kept-{i}": registry.doc(f"kept-{i}") for i in range(3)}
    tarball = registry.tarball("kept-0", "1.0.0").data
    target = tmp_path / "backup"
    manifest = maintenance.backup(settings, registry.services.db, registry.services.blobs, target)
    assert len(manifest["blobs"]) == 3 and any(k.startswith("keys/") for k in manifest["files"])
    with pytest.raises(Conflict):   # never over an earlier backup
        maintenance.backup(settings, registry.services.db, registry.services.blobs, target)

    restored_settings = _fresh_target(tmp_path, backend, request)
    maintenance.restore(restored_settings, target)
    with pytest.raises(Conflict):   # never over existing data
        maintenance.restore(restored_settings, target)
    services, generated = prepare(restored_settings)
    try:
        assert generated is None                       # the admin came back with the data
        assert maintenance.fsck(services.db, services.blobs).problems == 0
        from gati_private_registry.app import create_app
        from .driver import Registry as Driver
        again = Driver(create_app(restored_settings, services).test_client(), services)
        for name, doc in before.items():
            got = again.doc(name)
            assert got["versions"] == doc["versions"]   # same signatures, same keys
            assert got["dist-tags"] == doc["dist-tags"]
        assert again.tarball("kept-0", "1.0.0").data == tarball
    finally:
        services.close()


def test_a_tampered_backup_is_refused_before_anything_is_written(registry: Registry, settings: Settings,
                                                                 tmp_path: Path, backend: str,
                                                                 request: pytest.FixtureRequest) -> None:
    registry.publish(ModuleSpec("tamper", "1.0.0"))
    target = tmp_path / "backup"
    manifest = maintenance.backup(settings, registry.services.db, registry.services.blobs, target)
    blob = target / "blobs" / next(iter(manifest["blobs"]))
    data = bytearray(blob.read_bytes())
    data[10] ^= 1
    blob.write_bytes(bytes(data))
    restored = _fresh_target(tmp_path, backend, request)
    with pytest.raises(ValidationFailed) as err:
        maintenance.restore(restored, target)
    assert [d.field for d in err.value.details] == [f"blobs.{blob.name[:16]}"]
    assert not (tmp_path / "restored").exists() or not any((tmp_path / "restored").iterdir())


def test_backup_restore_and_fsck_commands(registry: Registry, settings: Settings, tmp_path: Path,
                                          backend: str, request: pytest.FixtureRequest) -> None:
    registry.publish(ModuleSpec("cli-kept", "1.0.0"))
    env: dict[str, Any] = {"GATI_REGISTRY_DATABASE__URL": settings.database_url}
    run = CliRunner().invoke
    ok = run(admin_cli, ["backup", "--to", str(tmp_path / "b"), "--data", str(settings.data)], env=env)
    assert ok.exit_code == 0, ok.output
    assert "1 blobs" in ok.output
    checked = run(admin_cli, ["fsck", "--json", "--data", str(settings.data)], env=env)
    assert checked.exit_code == 0 and '"remaining": 0' in checked.output
    target = _fresh_target(tmp_path, backend, request)
    env2 = {"GATI_REGISTRY_DATABASE__URL": target.database_url}
    restored = run(admin_cli, ["restore", "--from", str(tmp_path / "b"), "--data", str(target.data)], env=env2)
    assert restored.exit_code == 0, restored.output
    refused = run(admin_cli, ["restore", "--from", str(tmp_path / "b"), "--data", str(target.data)], env=env2)
    assert refused.exit_code == 1 and "not empty" in refused.output
    assert run(admin_cli, ["fsck", "--data", str(target.data)], env=env2).exit_code == 0
