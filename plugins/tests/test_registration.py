"""The plugins as the registry sees them: loaded through the entry-point group into a
pluggy manager with the real hookspecs, each with a valid settings schema."""
from __future__ import annotations

from importlib.metadata import entry_points

import jsonschema
import pluggy
import pytest
from gati_private_registry import hooks

from helpers import candidate_from_tarball, package_tgz

BUILTINS = {"licence", "install_scripts", "secrets", "size_limits", "names", "gati_contract"}


def load() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("gati_registry")
    pm.add_hookspecs(hooks.GatiRegistrySpec)
    for ep in entry_points(group="gati_registry"):
        pm.register(ep.load(), name=ep.name)
    pm.check_pending()  # an implementation of a hook that does not exist fails here
    return pm


def test_every_builtin_is_an_entry_point() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="gati_registry")}
    assert BUILTINS <= set(eps)
    for name in BUILTINS:
        assert eps[name] == f"gati_registry_plugins.{name}"
    assert BUILTINS <= {name for name, _ in load().list_name_plugin()}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_schema_is_valid_and_defaults_validate(name: str) -> None:
    plugin = load().get_plugin(name)
    schema = plugin.gati_registry_plugin_settings()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    for key, prop in schema["properties"].items():
        assert "default" in prop, key
        assert prop.get("description"), key
    config = {k: v["default"] for k, v in schema["properties"].items()}
    jsonschema.validate(config, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"no_such_setting": 1}, schema)


def test_every_plugin_votes_through_the_hook() -> None:
    pm = load()
    cand = candidate_from_tarball(package_tgz({"license": "MIT"}))
    for impl in pm.hook.gati_registry_review_version.get_hookimpls():
        schema = pm.get_plugin(impl.plugin_name).gati_registry_plugin_settings() or {}
        config = {k: v["default"] for k, v in schema.get("properties", {}).items()}
        vote = impl.function(candidate=cand, config=config)
        assert isinstance(vote, hooks.Vote) and vote.reasons, impl.plugin_name
        if impl.plugin_name in BUILTINS:
            assert vote.decision is hooks.Decision.APPROVE, (impl.plugin_name, vote)
