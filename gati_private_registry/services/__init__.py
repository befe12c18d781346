"""The services: plain Python that decides. Built once by :func:`build_services`."""
from __future__ import annotations

from dataclasses import dataclass

from ..domain import Origin
from ..settings import Settings
from ..storage.blobs import BlobStore, open_blob_store
from ..storage.changes import Generation
from ..storage.db import Database, make_engine
from ..storage import migrate
from ..storage.keyfiles import KeyFiles
from ..storage.search_index import SearchIndex
from .accounts import AccountService
from .approvals import ApprovalService
from .audit import AuditLog
from .directory_sync import DirectorySync
from .held import HeldVersions
from .indexer import IndexFollower
from .logins import LoginService
from .modules import ModuleService
from .packages import PackageService
from .packuments import PackumentCache
from .plugin_admin import PluginAdminService
from .plugins import PluginHost
from .popularity import DownloadCounter, PopularityService
from .publish import PublishService
from .saml import SamlServiceProvider
from .recommend import RecommendService
from .search import SearchService
from .social import SocialService
from .signing import KeyService
from .signon import SignOnService
from .teams import TeamService
from .tokens import TokenService
from .webhooks import WebhookService
from .upstream import MirrorService, counter_names
from .upstream.client import UpstreamClient
from ..storage.counters import Counters


def ready(checks: dict[str, str]) -> bool:
    """Whether the checks of :meth:`Services.health` let a replica take traffic: each is
    ``ok``, except that a schema ``ahead`` of this release is fine, since that is what a
    rolling upgrade looks like (the new release migrated first, expand-only, and this one
    keeps serving until it is replaced). A schema behind (``pending``) is not."""
    return all(v == "ok" or v.startswith("ahead: ") for v in checks.values())


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    generation: Generation
    accounts: AccountService
    tokens: TokenService
    logins: LoginService
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
    mirror: MirrorService
    signon: SignOnService
    directory_sync: DirectorySync
    audit: AuditLog
    index: SearchIndex
    indexer: IndexFollower
    search: SearchService
    popularity: PopularityService
    downloads: DownloadCounter
    modules: ModuleService
    social: SocialService
    recommend: RecommendService
    #: None unless ``[saml] enabled``
    saml: SamlServiceProvider | None = None

    def health(self) -> dict[str, str]:
        """Check the database, the schema and the blob store; returns a status per part
        (see :func:`ready`). Never raises."""
        status: dict[str, str] = {}
        try:
            self.db.ping()
            status["database"] = "ok"
            schema = migrate.state(self.db.engine)
            status["migrations"] = ("ok" if schema.current
                                    else f"pending: {', '.join(schema.pending)}" if schema.pending
                                    else f"ahead: {', '.join(schema.ahead)}")
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
                   plugins: PluginHost | None = None,
                   upstream_clients: dict[str, UpstreamClient] | None = None) -> Services:
    """Open the database and the blob store and wire the services together
    (``upstream_clients`` replace the HTTP clients of the configured upstreams)."""
    settings.data.mkdir(parents=True, exist_ok=True)
    generation = Generation(settings.data / "generation")
    # bumped only when credentials lose power (revocation, disabling), so the token
    # cache survives the publishes that bump the data generation
    auth_generation = Generation(settings.data / "auth-generation")
    engine = make_engine(settings.database_url, pool_size=settings.database.pool_size,
                         echo=settings.database.echo)
    db = Database(engine, after_commit=generation.bump,
                  lock_path=settings.data / "write.lock")
    store = blobs or open_blob_store(settings.blobs, settings.data / "blobs")
    host = plugins or PluginHost(blocked=settings.plugins.blocked)
    teams = TeamService(db)
    directory = None
    if settings.ldap.enabled:
        from .directory import LdapDirectory  # python-ldap is an optional extra

        directory = LdapDirectory(settings.ldap)
    signon = SignOnService(settings, db, directory, auth_generation.bump)
    keys = KeyService(settings.signing, db, KeyFiles(settings.keys_dir))
    approvals = ApprovalService(db, host, settings.approvals, teams, sign=keys.sign_version)
    mirror = MirrorService(settings, db, store, host, approvals.plugin_configs,
                           approvals.existing_names, keys.sign_version, generation.value,
                           Counters(settings.data / "mirror-counters", counter_names(settings)),
                           clients=upstream_clients)
    publish = PublishService(settings, db, store, host, approvals.plugin_configs,
                             approvals.existing_names, sign=keys.sign_version,
                             check_name=mirror.check_publish)
    index = SearchIndex(settings.index_dir)
    popularity = PopularityService(db, settings.marketplace.stats_max_age)
    search = SearchService(index, popularity)
    accounts = AccountService(settings, db, auth_generation, signon)
    directory_sync = DirectorySync(settings, db, signon)
    tokens = TokenService(db, auth_generation, check_holder=lambda holder, ip: (
        directory_sync.confirm(holder, Origin(ip=ip), "token")))
    return Services(
        settings=settings, db=db, blobs=store, generation=generation,
        accounts=accounts, tokens=tokens,
        logins=LoginService(settings, db, accounts, tokens),
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
        mirror=mirror,
        signon=signon, directory_sync=directory_sync,
        audit=AuditLog(db),
        saml=SamlServiceProvider(settings.saml, db) if settings.saml.enabled else None,
        index=index,
        indexer=IndexFollower(settings, db, index),
        search=search,
        popularity=popularity,
        downloads=DownloadCounter(db, settings.data / "write.lock"),
        modules=ModuleService(db, store, search, popularity),
        social=SocialService(db),
        recommend=RecommendService(db, search),
    )
