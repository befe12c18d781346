"""Local checks of a module before ``gati module publish``: ``package.json`` and
``gati-module.json``, every problem reported at once as a field error (the registry's
policy plugins check the same contract again on the server)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import semver
from .errors import FieldProblem

#: The module categories of the built-in contract policy (plugins/gati_contract.py).
MODULE_TYPES = ("database", "auth", "queue", "cache", "ai", "storage", "http",
                "observability", "messaging", "payments", "search", "other")
CONTRACT_ID = re.compile(r"^gati\.[a-z][a-z0-9-]*(?:\.[a-z][a-z0-9-]*)*/v(?:0|[1-9][0-9]*)$")
PACKAGE_NAME = re.compile(r"^(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")


def name_problems(name: Any, field: str = "name") -> list[FieldProblem]:
    if not isinstance(name, str) or not name:
        return [FieldProblem(field, "is required (a string)")]
    problems = []
    if len(name) > 214:
        problems.append(FieldProblem(field, "is longer than 214 characters"))
    if not PACKAGE_NAME.match(name):
        problems.append(FieldProblem(field, f"{name!r} is not a valid package name (lower "
                                            "case, URL-safe, optionally @scope/name)"))
    return problems


def _deps(doc: dict[str, Any], key: str, where: str) -> list[FieldProblem]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, dict):
        return [FieldProblem(f"{where} {key}", "must be an object of name → version range")]
    problems = []
    for dep, spec in value.items():
        problems += name_problems(dep, f"{where} {key}")
        if not isinstance(spec, str) or not (semver.valid_range(spec) or semver.is_tag(spec)):
            problems.append(FieldProblem(f"{where} {key}.{dep}",
                                         f"{spec!r} is not a version range"))
    return problems


def _read(path: Path) -> tuple[dict[str, Any] | None, list[FieldProblem]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [FieldProblem(path.name, "is missing")]
    except ValueError as exc:
        return None, [FieldProblem(path.name, f"is not valid JSON: {exc}")]
    if not isinstance(doc, dict):
        return None, [FieldProblem(path.name, "must be a JSON object")]
    return doc, []


def _exists(root: Path, rel: str, node: bool) -> bool:
    rel = rel.removeprefix("./")
    candidates = [rel] + ([rel + ".js", rel + "/index.js"] if node else [])
    return any((root / c).is_file() for c in candidates)


def check(root: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[FieldProblem]]:
    """``(package.json, gati-module.json, problems)`` of the module in ``root``."""
    pkg, problems = _read(root / "package.json")
    gm, more = _read(root / "gati-module.json")
    problems += more
    if pkg is not None:
        problems += name_problems(pkg.get("name"), "package.json name")
        version = pkg.get("version")
        if not isinstance(version, str) or semver.valid_version(version) != version:
            problems.append(FieldProblem("package.json version",
                                         f"{version!r} is not a semver version (like 1.0.0)"))
        for key in ("dependencies", "optionalDependencies", "peerDependencies"):
            problems += _deps(pkg, key, "package.json")
    if gm is not None:
        for key in ("name", "version", "type"):
            if not isinstance(gm.get(key), str) or not gm[key].strip():
                problems.append(FieldProblem(f"gati-module.json {key}",
                                             "is required (a non-empty string)"))
        if pkg is not None:
            for key in ("name", "version"):
                if isinstance(gm.get(key), str) and gm[key] != pkg.get(key):
                    problems.append(FieldProblem(f"gati-module.json {key}",
                                                 f"is {gm[key]!r} but package.json says "
                                                 f"{pkg.get(key)!r}"))
        if isinstance(gm.get("type"), str) and gm["type"] and gm["type"] not in MODULE_TYPES:
            problems.append(FieldProblem("gati-module.json type",
                                         f"{gm['type']!r} is not one of {', '.join(MODULE_TYPES)}"))
        contracts = gm.get("contracts")
        if contracts is not None and not isinstance(contracts, list):
            problems.append(FieldProblem("gati-module.json contracts", "must be a list"))
        for i, c in enumerate(contracts if isinstance(contracts, list) else []):
            cid = c.get("id") if isinstance(c, dict) else c
            if not isinstance(cid, str) or not CONTRACT_ID.match(cid):
                problems.append(FieldProblem(f"gati-module.json contracts[{i}]",
                                             f"{cid!r} is not a contract id like gati.db/v1"))
            impl = c.get("implementation") if isinstance(c, dict) else None
            if isinstance(impl, str) and not _exists(root, impl, False):
                problems.append(FieldProblem(f"gati-module.json contracts[{i}]",
                                             f"implementation {impl!r} is not in the module"))
        for key in ("main", "entry", "types"):
            if isinstance(gm.get(key), str) and not _exists(root, gm[key], key != "types"):
                problems.append(FieldProblem(f"gati-module.json {key}",
                                             f"names {gm[key]!r}, which is not in the module"))
        for key in ("dependencies", "peerDependencies"):
            problems += _deps(gm, key, "gati-module.json")
        if "defaultConfig" in gm and not isinstance(gm["defaultConfig"], dict):
            problems.append(FieldProblem("gati-module.json defaultConfig", "must be an object"))
    return pkg, gm, problems
