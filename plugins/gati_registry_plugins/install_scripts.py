"""Install-script policy: flags packages that run code when they are installed.

npm runs ``preinstall``, ``install`` and ``postinstall`` from the package's
``package.json`` on every ``npm install`` (``prepare`` only for git and local
installs, never for a registry tarball, so it is not flagged). npm also runs an
implicit ``node-gyp rebuild`` when the package root has a ``binding.gyp`` and neither
an ``install`` nor a ``preinstall`` script (unless ``"gypfile": false``), which is code
execution too.
"""
from __future__ import annotations

from typing import Any, Mapping

from gati_private_registry.hooks import Candidate, Decision, Vote, hookimpl

from ._common import action_schema, decision_of, globs_schema, matches_any

INSTALL_HOOKS: tuple[str, ...] = ("preinstall", "install", "postinstall")
_SHOWN_COMMAND = 200  # a reviewer needs the command, not a 10 kB one-liner


@hookimpl
def gati_registry_plugin_settings() -> Mapping[str, Any]:
    """Returns the JSON Schema of this plugin's settings."""
    return {
        "type": "object",
        "title": "Install scripts",
        "additionalProperties": False,
        "properties": {
            "action": action_schema("needs-review", "What to do with a package that runs "
                                    "code on install."),
            "allow_packages": globs_schema([], "Package-name globs exempted from this "
                                               "check (e.g. '@gati-module/*')."),
        },
    }


@hookimpl
def gati_registry_review_version(candidate: Candidate, config: Mapping[str, Any]) -> Vote:
    """Returns approve when nothing runs on install (or the package is exempted), and
    ``config["action"]`` listing each install-time command otherwise. Raises
    ValueError for an ``action`` that is not a decision."""
    action = decision_of(config, "action", Decision.NEEDS_REVIEW)
    exempt = matches_any(candidate.name, config.get("allow_packages", ()))
    findings = install_time_commands(candidate)
    if not findings:
        return Vote(Decision.APPROVE, ("no install-time scripts",))
    if exempt is not None:
        return Vote(Decision.APPROVE, (f"install-time scripts allowed for packages matching "
                                       f"{exempt!r}", *findings))
    return Vote(action, findings)


def install_time_commands(candidate: Candidate) -> tuple[str, ...]:
    """One human-readable line per command npm would run on install; empty when
    none."""
    scripts: Any = candidate.manifest.get("scripts")
    if not isinstance(scripts, Mapping):
        scripts = {}
    found: list[str] = []
    for hook in INSTALL_HOOKS:
        command = scripts.get(hook)
        if isinstance(command, str) and command.strip():
            found.append(f"runs a {hook!r} script: {_shorten(command)}")
    has_gyp = any(f.path == "binding.gyp" for f in candidate.files)
    if (has_gyp and candidate.manifest.get("gypfile") is not False
            and not any(isinstance(scripts.get(h), str) and scripts.get(h, "").strip()
                        for h in ("install", "preinstall"))):
        found.append("has binding.gyp and no install script, so npm runs 'node-gyp rebuild' "
                     "(compiles native code) on install")
    return tuple(found)


def _shorten(command: str) -> str:
    command = " ".join(command.split())
    return command if len(command) <= _SHOWN_COMMAND else command[:_SHOWN_COMMAND] + "…"
