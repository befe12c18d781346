"""Tarballs in an S3-compatible object store (a real S3 API served by moto's server on
loopback), behind the same BlobStore protocol: publish, install reads, fsck, backup and
restore (both database backends)."""
from __future__ import annotations

import base64
import hashlib
import uuid
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from gati_private_registry.errors import NotFound
from gati_private_registry.services import maintenance
from gati_private_registry.settings import Settings
from gati_private_registry.storage.s3blobs import S3BlobStore
from gati_private_registry.testing import ModuleSpec, free_port

from .driver import Registry

CREDENTIALS = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _bucket(endpoint: str) -> str:
    name = "gati-" + uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def settings_overrides(s3_endpoint: str) -> dict[str, Any]:
    return {"blobs": {"backend": "s3", "bucket": _bucket(s3_endpoint), "endpoint_url": s3_endpoint,
                      **CREDENTIALS}}


def test_publish_and_serve_from_s3(registry: Registry, settings: Settings) -> None:
    store = registry.services.blobs
    assert isinstance(store, S3BlobStore)
    assert registry.publish(ModuleSpec("in-s3", "1.0.0")).status_code == 201
    doc = registry.doc("in-s3")
    resp = registry.tarball("in-s3", "1.0.0")
    assert resp.status_code == 200
    data = resp.data
    assert "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode() == \
        doc["versions"]["1.0.0"]["dist"]["integrity"]
    assert int(resp.headers["Content-Length"]) == len(data)
    digest = hashlib.sha512(data).hexdigest()
    assert list(store.digests()) == [digest] and store.size(digest) == len(data)
    assert not (settings.data / "blobs").exists()      # nothing on the local disk
    assert registry.client.get("/readyz").json["checks"]["blobs"] == "ok"
    with pytest.raises(NotFound):
        store.open("0" * 128)


def test_fsck_backup_and_restore_with_s3(registry: Registry, settings: Settings, tmp_path: Path,
                                         s3_endpoint: str, backend: str,
                                         request: pytest.FixtureRequest) -> None:
    registry.publish(ModuleSpec("kept-s3", "1.0.0"))
    store = registry.services.blobs
    assert maintenance.fsck(registry.services.db, store).problems == 0
    orphan = store.put(b"an upload whose row never committed")
    report = maintenance.fsck(registry.services.db, store, repair=True)
    assert report.orphan_files == [orphan] and not store.exists(orphan)

    manifest = maintenance.backup(settings, registry.services.db, store, tmp_path / "backup")
    assert len(manifest["blobs"]) == 1
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'restored' / 'registry.db'}"
    else:
        factory = request.getfixturevalue("postgres")
        url = factory.url(factory.create())
    target = Settings.for_tests(tmp_path / "restored", database={"url": url}, blobs={
        "backend": "s3", "bucket": _bucket(s3_endpoint), "endpoint_url": s3_endpoint, **CREDENTIALS})
    maintenance.restore(target, tmp_path / "backup")
    restored = S3BlobStore(target.blobs.bucket, endpoint_url=s3_endpoint, **{
        k: v for k, v in CREDENTIALS.items()})
    assert list(restored.digests()) == list(manifest["blobs"])


def test_s3_settings_are_validated() -> None:
    from gati_private_registry.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as err:
        Settings.for_tests(Path("/tmp/x"), blobs={"backend": "s3"})
    assert [d.field for d in err.value.details] == ["blobs.bucket"]
    with pytest.raises(ValidationFailed) as err:
        Settings.for_tests(Path("/tmp/x"), blobs={"backend": "ftp"})
    assert [d.field for d in err.value.details] == ["blobs.backend"]
