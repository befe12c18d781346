"""The README's third-party example plugin, loaded like the registry loads it."""
from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import jsonschema
from gati_private_registry.hooks import Decision

from helpers import candidate_from_tarball, package_tgz

EXAMPLE = Path(__file__).parents[1] / "examples" / "no-todo-comments"


def example() -> ModuleType:
    # through its entry point when installed (pip install -e examples/no-todo-comments),
    # else straight from the source folder
    for ep in entry_points(group="gati_registry", name="no_todo_comments"):
        return ep.load()
    sys.path.insert(0, str(EXAMPLE))
    return importlib.import_module("no_todo_comments")


def test_flags_todo_in_js_files() -> None:
    plugin = example()
    cand = candidate_from_tarball(package_tgz({}, {
        "lib/a.js": "let a = 1;\n// TODO: remove the hack\n",
        "README.md": "TODO: docs",  # not a .js file
    }))
    vote = plugin.gati_registry_review_version(candidate=cand, config={"ignore_paths": []})
    assert vote.decision is Decision.NEEDS_REVIEW
    assert vote.reasons == ("lib/a.js:2: TODO left in the code",)
    vote = plugin.gati_registry_review_version(candidate=cand,
                                               config={"ignore_paths": ["lib/*"]})
    assert vote.decision is Decision.APPROVE


def test_schema() -> None:
    schema = example().gati_registry_plugin_settings()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({"ignore_paths": []}, schema)


def test_example_files_are_the_readme_ones() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name in ("setup.cfg", "no_todo_comments.py"):
        assert (EXAMPLE / name).read_text().strip() in readme, name
