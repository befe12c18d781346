"""``gati-lock.json``: the resolved tree, byte for byte the same for the same tree.

Shaped like npm's ``package-lock.json`` v3 ``packages`` map (keys are ``node_modules``
paths) plus what gati needs to install and verify offline: each package's organisation
signatures and publish time. Keys sorted, two-space indent, a final newline, no
timestamps: a lockfile changes only when the tree does.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .errors import InvalidInput
from .resolver import Entry

LOCKFILE = "gati-lock.json"
VERSION = 1


def dumps(tree: Mapping[str, Entry], dependencies: Mapping[str, str],
          optional: Mapping[str, str] | None = None) -> str:
    packages: dict[str, Any] = {}
    for path in sorted(tree):
        e = tree[path]
        doc: dict[str, Any] = {"name": e.name, "version": e.version, "resolved": e.resolved,
                               "integrity": e.integrity}
        if e.published:
            doc["published"] = e.published
        if e.signatures:
            doc["gatiSignatures"] = e.signature_list()
        if e.dependencies:
            doc["dependencies"] = dict(e.dependencies)
        if e.optional:
            doc["optionalDependencies"] = dict(e.optional)
        packages[path] = doc
    root: dict[str, Any] = {"dependencies": dict(sorted(dependencies.items()))}
    if optional:
        root["optionalDependencies"] = dict(sorted(optional.items()))
    return json.dumps({"lockfileVersion": VERSION, "root": root, "packages": packages},
                      indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(project: Path, tree: Mapping[str, Entry], dependencies: Mapping[str, str],
          optional: Mapping[str, str] | None = None) -> None:
    path = project / LOCKFILE
    text = dumps(tree, dependencies, optional)
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{LOCKFILE}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


def read(project: Path) -> tuple[dict[str, Entry], dict[str, str]] | None:
    """``(tree, root dependencies it was made for)``, or None without a lockfile.
    Raises :class:`InvalidInput` for a lockfile that is not ours or is damaged."""
    path = project / LOCKFILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise InvalidInput(f"{path} is not valid JSON ({exc})",
                           hint=f"fix it, or delete it and run gati module install") from None
    if not isinstance(doc, dict) or doc.get("lockfileVersion") != VERSION \
            or not isinstance(doc.get("packages"), dict):
        raise InvalidInput(f"{path} is not a gati lockfile (version {VERSION})",
                           hint="delete it and run gati module install")
    tree: dict[str, Entry] = {}
    for key, e in doc["packages"].items():
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in
                                              ("name", "version", "resolved", "integrity")):
            raise InvalidInput(f"{path}: the entry {key!r} is incomplete",
                               hint="delete the lockfile and run gati module install")
        if not key.startswith("node_modules/") or ".." in key.split("/"):
            raise InvalidInput(f"{path}: {key!r} is not a node_modules path")
        sigs = tuple(sorted((str(s.get("keyid")), str(s.get("sig")))
                            for s in e.get("gatiSignatures") or [] if isinstance(s, dict)))
        tree[key] = Entry(name=e["name"], version=e["version"], resolved=e["resolved"],
                          integrity=e["integrity"], signatures=sigs,
                          published=e.get("published"),
                          dependencies=_pairs(e.get("dependencies")),
                          optional=_pairs(e.get("optionalDependencies")))
    root = doc.get("root") or {}
    wanted = dict(_pairs(root.get("dependencies")))
    wanted.update(_pairs(root.get("optionalDependencies")))
    return tree, wanted
