"""The database tables. Every change of state also appends a ``changes`` row and an
``audit_events`` row in the same transaction (see services)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer,
                        LargeBinary, SmallInteger, String, Text, UniqueConstraint, false)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base

# BigInteger ids on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer, "sqlite")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(214), unique=True)
    email: Mapped[str] = mapped_column(String(320), default="")
    role: Mapped[str] = mapped_column(String(16))
    #: argon2id hash; NULL for users who can only sign in through a directory
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="local")
    #: the name the directory gives (LDAP cn, SAML displayName)
    display_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: when the directory (LDAP) last answered for this user: a sign-in or a re-check
    directory_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                                 nullable=True)
    #: the directory's last answer was "no such user" or "not in an allowed group": the
    #: user's tokens and sessions are refused until it lets them in again
    directory_lost: Mapped[bool] = mapped_column(Boolean, default=False,
                                                 server_default=false())


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    #: public identifier shown by ``npm token list`` (never the secret)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    #: sha256 of the secret: tokens are 256-bit random, so a fast digest is safe and
    #: keeps an authenticated read as cheap as an anonymous one
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    #: first characters of the secret, to help people recognise it
    prefix: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    scope: Mapped[str] = mapped_column(String(16))
    cidr: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    #: package-name patterns the token is limited to (NULL: every package)
    packages: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    user: Mapped[User] = relationship(lazy="joined")


class Package(Base):
    __tablename__ = "packages"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(214), unique=True)
    scope: Mapped[str | None] = mapped_column(String(214), nullable=True, index=True)
    #: description, readme and readme_filename are those of the version at ``latest``
    #: among approved versions, re-derived whenever the packument is rendered
    description: Mapped[str] = mapped_column(Text, default="")
    readme: Mapped[str] = mapped_column(Text, default="")
    readme_filename: Mapped[str] = mapped_column(String(255), default="")
    #: monotonic revision, the number in ``_rev``
    rev: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: the upstream a mirrored package comes from; NULL: published here (then never
    #: fetched from any upstream, and an upstream package never becomes a local one)
    upstream: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Maintainer(Base):
    __tablename__ = "maintainers"

    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"),
                                            primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)


class Blob(Base):
    __tablename__ = "blobs"

    #: sha512 hex of the tarball bytes; the file name in the blob store
    digest: Mapped[str] = mapped_column(String(128), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Version(Base):
    """A published ``name@version``. Rows are never deleted: an unpublished or rejected
    version keeps its row so its number can never be used again."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("package_id", "version"),
                      Index("ix_versions_package_state", "package_id", "state"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    #: the version manifest as served, without ``dist`` (rebuilt from the columns)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    gati_module: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    blob_digest: Mapped[str] = mapped_column(ForeignKey("blobs.digest"), index=True)
    integrity: Mapped[str] = mapped_column(String(100))
    shasum: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)
    unpacked_size: Mapped[int] = mapped_column(BigInteger)
    #: the tarball's file list: [[path, size], ...]
    files: Mapped[list[Any]] = mapped_column(JSON)
    deprecated: Mapped[str | None] = mapped_column(Text, nullable=True)
    publisher_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                     nullable=True)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    unpublished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)
    state_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state_reason: Mapped[str] = mapped_column(Text, default="")
    #: the id npm's staged-publishing commands use for this version (a UUID)
    stage_id: Mapped[str | None] = mapped_column(String(36), nullable=True, unique=True)
    #: the dist-tag the publisher asked for
    tag: Mapped[str] = mapped_column(String(214), default="latest", server_default="latest")
    #: the upstream this version was mirrored from (NULL: published here), and the
    #: upstream's ``dist`` (its signatures and attestations stay verifiable)
    upstream: Mapped[str | None] = mapped_column(String(64), nullable=True)
    upstream_dist: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: this version's README as published. The package's ``readme`` is a copy of the
    #: one of the version at ``latest`` among approved versions, so a held version's
    #: text reaches nobody but its publisher and approvers. Deferred: ORM loads of
    #: versions (dist-tag, deprecate, unpublish) never need it.
    readme: Mapped[str] = mapped_column(Text, default="", server_default="", deferred=True)
    readme_filename: Mapped[str] = mapped_column(String(255), default="", server_default="",
                                                 deferred=True)

    package: Mapped[Package] = relationship()
    publisher: Mapped[User | None] = relationship()


class DistTag(Base):
    __tablename__ = "dist_tags"

    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"),
                                            primary_key=True)
    tag: Mapped[str] = mapped_column(String(214), primary_key=True)
    version: Mapped[str] = mapped_column(String(256))


