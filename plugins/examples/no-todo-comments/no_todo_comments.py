"""An example third-party policy plugin: sends versions whose ``.js`` files still
contain ``TODO`` to a reviewer."""
from __future__ import annotations

import fnmatch
from typing import Any, Mapping

from gati_private_registry.hooks import Candidate, Decision, Vote, hookimpl


@hookimpl
def gati_registry_plugin_settings() -> Mapping[str, Any]:
    """Returns the JSON Schema of this plugin's settings (rendered as a form)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "ignore_paths": {"type": "array", "items": {"type": "string"}, "default": [],
                             "description": "Globs of .js files not checked."},
        },
    }


@hookimpl
def gati_registry_review_version(candidate: Candidate, config: Mapping[str, Any]) -> Vote:
    """Returns needs-review naming each ``file:line`` with a TODO, else approve."""
    ignore = config.get("ignore_paths", [])
    found: list[str] = []
    for f in candidate.files:
        if not f.path.endswith(".js") or any(fnmatch.fnmatchcase(f.path, p) for p in ignore):
            continue
        text = candidate.read_file(f.path).decode("utf-8", errors="replace")
        found += [f"{f.path}:{n}: TODO left in the code"
                  for n, line in enumerate(text.splitlines(), 1) if "TODO" in line]
    if found:
        return Vote(Decision.NEEDS_REVIEW, tuple(found))
    return Vote(Decision.APPROVE, ("no TODO in .js files",))
