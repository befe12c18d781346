"""``gati module verify``: is what sits in ``node_modules`` exactly what the organisation
signed?

For each installed package (from ``gati-lock.json``): its organisation signature over
``name@version:integrity`` under the pinned keys, its tarball (cache, else registry)
against that integrity, and every file on disk against the tarball: a changed, missing
or added file fails (the package's own nested ``node_modules`` holds other packages,
checked on their own).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from .errors import ClientError
from .extract import expected_files
from .resolver import Entry
from .trust import Trust


@dataclass
class Finding:
    path: str
    spec: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    keyid: str | None = None


def _on_disk(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d != "node_modules"]
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            rel = (rel_dir / name).as_posix()
            out[rel] = Path(dirpath) / name
    return out


def check_package(project: Path, path: str, entry: Entry, trust: Trust,
                  tarball: Callable[[Entry], bytes]) -> Finding:
    """One package's finding (never raises for what it checks)."""
    f = Finding(path, entry.spec, True)
    try:
        f.keyid = trust.check(entry.name, entry.version, entry.integrity,
                              entry.signature_list(), entry.published)
    except ClientError as exc:
        f.problems.append(exc.message)
    root = project / path
    if not root.is_dir():
        f.problems.append(f"{path} is not installed")
        f.ok = False
        return f
    try:
        expected = expected_files(tarball(entry), entry.spec)
    except ClientError as exc:
        f.problems.append(exc.message)
        f.ok = False
        return f
    disk = _on_disk(root)
    for rel, content in sorted(expected.items()):
        p = root / rel
        if isinstance(content, str):
            if not p.is_symlink() or os.readlink(p) != content:
                f.problems.append(f"{rel}: the link differs from the tarball")
            continue
        if rel.startswith("node_modules/"):
            if not p.is_file() or p.read_bytes() != content:
                f.problems.append(f"{rel}: changed or missing")
            continue
        local = disk.pop(rel, None)
        if local is None or local.is_symlink():
            f.problems.append(f"{rel}: missing (or replaced by a link)")
        elif local.read_bytes() != content:
            f.problems.append(f"{rel}: changed since it was installed")
    for rel in sorted(r for r in disk if r not in expected):
        f.problems.append(f"{rel}: not in the signed tarball")
    f.ok = not f.problems
    return f


def verify_tree(project: Path, tree: Mapping[str, Entry], trust: Trust,
                tarball: Callable[[Entry], bytes], names: set[str] | None = None) -> list[Finding]:
    return [check_package(project, p, e, trust, tarball)
            for p, e in sorted(tree.items()) if names is None or e.name in names]
