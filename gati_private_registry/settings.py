"""The one settings object.

Precedence, lowest first: defaults < TOML file < ``GATI_REGISTRY_*`` environment
variables (``__`` nests: ``GATI_REGISTRY_DATABASE__URL``) < command-line flags.
This is the only module that reads ``os.environ`` for settings.

How to add a setting:
1. add a field with a default to the right dataclass below (a new section is a new
   frozen dataclass plus a field on :class:`Settings`);
2. document it in ``config/registry.example.toml``;
3. if it is a duration or a size, give it a ``_parse_*`` in ``_COERCE``;
4. test it in ``tests/unit/test_settings.py``.
Unknown keys in the file or the environment are warned about, never silently used.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ValidationFailed, FieldError
from .settings_mirror import (MirrorSettings, PackageSource, UpstreamSettings, build_packages,
                              build_upstreams, parse_duration)

log = logging.getLogger(__name__)

ENV_PREFIX = "GATI_REGISTRY_"


@dataclass(frozen=True)
class DatabaseSettings:
    #: SQLAlchemy URL; empty means ``sqlite:///<data>/registry.db``.
    url: str = ""
    pool_size: int = 10
    echo: bool = False


@dataclass(frozen=True)
class LimitSettings:
    #: largest accepted compressed tarball
    max_tarball_size: int = 50 * 1024 * 1024
    #: largest accepted total of unpacked file sizes (stops gzip bombs)
    max_unpacked_size: int = 250 * 1024 * 1024
    max_files: int = 20_000
    #: largest accepted request body (a publish is about 1.37 x its tarball)
    max_request_size: int = 80 * 1024 * 1024


@dataclass(frozen=True)
class AuthSettings:
    #: days a token made by ``npm login``/``adduser`` lives; 0 = never expires
    login_token_days: int = 90
    #: minimum password length for new local users
    min_password_length: int = 8


APPROVAL_MODES = ("auto", "auto-if-approved", "manual")


@dataclass(frozen=True)
class ApprovalPolicy:
    """How votes become a state for names matching ``pattern`` (fnmatch, first wins):
    ``auto`` approves unless a plugin rejects; ``auto-if-approved`` approves only when
    every voting plugin approves; ``manual`` always waits for a person. In every mode a
    plugin's reject rejects."""

    pattern: str = "*"
    mode: str = "manual"
    #: a team name: only its members (and admins) may decide on matching versions;
    #: empty means every approver
    approvers: str = ""


@dataclass(frozen=True)
class ApprovalSettings:
    #: the mode for names no policy matches. ``manual``: secure by default, every
    #: version waits for a person until an admin configures auto-approval
    default_mode: str = "manual"
    policies: tuple[ApprovalPolicy, ...] = ()


BLOB_BACKENDS = ("file", "s3")


@dataclass(frozen=True)
class BlobSettings:
    #: ``file`` (a directory) or ``s3`` (an S3-compatible object store)
    backend: str = "file"
    #: file: where tarballs are kept; empty: ``<data>/blobs``. Replicas share one
    #: directory (a shared filesystem)
    path: str = ""
    #: s3: the bucket, a key prefix, and the endpoint for non-AWS stores (MinIO, Ceph)
    bucket: str = ""
    prefix: str = "blobs/"
    endpoint_url: str = ""
    region: str = ""
    #: s3 credentials; empty: boto3's own chain (AWS_* variables, instance roles)
    access_key: str = ""
    secret_key: str = ""


@dataclass(frozen=True)
class SigningSettings:
    #: encrypts the private keys in ``<data>/keys`` (empty: stored unencrypted, mode 0600)
    passphrase: str = ""
    #: where the private keys live; empty: ``<data>/keys``. Replicas share one (for
    #: example a mounted secret)
    keys_dir: str = ""
    #: days a new key pair signs before it expires; 0 = until rotated
    key_validity_days: int = 0


