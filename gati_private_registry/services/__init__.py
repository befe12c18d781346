"""The services: plain Python that decides. Built once by :func:`build_services`."""
from __future__ import annotations

from dataclasses import dataclass

from ..settings import Settings
from ..storage.blobs import BlobStore, FileBlobStore
from ..storage.changes import Generation
from ..storage.db import Database, make_engine
from ..storage.keyfiles import KeyFiles
from .accounts import AccountService
from .approvals import ApprovalService
from .audit import AuditLog
from .held import HeldVersions
from .packages import PackageService
from .packuments import PackumentCache
from .plugin_admin import PluginAdminService
from .plugins import PluginHost
from .publish import PublishService
from .saml import SamlServiceProvider
from .signing import KeyService
from .signon import SignOnService
from .teams import TeamService
from .webhooks import WebhookService


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    generation: Generation
    accounts: AccountService
    publish: PublishService
    packages: PackageService
    packuments: PackumentCache
    plugins: PluginHost
    approvals: ApprovalService
    plugin_admin: PluginAdminService
    teams: TeamService
    held: HeldVersions
    keys: KeyService
    webhooks: WebhookService
    signon: SignOnService
    audit: AuditLog
    #: None unless ``[saml] enabled``
    saml: SamlServiceProvider | None = None

    def health(self) -> dict[str, str]:
        """Check the database and the blob store; returns a status per part.
        Never raises."""
        status: dict[str, str] = {}
        try:
            self.db.ping()
            status["database"] = "ok"
        except Exception as exc:  # reported, not raised: this feeds /readyz
            status["database"] = f"error: {exc.__class__.__name__}"
        try:
            self.blobs.check()
            status["blobs"] = "ok"
        except OSError as exc:
            status["blobs"] = f"error: {exc.__class__.__name__}"
        return status

    def close(self) -> None:
        if self.signon.directory is not None:
            self.signon.directory.close()
        self.db.dispose()


def build_services(settings: Settings, blobs: BlobStore | None = None,
                   plugins: PluginHost | None = None) -> Services:
    """Open the database and the blob store and wire the services together."""
    settings.data.mkdir(parents=True, exist_ok=True)
    generation = Generation(settings.data / "generation")
    # bumped only when credentials lose power (revocation, disabling), so the token
    # cache survives the publishes that bump the data generation
    auth_generation = Generation(settings.data / "auth-generation")
    engine = make_engine(settings.database_url, pool_size=settings.database.pool_size,
                         echo=settings.database.echo)
    db = Database(engine, after_commit=generation.bump,
                  lock_path=settings.data / "write.lock")
    store = blobs or FileBlobStore(settings.blob_dir)
    host = plugins or PluginHost(blocked=settings.plugins.blocked)
    teams = TeamService(db)
    directory = None
    if settings.ldap.enabled:
        from .directory import LdapDirectory  # python-ldap is an optional extra

        directory = LdapDirectory(settings.ldap)
    signon = SignOnService(settings, db, directory, auth_generation.bump)
    keys = KeyService(settings.signing, db, KeyFiles(settings.data / "keys"))
    approvals = ApprovalService(db, host, settings.approvals, teams, sign=keys.sign_version)
    publish = PublishService(settings, db, store, host, approvals.plugin_configs,
                             approvals.existing_names, sign=keys.sign_version)
    return Services(
        settings=settings, db=db, blobs=store, generation=generation,
        accounts=AccountService(settings, db, auth_generation, signon),
        publish=publish,
        packages=PackageService(db, publish, generation.value),
        packuments=PackumentCache(db, generation.value),
        plugins=host,
        approvals=approvals,
        plugin_admin=PluginAdminService(db, host),
        teams=teams,
        held=HeldVersions(db, generation.value),
        keys=keys,
        webhooks=WebhookService(db),
        signon=signon,
        audit=AuditLog(db),
        saml=SamlServiceProvider(settings.saml, db) if settings.saml.enabled else None,
    )
