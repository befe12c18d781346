"""create scaffolds a module that publish's local validation accepts; every problem of a
broken one is reported at once."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gati_private_registry.client import manifest, pack, scaffold
from gati_private_registry.client.errors import InvalidInput, UsageProblem


def test_scaffold_layout_validates(tmp_path: Path) -> None:
    root = scaffold.create(tmp_path, "@myorg/my-awesome-module", "database")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    for wanted in ("src/index.ts", "src/types.ts", "src/config.ts", "tests/index.test.ts",
                   "package.json", "gati-module.json", "README.md"):
        assert wanted in files
    gm = json.loads((root / "gati-module.json").read_text())
    assert {k: gm[k] for k in ("name", "version", "type", "contracts")} == {
        "name": "@myorg/my-awesome-module", "version": "0.1.0", "type": "database",
        "contracts": ["gati.db/v1"]}
    assert "dependencies" in gm
    (root / "dist").mkdir()
    (root / "dist/index.js").write_text("module.exports = {};\n")
    pkg, _, problems = manifest.check(root)
    assert problems == []
    assert pack.package_files(root, pkg) == ["README.md", "dist/index.js", "gati-module.json",
                                             "package.json"]
    with pytest.raises(UsageProblem, match="not empty"):
        scaffold.create(tmp_path, "@myorg/my-awesome-module")
    with pytest.raises(InvalidInput):
        scaffold.create(tmp_path, "Bad Name")


def test_every_problem_is_reported(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({
        "name": "Bad_Name", "version": "1.0", "dependencies": {"ok": "^1", "x": "not a range!"}}))
    (tmp_path / "gati-module.json").write_text(json.dumps({
        "name": "other", "version": "1.0", "type": "toaster", "main": "missing.js",
        "contracts": ["gati.db/v1", "nope", {"id": "gati.q/v1", "implementation": "q.js"}],
        "defaultConfig": []}))
    _, _, problems = manifest.check(tmp_path)
    fields = sorted({p.field for p in problems})
    assert fields == ["gati-module.json contracts[1]", "gati-module.json contracts[2]",
                      "gati-module.json defaultConfig", "gati-module.json main",
                      "gati-module.json name", "gati-module.json type",
                      "package.json dependencies.x",
                      "package.json name", "package.json version"]


def test_the_client_imports_nothing_of_the_server() -> None:
    code = ("import sys, gati_private_registry.cli.client as c; "
            "bad = [m for m in sys.modules if m == 'flask' or m.startswith(("
            "'gati_private_registry.services', 'gati_private_registry.storage', "
            "'gati_private_registry.web', 'sqlalchemy'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
