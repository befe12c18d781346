"""Gati module contract: checks that ``gati-module.json`` is a well-formed Gati module
manifest whose declared files are really in the package.

Checked, all at once so the publisher sees every problem in one go:

* ``name``, ``version`` and ``type`` are present, non-empty strings, and ``type`` is
  one of the configured categories;
* ``contracts`` (optional) is a list of contract ids shaped ``gati.<area>/v<major>``
  (``gati.db/v1``, ``gati.queue.stream/v2``), each either a string or an object
  ``{"id": "gati.db/v1", "implementation": "dist/db.js"}`` naming the file that
  implements it;
* ``main``/``entry``/``types`` and every named implementation file exist in the
  package (``./`` prefixes are ignored; for ``main``/``entry`` Node's ``.js`` and
  ``/index.js`` resolution is honoured);
* ``dependencies``/``peerDependencies`` are objects of package name → version range.
"""
from __future__ import annotations

import posixpath
import re
from typing import Any, Mapping

from gati_private_registry.hooks import Candidate, Decision, Vote, hookimpl

from ._common import action_schema, decision_of

DEFAULT_TYPES: tuple[str, ...] = (
    "database", "auth", "queue", "cache", "ai", "storage", "http", "observability",
    "messaging", "payments", "search", "other",
)
CONTRACT_ID = re.compile(r"^gati\.[a-z][a-z0-9-]*(?:\.[a-z][a-z0-9-]*)*/v(?:0|[1-9][0-9]*)$")
# npm's rules for new package names, simplified: lowercase, url-safe, optional scope
_PACKAGE_NAME = re.compile(r"^(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")
_ENTRY_KEYS = ("main", "entry", "types")


@hookimpl
def gati_registry_plugin_settings() -> Mapping[str, Any]:
    """Returns the JSON Schema of this plugin's settings."""
    return {
        "type": "object",
        "title": "Gati module contract",
        "additionalProperties": False,
        "properties": {
            "types": {"type": "array", "items": {"type": "string", "minLength": 1},
                      "default": list(DEFAULT_TYPES),
                      "description": "The module categories a gati-module.json 'type' "
                                     "may name."},
            "require_manifest": {"type": "boolean", "default": False,
                                 "description": "Reject packages without a "
                                                "gati-module.json."},
            "action": action_schema("reject", "What to do with a malformed Gati module "
                                    "manifest."),
        },
    }


@hookimpl
def gati_registry_review_version(candidate: Candidate, config: Mapping[str, Any]) -> Vote:
    """Returns approve for a valid manifest (or none, unless ``require_manifest``), and
    ``config["action"]`` with one reason per problem otherwise. Raises ValueError for
    an ``action`` that is not a decision."""
    module = candidate.gati_module
    if module is None:
        if config.get("require_manifest", False):
            return Vote(Decision.REJECT, ("gati-module.json is missing, and this registry "
                                          "only accepts Gati modules",))
        return Vote(Decision.APPROVE, ("not a Gati module manifest: the package has no "
                                       "gati-module.json",))
    action = decision_of(config, "action", Decision.REJECT)
    problems = check_module(module, candidate, tuple(config.get("types", DEFAULT_TYPES)))
    if problems:
        return Vote(action, tuple(f"gati-module.json: {p}" for p in problems))
    contracts = [c for c in (_contract_id(x) for x in module.get("contracts") or ()) if c]
    return Vote(Decision.APPROVE, (
        f"gati-module.json is a valid {module['type']!r} module"
        + (f" implementing {', '.join(contracts)}" if contracts else ""),))


def check_module(module: Mapping[str, Any], candidate: Candidate,
                 types: tuple[str, ...]) -> list[str]:
    """Every problem of ``module`` (a parsed gati-module.json), as sentences; empty
    when it is valid."""
    problems: list[str] = []
    for key in ("name", "version", "type"):
        value = module.get(key)
        if key not in module:
            problems.append(f"the required key {key!r} is missing")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{key!r} must be a non-empty string, not {_show(value)}")
    kind = module.get("type")
    if isinstance(kind, str) and kind.strip() and kind not in types:
        problems.append(f"type {kind!r} is not a known module type "
                        f"(one of: {', '.join(types)})")

    paths = frozenset(_clean(f.path) for f in candidate.files)
    contracts = module.get("contracts")
    if contracts is not None:
        if not isinstance(contracts, list):
            problems.append(f"'contracts' must be a list, not {_show(contracts)}")
        else:
            for i, item in enumerate(contracts):
                problems += _check_contract(i, item, paths)
    for key in _ENTRY_KEYS:
        if key not in module:
            continue
        value = module[key]
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{key!r} must be a file path, not {_show(value)}")
        elif not _exists(value, paths, node_resolution=key != "types"):
            problems.append(f"{key!r} names {value!r}, which is not in the package")
    for key in ("dependencies", "peerDependencies"):
        if key in module:
            problems += _check_dependencies(key, module[key])
    return problems


def _check_contract(index: int, item: Any, paths: frozenset[str]) -> list[str]:
    where = f"contracts[{index}]"
    implementation: Any = None
    if isinstance(item, Mapping):
        contract = item.get("id")
        implementation = item.get("implementation")
    else:
        contract = item
    if not isinstance(contract, str):
        return [f"{where} must be a contract id string (or an object with an 'id'), "
                f"not {_show(item)}"]
    problems: list[str] = []
    if not CONTRACT_ID.match(contract):
        problems.append(f"{where} {contract!r} is not a contract id like 'gati.db/v1' "
                        f"(gati.<area>/v<major>)")
    if implementation is not None:
        if not isinstance(implementation, str) or not implementation.strip():
            problems.append(f"{where} 'implementation' must be a file path, "
                            f"not {_show(implementation)}")
        elif not _exists(implementation, paths, node_resolution=True):
            problems.append(f"{where} ({contract}) names implementation {implementation!r}, "
                            f"which is not in the package")
    return problems


def _check_dependencies(key: str, deps: Any) -> list[str]:
    if not isinstance(deps, Mapping):
        return [f"{key!r} must be an object of package name to version range, "
                f"not {_show(deps)}"]
    problems: list[str] = []
    for name, spec in deps.items():
        if not isinstance(name, str) or not _PACKAGE_NAME.match(name):
            problems.append(f"{key!r} has an invalid package name {name!r}")
        if not isinstance(spec, str) or not spec.strip():
            problems.append(f"{key}[{name!r}] must be a version range string, "
                            f"not {_show(spec)}")
    return problems


def _contract_id(item: Any) -> str | None:
    value = item.get("id") if isinstance(item, Mapping) else item
    return value if isinstance(value, str) else None


def _clean(path: str) -> str:
    return posixpath.normpath(path.strip().removeprefix("./")).lstrip("/")


def _exists(path: str, paths: frozenset[str], *, node_resolution: bool) -> bool:
    wanted = _clean(path)
    if wanted in paths:
        return True
    # require('./lib') finds lib.js or lib/index.js, and so does a "main" of "lib"
    return node_resolution and bool({wanted + ".js", wanted + "/index.js"} & paths)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
