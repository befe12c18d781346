"""The ``modules`` section of the app's Gati configuration, kept in step by ``install``
and ``remove``.

Supported:

* ``gati.config.json``: ``{"modules": {"<name>": {"version": "<range>", "config":
  {...}}}}``. When the module's ``gati-module.json`` declares ``defaultConfig`` (an
  object), it becomes ``config``, with a ``"//"`` note saying where it came from (JSON has
  no comments; ``"//"`` keys are npm's convention).
* ``gati.config.ts`` (or ``.js``/``.mjs``) when ``modules`` is a plain object literal
  (``modules: { ... }``): entries are added with a ``//`` comment above the default
  configuration and removed by their quoted key. Any other shape (a variable, a function
  call) is left alone with a warning that says what to add by hand.

With no configuration file at all, installing a Gati module creates ``gati.config.json``.
Only direct dependencies that are Gati modules (they ship a ``gati-module.json``) are
listed.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput

TS_NAMES = ("gati.config.ts", "gati.config.mts", "gati.config.js", "gati.config.mjs")


@dataclass(frozen=True)
class ModuleInfo:
    name: str
    version: str  # the range saved in package.json
    default_config: dict[str, Any] | None


def read_module_info(project: Path, name: str, spec: str) -> ModuleInfo | None:
    """The installed module's ``gati-module.json`` facts; None if it is no Gati module."""
    try:
        doc = json.loads((project / "node_modules" / name / "gati-module.json")
                         .read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    default = doc.get("defaultConfig")
    return ModuleInfo(name, spec, default if isinstance(default, dict) else None)


def _note(name: str) -> str:
    return f"default configuration from {name}'s gati-module.json: edit to suit your app"


def sync(project: Path, add: list[ModuleInfo], remove: list[str]) -> tuple[Path | None, str | None]:
    """Apply the changes. Returns ``(file changed or None, warning or None)``. Raises
    :class:`InvalidInput` for a ``gati.config.json`` that is not a JSON object."""
    if not add and not remove:
        return None, None
    json_path = project / "gati.config.json"
    ts_path = next((project / n for n in TS_NAMES if (project / n).exists()), None)
    if ts_path is not None and not json_path.exists():
        return _sync_ts(ts_path, add, remove)
    if not json_path.exists() and not add:
        return None, None
    return _sync_json(json_path, add, remove), None


def _sync_json(path: Path, add: list[ModuleInfo], remove: list[str]) -> Path | None:
    doc: dict[str, Any] = {}
    if path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InvalidInput(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidInput(f"{path} is not a JSON object")
    modules = doc.get("modules")
    if not isinstance(modules, dict):
        modules = {}
    before = json.dumps(modules, sort_keys=True)
    for name in remove:
        modules.pop(name, None)
    for m in add:
        entry = modules.get(m.name) if isinstance(modules.get(m.name), dict) else None
        if entry is None:
            entry = {"version": m.version}
            if m.default_config is not None:
                entry["config"] = {"//": _note(m.name), **m.default_config}
        else:
            entry["version"] = m.version  # keep the app's own configuration
        modules[m.name] = entry
    if json.dumps(modules, sort_keys=True) == before and path.exists():
        return None
    doc["modules"] = modules
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- TypeScript


def _skip(text: str, i: int) -> int:
    """Index after the string or comment starting at ``i`` (or ``i`` itself)."""
    c = text[i]
    if c in "\"'`":
        j = i + 1
        while j < len(text) and text[j] != c:
            j += 2 if text[j] == "\\" else 1
        return j + 1
    if text.startswith("//", i):
        j = text.find("\n", i)
        return len(text) if j == -1 else j
    if text.startswith("/*", i):
        j = text.find("*/", i + 2)
        return len(text) if j == -1 else j + 2
    return i


def _matching(text: str, open_at: int) -> int:
    """Index of the ``}``/``]``/``)`` closing the bracket at ``open_at``; -1 if none."""
    depth, i = 0, open_at
    while i < len(text):
        j = _skip(text, i)
        if j != i:
            i = j
            continue
        if text[i] in "{[(":
            depth += 1
        elif text[i] in "}])":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _modules_object(text: str) -> tuple[int, int] | None:
    """``(index of '{', index of '}')`` of ``modules: { ... }`` outside strings/comments."""
    i = 0
    while i < len(text):
        j = _skip(text, i)
        if j != i:
            i = j
            continue
        m = re.compile(r"""(?:\bmodules|["']modules["'])\s*:\s*\{""").match(text, i)
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_$")):
            close = _matching(text, m.end() - 1)
            return (m.end() - 1, close) if close != -1 else None
        i += 1
    return None


def _ts_value(value: Any, indent: str) -> str:
    return json.dumps(value, indent=2).replace("\n", "\n" + indent)


def _sync_ts(path: Path, add: list[ModuleInfo], remove: list[str]) -> tuple[Path | None, str | None]:
    text = path.read_text(encoding="utf-8")
    span = _modules_object(text)
    if span is None:
        names = ", ".join([m.name for m in add] + remove)
        return None, (f"{path.name} has no plain `modules: {{ ... }}` object literal; "
                      f"update its modules section by hand for: {names}")
    original = text
    for name in remove:
        span = _modules_object(text)
        assert span is not None
        key = re.compile(r"""(\s*)(["'])""" + re.escape(name) + r"""\2\s*:\s*""")
        body_start, body_end = span
        m = key.search(text, body_start + 1, body_end)
        if m is None:
            continue
        value_end = _value_end(text, m.end(), body_end)
        end = value_end
        tail = re.compile(r"\s*,").match(text, end)
        if tail:
            end = tail.end()
        text = text[:m.start()] + text[end:]
    for mod in add:
        span = _modules_object(text)
        assert span is not None
        body_start, body_end = span
        if re.search(r"""["']""" + re.escape(mod.name) + r"""["']\s*:""",
                     text[body_start:body_end]):
            continue
        line_start = text.rfind("\n", 0, body_start) + 1
        base = re.match(r"[ \t]*", text[line_start:]).group(0)  # type: ignore[union-attr]
        inner = base + "  "
        entry = f"\n{inner}{json.dumps(mod.name)}: {{\n{inner}  version: {json.dumps(mod.version)},"
        if mod.default_config is not None:
            entry += f"\n{inner}  // {_note(mod.name)}"
            entry += f"\n{inner}  config: {_ts_value(mod.default_config, inner + '  ')},"
        entry += f"\n{inner}}},"
        before = text[body_start + 1:body_end].rstrip()
        if before and not before.endswith((",", "{")):
            pos = body_start + 1 + len(before)
            text = text[:pos] + "," + text[pos:]
            body_end += 1
        insert_at = body_start + 1 + len(text[body_start + 1:body_end].rstrip())
        text = text[:insert_at] + entry + "\n" + base + text[body_end:]
    if text == original:
        return None, None
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path, None


def _value_end(text: str, i: int, limit: int) -> int:
    """End of the value starting at ``i`` (an object, array, string or bare token)."""
    while i < limit and text[i].isspace():
        i += 1
    if i < limit and text[i] in "{[(":
        return _matching(text, i) + 1
    j = _skip(text, i)
    if j != i:
        return j
    while i < limit and text[i] not in ",}":
        i += 1
    return i
