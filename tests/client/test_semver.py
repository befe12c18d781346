"""The client's npm semantics, checked against the ``semver`` package inside the
installed npm (the oracle), and npm-pick-manifest's choice."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gati_private_registry.client import semver
from gati_private_registry.client.errors import NotFoundProblem

RANGES = ["^1.2.3", "^0.2.3", "^0.0.3", "^1.2.3-beta.2", "~1.2.3", "~1.2", "~1", "1.x", "1.2.x",
          "*", "", "x", "1.2.3 - 2.3.4", "1.2 - 2.3.4", "1.2.3 - 2.3", "1.2.3 - 2",
          ">=1.2.7 <1.3.0", "1.2.7 || >=1.2.9 <2.0.0", ">1.2.3-alpha.3", ">=1.0.0-0",
          "<2.0.0-0", "^1.0.0-0", "~1.2.3-beta.2", "1.2.3-alpha.7", "=1.2.3", "v1.2.3",
          ">=1.2", "<=1.2", "^1.x", "~0.0.1", "^0", "^0.1", "1 || 2 || 3", ">= 1.0.0"]
VERSIONS = ["0.0.1", "0.0.3", "0.0.4", "0.1.0", "0.2.3", "0.2.9", "0.3.0", "1.0.0-rc.1",
            "1.0.0", "1.2.3-alpha.3", "1.2.3-alpha.7", "1.2.3-beta.2", "1.2.3-beta.4", "1.2.3",
            "1.2.4-beta.1", "1.2.4", "1.2.7", "1.2.8", "1.2.9", "1.3.0", "1.9.9", "2.0.0-0",
            "2.0.0", "2.3.4", "2.3.5", "2.4.0", "3.0.0", "3.1.0-rc.1"]


def _npm_semver() -> Path:
    npm = shutil.which("npm")
    node = shutil.which("node")
    if not npm or not node:
        pytest.fail("node and npm are needed: npm's own semver is the oracle")
    root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=True)
    path = Path(root.stdout.strip()) / "npm/node_modules/semver"
    assert (path / "package.json").exists(), path
    return path


def test_ranges_match_npms_own_semver(tmp_path: Path) -> None:
    script = tmp_path / "oracle.js"
    script.write_text(
        f"const s = require({json.dumps(str(_npm_semver()))});\n"
        f"const R = {json.dumps(RANGES)}, V = {json.dumps(VERSIONS)};\n"
        "const out = {};\n"
        "for (const r of R) { out[r] = {sat: V.filter(v => s.satisfies(v, r)),"
        " max: s.maxSatisfying(V, r)}; }\n"
        "console.log(JSON.stringify(out));\n")
    oracle = json.loads(subprocess.run(["node", str(script)], capture_output=True, text=True,
                                       check=True).stdout)
    for r in RANGES:
        ours = [v for v in VERSIONS if semver.satisfies(v, r)]
        assert ours == oracle[r]["sat"], r
        assert semver.max_satisfying(VERSIONS, r) == oracle[r]["max"], r


def _doc(versions: list[str], latest: str, deprecated: tuple[str, ...] = ()) -> dict:
    return {"name": "m", "dist-tags": {"latest": latest, "next": versions[-1]},
            "versions": {v: ({"deprecated": "old"} if v in deprecated else {})
                         for v in versions}}


def test_pick_prefers_latest_when_it_satisfies() -> None:
    doc = _doc(["1.0.0", "1.1.0", "1.2.0-beta.1", "2.0.0"], latest="1.0.0")
    assert semver.pick(doc, "^1.0.0") == "1.0.0"  # npm: latest wins when in range
    assert semver.pick(doc, "^2") == "2.0.0"
    assert semver.pick(doc, "next") == "2.0.0"
    assert semver.pick(doc, "latest") == "1.0.0"


def test_pick_skips_deprecated_and_honours_preferred() -> None:
    doc = _doc(["1.0.0", "1.1.0", "1.2.0"], latest="2.0.0", deprecated=("1.2.0",))
    doc["versions"]["2.0.0"] = {}
    assert semver.pick(doc, "^1") == "1.1.0"
    assert semver.pick(doc, "^1", frozenset({"1.0.0"})) == "1.0.0"
    assert semver.pick(doc, "~1.2") == "1.2.0"  # only a deprecated one fits: take it


def test_pick_reports_what_is_missing() -> None:
    with pytest.raises(NotFoundProblem, match="no version of m satisfies"):
        semver.pick(_doc(["1.0.0"], "1.0.0"), "^3")
    with pytest.raises(NotFoundProblem, match="no dist-tag"):
        semver.pick(_doc(["1.0.0"], "1.0.0"), "beta")
