"""The dependency tree, shaped the way npm (arborist) shapes ``node_modules``.

Breadth first, shallow before deep and by path within a depth, each node's dependencies
by name: a dependency already reachable (in the node's own ``node_modules`` or any
ancestor's) that satisfies the range is reused (deduplicated). Otherwise the version
npm would pick (:func:`.semver.pick`, lockfile versions preferred) is placed as high as
it can go: it climbs from the dependent towards the root and stops below the first level
that holds another version of the same name (that is how conflicting ranges end up
nested), and it never goes where it would shadow a version an already placed module
relies on. Peer dependencies are not installed (npm 7+ would); optional dependencies
that cannot be found are skipped.

The result is a flat map ``node_modules path -> Entry``, the lockfile's shape.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from . import semver
from .errors import ClientError, NotFoundProblem


@dataclass(frozen=True)
class Entry:
    """One installed package: where it goes and everything needed to fetch and trust it
    without asking the registry again."""

    name: str
    version: str
    resolved: str
    integrity: str
    signatures: tuple[tuple[str, str], ...] = ()
    published: str | None = None
    dependencies: tuple[tuple[str, str], ...] = ()
    optional: tuple[tuple[str, str], ...] = ()

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def signature_list(self) -> list[dict[str, str]]:
        return [{"keyid": k, "sig": s} for k, s in self.signatures]

    def requires(self) -> list[tuple[str, str, bool]]:
        return sorted([(n, r, False) for n, r in self.dependencies]
                      + [(n, r, True) for n, r in self.optional])


def entry_from_manifest(doc: dict[str, Any], published: str | None) -> Entry:
    """An :class:`Entry` from a packument's version document. Raises
    :class:`ClientError` when the registry left out ``dist``."""
    dist = doc.get("dist") or {}
    name, version = str(doc.get("name")), str(doc.get("version"))
    if not isinstance(dist.get("tarball"), str) or not isinstance(dist.get("integrity"), str):
        raise ClientError(f"{name}@{version}: the registry gave no tarball URL or integrity")
    sigs = tuple(sorted((str(s.get("keyid")), str(s.get("sig")))
                        for s in dist.get("gatiSignatures") or [] if isinstance(s, dict)))
    optional = doc.get("optionalDependencies") or {}
    deps = {k: v for k, v in (doc.get("dependencies") or {}).items() if k not in optional}
    return Entry(name=name, version=version, resolved=dist["tarball"],
                 integrity=dist["integrity"], signatures=sigs, published=published,
                 dependencies=tuple(sorted((str(k), str(v)) for k, v in deps.items())),
                 optional=tuple(sorted((str(k), str(v)) for k, v in optional.items())))


def child_path(parent: str, name: str) -> str:
    return f"{parent}/node_modules/{name}" if parent else f"node_modules/{name}"


def parent_path(path: str) -> str | None:
    """``node_modules/a/node_modules/@s/b`` -> ``node_modules/a``; the root is ``""``
    and has no parent (None)."""
    if not path:
        return None
    head, sep, _ = path.rpartition("/node_modules/")
    return head if sep else ""


def lookup(tree: Mapping[str, Entry], start: str, name: str) -> str | None:
    """The path ``require(name)`` finds from the package at ``start`` (Node's walk up)."""
    here: str | None = start
    while here is not None:
        p = child_path(here, name)
        if p in tree:
            return p
        here = parent_path(here)
    return None


Source = Callable[[str], dict[str, Any] | None]  # name -> packument, None when absent


@dataclass
class Resolver:
    """``source`` fetches packuments (and may prefetch ``prefetch(names)`` in the
    background); ``preferred`` maps names to versions to keep when they satisfy."""

    source: Source
    preferred: Mapping[str, frozenset[str]] = field(default_factory=dict)
    prefetch: Callable[[Iterable[str]], None] = lambda names: None

    def resolve(self, dependencies: Mapping[str, str],
                optional: Mapping[str, str] | None = None) -> dict[str, Entry]:
        """Raises :class:`NotFoundProblem` for a missing package or version (unless it is
        optional) and :class:`InvalidInput` for specs gati cannot install."""
        tree: dict[str, Entry] = {}
        root_requires = sorted([(n, r, False) for n, r in dependencies.items()]
                               + [(n, r, True) for n, r in (optional or {}).items()])
        self.prefetch(n for n, _, _ in root_requires)
        queue: list[tuple[int, str]] = [(0, "")]
        while queue:
            _, path = heapq.heappop(queue)
            requires = root_requires if path == "" else tree[path].requires() if path in tree \
                else []
            for name, spec, is_optional in requires:
                found = lookup(tree, path, name)
                if found is not None and semver.satisfies(tree[found].version, spec):
                    continue
                placed = self._place(tree, path, name, spec, is_optional)
                if placed is not None:
                    heapq.heappush(queue, (placed.count("/node_modules/"), placed))
        return dict(sorted(tree.items()))

    def _place(self, tree: dict[str, Entry], path: str, name: str, spec: str,
               is_optional: bool) -> str | None:
        packument = self.source(name)
        if packument is None:
            if is_optional:
                return None
            raise NotFoundProblem(f"{name} is not in the registry"
                                  + (f" (required by {tree[path].spec})" if path else ""),
                                  hint="check the name, and that you may read it")
        try:
            version = semver.pick(packument, spec, self.preferred.get(name, frozenset()))
        except NotFoundProblem as exc:
            if is_optional:
                return None
            if path:
                exc.message += f" (required by {tree[path].spec})"
            raise
        doc = dict(packument["versions"][version])
        doc.setdefault("name", name)
        doc.setdefault("version", version)
        entry = entry_from_manifest(doc, (packument.get("time") or {}).get(version))
        target = path
        level: str | None = path
        while level is not None:
            existing = tree.get(child_path(level, name))
            if existing is not None:
                if existing.version == version:
                    return None  # the same version is already there: reuse it
                break  # another version: the new one must stay below this level
            if self._shadows(tree, level, name, version):
                break
            target = level
            level = parent_path(level)
        new = child_path(target, name)
        tree[new] = entry
        self.prefetch(n for n, _ in entry.dependencies + entry.optional)
        return new

    @staticmethod
    def _shadows(tree: Mapping[str, Entry], level: str, name: str, version: str) -> bool:
        """Whether putting ``name@version`` in ``level``'s node_modules would take away
        from a package below it the version of ``name`` it resolves and accepts now
        (arborist's check; a dependency not placed yet does not count)."""
        prefix = f"{level}/node_modules/" if level else "node_modules/"
        here = len(child_path(level, name))
        for path, entry in tree.items():
            if level and not path.startswith(prefix):
                continue
            for dep, spec, _ in entry.requires():
                if dep != name or semver.satisfies(version, spec):
                    continue
                found = lookup(tree, path, name)
                # only what resolves above `level` (a shorter path) would be shadowed
                if found is not None and len(found) < here \
                        and semver.satisfies(tree[found].version, spec):
                    return True
        return False


def check_tree(tree: Mapping[str, Entry], dependencies: Mapping[str, str],
               optional: Mapping[str, str] | None = None) -> list[str]:
    """Problems that make a locked tree unusable for these root dependencies (missing or
    unsatisfied edges); empty when it can be installed as is."""
    problems = []
    wanted = [("", n, r, False) for n, r in dependencies.items()] + \
             [("", n, r, True) for n, r in (optional or {}).items()]
    for path, entry in tree.items():
        wanted += [(path, n, r, o) for n, r, o in entry.requires()]
    for path, name, spec, is_optional in wanted:
        found = lookup(tree, path, name)
        if found is None:
            if not is_optional:
                problems.append(f"{path or 'the project'} needs {name}@{spec}: not locked")
        elif not semver.satisfies(tree[found].version, spec):
            problems.append(f"{path or 'the project'} needs {name}@{spec}: locked "
                            f"{tree[found].version}")
    return problems