class Packument(Base):
    """Rendered documents, rebuilt in the transaction that changes the package, so a
    read is one primary-key lookup."""

    __tablename__ = "packuments"

    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"),
                                            primary_key=True)
    name: Mapped[str] = mapped_column(String(214), unique=True)
    #: false once every version is gone: the name answers 404
    visible: Mapped[bool] = mapped_column(Boolean)
    #: JSON bytes with BASE_MARKER where the external base URL goes (it depends on the
    #: request unless ``public_url`` is set); gzip is done per base URL in memory
    full: Mapped[bytes] = mapped_column(LargeBinary)
    abbreviated: Mapped[bytes] = mapped_column(LargeBinary)
    #: content hash of ``full``; representation ETags are derived from it
    etag: Mapped[str] = mapped_column(String(64))
    modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Change(Base):
    """The changes feed: one row per write, in commit order within a backend."""

    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    package: Mapped[str | None] = mapped_column(String(214), nullable=True, index=True)
    version: Mapped[str | None] = mapped_column(String(256), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(214), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(600), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(400), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class WebLogin(Base):
    """An ``npm login --auth-type=web`` session waiting for a person to confirm it."""

    __tablename__ = "web_logins"

    #: sha256 of the random id in the login and done URLs
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    create_user: Mapped[bool] = mapped_column(Boolean, default=False)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                                nullable=True)
    consumed: Mapped[bool] = mapped_column(Boolean, default=False)


class VoteRecord(Base):
    """One plugin's vote on one version, kept for the reviewer and the audit."""

    __tablename__ = "votes"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"),
                                            index=True)
    plugin: Mapped[str] = mapped_column(String(100))
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Transition(Base):
    """Every lifecycle state change of a version: who, when, why."""

    __tablename__ = "transitions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"),
                                            index=True)
    old_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    new_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(214))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PluginConfig(Base):
    """Run-time plugin settings, changed by admins."""

    __tablename__ = "plugin_configs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(String(214), default="")


