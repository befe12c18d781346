"""``gati-registry``: run and administer the registry."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import RegistryError
from ..settings import Settings, load_settings


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    obj = ctx.find_root().obj or {}
    data = overrides.pop("data", None) or obj.get("data")
    merged = {"data": data, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return load_settings(obj.get("config"), overrides=merged)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None


data_option = click.option("--data", type=click.Path(file_okay=False, path_type=Path),
                           help="Data directory (default ./registry-data).")
config_option = click.option("--config", "config", type=click.Path(dir_okay=False, exists=True),
                             help="TOML configuration file.")


@click.group()
@config_option
@data_option
@click.version_option(package_name="gati-private-registry")
@click.pass_context
def main(ctx: click.Context, config: str | None, data: Path | None) -> None:
    """Gati Private Registry: serve and administer the registry."""
    ctx.obj = {"config": config, "data": data}
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # node-semver logs a traceback at INFO for every string that is not a range (tags
    # such as "latest"); alembic announces each of its plugins at INFO
    for noisy in ("nodesemver", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(exc: RegistryError) -> None:
    raise click.ClickException(str(exc))


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8080).")
@click.option("--workers", type=int, default=None, help="gunicorn worker processes (default 2).")
@click.option("--threads", type=int, default=None, help="Threads per worker (default 16).")
@config_option
@data_option
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None,
          threads: int | None, config: str | None, data: Path | None) -> None:
    """Run the registry under gunicorn."""
    if config:
        ctx.find_root().obj["config"] = config
    settings = _settings(ctx, host=host, port=port, workers=workers, threads=threads, data=data)
    logging.getLogger().setLevel(settings.log_level)
    from ..app import prepare
    from .serve import run

    try:
        services, generated = prepare(settings)
    except RegistryError as exc:
        _fail(exc)
        return
    services.close()
    if generated:
        click.echo(f"Created user 'admin' with password: {generated}\n"
                   "It is shown only this once; change it or set GATI_REGISTRY_ADMIN_PASSWORD.",
                   err=True)
    click.echo(f"Gati Private Registry on http://{settings.host}:{settings.port}/ "
               f"(npm registry: http://{settings.host}:{settings.port}/npm/, "
               f"data: {settings.data.resolve()})", err=True)
    run(settings)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending migrations."""
    from ..services import build_services
    from ..storage import migrate

    services = build_services(_settings(ctx))
    try:
        before = migrate.upgrade(services.db.engine)
        if before.ahead:
            # a rollback to this release after a newer one migrated: nothing to undo,
            # the newer schema is expand-only (docs/operations.md, "Upgrade")
            click.echo(f"schema is ahead of this release ({', '.join(before.ahead)}): "
                       "left as it is")
        else:
            click.echo(f"applied {len(before.pending)} migration(s)" if before.pending
                       else "schema is current")
    finally:
        services.close()