@dataclass(frozen=True)
class WebhookSettings:
    #: run the delivery worker in the server processes (one holds the lease at a time)
    enabled: bool = True
    #: attempts before a delivery is marked failed
    max_attempts: int = 8
    #: seconds to wait for a receiver to answer
    timeout: float = 10.0
    #: seconds before the first retry; doubled for each further attempt
    retry_base: float = 5.0
    #: seconds between looks at the changes feed when nothing woke the worker
    poll_interval: float = 1.0


@dataclass(frozen=True)
class LdapSettings:
    """Sign-in against an LDAP directory (needs the ``ldap`` extra: python-ldap)."""

    enabled: bool = False
    #: ``ldap://host:389`` or ``ldaps://host:636``
    url: str = ""
    #: upgrade an ``ldap://`` connection with StartTLS before binding
    start_tls: bool = False
    #: CA certificates for ldaps/StartTLS; empty: the system store
    ca_file: str = ""
    #: the service account that searches for users (empty: anonymous search)
    bind_dn: str = ""
    bind_password: str = ""
    #: where users live, and how one is found (``{username}`` is filter-escaped)
    user_base: str = ""
    user_filter: str = "(uid={username})"
    #: where groups live, and which ones hold a user (``{dn}`` is filter-escaped)
    group_base: str = ""
    group_filter: str = "(|(member={dn})(uniqueMember={dn}))"
    group_name_attribute: str = "cn"
    #: follow groups that are members of groups (nested groups)
    nested_groups: bool = True
    email_attribute: str = "mail"
    display_name_attribute: str = "cn"
    #: seconds for connecting and for each operation
    timeout: float = 5.0
    #: a token or panel session of a directory user is re-checked against the
    #: directory when its last sign-in or re-check is older than this (a duration:
    #: "15m", or seconds; at least 60): still there, still matching ``user_filter``,
    #: still in an allowed group; role and teams follow its groups
    recheck_interval: float = 900.0
    #: when the directory cannot be reached for a re-check, its last answer stands for
    #: this much longer (fail open, bounded); after that the user's tokens and sessions
    #: are refused (503) until it answers again. 0: refuse as soon as a re-check fails
    recheck_grace: float = 3600.0


@dataclass(frozen=True)
class SamlSettings:
    """SAML 2.0 single sign-on as a service provider (needs the ``saml`` extra: pysaml2)."""

    enabled: bool = False
    #: this service provider's entity id; empty: ``<public_url>/saml/metadata``
    entity_id: str = ""
    #: the identity provider's metadata: a file, or a URL fetched at start
    idp_metadata_file: str = ""
    idp_metadata_url: str = ""
    #: the SP's own key pair (PEM), for signed requests and encrypted assertions
    key_file: str = ""
    cert_file: str = ""
    #: the xmlsec1 binary pysaml2 signs and verifies with (empty: found on PATH)
    xmlsec_binary: str = ""
    #: accept responses nobody asked for (IdP-initiated login)
    allow_idp_initiated: bool = True
    #: attribute names in the assertion (empty username attribute: the NameID)
    username_attribute: str = "uid"
    email_attribute: str = "mail"
    display_name_attribute: str = "displayName"
    groups_attribute: str = "groups"
    #: seconds of clock difference tolerated in assertion time checks
    clock_skew: int = 60
    #: how long a panel session started by a SAML sign-in lasts (a duration, at least
    #: 60 seconds). SAML has no back channel to ask the identity provider later, so this
    #: bounds how long someone the IdP has since removed keeps a session; their tokens
    #: are revoked by an admin (``gati-registry token revoke --user NAME``)
    session_lifetime: float = 8 * 3600.0


@dataclass(frozen=True)
class SsoRule:
    """Directory group (LDAP group name or DN, SAML group value) → team and/or role."""

    group: str = ""
    team: str = ""
    role: str = ""


@dataclass(frozen=True)
class SsoSettings:
    """What directory (LDAP/SAML) users become, and sign-in protection for everyone."""

    #: groups → teams and roles, applied at every sign-in (leaving a group takes the
    #: team or role away at the next sign-in)
    rules: tuple[SsoRule, ...] = ()
    #: the role of a directory user no role rule matches
    default_role: str = "reader"
    #: when not empty, directory users outside all of these groups may not sign in
    allowed_groups: tuple[str, ...] = ()
    #: failed sign-ins for one name within ``lockout_minutes`` that lock it for that long
    lockout_failures: int = 5
    lockout_minutes: int = 15
    #: failed sign-ins from one address per minute before it is refused for a minute
    max_failures_per_ip: int = 30