class Team(Base):
    """A group of users. Teams restrict who may approve under a package pattern (see
    ``approvals.policies``) and, with enterprise sign-on, own scopes."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"),
                                         primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)


class TeamPackage(Base):
    """A package pattern (``@payments/*``, ``payments-*``) a team owns: only its members
    (and admins) publish, deprecate, tag or unpublish matching packages."""

    __tablename__ = "team_packages"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"),
                                         primary_key=True)
    pattern: Mapped[str] = mapped_column(String(214), primary_key=True)


class SamlAssertion(Base):
    """Ids of SAML assertions already used: a replayed assertion is refused. Rows are
    kept until the assertion itself has expired."""

    __tablename__ = "saml_assertions"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Webhook(Base):
    """A URL that receives a signed JSON event for every change it subscribes to."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    #: the HMAC key; kept in clear because the registry must sign with it (like GitHub)
    secret: Mapped[str] = mapped_column(String(200))
    #: change kinds delivered (``version.state``, ``version.publish``, ...)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: package names (fnmatch) whose events are delivered
    pattern: Mapped[str] = mapped_column(String(214), default="*")
    description: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(214), default="")


class WebhookDelivery(Base):
    """One event for one webhook: queued, retried with backoff, then delivered or failed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id", "change_seq"),
                      Index("ix_webhook_deliveries_due", "status", "next_attempt_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"),
                                            index=True)
    #: the changes-feed row this event comes from
    change_seq: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: pending, delivered or failed (retries exhausted)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                             nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)


class WorkerLease(Base):
    """Which process currently runs a background job that follows the changes feed, and
    how far it got. Any process (or replica) may take over an expired lease."""

    __tablename__ = "worker_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), default="")
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: the last changes-feed ``seq`` this job has handled
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)


class SigningKey(Base):
    """A public key the registry signs with. Keys come in pairs made together (one
    Ed25519 organisation key, one ECDSA P-256 key for npm's ``dist.signatures``) and are
    rotated and revoked together; private halves live in ``<data>/keys``."""

    __tablename__ = "signing_keys"

    #: npm's form: ``SHA256:`` + unpadded base64 of sha256(DER SubjectPublicKeyInfo)
    keyid: Mapped[str] = mapped_column(String(100), primary_key=True)
    #: ``ed25519`` or ``ecdsa-p256``
    algorithm: Mapped[str] = mapped_column(String(32))
    #: base64 DER SubjectPublicKeyInfo
    public_key: Mapped[str] = mapped_column(Text)
    #: the pair this key was made with (both halves share it)
    pair: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: end of the validity window: set when the key is rotated out or reaches its age
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_reason: Mapped[str] = mapped_column(Text, default="")
    #: signs new approvals (one pair at a time)
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class VersionSignature(Base):
    """One key's signature over ``name@version:integrity`` of an approved version."""

    __tablename__ = "version_signatures"

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"),
                                            primary_key=True)
    keyid: Mapped[str] = mapped_column(ForeignKey("signing_keys.keyid", ondelete="CASCADE"),
                                       primary_key=True, index=True)
    #: base64 signature (raw 64 bytes for Ed25519, DER for ECDSA)
    sig: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UpstreamPackument(Base):
    """The last packument an upstream sent for a name, with its validators, so metadata
    is served within ``max_age`` without asking, revalidated with If-None-Match /
    If-Modified-Since after, and served stale when the upstream is down."""

    __tablename__ = "upstream_packuments"

    name: Mapped[str] = mapped_column(String(214), primary_key=True)
    upstream: Mapped[str] = mapped_column(String(64))
    #: the upstream's JSON as sent (not yet merged with local state)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    #: sha256 of ``body``: tells processes whether their copy is this one
    digest: Mapped[str] = mapped_column(String(64))
    #: the upstream's validators (either may be empty: some upstreams send none)
    etag: Mapped[str] = mapped_column(String(200), default="")
    last_modified: Mapped[str] = mapped_column(String(100), default="")
    #: when the upstream last confirmed this copy (200 or 304)
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UpstreamRule(Base):
    """An admin's curation of upstream versions: ``approve`` (pre-approve a range, e.g.
    lodash ^4) or ``block`` (never served, whatever the policy says)."""

    __tablename__ = "upstream_rules"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(214), index=True)
    #: a semver range (``^4``, ``4.17.20``, ``*``)
    range: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(214), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PrefetchJob(Base):
    """Warming the mirror from a lockfile or a list: done by the lease holder in the
    background, with progress for the panel."""

    __tablename__ = "prefetch_jobs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    #: queued, running, done, cancelled
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: [[name, range or exact version], ...]; ``closure``: also their dependencies
    specs: Mapped[list[Any]] = mapped_column(JSON)
    closure: Mapped[bool] = mapped_column(Boolean, default=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    #: the first problems met: ["name@version: why", ...]
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(214), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: what the worker is on now ("name@spec"), for the panel
    current: Mapped[str] = mapped_column(String(500), default="", server_default="")
    #: where the specs came from: list or lockfile
    source: Mapped[str] = mapped_column(String(16), default="list", server_default="list")


# -- the marketplace ----------------------------------------------------------------------


class DownloadCount(Base):
    """Tarball downloads of one version on one (UTC) day. Server processes count in
    memory and add their counts here in batches (see ``services.popularity``)."""

    __tablename__ = "download_counts"
    __table_args__ = (Index("ix_download_counts_day_package", "day", "package_id"),)

    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"),
                                            primary_key=True)
    version: Mapped[str] = mapped_column(String(256), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class Star(Base):
    """One user's star on one package (at most one)."""

    __tablename__ = "stars"

    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"),
                                            primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Rating(Base):
    """One user's rating (1-5) of one package (at most one; changing it replaces it)."""

    __tablename__ = "ratings"

    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"),
                                            primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)
    score: Mapped[int] = mapped_column(SmallInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Review(Base):
    """A user's review of a package, in Markdown (one per user and package). Stored as
    written; rendered through the sanitiser whenever it is shown."""

    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("package_id", "user_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"),
                                            index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: hidden by an admin (moderation): kept, shown to nobody but admins and its author
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden_by: Mapped[str] = mapped_column(String(214), default="")
    hidden_reason: Mapped[str] = mapped_column(Text, default="")


class TrustMark(Base):
    """An admin's decision that a package is Trusted (community-verified)."""

    __tablename__ = "trust_marks"

    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"),
                                            primary_key=True)
    marked_by: Mapped[str] = mapped_column(String(214))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProjectProfile(Base):
    """The registry packages one project depends on, as sent for "for your stack"
    recommendations (names only, deduplicated by their digest): the raw material of
    install co-occurrence beyond the registry's own dependency graph."""

    __tablename__ = "project_profiles"

    #: sha256 of the sorted names
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    names: Mapped[list[str]] = mapped_column(JSON)
    seen: Mapped[int] = mapped_column(Integer, default=1)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class PrefetchItem(Base):
    """One package of a prefetch job: a spec to resolve, fetch and (for a closure)
    expand. Queued rows are what is left, so a restarted worker resumes there."""

    __tablename__ = "prefetch_items"
    __table_args__ = (UniqueConstraint("job_id", "name", "spec"),
                      Index("ix_prefetch_items_job_status", "job_id", "status"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    job_id: Mapped[int] = mapped_column(Id, ForeignKey("prefetch_jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(214))
    #: a range, a dist-tag or an exact version (lockfiles)
    spec: Mapped[str] = mapped_column(String(256))
    #: what the spec resolved to ("" until then)
    version: Mapped[str] = mapped_column(String(256), default="")
    #: queued, done, failed
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error: Mapped[str] = mapped_column(Text, default="")