@main.group()
def user() -> None:
    """Users: local ones, and re-checking directory (LDAP) ones."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "approver", "publisher", "auditor", "reader"]),
              required=True)
@click.option("--email", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@data_option
@click.pass_context
def user_add(ctx: click.Context, name: str, role: str, email: str, password_stdin: bool,
             data: Path | None) -> None:
    """Create a local user."""
    from ..app import prepare

    if not password_stdin:
        raise click.UsageError("give the password on standard input with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    services, _ = prepare(_settings(ctx, data=data))
    try:
        services.accounts.create_user(None, name, password, role, email)
    except RegistryError as exc:
        _fail(exc)
    finally:
        services.close()
    click.echo(f"created {role} {name}", err=True)


@user.command("sync")
@click.argument("name", required=False)
@click.option("--all", "everyone", is_flag=True, help="Every directory (LDAP) user.")
@data_option
@click.pass_context
def user_sync(ctx: click.Context, name: str | None, everyone: bool, data: Path | None) -> None:
    """Re-check directory (LDAP) users now: still there, still in an allowed group;
    role and teams follow their groups. Prints NAME, then ok or lost and why."""
    from ..app import prepare

    if bool(name) == everyone:
        raise click.UsageError("give a user NAME or --all")
    services, _ = prepare(_settings(ctx, data=data))
    try:
        sync = services.directory_sync
        results = sync.sync_all(None) if everyone else [sync.sync(None, name or "")]
    except RegistryError as exc:
        _fail(exc)
        return
    finally:
        services.close()
    for r in results:
        click.echo(f"{r.username}\t{'ok' if r.allowed else 'lost: ' + r.reason}")


@main.group()
def token() -> None:
    """API tokens."""


@token.command("revoke")
@click.option("--user", "username", required=True)
@data_option
@click.pass_context
def token_revoke(ctx: click.Context, username: str, data: Path | None) -> None:
    """Revoke every live token of a user (someone who left; a SAML user the identity
    provider no longer knows)."""
    from ..app import prepare

    services, _ = prepare(_settings(ctx, data=data))
    try:
        count = services.tokens.revoke_all(None, username)
    except RegistryError as exc:
        _fail(exc)
        return
    finally:
        services.close()
    click.echo(f"revoked {count} token(s) of {username}", err=True)


@token.command("create")
@click.option("--user", "username", required=True)
@click.option("--scope", type=click.Choice(["read", "publish", "approve", "admin"]),
              default="publish", show_default=True)
@click.option("--expires-days", type=int, default=None)
@click.option("--name", default="created by gati-registry token create")
@click.option("--package", "packages", multiple=True,
              help="Limit the token to packages matching this pattern (repeatable): @team/*")
@click.option("--cidr", multiple=True, help="Limit the token to this address range (repeatable).")
@data_option
@click.pass_context
def token_create(ctx: click.Context, username: str, scope: str, expires_days: int | None,
                 name: str, packages: tuple[str, ...], cidr: tuple[str, ...],
                 data: Path | None) -> None:
    """Print a new token (and nothing else) on stdout."""
    from ..app import prepare

    services, generated = prepare(_settings(ctx, data=data))
    try:
        if generated:
            click.echo(f"Created user 'admin' with password: {generated}", err=True)
        new = services.tokens.create_token(None, username, scope, name=name,
                                             expires_days=expires_days,
                                             cidr=list(cidr) or None,
                                             packages=list(packages) or None)
    except RegistryError as exc:
        _fail(exc)
        return
    finally:
        services.close()
    click.echo(new.secret)


@main.group()
def team() -> None:
    """Teams (approval policies can restrict deciding to a team)."""


def _team_call(ctx: click.Context, data: Path | None, call: Any) -> Any:
    from ..app import prepare

    services, _ = prepare(_settings(ctx, data=data))
    try:
        return call(services.teams)
    except RegistryError as exc:
        _fail(exc)
    finally:
        services.close()


@team.command("create")
@click.argument("name")
@click.option("--description", default="")
@data_option
@click.pass_context
def team_create(ctx: click.Context, name: str, description: str, data: Path | None) -> None:
    """Create a team."""
    _team_call(ctx, data, lambda teams: teams.create(None, name, description))
    click.echo(f"created team {name}", err=True)


@team.command("add-member")
@click.argument("team_name", metavar="TEAM")
@click.argument("username", metavar="USER")
@data_option
@click.pass_context
def team_add_member(ctx: click.Context, team_name: str, username: str,
                    data: Path | None) -> None:
    """Add USER to TEAM."""
    _team_call(ctx, data, lambda teams: teams.add_member(None, team_name, username))
    click.echo(f"{username} is a member of {team_name}", err=True)


@team.command("remove-member")
@click.argument("team_name", metavar="TEAM")
@click.argument("username", metavar="USER")
@data_option
@click.pass_context
def team_remove_member(ctx: click.Context, team_name: str, username: str,
                       data: Path | None) -> None:
    """Remove USER from TEAM."""
    _team_call(ctx, data, lambda teams: teams.remove_member(None, team_name, username))
    click.echo(f"{username} left {team_name}", err=True)


@team.command("own")
@click.argument("team_name", metavar="TEAM")
@click.argument("pattern", metavar="PATTERN")
@data_option
@click.pass_context
def team_own(ctx: click.Context, team_name: str, pattern: str, data: Path | None) -> None:
    """TEAM owns the packages matching PATTERN (@payments/*): only its members publish them."""
    _team_call(ctx, data, lambda teams: teams.own(None, team_name, pattern))
    click.echo(f"{team_name} owns {pattern}", err=True)


@team.command("disown")
@click.argument("team_name", metavar="TEAM")
@click.argument("pattern", metavar="PATTERN")
@data_option
@click.pass_context
def team_disown(ctx: click.Context, team_name: str, pattern: str, data: Path | None) -> None:
    """TEAM no longer owns PATTERN."""
    _team_call(ctx, data, lambda teams: teams.disown(None, team_name, pattern))
    click.echo(f"{team_name} no longer owns {pattern}", err=True)


@team.command("list")
@data_option
@click.pass_context
def team_list(ctx: click.Context, data: Path | None) -> None:
    """Print each team, its members and the package patterns it owns, one team per line."""
    for info in _team_call(ctx, data, lambda teams: teams.list()) or []:
        click.echo(f"{info.name}\t{','.join(info.members)}\t{','.join(info.packages)}")


@main.group()
def webhooks() -> None:
    """Webhook delivery."""


@webhooks.command("run-once")
@data_option
@click.pass_context
def webhooks_run_once(ctx: click.Context, data: Path | None) -> None:
    """One delivery pass: queue events for new changes and send the due ones (only when
    no running server holds the delivery lease)."""
    from ..app import prepare
    from ..services.webhook_worker import WebhookWorker

    services, _ = prepare(_settings(ctx, data=data))
    try:
        worker = WebhookWorker(services.settings, services.db)
        result = worker.run_once()
        if result.held:
            worker.release()  # a server may take over at once
    finally:
        services.close()
    if not result.held:
        raise click.ClickException(f"another process ({result.holder}) delivers webhooks "
                                   "now; nothing done")
    click.echo(f"queued {result.enqueued}, attempted {result.attempted}: delivered "
               f"{result.delivered}, to retry {result.retrying}, failed {result.failed}")


@main.group()
def keys() -> None:
    """The organisation's signing keys (Ed25519, plus ECDSA P-256 for npm)."""


def _keys_services(ctx: click.Context, data: Path | None) -> Any:
    from ..app import prepare

    return prepare(_settings(ctx, data=data))[0]


def _resign(services: Any) -> None:
    missing, total = services.keys.pending_count()
    if missing:
        click.echo(f"signing {missing} of {total} approved versions with the new keys", err=True)

    def progress(done: int, _total: int) -> None:
        click.echo(f"  signed {done}/{missing}", err=True)

    signed = services.keys.resign(progress=progress)
    left, _ = services.keys.pending_count()
    if not missing:
        click.echo("nothing to sign", err=True)
    elif left:
        click.echo(f"{signed} versions signed; {left} still wait (run keys resign)", err=True)
    else:
        # the running servers' re-signing follower may have done part of the work
        click.echo(f"{signed} versions signed here; every approved version carries the "
                   f"active signatures", err=True)


@keys.command("list")
@data_option
@click.pass_context
def keys_list(ctx: click.Context, data: Path | None) -> None:
    """One line per key: keyid, algorithm, state, valid from/until, fingerprint."""
    services = _keys_services(ctx, data)
    try:
        for k in services.keys.all():
            state = ("revoked" if k.revoked_at else "active" if k.active else "retired")
            until = k.expires_at.isoformat() if k.expires_at else "-"
            click.echo(f"{k.keyid}\t{k.algorithm}\t{state}\t{k.valid_from.isoformat()}\t"
                       f"{until}\t{k.fingerprint}")
    finally:
        services.close()


@keys.command("create")
@data_option
@click.pass_context
def keys_create(ctx: click.Context, data: Path | None) -> None:
    """Make the first key pair (the server also does this on first start) and sign
    every approved version."""
    services = _keys_services(ctx, data)
    try:
        info = services.keys.create(None)
        click.echo(f"created key pair {info.pair}", err=True)
        _resign(services)
    except RegistryError as exc:
        _fail(exc)
    finally:
        services.close()


@keys.command("rotate")
@click.option("--background", is_flag=True,
              help="Leave re-signing to the running servers (they follow the changes feed).")
@data_option
@click.pass_context
def keys_rotate(ctx: click.Context, background: bool, data: Path | None) -> None:
    """Make a new active pair, retire the old one (it stays published, and its
    signatures valid, until revoked) and re-sign every approved version. Interrupted?
    The running servers finish the job, or run ``keys resign``."""
    services = _keys_services(ctx, data)
    try:
        info = services.keys.rotate(None)
        click.echo(f"rotated: key pair {info.pair} is active", err=True)
        if background:
            missing, total = services.keys.pending_count()
            click.echo(f"{missing} of {total} approved versions wait for the new signatures; "
                       f"the running servers sign them", err=True)
            return
        _resign(services)
    except RegistryError as exc:
        _fail(exc)
    finally:
        services.close()


@keys.command("resign")
@data_option
@click.pass_context
def keys_resign(ctx: click.Context, data: Path | None) -> None:
    """Sign what the active pair has not signed yet (resumes an interrupted rotate)."""
    services = _keys_services(ctx, data)
    try:
        _resign(services)
    finally:
        services.close()


@keys.command("revoke")
@click.argument("keyid")
@click.option("--reason", required=True, help="Why (kept in the audit log and shown to clients).")
@data_option
@click.pass_context
def keys_revoke(ctx: click.Context, keyid: str, reason: str, data: Path | None) -> None:
    """Revoke a retired key pair (give either key id): its signatures leave every
    packument and clients refuse them."""
    services = _keys_services(ctx, data)
    try:
        ids = services.keys.revoke(None, keyid, reason)
        click.echo("revoked " + ", ".join(ids), err=True)
    except RegistryError as exc:
        _fail(exc)
    finally:
        services.close()


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


@main.command()
@click.option("--to", "target", required=True, type=click.Path(path_type=Path),
              help="A new or empty directory.")
@data_option
@click.pass_context
def backup(ctx: click.Context, target: Path, data: Path | None) -> None:
    """A consistent backup: the database (SQLite backup API or pg_dump), every blob, the
    signing keys and the session secret, with a manifest of digests."""
    from ..services import build_services
    from ..services.maintenance import backup as run_backup

    services = build_services(_settings(ctx, data=data))
    try:
        manifest = run_backup(services.settings, services.db, services.blobs, target, _echo_err)
    except RegistryError as exc:
        _fail(exc)
        return
    finally:
        services.close()
    blobs = manifest.get("blobs") or {}
    click.echo(f"backed up the {manifest['backend']} database, {len(blobs)} blobs and "
               f"{len(manifest.get('files') or {})} key files to {target}", err=True)


@main.command()
@click.option("--from", "source", required=True, type=click.Path(path_type=Path, exists=True),
              help="A directory written by gati-registry backup.")
@data_option
@click.pass_context
def restore(ctx: click.Context, source: Path, data: Path | None) -> None:
    """Restore a backup into an empty data directory (and an empty database), after
    checking every digest; then bring the schema up to date."""
    from ..services.maintenance import restore as run_restore
    from ..storage.db import make_engine
    from ..storage import migrate

    settings = _settings(ctx, data=data)
    try:
        run_restore(settings, source, _echo_err)
    except RegistryError as exc:
        _fail(exc)
        return
    engine = make_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"restored {source} into {settings.data}", err=True)


@main.command()
@click.option("--repair", is_flag=True, help="Delete orphan blobs and rows and stale temp files.")
@click.option("--no-verify", is_flag=True, help="Skip re-hashing every blob (faster).")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@data_option
@click.pass_context
def fsck(ctx: click.Context, repair: bool, no_verify: bool, as_json: bool,
         data: Path | None) -> None:
    """Check that every version's tarball exists with the right digest and every blob is
    used. Exit code 1 when problems remain."""
    import dataclasses
    import json as jsonlib

    from ..services import build_services
    from ..services.maintenance import fsck as run_fsck

    services = build_services(_settings(ctx, data=data))
    try:
        report = run_fsck(services.db, services.blobs, repair=repair, verify=not no_verify)
    finally:
        services.close()
    remaining = report.unrepairable if repair else report.problems
    if as_json:
        click.echo(jsonlib.dumps({**dataclasses.asdict(report), "remaining": remaining}, indent=2))
    else:
        click.echo(f"{report.versions} versions, {report.blobs} blobs: "
                   f"{report.problems} problem(s)" + (f", {len(report.repaired)} repaired" if repair else ""))
        for title, items in (("versions without a good tarball", report.broken_versions),
                             ("orphan blob files", report.orphan_files),
                             ("orphan blob rows", report.orphan_rows),
                             ("damaged blob files", report.damaged_files),
                             ("stale temporary files", report.temp_files),
                             ("repaired", report.repaired)):
            for item in items:
                click.echo(f"  {title}: {item}")
    if remaining:
        ctx.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()


@main.command()
@data_option
@click.pass_context
def reindex(ctx: click.Context, data: Path | None) -> None:
    """Rebuild this replica's search index from the database. Safe while the server
    runs: the new index is built beside the live one and replaces it when complete."""
    from ..app import prepare

    services, _ = prepare(_settings(ctx, data=data))
    try:
        result = services.indexer.rebuild()
    finally:
        services.close()
    click.echo(f"indexed {result.indexed} package(s), up to change {result.cursor}")
