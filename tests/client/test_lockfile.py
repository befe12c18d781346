"""gati-lock.json is byte-for-byte deterministic and round-trips."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from gati_private_registry.client import lockfile
from gati_private_registry.client.errors import InvalidInput
from gati_private_registry.client.resolver import Entry


def _tree() -> dict[str, Entry]:
    out = {}
    for i in range(30):
        name = f"@s/m{i}"
        out[f"node_modules/{name}"] = Entry(
            name=name, version=f"1.{i}.0", resolved=f"http://r/npm/{name}/-/m{i}-1.{i}.0.tgz",
            integrity=f"sha512-{i:0>86}==", signatures=(("SHA256:k", f"sig{i}"),),
            published="2026-01-01T00:00:00.000Z",
            dependencies=((f"@s/m{i + 1}", "^1.0.0"),) if i < 29 else ())
    out["node_modules/@s/m3/node_modules/@s/m4"] = Entry(
        name="@s/m4", version="2.0.0", resolved="http://r/x.tgz", integrity="sha512-x",
        optional=(("fsevents", "*"),))
    return out


def test_same_tree_same_bytes_whatever_the_order(tmp_path: Path) -> None:
    tree = _tree()
    items = list(tree.items())
    random.Random(7).shuffle(items)
    a = lockfile.dumps(tree, {"b": "1", "a": "2"})
    b = lockfile.dumps(dict(items), {"a": "2", "b": "1"})
    assert a == b and a.endswith("}\n")
    lockfile.write(tmp_path, dict(items), {"a": "2", "b": "1"})
    assert (tmp_path / "gati-lock.json").read_text() == a


def test_round_trip(tmp_path: Path) -> None:
    tree = _tree()
    lockfile.write(tmp_path, tree, {"@s/m0": "^1.0.0"})
    read = lockfile.read(tmp_path)
    assert read is not None
    assert read == (tree, {"@s/m0": "^1.0.0"})
    assert lockfile.read(tmp_path / "nowhere") is None


@pytest.mark.parametrize("text,problem", [
    ("{", "not valid JSON"),
    ('{"lockfileVersion": 3, "packages": {}}', "not a gati lockfile"),
    ('{"lockfileVersion": 1, "packages": {"node_modules/a": {"name": "a"}}}', "incomplete"),
    ('{"lockfileVersion": 1, "packages": {"../evil": {"name": "a", "version": "1.0.0", '
     '"resolved": "x", "integrity": "y"}}}', "not a node_modules path"),
])
def test_damaged_lockfiles_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "gati-lock.json").write_text(text)
    with pytest.raises(InvalidInput, match=problem):
        lockfile.read(tmp_path)
