"""The project in the current directory: its ``package.json``, read and written back
with its key order and indentation kept."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput, UsageProblem

SECTIONS = ("dependencies", "optionalDependencies")


@dataclass
class Project:
    dir: Path
    manifest: dict[str, Any]
    indent: int | str = 2

    @property
    def path(self) -> Path:
        return self.dir / "package.json"

    @classmethod
    def load(cls, directory: Path, create: bool = False) -> "Project":
        """Raises :class:`UsageProblem` without a package.json (unless ``create``) and
        :class:`InvalidInput` for one that is not a JSON object."""
        path = directory / "package.json"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if create:
                return cls(directory, {"name": _default_name(directory), "version": "1.0.0",
                                       "private": True})
            raise UsageProblem(f"no package.json in {directory}",
                               hint="run gati in your project's directory, or give modules "
                                    "to install (gati module install NAME) to start one")
        try:
            manifest = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise InvalidInput(f"{path} is not a JSON object")
        m = re.search(r"\n([ \t]+)\"", text)
        indent: int | str = m.group(1) if m and "\t" in m.group(1) else (len(m.group(1)) if m else 2)
        return cls(directory, manifest, indent)

    def deps(self, section: str = "dependencies") -> dict[str, str]:
        value = self.manifest.get(section) or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise InvalidInput(f"{self.path}: {section} must map names to version ranges")
        return dict(value)

    def all_deps(self) -> tuple[dict[str, str], dict[str, str]]:
        """``(dependencies + devDependencies, optionalDependencies)``: a project installs
        its dev dependencies too, as npm does."""
        deps = self.deps("devDependencies")
        deps.update(self.deps("dependencies"))
        optional = self.deps("optionalDependencies")
        for name in optional:
            deps.pop(name, None)
        return deps, optional

    def set_dep(self, name: str, spec: str) -> None:
        for section in ("devDependencies", "optionalDependencies"):
            if name in (self.manifest.get(section) or {}):
                self.manifest[section][name] = spec
                return
        deps = self.manifest.setdefault("dependencies", {})
        deps[name] = spec
        self.manifest["dependencies"] = dict(sorted(deps.items()))

    def remove_dep(self, name: str) -> bool:
        found = False
        for section in ("dependencies", "devDependencies", "optionalDependencies"):
            deps = self.manifest.get(section)
            if isinstance(deps, dict) and name in deps:
                del deps[name]
                found = True
        return found

    def save(self) -> None:
        text = json.dumps(self.manifest, indent=self.indent, ensure_ascii=False) + "\n"
        tmp = self.path.with_name(".package.json.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.path)


def _default_name(directory: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", directory.name.lower()).strip("-._")
    return name or "gati-app"


def split_spec(text: str) -> tuple[str, str | None]:
    """``@scope/name@^1.0`` -> ``("@scope/name", "^1.0")``; no version -> None."""
    at = text.find("@", 1)
    if at == -1:
        return text, None
    return text[:at], text[at + 1:] or None
