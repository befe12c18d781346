"""``gati module create NAME``: a new module's layout, ready to build, test and publish."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import InvalidInput, UsageProblem
from .manifest import MODULE_TYPES, name_problems


def _files(name: str, kind: str, contract: str) -> dict[str, str]:
    short = name.rsplit("/", 1)[-1]
    ident = "".join(p.capitalize() for p in short.replace(".", "-").replace("_", "-").split("-"))
    package = {
        "name": name, "version": "0.1.0", "description": f"A Gati {kind} module",
        "main": "dist/index.js", "types": "dist/index.d.ts",
        "files": ["dist", "gati-module.json", "README.md"],
        "scripts": {"build": "tsc -p .", "test": "node --test dist-tests/"},
        "keywords": ["gati", "gati-module", kind], "license": "UNLICENSED",
        "dependencies": {}, "devDependencies": {"typescript": "^5.4.0"},
    }
    module = {
        "name": name, "version": "0.1.0", "type": kind, "main": "dist/index.js",
        "contracts": [contract], "dependencies": {},
        "defaultConfig": {"enabled": True},
    }
    return {
        "package.json": json.dumps(package, indent=2) + "\n",
        "gati-module.json": json.dumps(module, indent=2) + "\n",
        "src/types.ts": (f"/** The configuration {name} accepts. */\n"
                         f"export interface {ident}Config {{\n  enabled: boolean;\n}}\n"),
        "src/config.ts": (f"import type {{ {ident}Config }} from './types';\n\n"
                          f"export const defaultConfig: {ident}Config = {{ enabled: true }};\n\n"
                          f"export function resolveConfig(partial: Partial<{ident}Config> = {{}})"
                          f": {ident}Config {{\n  return {{ ...defaultConfig, ...partial }};\n}}\n"),
        "src/index.ts": (f"import {{ resolveConfig }} from './config';\n"
                         f"import type {{ {ident}Config }} from './types';\n\n"
                         f"export type {{ {ident}Config }};\n\n"
                         f"/** Called by the Gati runtime when the app starts. */\n"
                         f"export function register(config: Partial<{ident}Config> = {{}}) {{\n"
                         f"  const settings = resolveConfig(config);\n"
                         f"  return {{ name: {json.dumps(name)}, settings }};\n}}\n"),
        "tests/index.test.ts": (f"import {{ test }} from 'node:test';\n"
                                f"import assert from 'node:assert/strict';\n"
                                f"import {{ register }} from '../src/index';\n\n"
                                f"test('register applies the defaults', () => {{\n"
                                f"  assert.equal(register().settings.enabled, true);\n}});\n"),
        "tsconfig.json": json.dumps({"compilerOptions": {
            "target": "ES2022", "module": "commonjs", "declaration": True, "outDir": "dist",
            "rootDir": "src", "strict": True}, "include": ["src"]}, indent=2) + "\n",
        "README.md": (f"# {name}\n\nA Gati {kind} module implementing `{contract}`.\n\n"
                      f"```sh\ngati module install {name}\n```\n\n"
                      f"Build with `npm run build`, then `gati module publish`.\n"),
        ".gitignore": "node_modules/\ndist/\n",
        ".npmignore": "src/\ntests/\ntsconfig.json\n",
    }


def create(parent: Path, name: str, kind: str = "other", contract: str | None = None) -> Path:
    """Write the module into ``parent/<name without scope>``. Raises
    :class:`InvalidInput` for a bad name or type, :class:`UsageProblem` when the
    directory exists and is not empty."""
    problems = name_problems(name)
    if kind not in MODULE_TYPES:
        raise InvalidInput(f"unknown module type {kind!r}",
                           hint=f"one of: {', '.join(MODULE_TYPES)}")
    if problems:
        raise InvalidInput(f"{name!r} cannot be a module name", details=problems)
    target = parent / name.rsplit("/", 1)[-1]
    if target.exists() and any(target.iterdir()):
        raise UsageProblem(f"{target} exists and is not empty",
                           hint="pick another name or an empty directory")
    contract = contract or f"gati.{'db' if kind == 'database' else kind}/v1"
    for rel, text in _files(name, kind, contract).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target


def scaffold_files(name: str, kind: str = "other") -> list[str]:
    return sorted(_files(name, kind, "gati.other/v1"))
