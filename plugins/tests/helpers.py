"""Builds real npm tarballs and the :class:`Candidate` the registry would make of them."""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from typing import Any, Iterable, Mapping

from gati_private_registry.hooks import Candidate, CandidateFile


def build_tgz(files: Mapping[str, bytes | str], root: str = "package") -> bytes:
    """A gzipped tarball like ``npm pack`` makes: every file under ``root/``.
    Returns the ``.tgz`` bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 499162500  # npm's fixed 1985-10-26 timestamp
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def package_tgz(manifest: Mapping[str, Any], files: Mapping[str, bytes | str] | None = None,
                gati_module: Mapping[str, Any] | None = None) -> bytes:
    """A tarball with ``manifest`` as package.json, an index.js, ``gati_module`` as
    gati-module.json when given, and ``files``. Returns the ``.tgz`` bytes."""
    all_files: dict[str, bytes | str] = {
        "package.json": json.dumps({"name": "demo", "version": "1.0.0", **manifest}),
        "index.js": "module.exports = 42;\n",
    }
    if gati_module is not None:
        all_files["gati-module.json"] = json.dumps(gati_module)
    all_files.update(files or {})
    return build_tgz(all_files)


def candidate_from_tarball(data: bytes, publisher: str = "alice", source: str = "local",
                           existing: Iterable[str] = ()) -> Candidate:
    """The :class:`Candidate` for tarball ``data``: manifest and gati-module.json parsed
    from it, file paths relative to the package root, ``read_file`` reading from the
    tarball itself. Raises KeyError when the tarball has no package.json."""
    names = frozenset(existing)
    members: dict[str, tarfile.TarInfo] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for info in tar.getmembers():
            if info.isfile():
                members[info.name.split("/", 1)[1]] = info

    def read_file(path: str) -> bytes:
        info = members[path]  # KeyError for a path the package does not have
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            handle = tar.extractfile(info)
            assert handle is not None
            return handle.read()

    manifest = json.loads(read_file("package.json"))
    gati_module = json.loads(read_file("gati-module.json")) if "gati-module.json" in members else None
    return Candidate(
        name=manifest["name"], version=manifest["version"], manifest=manifest,
        gati_module=gati_module,
        files=tuple(CandidateFile(path, info.size) for path, info in members.items()),
        publisher=publisher, source=source, read_file=read_file,
        existing_names=lambda: names,
    )


def defaults(module: Any, **overrides: Any) -> dict[str, Any]:
    """The plugin's settings as the registry passes them: schema defaults, then
    ``overrides``."""
    schema = module.gati_registry_plugin_settings()
    config = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
    config.update(overrides)
    return config
