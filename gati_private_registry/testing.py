"""Helpers for tests of the registry and of plugins: build real tarballs and publish
bodies exactly as npm 11 sends them, and a driver with domain verbs."""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any, Mapping


def build_tarball(files: Mapping[str, bytes | str], root: str = "package") -> bytes:
    """A gzip'd tar with ``files`` (relative paths) under ``root/``, like ``npm pack``."""
    buf = io.BytesIO()
    # an uncompressed tar, gzip'd with a fixed header time: the same files give the
    # same bytes (tarfile's own "w:gz" stamps the current time into the gzip header)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 499162500  # npm's fixed date: 1985-10-26
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@dataclass
class ModuleSpec:
    """A Gati module to publish: ``package.json`` fields plus extra files."""

    name: str
    version: str = "1.0.0"
    dependencies: dict[str, str] = field(default_factory=dict)
    description: str = "a test module"
    keywords: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes | str] = field(default_factory=dict)
    gati_module: dict[str, Any] | None = None

    def package_json(self) -> dict[str, Any]:
        pj: dict[str, Any] = {"name": self.name, "version": self.version,
                              "description": self.description, "main": "index.js"}
        if self.keywords:
            pj["keywords"] = self.keywords
        if self.dependencies:
            pj["dependencies"] = dict(self.dependencies)
        pj.update(self.extra)
        return pj

    def all_files(self) -> dict[str, bytes | str]:
        files: dict[str, bytes | str] = {
            "package.json": json.dumps(self.package_json(), indent=2) + "\n",
            "index.js": f"module.exports = {{ name: {json.dumps(self.name)}, "
                        f"version: {json.dumps(self.version)} }};\n",
            "README.md": f"# {self.name}\n\n{self.description}\n",
        }
        gm = self.gati_module if self.gati_module is not None else {
            "name": self.name, "version": self.version, "type": "database",
            "contracts": ["gati.db/v1"]}
        if gm:
            files["gati-module.json"] = json.dumps(gm, indent=2) + "\n"
        files.update(self.files)
        return files


def publish_body(spec: ModuleSpec, *, tag: str = "latest", tarball: bytes | None = None,
                 manifest_overrides: Mapping[str, Any] | None = None,
                 registry: str = "http://localhost/npm/") -> dict[str, Any]:
    """The JSON npm 11 PUTs for ``npm publish`` of ``spec``."""
    data = tarball if tarball is not None else build_tarball(spec.all_files())
    manifest = spec.package_json()
    manifest.update({
        "readme": f"# {spec.name}\n\n{spec.description}\n", "readmeFilename": "README.md",
        "_id": f"{spec.name}@{spec.version}", "_nodeVersion": "20.20.2", "_npmVersion": "11.19.1",
        "dist": {"integrity": integrity_of(data), "shasum": hashlib.sha1(data).hexdigest(),
                 "tarball": f"{registry}{spec.name}/-/{spec.name}-{spec.version}.tgz"},
    })
    manifest.update(manifest_overrides or {})
    return {
        "_id": spec.name, "name": spec.name, "description": spec.description,
        "dist-tags": {tag: spec.version}, "versions": {spec.version: manifest}, "access": None,
        "_attachments": {f"{spec.name}-{spec.version}.tgz": {
            "content_type": "application/octet-stream",
            "data": base64.b64encode(data).decode(), "length": len(data)}},
    }