@dataclass(frozen=True)
class SearchSettings:
    #: where this replica keeps its Whoosh index; empty means ``<data>/index``. Keep it
    #: on a local disk: the follower's lock is an flock, which network filesystems
    #: do not all honour
    index_dir: str = ""
    #: follow the changes feed from the server processes (one per index directory
    #: updates it; the others read it)
    follow: bool = True
    #: seconds between looks at the changes feed when nothing on this machine woke the
    #: follower (changes made by other replicas arrive this way)
    poll_interval: float = 0.5


@dataclass(frozen=True)
class MarketplaceSettings:
    #: teams whose members publish official modules: their packages get the Verified badge
    official_teams: tuple[str, ...] = ()
    #: distinct approvers of a package's versions that make it Trusted (0: only an
    #: admin's mark does)
    trusted_approvers: int = 2
    #: seconds between writes of the in-memory download counters to the database
    download_flush_interval: float = 5.0
    #: seconds the popularity figures (downloads, stars, ratings) used for sorting are
    #: reused before they are read again
    stats_max_age: float = 30.0


@dataclass(frozen=True)
class PluginSettings:
    #: plugin names never loaded, even when installed
    blocked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """Everything the registry can be told. Frozen; build with :func:`load_settings`."""

    host: str = "127.0.0.1"
    port: int = 8080
    data: Path = Path("registry-data")
    workers: int = 2
    threads: int = 16
    #: glibc malloc arenas per process (0: glibc's default of 8 per core). With many
    #: threads each gets an arena, and freed memory scattered over them is rarely given
    #: back: a small number keeps a long-running server's memory flat
    malloc_arenas: int = 2
    #: the external base URL (``https://registry.corp/``); empty: built from each request
    public_url: str = ""
    #: reads (packuments, tarballs, search) without a token
    anonymous_read: bool = False
    #: ``npm adduser`` may create new local users
    allow_signup: bool = False
    #: peers whose X-Forwarded-*/Forwarded headers are believed (IPs or CIDRs)
    trusted_proxies: tuple[str, ...] = ()
    #: password for the ``admin`` user created on first start (else one is generated)
    admin_password: str = ""
    #: secret for session cookies and CSRF; empty: generated and kept in the data dir
    secret_key: str = ""
    log_level: str = "INFO"
    #: ``json`` (one object per line, with the request id) or ``text``
    log_format: str = "json"
    #: one log line per request (method, path, status, duration, request id)
    access_log: bool = True
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)
    plugins: PluginSettings = field(default_factory=PluginSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    signing: SigningSettings = field(default_factory=SigningSettings)
    blobs: BlobSettings = field(default_factory=BlobSettings)
    # -- the mirror (settings_mirror.py): [upstreams.NAME], [[packages]], [mirror]
    upstreams: tuple[UpstreamSettings, ...] = ()
    packages: tuple[PackageSource, ...] = ()
    mirror: MirrorSettings = field(default_factory=MirrorSettings)

    def upstream(self, name: str) -> UpstreamSettings | None:
        """The upstream called ``name``, or None."""
        return next((u for u in self.upstreams if u.name == name), None)

    ldap: LdapSettings = field(default_factory=LdapSettings)
    saml: SamlSettings = field(default_factory=SamlSettings)
    sso: SsoSettings = field(default_factory=SsoSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    marketplace: MarketplaceSettings = field(default_factory=MarketplaceSettings)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data / 'registry.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return Path(self.blobs.path) if self.blobs.path else self.data / "blobs"

    @property
    def keys_dir(self) -> Path:
        return Path(self.signing.keys_dir) if self.signing.keys_dir else self.data / "keys"

    @property
    def index_dir(self) -> Path:
        return Path(self.search.index_dir) if self.search.index_dir else self.data / "index"

    @classmethod
    def for_tests(cls, tmp_path: Path, **overrides: Any) -> "Settings":
        """Settings rooted in ``tmp_path``; ``overrides`` use the same nesting as the file
        (``database={"url": ...}``)."""
        base: dict[str, Any] = {"data": str(tmp_path), "admin_password": "admin-pass-1",
                                "secret_key": "test-secret"}
        return _build([base, overrides], {})


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.I)


def parse_size(value: Any) -> int:
    """``"50MB"``, ``"512k"``, ``1048576`` → bytes."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r}")
    n = int(m.group(1))
    unit = (m.group(2) or "b").lower()[0]
    return n * {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]


#: float settings that also take a duration with a unit ("15m", "1h")
_DURATIONS = frozenset({"recheck_interval", "recheck_grace", "session_lifetime"})
#: the shortest [ldap] recheck_interval: a directory search per request (or per few
#: seconds) would make every install as slow as the directory, and load it for nothing
MIN_RECHECK_INTERVAL = 60.0


def _coerce(value: Any, typ: Any, name: str) -> Any:
    t = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    if t == "bool":
        return _parse_bool(value)
    if t == "int":
        if "size" in name:
            return parse_size(value)
        return int(value)
    if t == "float":
        if name in _DURATIONS:
            return parse_duration(value)
        return float(value)
    if t == "Path":
        return Path(str(value))
    if t.startswith("tuple"):
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return tuple(str(v) for v in value)
    return str(value)


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, Mapping):
            into[key] = {}
            _merge(into[key], value)
        else:
            into[key] = value


def _build_section(cls: Any, raw: Mapping[str, Any], path: str,
                   errors: list[FieldError], environ: Mapping[str, str] | None = None) -> Any:
    kwargs: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in raw.items():
        key_n = key.replace("-", "_").lower()
        f = fields.get(key_n)
        if f is None:
            log.warning("unknown setting %s%s ignored", path, key)
            continue
        if cls is Settings and key_n in ("upstreams", "packages"):
            continue  # built below: they need each other
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            if not isinstance(value, Mapping):
                errors.append(FieldError(path + key_n, "must be a table"))
                continue
            kwargs[key_n] = _build_section(sub, value, f"{path}{key_n}.", errors)
            continue
        try:
            if str(f.type).startswith("tuple[ApprovalPolicy"):
                kwargs[key_n] = _policies(value, path + key_n, errors)
            elif str(f.type).startswith("tuple[SsoRule"):
                kwargs[key_n] = _sso_rules(value, path + key_n, errors)
            else:
                kwargs[key_n] = _coerce(value, f.type, key_n)
        except (TypeError, ValueError) as exc:
            errors.append(FieldError(path + key_n, str(exc)))
    if cls is BlobSettings:
        if kwargs.get("backend", "file") not in BLOB_BACKENDS:
            errors.append(FieldError(path + "backend", f"must be one of {', '.join(BLOB_BACKENDS)}"))
        elif kwargs.get("backend") == "s3" and not kwargs.get("bucket"):
            errors.append(FieldError(path + "bucket", "the s3 backend needs a bucket"))
    if cls is Settings:
        for key, least in (("workers", 1), ("threads", 1), ("malloc_arenas", 0)):
            if isinstance(kwargs.get(key), int) and kwargs[key] < least:
                errors.append(FieldError(path + key, f"must be at least {least}"))
        kwargs["upstreams"] = build_upstreams(raw.get("upstreams", {}), errors, environ or {})
        if "packages" in raw:
            kwargs["packages"] = build_packages(raw["packages"], kwargs["upstreams"], errors)
    if cls is ApprovalSettings and kwargs.get("default_mode", "manual") not in APPROVAL_MODES:
        errors.append(FieldError(path + "default_mode", f"must be one of {', '.join(APPROVAL_MODES)}"))
    if cls is SsoSettings and kwargs.get("default_role", "reader") not in ROLES:
        errors.append(FieldError(path + "default_role", f"must be one of {', '.join(ROLES)}"))
    if cls is LdapSettings and kwargs.get("enabled") and not str(kwargs.get("url", "")).startswith(
            ("ldap://", "ldaps://", "ldapi://")):
        errors.append(FieldError(path + "url", "must be an ldap://, ldaps:// or ldapi:// URL"))
    if cls is LdapSettings and kwargs.get("recheck_interval", 900.0) < MIN_RECHECK_INTERVAL:
        errors.append(FieldError(path + "recheck_interval",
                                 f"must be at least {MIN_RECHECK_INTERVAL:.0f} seconds"))
    if cls is SamlSettings and kwargs.get("session_lifetime", 60.0) < 60.0:
        errors.append(FieldError(path + "session_lifetime", "must be at least 60 seconds"))
    if cls is SamlSettings and kwargs.get("enabled") and not (
            kwargs.get("idp_metadata_file") or kwargs.get("idp_metadata_url")):
        errors.append(FieldError(path + "idp_metadata_file",
                                 "SAML needs the identity provider's metadata (file or URL)"))
    return cls(**kwargs)


#: the role names (kept here too: settings may not import the domain module's users)
ROLES = ("admin", "approver", "publisher", "auditor", "reader")


def _sso_rules(value: Any, path: str, errors: list[FieldError]) -> tuple[SsoRule, ...]:
    if not isinstance(value, list):
        raise ValueError("must be a list of tables with group and team and/or role")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not isinstance(item.get("group"), str) \
                or not item["group"]:
            errors.append(FieldError(f"{path}[{i}]", "needs a group"))
            continue
        team, role = item.get("team", ""), item.get("role", "")
        if not isinstance(team, str) or not isinstance(role, str) or not (team or role):
            errors.append(FieldError(f"{path}[{i}]", "needs a team or a role (strings)"))
            continue
        if role and role not in ROLES:
            errors.append(FieldError(f"{path}[{i}].role", f"must be one of {', '.join(ROLES)}"))
            continue
        out.append(SsoRule(group=item["group"], team=team, role=role))
    return tuple(out)


def _policies(value: Any, path: str, errors: list[FieldError]) -> tuple[ApprovalPolicy, ...]:
    if not isinstance(value, list):
        raise ValueError("must be a list of tables with pattern and mode")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not isinstance(item.get("pattern"), str):
            errors.append(FieldError(f"{path}[{i}]", "needs a pattern"))
            continue
        mode = item.get("mode", "manual")
        if mode not in APPROVAL_MODES:
            errors.append(FieldError(f"{path}[{i}].mode", f"must be one of {', '.join(APPROVAL_MODES)}"))
            continue
        approvers = item.get("approvers", "")
        if not isinstance(approvers, str):
            errors.append(FieldError(f"{path}[{i}].approvers", "must be a team name"))
            continue
        out.append(ApprovalPolicy(pattern=item["pattern"], mode=mode, approvers=approvers))
    return tuple(out)


def _build(layers: list[Mapping[str, Any]], environ: Mapping[str, str]) -> Settings:
    merged: dict[str, Any] = {}
    for layer in layers:
        _merge(merged, layer)
    errors: list[FieldError] = []
    settings = _build_section(Settings, merged, "", errors, environ)
    if errors:
        raise ValidationFailed("invalid settings", details=errors)
    return settings  # type: ignore[no-any-return]


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """``GATI_REGISTRY_DATABASE__URL=x`` → ``{"database": {"url": "x"}}``."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX):].split("__")]
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_settings(config_file: str | Path | None = None, *,
                  environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read defaults, then the TOML file (``config_file`` or ``$GATI_REGISTRY_CONFIG``),
    then the environment, then ``overrides`` (command-line flags; ``None`` values are
    ignored).

    Raises :class:`ValidationFailed` listing every bad value, or ``FileNotFoundError``.
    """
    env = os.environ if environ is None else environ
    layers: list[Mapping[str, Any]] = []
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        with open(path, "rb") as fh:
            layers.append(tomllib.load(fh))
    layers.append(env_layer(env))
    if overrides:
        layers.append({k: v for k, v in overrides.items() if v is not None})
    return _build(layers, env)
