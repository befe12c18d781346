"""``gati module install | update | remove``."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from .. import appconfig, lockfile, semver
from ..cache import Cache
from ..errors import NotFoundProblem, UsageProblem
from ..installer import WORKERS, Installer, Packuments
from ..project import Project, split_spec
from ..resolver import Entry, Resolver, check_tree
from . import common, session
from .session import Session


def _summary(s: Session, project: Project, tree: dict[str, Entry], result: Any,
             started: float, resolved_from: str) -> dict[str, Any]:
    elapsed = time.monotonic() - started
    doc = {"added": [tree[p].spec for p in result.added], "removed": result.removed,
           "unchanged": result.unchanged, "downloaded": result.downloaded,
           "resolved_from": resolved_from, "packages": len(tree),
           "tree": {p: e.spec for p, e in tree.items()}, "seconds": round(elapsed, 3)}
    s.out.success(f"{len(tree)} modules in node_modules ({len(result.added)} added, "
                  f"{len(result.removed)} removed, {result.downloaded} downloaded, "
                  f"from {resolved_from}) in {elapsed:.2f}s")
    return doc


def install_project(s: Session, project: Project, *, refresh: frozenset[str] | None = None,
                    frozen: bool = False, force: bool = False
                    ) -> tuple[dict[str, Entry], Any, str]:
    """Resolve (from the lockfile when it still fits), verify, install and lock.
    ``refresh``: names whose locked versions are not preferred (``None``: keep all;
    empty: drop all). Raises :class:`ClientError` subclasses; on any error nothing in
    ``node_modules`` has changed unless the failure was while writing it."""
    deps, optional = project.all_deps()
    for name, spec in {**deps, **optional}.items():
        if not semver.is_registry_spec(spec) and not semver.valid_range(spec):
            raise UsageProblem(f"{name}@{spec}: gati installs registry modules only "
                               "(no git, file or URL dependencies)")
    locked = lockfile.read(project.dir)
    tree: dict[str, Entry] | None = None
    source = "the lockfile"
    if locked is not None and refresh is None:
        locked_tree, locked_root = locked
        if locked_root == {**deps, **optional} and not check_tree(locked_tree, deps, optional):
            tree = locked_tree
    if tree is None and frozen:
        raise UsageProblem(f"{lockfile.LOCKFILE} does not match package.json",
                           hint="run gati module install without --frozen-lockfile")
    cache = Cache(s.env.cache_dir)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        if tree is None:
            source = "the registry"
            preferred: dict[str, frozenset[str]] = {}
            if locked is not None and refresh != frozenset():
                for e in locked[0].values():
                    if refresh is None or e.name not in refresh:
                        preferred[e.name] = preferred.get(e.name, frozenset()) | {e.version}
            packuments = Packuments(s.http, cache, s.out, pool)
            tree = Resolver(packuments.get, preferred, packuments.prefetch).resolve(deps, optional)
        installer = Installer(s.http, cache, s.out, s.refreshed_trust())
        result = installer.apply(project.dir, tree, pool, force=force)
    lockfile.write(project.dir, tree, deps, optional)
    return tree, result, source


def _sync_modules(s: Session, project: Project, added: list[str], removed: list[str]) -> None:
    deps, optional = project.all_deps()
    infos = [i for i in (appconfig.read_module_info(project.dir, n, {**deps, **optional}[n])
                         for n in added) if i is not None]
    changed, warning = appconfig.sync(project.dir, infos, removed)
    if warning:
        s.out.warn(warning)
    if changed is not None:
        s.out.line(f"updated the modules section of {changed.name}")


@click.command()
@common
@click.argument("specs", nargs=-1)
@click.option("--frozen-lockfile", is_flag=True,
              help="Install exactly the lockfile; fail if package.json disagrees.")
@click.option("--force", is_flag=True,
              help="Unpack every module again, even those already in place.")
def install(registry: str | None, json_mode: bool, specs: tuple[str, ...],
            frozen_lockfile: bool, force: bool) -> None:
    """Install modules (NAME[@RANGE|@TAG] ...) and save them to package.json, or with no
    arguments everything in package.json (from gati-lock.json when it still fits).
    Every tarball's integrity and organisation signature is checked before anything is
    written to node_modules."""
    started = time.monotonic()
    s = session(registry, json_mode)
    project = Project.load(s.env.cwd, create=bool(specs))
    saved: list[str] = []
    if specs:
        cache = Cache(s.env.cache_dir)
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            packuments = Packuments(s.http, cache, s.out, pool)
            packuments.prefetch(split_spec(x)[0] for x in specs)
            for text in specs:
                name, spec = split_spec(text)
                doc = packuments.get(name)
                if doc is None:
                    raise NotFoundProblem(f"{name} is not in the registry",
                                          hint=f"search for it: gati module search {name}")
                version = semver.pick(doc, spec or "latest")
                save = spec if spec and semver.valid_range(spec) else f"^{version}"
                project.set_dep(name, save)
                saved.append(name)
    tree, result, source = install_project(s, project, frozen=frozen_lockfile, force=force)
    if saved:
        project.save()
        _sync_modules(s, project, saved, [])
    doc = _summary(s, project, tree, result, started, source)
    s.out.data(doc)


@click.command()
@common
@click.argument("names", nargs=-1)
def update(registry: str | None, json_mode: bool, names: tuple[str, ...]) -> None:
    """Move modules (all, or the NAMES given) to the newest versions their ranges in
    package.json allow, and update the lockfile."""
    started = time.monotonic()
    s = session(registry, json_mode)
    project = Project.load(s.env.cwd)
    deps, optional = project.all_deps()
    before = {e.name: e.version for p, e in (lockfile.read(project.dir) or ({}, {}))[0].items()
              if p.count("node_modules/") == 1}
    for name in names:
        if name not in deps and name not in optional and name not in before:
            raise NotFoundProblem(f"{name} is not a dependency of this project")
    tree, result, _ = install_project(s, project, refresh=frozenset(names))
    changes = []
    for p, e in tree.items():
        if p.count("node_modules/") == 1 and before.get(e.name) not in (None, e.version):
            changes.append({"name": e.name, "from": before[e.name], "to": e.version})
            s.out.line(f"{e.name}: {before[e.name]} → {e.version}")
    doc = _summary(s, project, tree, result, started, "the registry")
    doc["updated"] = changes
    s.out.data(doc)


@click.command()
@common
@click.argument("names", nargs=-1, required=True)
def remove(registry: str | None, json_mode: bool, names: tuple[str, ...]) -> None:
    """Remove modules from package.json, node_modules, the lockfile and the app's
    gati.config modules section."""
    started = time.monotonic()
    s = session(registry, json_mode)
    project = Project.load(s.env.cwd)
    missing = [n for n in names if not project.remove_dep(n)]
    if missing:
        raise NotFoundProblem(f"not a dependency of this project: {', '.join(missing)}",
                              hint="see them with: gati module list")
    tree, result, source = install_project(s, project)
    project.save()
    _sync_modules(s, project, [], list(names))
    doc = _summary(s, project, tree, result, started, source)
    s.out.data(doc)
