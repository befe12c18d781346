"""``npm pack`` for ``gati module publish``: which files go in, and a reproducible
tarball (entries under ``package/``, sorted, fixed mtime, 0644/0755, gzip without a
timestamp)."""
from __future__ import annotations

import fnmatch
import gzip
import io
import os
import tarfile
from pathlib import Path
from typing import Any

ALWAYS_OUT = {".git", "node_modules", ".npmrc", "package-lock.json", "gati-lock.json",
              ".DS_Store", "npm-debug.log", ".gati"}
ALWAYS_IN = ("package.json", "gati-module.json")


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    for pat in patterns:
        pat = pat.strip().rstrip("/")
        if not pat or pat.startswith("#"):
            continue
        anchored = pat.startswith("/")
        pat = pat.lstrip("/")
        if anchored or "/" in pat:
            if fnmatch.fnmatch(rel, pat) or rel.startswith(pat + "/"):
                return True
        elif any(fnmatch.fnmatch(p, pat) for p in parts):
            return True
    return False


def package_files(root: Path, manifest: dict[str, Any]) -> list[str]:
    """The relative paths a publish of ``root`` contains: the ``files`` list when the
    manifest has one, otherwise everything but ``.npmignore``d (else ``.gitignore``d)
    and always-excluded names; package.json, gati-module.json, README and LICENCE always."""
    ignore_file = root / ".npmignore"
    if not ignore_file.exists():
        ignore_file = root / ".gitignore"
    patterns = ignore_file.read_text(encoding="utf-8").splitlines() if ignore_file.exists() else []
    allow = manifest.get("files") if isinstance(manifest.get("files"), list) else None
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirnames[:] = sorted(d for d in dirnames if d not in ALWAYS_OUT)
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if name in ALWAYS_OUT or (Path(dirpath) / name).is_symlink():
                continue
            top = rel.split("/")[0]
            always = rel in ALWAYS_IN or (rel == top and top.upper().startswith(
                ("README", "LICENSE", "LICENCE")))
            if allow is not None:
                if not always and not any(rel == f.strip("./").rstrip("/") or
                                          rel.startswith(f.strip("./").rstrip("/") + "/") or
                                          fnmatch.fnmatch(rel, f.lstrip("./"))
                                          for f in allow if isinstance(f, str)):
                    continue
            elif not always and _ignored(rel, patterns):
                continue
            out.append(rel)
    return sorted(out)


def build(root: Path, files: list[str]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            data = (root / rel).read_bytes()
            info = tarfile.TarInfo("package/" + rel)
            info.size = len(data)
            info.mode = 0o755 if os.access(root / rel, os.X_OK) else 0o644
            info.mtime = 499162500  # npm's fixed 1985-10-26T08:15:00Z
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)
