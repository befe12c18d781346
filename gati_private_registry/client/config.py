"""Where the client's settings, token and pinned keys live, and which registry to use.

Registry URL, first found wins: ``--registry``, ``GATI_REGISTRY``, ``registry=`` in the
project's ``.npmrc`` (so one line serves npm and gati), ``registry`` in
``~/.config/gati/config.toml``. Either the server root or its ``/npm/`` URL may be given;
the client keeps the root and derives ``/npm/`` and ``/api/`` from it.

Token, first found wins: ``GATI_TOKEN``, the credentials stored by ``gati registry
login`` (``~/.config/gati/credentials.json``, mode 0600), the ``//host/npm/:_authToken``
line of the project's or the user's ``.npmrc``. Tokens are never printed.

``GATI_CONFIG_DIR`` / ``XDG_CONFIG_HOME`` and ``GATI_CACHE_DIR`` / ``XDG_CACHE_HOME`` move
the directories (tests use them). This module is the only one that reads ``os.environ``.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .errors import InvalidInput, UsageProblem


@dataclass(frozen=True)
class Environment:
    """The parts of the process environment the client uses, read once in ``main``."""

    config_dir: Path
    cache_dir: Path
    home: Path
    cwd: Path
    registry: str | None
    token: str | None
    no_color: bool

    @classmethod
    def from_os(cls, environ: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> "Environment":
        env = os.environ if environ is None else environ
        home = Path(env.get("HOME") or Path.home())
        xdg_config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        xdg_cache = Path(env.get("XDG_CACHE_HOME") or home / ".cache")
        return cls(
            config_dir=Path(env.get("GATI_CONFIG_DIR") or xdg_config / "gati"),
            cache_dir=Path(env.get("GATI_CACHE_DIR") or xdg_cache / "gati"),
            home=home,
            cwd=cwd or Path.cwd(),
            registry=env.get("GATI_REGISTRY") or None,
            token=env.get("GATI_TOKEN") or None,
            no_color="NO_COLOR" in env,
        )


def normalize_registry(url: str) -> str:
    """The server root for ``url`` (``http://host:8080`` for ``http://host:8080/npm/``
    too), without a trailing slash. Raises :class:`UsageProblem` for anything that is not
    an http(s) URL."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageProblem(f"{url!r} is not a registry URL",
                           hint="give the server's http(s) URL, e.g. "
                                "--registry https://registry.example.com/")
    path = parts.path.rstrip("/")
    if path.endswith("/npm"):
        path = path[:-4]
    return f"{parts.scheme}://{parts.netloc}{path}"


def npmrc_values(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``key=value`` lines of an ``.npmrc`` (``;``/``#`` comments, ``${VAR}`` expanded
    like npm does); an absent or unreadable file gives ``{}``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith((";", "#")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip().strip('"')
        value = re.sub(r"\$\{([^}]+)\}", lambda m: env.get(m.group(1), ""), value)
        out[key.strip()] = value
    return out


def _atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a temp file created with ``mode`` (so a secret is
    never readable by others, not even for a moment) and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class ClientConfig:
    """``config.toml`` (user settings) and ``credentials.json`` (tokens, 0600) in the
    config directory."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.dir = env.config_dir

    @property
    def config_path(self) -> Path:
        return self.dir / "config.toml"

    @property
    def credentials_path(self) -> Path:
        return self.dir / "credentials.json"

    @property
    def keys_path(self) -> Path:
        return self.dir / "keys.json"

    # ---- config.toml

    def settings(self) -> dict[str, Any]:
        """The parsed ``config.toml``. Raises :class:`InvalidInput` when it is not TOML."""
        try:
            with open(self.config_path, "rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            return {}
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"{self.config_path} is not valid TOML: {exc}",
                               hint="fix or delete the file") from None

    def set_default_registry(self, root: str) -> None:
        """Record ``root`` as ``registry`` in ``config.toml``, keeping the other lines."""
        lines = []
        try:
            lines = self.config_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            pass
        new = f"registry = {_toml_string(root)}"
        for i, line in enumerate(lines):
            if re.match(r"\s*registry\s*=", line):
                lines[i] = new
                break
        else:
            # top-level keys must come before the first table
            first_table = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")),
                               len(lines))
            lines.insert(first_table, new)
        _atomic_write(self.config_path, ("\n".join(lines) + "\n").encode(), 0o600)

    # ---- registry

    def registry(self, flag: str | None) -> tuple[str, str]:
        """``(root URL, where it came from)``. Raises :class:`UsageProblem` when none is
        configured anywhere."""
        if flag:
            return normalize_registry(flag), "--registry"
        if self.env.registry:
            return normalize_registry(self.env.registry), "GATI_REGISTRY"
        npmrc = self.env.cwd / ".npmrc"
        value = npmrc_values(npmrc).get("registry")
        if value:
            return normalize_registry(value), str(npmrc)
        value = self.settings().get("registry")
        if isinstance(value, str) and value:
            return normalize_registry(value), str(self.config_path)
        raise UsageProblem(
            "no registry is configured",
            hint="pass --registry URL, set GATI_REGISTRY, add registry=URL to the project's "
                 ".npmrc, or run: gati registry login --registry URL")

    # ---- credentials

    def _credentials(self) -> dict[str, Any]:
        try:
            data = json.loads(self.credentials_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"registries": {}}
        except (OSError, ValueError):
            raise InvalidInput(f"{self.credentials_path} is unreadable",
                               hint="delete it and run gati registry login again") from None
        if not isinstance(data, dict) or not isinstance(data.get("registries"), dict):
            return {"registries": {}}
        return data

    def stored_login(self, root: str) -> dict[str, str] | None:
        entry = self._credentials()["registries"].get(root)
        return entry if isinstance(entry, dict) and isinstance(entry.get("token"), str) else None

    def store_login(self, root: str, token: str, username: str) -> None:
        data = self._credentials()
        data["registries"][root] = {"token": token, "username": username}
        _atomic_write(self.credentials_path, (json.dumps(data, indent=2, sort_keys=True)
                                              + "\n").encode(), 0o600)

    def forget_login(self, root: str) -> bool:
        data = self._credentials()
        if data["registries"].pop(root, None) is None:
            return False
        _atomic_write(self.credentials_path, (json.dumps(data, indent=2, sort_keys=True)
                                              + "\n").encode(), 0o600)
        return True

    def token(self, root: str) -> str | None:
        """The token for ``root`` (see the module docstring for the order), or None."""
        if self.env.token:
            return self.env.token
        stored = self.stored_login(root)
        if stored:
            return stored["token"]
        parts = urlsplit(root)
        key = f"//{parts.netloc}{parts.path}/npm/:_authToken"
        for npmrc in (self.env.cwd / ".npmrc", self.env.home / ".npmrc"):
            value = npmrc_values(npmrc).get(key)
            if value:
                return value
        return None

    # ---- pinned keys (the trust module decides; this only stores)

    def pinned_keys(self, root: str) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.keys_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            raise InvalidInput(f"{self.keys_path} is unreadable",
                               hint="delete it and run gati registry login again to pin "
                                    "the organisation keys") from None
        entry = data.get(root, {}) if isinstance(data, dict) else {}
        return entry if isinstance(entry, dict) else {}

    def store_pinned_keys(self, root: str, keys: dict[str, dict[str, Any]]) -> None:
        try:
            data = json.loads(self.keys_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        data[root] = keys
        _atomic_write(self.keys_path, (json.dumps(data, indent=2, sort_keys=True)
                                       + "\n").encode(), 0o600)
