"""The mirror's settings: upstream registries, package patterns and the mirror section.

Kept beside :mod:`.settings` (which builds them) because their shapes are not plain
scalars: ``[upstreams.NAME]`` is a table of tables and ``[[packages]]`` a list of tables.
``GATI_REGISTRY_UPSTREAMS__PUBLIC__URL=…`` sets an upstream from the environment, and
``GATI_REGISTRY_PACKAGES="@corp/*=local,*=public"`` the patterns (``pattern=source``,
first match wins).
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import FieldError

#: the approval modes (kept in step with settings.APPROVAL_MODES; "" = inherit)
_MODES = ("auto", "auto-if-approved", "manual")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.I)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
SOURCES_BUILTIN = ("local", "deny")


def parse_duration(value: Any) -> float:
    """``"10m"``, ``"30s"``, ``"7d"``, ``"500ms"``, ``12`` (seconds) → seconds.

    Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration (like 30s, 10m, 7d): {value!r}")
    return float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]


@dataclass(frozen=True)
class UpstreamSettings:
    """One npm-protocol registry the mirror fetches from (``[upstreams.NAME]``)."""

    name: str = ""
    url: str = ""
    #: sent as ``Authorization: Bearer``; or from the variable named by ``token_env``
    token: str = ""
    token_env: str = ""
    #: PEM bundle to trust; empty: the system store (never a bundled one)
    ca_file: str = ""
    #: seconds cached metadata is used without asking the upstream
    max_age: float = 600.0
    #: seconds for one whole request (connect, headers, body) before it fails
    timeout: float = 30.0
    #: seconds to wait for a refresh when a stale copy exists, before serving it stale
    stale_timeout: float = 3.0
    #: further attempts after a connection error or a 5xx (with a short backoff)
    retries: int = 2
    #: requests in flight to this upstream from one server process
    max_concurrent: int = 16

    @property
    def base(self) -> str:
        return self.url.rstrip("/") + "/"


@dataclass(frozen=True)
class PackageSource:
    """Where names matching ``pattern`` (fnmatch) come from: ``local`` (never asked of
    an upstream), ``deny``, or an upstream's name."""

    pattern: str = "*"
    source: str = "local"
    #: approval mode for upstream versions; empty: the [approvals] policy for the name
    approval: str = ""
    #: seconds: upstream versions published more recently wait for a person
    min_age: float = 0.0


@dataclass(frozen=True)
class MirrorSettings:
    #: serve only what is cached: the upstreams are never asked
    offline: bool = False
    #: packages fetched at once by a prefetch job
    prefetch_concurrency: int = 4
    #: seconds between looks for queued prefetch jobs
    poll_interval: float = 2.0
    #: bytes of upstream documents each process keeps in memory (the database keeps all)
    memory_cache_bytes: int = 64 * 1024 * 1024


def source_for(packages: tuple[PackageSource, ...], name: str) -> PackageSource | None:
    """The first pattern matching ``name``; None when no pattern matches (local)."""
    for rule in packages:
        if fnmatch.fnmatchcase(name, rule.pattern):
            return rule
    return None


_UPSTREAM_FLOATS = ("max_age", "timeout", "stale_timeout")
_UPSTREAM_INTS = ("retries", "max_concurrent")


def build_upstreams(raw: Any, errors: list[FieldError],
                    environ: Mapping[str, str]) -> tuple[UpstreamSettings, ...]:
    """``{"public": {"url": ...}}`` → upstream settings; every problem goes to ``errors``."""
    if not isinstance(raw, Mapping):
        errors.append(FieldError("upstreams", "must be a table of [upstreams.NAME] tables"))
        return ()
    out = []
    for name, table in raw.items():
        path = f"upstreams.{name}"
        if not _NAME.match(str(name)) or name in SOURCES_BUILTIN:
            errors.append(FieldError(path, "names are lower-case letters, digits, - and _, "
                                           "and not 'local' or 'deny'"))
            continue
        if not isinstance(table, Mapping):
            errors.append(FieldError(path, "must be a table"))
            continue
        kwargs: dict[str, Any] = {"name": name}
        for key, value in table.items():
            key_n = key.replace("-", "_").lower()
            try:
                if key_n in _UPSTREAM_FLOATS:
                    kwargs[key_n] = parse_duration(value)
                elif key_n in _UPSTREAM_INTS:
                    kwargs[key_n] = int(value)
                    if kwargs[key_n] < (0 if key_n == "retries" else 1):
                        raise ValueError("too small")
                elif key_n in ("url", "token", "token_env", "ca_file"):
                    kwargs[key_n] = str(value)
                else:
                    errors.append(FieldError(f"{path}.{key}", "unknown setting"))
            except (TypeError, ValueError) as exc:
                errors.append(FieldError(f"{path}.{key_n}", str(exc)))
        url = str(kwargs.get("url", ""))
        if not re.match(r"^https?://[^/\s]+", url):
            errors.append(FieldError(f"{path}.url", "must be an http:// or https:// URL"))
        env_name = kwargs.get("token_env", "")
        if env_name and not kwargs.get("token"):
            if env_name not in environ:
                errors.append(FieldError(f"{path}.token_env", f"{env_name} is not set"))
            else:
                kwargs["token"] = environ[env_name]
        if kwargs.get("timeout", 30.0) < kwargs.get("stale_timeout", 3.0):
            kwargs["stale_timeout"] = kwargs.get("timeout", 30.0)
        out.append(UpstreamSettings(**kwargs))
    return tuple(out)


def _rules_from_text(text: str) -> list[dict[str, str]]:
    rules = []
    for part in text.split(","):
        if not part.strip():
            continue
        pattern, sep, source = part.strip().rpartition("=")
        rules.append({"pattern": pattern if sep else "", "source": source})
    return rules


def build_packages(raw: Any, upstreams: tuple[UpstreamSettings, ...],
                   errors: list[FieldError]) -> tuple[PackageSource, ...]:
    """``[[packages]]`` (or ``"pattern=source,..."``) → package sources."""
    if isinstance(raw, str):
        raw = _rules_from_text(raw)
    if not isinstance(raw, list):
        errors.append(FieldError("packages", "must be a list of tables with pattern and source"))
        return ()
    known = set(SOURCES_BUILTIN) | {u.name for u in upstreams}
    out = []
    for i, item in enumerate(raw):
        path = f"packages[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("pattern"), str) \
                or not item.get("pattern"):
            errors.append(FieldError(path, "needs a pattern"))
            continue
        source = item.get("source", "")
        if source not in known:
            errors.append(FieldError(f"{path}.source", f"must be local, deny or a configured "
                                                       f"upstream ({', '.join(sorted(known))})"))
            continue
        approval = item.get("approval", "")
        if approval and approval not in _MODES:
            errors.append(FieldError(f"{path}.approval", f"must be one of {', '.join(_MODES)}"))
            continue
        try:
            min_age = parse_duration(item.get("min_age", 0))
        except ValueError as exc:
            errors.append(FieldError(f"{path}.min_age", str(exc)))
            continue
        unknown = set(item) - {"pattern", "source", "approval", "min_age"}
        if unknown:
            errors.append(FieldError(path, f"unknown keys: {', '.join(sorted(unknown))}"))
            continue
        out.append(PackageSource(pattern=item["pattern"], source=source, approval=approval,
                                 min_age=min_age))
    return tuple(out)
