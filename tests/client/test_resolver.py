"""npm's tree shape: deduplication, hoisting, nesting of conflicting ranges."""
from __future__ import annotations

import pytest

from gati_private_registry.client.errors import NotFoundProblem
from gati_private_registry.client.resolver import Resolver, check_tree, lookup


def registry(spec: dict[str, dict[str, dict[str, str]]], latest: dict[str, str] | None = None):
    """{name: {version: deps}} -> a packument source."""
    docs = {}
    for name, versions in spec.items():
        docs[name] = {
            "name": name,
            "dist-tags": {"latest": (latest or {}).get(name, max(versions))},
            "versions": {v: {"name": name, "version": v, "dependencies": deps,
                             "dist": {"tarball": f"http://r/{name}-{v}.tgz",
                                      "integrity": f"sha512-{name}{v}"}}
                         for v, deps in versions.items()},
        }
    return docs.get


def shape(tree):
    return {p: e.version for p, e in tree.items()}


def test_conflicting_ranges_nest_under_the_dependent() -> None:
    src = registry({
        "a": {"1.0.0": {"c": "^2.0.0"}},
        "b": {"1.0.0": {"c": "^1.0.0"}},
        "c": {"1.0.0": {}, "1.5.0": {}, "2.0.0": {}, "2.1.0": {}},
    }, latest={"c": "2.1.0"})
    tree = Resolver(src).resolve({"a": "^1.0.0", "b": "^1.0.0", "c": "^1.0.0"})
    assert shape(tree) == {
        "node_modules/a": "1.0.0",
        "node_modules/a/node_modules/c": "2.1.0",
        "node_modules/b": "1.0.0",
        "node_modules/c": "1.5.0",
    }


def test_first_come_is_hoisted_and_later_conflicts_nest() -> None:
    # no root dep on c: a (first by name) hoists c@2, b's c@1 must nest
    src = registry({
        "a": {"1.0.0": {"c": "^2.0.0"}},
        "b": {"1.0.0": {"c": "^1.0.0"}},
        "c": {"1.0.0": {}, "2.0.0": {}},
    })
    tree = Resolver(src).resolve({"a": "1", "b": "1"})
    assert shape(tree) == {"node_modules/a": "1.0.0", "node_modules/b": "1.0.0",
                           "node_modules/b/node_modules/c": "1.0.0", "node_modules/c": "2.0.0"}
    assert check_tree(tree, {"a": "1", "b": "1"}) == []


def test_satisfying_versions_are_deduplicated_and_deep_chains_flattened() -> None:
    chain = {f"n{i}": {"1.0.0": {f"n{i + 1}": "^1.0.0"} if i < 9 else {}} for i in range(10)}
    chain["n5"]["1.1.0"] = {"n6": "^1.0.0"}
    src = registry(chain, latest={"n5": "1.0.0"})
    tree = Resolver(src).resolve({"n0": "^1.0.0", "n5": "^1.0.0"})
    assert sorted(tree) == [f"node_modules/n{i}" for i in range(10)]
    assert tree["node_modules/n5"].version == "1.0.0"  # latest tag wins within the range


def test_a_placement_never_shadows_what_a_placed_module_needs() -> None:
    # x/node_modules/p (placed first) resolves c@1 from the root; q's c@2 must not go
    # into x/node_modules, where it would take c@1 away from p: it stays under q
    src = registry({
        "c": {"1.0.0": {}, "2.0.0": {}},
        "x": {"1.0.0": {"p": "^1.0.0", "q": "^1.0.0"}},
        "p": {"1.0.0": {"c": "^1.0.0"}, "2.0.0": {}},
        "q": {"1.0.0": {"c": "^2.0.0"}, "2.0.0": {}},
    })
    root = {"c": "^1.0.0", "x": "^1.0.0", "p": "^2.0.0", "q": "^2.0.0"}
    tree = Resolver(src).resolve(root)
    assert shape(tree) == {
        "node_modules/c": "1.0.0", "node_modules/p": "2.0.0", "node_modules/q": "2.0.0",
        "node_modules/x": "1.0.0", "node_modules/x/node_modules/p": "1.0.0",
        "node_modules/x/node_modules/q": "1.0.0",
        "node_modules/x/node_modules/q/node_modules/c": "2.0.0",
    }
    assert check_tree(tree, root) == []


def test_locked_versions_are_preferred_and_missing_packages_reported() -> None:
    src = registry({"a": {"1.0.0": {}, "1.1.0": {}}})
    assert shape(Resolver(src, {"a": frozenset({"1.0.0"})}).resolve({"a": "^1.0.0"})) == \
        {"node_modules/a": "1.0.0"}
    with pytest.raises(NotFoundProblem, match="nope is not in the registry"):
        Resolver(src).resolve({"nope": "^1.0.0"})
    assert Resolver(src).resolve({}, optional={"nope": "1"}) == {}


def test_check_tree_finds_unsatisfied_edges() -> None:
    src = registry({"a": {"1.0.0": {}, "2.0.0": {}}})
    tree = Resolver(src).resolve({"a": "^1.0.0"})
    assert check_tree(tree, {"a": "^2.0.0"}) == [
        "the project needs a@^2.0.0: locked 1.0.0"]
    assert check_tree(tree, {"b": "1"}) == ["the project needs b@1: not locked"]
