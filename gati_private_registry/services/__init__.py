"""The services: plain Python that decides. Built once by :func:`build_services`."""
from __future__ import annotations

from dataclasses import dataclass

from ..settings import Settings
from ..storage.blobs import BlobStore, FileBlobStore
from ..storage.changes import Generation
from ..storage.db import Database, make_engine
from ..storage.keyfiles import KeyFiles
from ..storage.search_index import SearchIndex
from .accounts import AccountService
from .approvals import ApprovalService
from .held import HeldVersions
from .indexer import IndexFollower
from .modules import ModuleService
from .packages import PackageService
from .packuments import PackumentCache
from .plugin_admin import PluginAdminService
from .plugins import PluginHost
from .popularity import DownloadCounter, PopularityService
from .publish import PublishService
from .recommend import RecommendService
from .search import SearchService
from .social import SocialService
from .signing import KeyService
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
    index: SearchIndex
    indexer: IndexFollower
    search: SearchService
    popularity: PopularityService
    downloads: DownloadCounter
    modules: ModuleService
    social: SocialService
    recommend: RecommendService

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
    keys = KeyService(settings.signing, db, KeyFiles(settings.data / "keys"))
    approvals = ApprovalService(db, host, settings.approvals, teams, sign=keys.sign_version)
    publish = PublishService(settings, db, store, host, approvals.plugin_configs,
                             approvals.existing_names, sign=keys.sign_version)
    index = SearchIndex(settings.index_dir)
    popularity = PopularityService(db, settings.marketplace.stats_max_age)
    search = SearchService(index, popularity)
    return Services(
        settings=settings, db=db, blobs=store, generation=generation,
        accounts=AccountService(settings, db, auth_generation),
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
        index=index,
        indexer=IndexFollower(settings, db, index),
        search=search,
        popularity=popularity,
        downloads=DownloadCounter(db, settings.data / "write.lock"),
        modules=ModuleService(db, store, search, popularity),
        social=SocialService(db),
        recommend=RecommendService(db, search),
    )
