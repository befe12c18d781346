"""gati: Gati modules from your organisation's registry.

Every command takes --registry URL and --json (also accepted before the
subcommand). Exit codes: 0 success, 1 failure, 2 usage, 3 authentication or permission,
4 not found, 5 verification failed (integrity, signature, changed files), 6 registry
unreachable, 7 invalid input (every field problem listed).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, TypeVar

import click

from ..errors import ClientError
from ..output import Output
from .session import Session

F = TypeVar("F", bound=Callable[..., Any])


class GatiGroup(click.Group):
    """Turns :class:`ClientError` into a message, a hint and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClientError as exc:
            out = ctx.meta.get("gati.output") or Output(json_mode="--json" in sys.argv)
            out.error(exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=GatiGroup, help=__doc__)
@click.version_option(package_name="gati-private-registry")
@click.option("--registry", metavar="URL", help="The registry (server root or its /npm/ URL).")
@click.option("--json", "json_mode", is_flag=True, help="Print one JSON document for scripts.")
@click.pass_context
def main(ctx: click.Context, registry: str | None, json_mode: bool) -> None:
    ctx.ensure_object(dict)
    ctx.obj["registry"] = registry
    ctx.obj["json"] = json_mode


def common(f: F) -> F:
    """``--registry`` and ``--json`` on a leaf command as well."""
    f = click.option("--json", "json_mode", is_flag=True,
                     help="Print one JSON document for scripts.")(f)
    f = click.option("--registry", metavar="URL",
                     help="The registry (server root or its /npm/ URL).")(f)
    return f


def session(registry: str | None, json_mode: bool) -> Session:
    ctx = click.get_current_context()
    root = ctx.find_root()
    obj = root.obj or {}
    s = Session.create(registry or obj.get("registry"), json_mode or bool(obj.get("json")))
    root.meta["gati.output"] = s.out
    return s


def _register() -> None:
    from . import install, modules, publish, registry

    main.add_command(registry.registry)
    group = modules.module
    for cmd in (install.install, install.update, install.remove, publish.create,
                publish.publish, publish.unpublish):
        group.add_command(cmd)
    main.add_command(group)


_register()
