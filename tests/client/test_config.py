"""Where the registry and the token come from, and how they are stored."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gati_private_registry.client.config import ClientConfig, Environment, normalize_registry
from gati_private_registry.client.errors import UsageProblem


def make(tmp_path: Path, **env: str) -> ClientConfig:
    home = tmp_path / "home"
    project = tmp_path / "project"
    home.mkdir(exist_ok=True)
    project.mkdir(exist_ok=True)
    return ClientConfig(Environment.from_os({"HOME": str(home), **env}, cwd=project))


@pytest.mark.parametrize("given,root", [
    ("http://h:8080", "http://h:8080"),
    ("http://h:8080/", "http://h:8080"),
    ("http://h:8080/npm/", "http://h:8080"),
    ("https://h/reg/npm", "https://h/reg"),
])
def test_root_or_npm_url(given: str, root: str) -> None:
    assert normalize_registry(given) == root


def test_not_a_url() -> None:
    with pytest.raises(UsageProblem, match="not a registry URL"):
        normalize_registry("ftp://x")


def test_registry_precedence(tmp_path: Path) -> None:
    cfg = make(tmp_path)
    with pytest.raises(UsageProblem, match="no registry is configured"):
        cfg.registry(None)
    cfg.set_default_registry("http://from-config")
    assert cfg.registry(None) == ("http://from-config", str(cfg.config_path))
    (tmp_path / "project/.npmrc").write_text("; comment\nregistry=http://from-npmrc/npm/\n")
    assert cfg.registry(None)[0] == "http://from-npmrc"
    cfg = make(tmp_path, GATI_REGISTRY="http://from-env/")
    assert cfg.registry(None)[0] == "http://from-env"
    assert cfg.registry("http://from-flag/npm")[0] == "http://from-flag"


def test_config_toml_keeps_other_settings(tmp_path: Path) -> None:
    cfg = make(tmp_path)
    cfg.config_path.parent.mkdir(parents=True)
    cfg.config_path.write_text('[ui]\ncolor = false\n')
    cfg.set_default_registry("http://a")
    cfg.set_default_registry("http://b")
    assert cfg.settings() == {"registry": "http://b", "ui": {"color": False}}


def test_token_store_is_private_and_ordered(tmp_path: Path) -> None:
    cfg = make(tmp_path)
    assert cfg.token("http://h:1") is None
    (tmp_path / "home/.npmrc").write_text("//h:1/npm/:_authToken=${NPM_TOKEN}\n")
    assert cfg.token("http://h:1") is None  # ${NPM_TOKEN} is unset: no token
    (tmp_path / "project/.npmrc").write_text("//h:1/npm/:_authToken=from-npmrc\n")
    assert cfg.token("http://h:1") == "from-npmrc"
    cfg.store_login("http://h:1", "stored-token", "alice")
    assert cfg.token("http://h:1") == "stored-token"
    assert stat.S_IMODE(cfg.credentials_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.credentials_path.parent.stat().st_mode) == 0o700
    env_cfg = make(tmp_path, GATI_TOKEN="env-token")
    assert env_cfg.token("http://h:1") == "env-token"
    assert cfg.forget_login("http://h:1") and not cfg.forget_login("http://h:1")
    assert cfg.token("http://h:1") == "from-npmrc"
