"""Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, ...), behind the
:class:`~gati_private_registry.storage.blobs.BlobStore` protocol, for replicas that share
no filesystem. Objects are ``<prefix><digest>``; a PUT is atomic in S3, so a reader never
sees a partial blob, and the digest is checked before anything is stored."""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator, cast

from ..errors import NotFound
from .blobs import _valid_digest


class S3BlobStore:
    def __init__(self, bucket: str, *, prefix: str = "blobs/", endpoint_url: str | None = None,
                 region: str | None = None, access_key: str | None = None,
                 secret_key: str | None = None, client: Any = None) -> None:
        import boto3  # the s3 extra: only needed when this store is configured

        self.bucket = bucket
        self.prefix = prefix
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or None,
            aws_access_key_id=access_key or None, aws_secret_access_key=secret_key or None)

    def _key(self, digest: str) -> str:
        if not _valid_digest(digest):
            raise NotFound(f"no blob {digest[:16]}")
        return f"{self.prefix}{digest}"

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def put(self, data: bytes) -> str:
        digest = hashlib.sha512(data).hexdigest()
        if not self.exists(digest):
            self.client.put_object(Bucket=self.bucket, Key=self._key(digest), Body=data,
                                   ContentType="application/octet-stream")
        return digest

    def open(self, digest: str) -> BinaryIO:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(digest))
        except Exception as exc:
            if self._missing(exc):
                raise NotFound(f"no blob {digest[:16]}") from None
            raise
        return cast(BinaryIO, obj["Body"])

    def path(self, digest: str) -> Path | None:
        return None  # no local file: served by streaming, not sendfile

    def exists(self, digest: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(digest))
            return True
        except NotFound:
            return False
        except Exception as exc:
            if self._missing(exc):
                return False
            raise

    def size(self, digest: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(digest))
        except Exception as exc:
            if self._missing(exc):
                raise NotFound(f"no blob {digest[:16]}") from None
            raise
        return int(head["ContentLength"])

    def delete(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(digest))

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # the protocol says OSError: /readyz reports it
            raise OSError(f"S3 bucket {self.bucket}: {exc}") from exc

    def digests(self) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"][len(self.prefix):]
                if _valid_digest(name):
                    yield name

    def stray_temp_files(self) -> list[Path]:
        return []  # S3 PUTs are atomic: nothing half-written to clean up

    def writer(self) -> "_S3BlobWriter":
        return _S3BlobWriter(self)


class _S3BlobWriter:
    """Bytes gathered in a spooled temporary file, PUT whole on commit (S3 has no
    partial objects to clean up)."""

    def __init__(self, store: S3BlobStore) -> None:
        self._store = store
        self._buf = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
        self._hash = hashlib.sha512()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._buf.write(data)
        self._hash.update(data)
        self.size += len(data)

    def data(self) -> bytes:
        self._buf.seek(0)
        out = self._buf.read()
        self._buf.seek(0, 2)
        return bytes(out)

    def commit(self) -> str:
        digest = self._hash.hexdigest()
        try:
            if not self._store.exists(digest):
                self._buf.seek(0)
                self._store.client.put_object(Bucket=self._store.bucket,
                                              Key=self._store._key(digest), Body=self._buf.read(),
                                              ContentType="application/octet-stream")
        finally:
            self._buf.close()
        return digest

    def abort(self) -> None:
        self._buf.close()
