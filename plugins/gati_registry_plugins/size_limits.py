"""Size policy: flags packages that are unusually large, have very many files, or
contain one very large file (a common sign of a bundled binary, dataset or mistake)."""
from __future__ import annotations

from typing import Any, Mapping

from gati_private_registry.hooks import Candidate, Decision, Vote, hookimpl

from ._common import action_schema, decision_of, human_size

MB = 1000 * 1000  # npm reports unpacked sizes in decimal units, so the limits are too


@hookimpl
def gati_registry_plugin_settings() -> Mapping[str, Any]:
    """Returns the JSON Schema of this plugin's settings."""
    limit = {"type": "integer", "minimum": 1}
    return {
        "type": "object",
        "title": "Size limits",
        "additionalProperties": False,
        "properties": {
            "max_unpacked_size": {**limit, "default": 50 * MB,
                                  "description": "Largest total of file sizes, in bytes."},
            "max_files": {**limit, "default": 5000,
                          "description": "Largest number of files."},
            "max_file_size": {**limit, "default": 20 * MB,
                              "description": "Largest single file, in bytes."},
            "action": action_schema("needs-review", "What to do with a package over a "
                                    "limit."),
        },
    }


@hookimpl
def gati_registry_review_version(candidate: Candidate, config: Mapping[str, Any]) -> Vote:
    """Returns approve within every limit, and ``config["action"]`` with one reason per
    exceeded limit otherwise. Raises ValueError for an ``action`` that is not a
    decision, KeyError for a missing limit."""
    action = decision_of(config, "action", Decision.NEEDS_REVIEW)
    max_total = int(config["max_unpacked_size"])
    max_files = int(config["max_files"])
    max_file = int(config["max_file_size"])

    total = sum(f.size for f in candidate.files)
    reasons: list[str] = []
    if total > max_total:
        reasons.append(f"unpacked size {human_size(total)} ({total} bytes) is over the limit "
                       f"of {human_size(max_total)} ({max_total} bytes)")
    if len(candidate.files) > max_files:
        reasons.append(f"{len(candidate.files)} files is over the limit of {max_files}")
    big = sorted((f for f in candidate.files if f.size > max_file),
                 key=lambda f: (-f.size, f.path))
    for f in big[:10]:  # the ten largest are enough for a reviewer to see the pattern
        reasons.append(f"{f.path} is {human_size(f.size)} ({f.size} bytes), over the "
                       f"per-file limit of {human_size(max_file)}")
    if len(big) > 10:
        reasons.append(f"… and {len(big) - 10} more files over the per-file limit")
    if reasons:
        return Vote(action, tuple(reasons))
    return Vote(Decision.APPROVE, (f"{len(candidate.files)} files, {human_size(total)} "
                                   f"unpacked: within the limits",))
