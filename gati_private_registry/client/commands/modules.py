"""``gati module search | info | list | verify`` (install and publish commands live in
their own modules and are added to this group)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from .. import lockfile, semver
from ..cache import Cache
from ..errors import ClientError, NotFoundProblem, UsageProblem, VerificationFailed
from ..installer import WORKERS, Packuments
from ..project import Project, split_spec
from ..resolver import Entry, entry_from_manifest
from ..verify import verify_tree
from . import common, session
from .session import Session

SORTS = ("relevance", "downloads", "stars", "rating", "trending", "recent")


@click.group()
def module() -> None:
    """Find, install, update, publish and verify Gati modules."""


def _api_search(s: Session, query: str, category: str | None, sort: str,
                size: int) -> list[dict[str, Any]] | None:
    """Results of ``/api/search`` (categories, popularity), or None when this registry
    does not offer it yet."""
    params = {"q": query, "sort": sort, "per_page": str(size)}
    if category:
        params["category"] = category
    resp = s.http.send("GET", s.http.api("search") + "?" + urlencode(params))
    if resp.status in (404, 405, 501):
        return None
    doc = s.http.check(resp, "searching").json()
    items = next((doc[k] for k in ("results", "items", "modules", "objects")
                  if isinstance(doc, dict) and isinstance(doc.get(k), list)), None)
    if items is None:
        return None
    out = []
    for it in items:
        pkg = it.get("package", it) if isinstance(it, dict) else {}
        downloads = pkg.get("downloads", it.get("downloads"))
        if isinstance(downloads, dict):  # {week, month, total}
            downloads = downloads.get("month")
        out.append({"name": pkg.get("name"), "version": pkg.get("version"),
                    "description": pkg.get("description") or "",
                    "category": pkg.get("category") or it.get("category"),
                    "downloads": downloads})
    return out


def _for_project(s: Session, limit: int) -> list[dict[str, Any]]:
    """``POST /api/recommendations`` with this project's package.json: modules that
    projects with similar dependencies use."""
    project = Project.load(Path.cwd())
    resp = s.http.send("POST", s.http.api("recommendations"), body=project.manifest)
    if resp.status in (404, 405, 501):
        raise UsageProblem("this registry has no recommendations (no /api/recommendations)",
                           hint="upgrade the registry")
    doc = s.http.check(resp, "asking for recommendations").json()
    return [{"name": r.get("name"), "version": r.get("version"),
             "description": r.get("description") or "", "category": r.get("category"),
             "why": r.get("why")} for r in (doc.get("recommendations") or [])[:limit]]


@module.command()
@common
@click.argument("query", nargs=-1)
@click.option("--category", metavar="NAME", help="Only modules of this category.")
@click.option("--sort", type=click.Choice(SORTS), default="relevance", show_default=True)
@click.option("--limit", type=click.IntRange(1, 250), default=20, show_default=True)
@click.option("--for-project", is_flag=True,
              help="Suggest modules for the project in this directory (its package.json).")
def search(registry: str | None, json_mode: bool, query: tuple[str, ...],
           category: str | None, sort: str, limit: int, for_project: bool) -> None:
    """Search the registry's modules, or with --for-project get suggestions for this
    project from what projects with similar dependencies use."""
    s = session(registry, json_mode)
    text = " ".join(query)
    if for_project:
        suggested = _for_project(s, limit)
        s.out.data({"for_project": True, "results": suggested})
        if not suggested:
            s.out.line("no suggestions for this project yet")
            return
        s.out.table(["NAME", "VERSION", "WHY"],
                    [[r["name"], r["version"], (r["why"] or r["description"] or "")[:70]]
                     for r in suggested], [{"fg": "cyan", "bold": True}, {}, {}])
        return
    if not text:
        raise UsageProblem("say what to search for", hint="gati module search postgres")
    results = _api_search(s, text, category, sort, limit)
    if results is None:
        if category or sort != "relevance":
            raise UsageProblem(
                "this registry cannot filter by category or sort by popularity yet "
                "(it has no /api/search)",
                hint="search without --category/--sort, or upgrade the registry")
        doc = s.http.get_json(s.http.npm("-/v1/search") + "?" + urlencode(
            {"text": text, "size": str(limit)}), "searching")
        results = [{"name": o["package"].get("name"), "version": o["package"].get("version"),
                    "description": o["package"].get("description") or "",
                    "category": None, "downloads": None}
                   for o in doc.get("objects", []) if isinstance(o, dict) and "package" in o]
    s.out.data({"query": text, "results": results})
    if not results:
        s.out.line(f"no modules match {text!r}")
        return
    s.out.table(["NAME", "VERSION", "DESCRIPTION"],
                [[r["name"], r["version"], (r["description"] or "")[:70]] for r in results],
                [{"fg": "cyan", "bold": True}, {}, {}])


@module.command()
@common
@click.argument("name")
@click.option("--version", "wanted", metavar="VERSION|RANGE|TAG", help="Which version.")
def info(registry: str | None, json_mode: bool, name: str, wanted: str | None) -> None:
    """Show a module: versions, tags, dependencies, integrity and whether its
    organisation signature verifies under your pinned keys."""
    s = session(registry, json_mode)
    name, at = split_spec(name)
    doc = s.http.get_json(s.http.package_url(name), f"reading {name}")
    version = semver.pick(doc, wanted or at or "latest")
    vdoc = dict(doc["versions"][version])
    vdoc.setdefault("name", name)
    published = (doc.get("time") or {}).get(version)
    entry = entry_from_manifest(vdoc, published)
    try:
        keyid: str | None = s.trust().check(name, version, entry.integrity,
                                            entry.signature_list(), published)
        signature = "verified"
    except VerificationFailed as exc:
        keyid, signature = None, exc.message
    versions = sorted(doc["versions"], key=semver.sort_key)
    s.out.data({"name": name, "version": version, "description": vdoc.get("description"),
                "dist-tags": doc.get("dist-tags", {}), "versions": versions,
                "published": published, "dependencies": vdoc.get("dependencies", {}),
                "dist": vdoc.get("dist", {}), "deprecated": vdoc.get("deprecated"),
                "signature": {"ok": keyid is not None, "keyid": keyid, "detail": signature}})
    out = s.out
    out.heading(f"{name}@{version}")
    if vdoc.get("description"):
        out.line(str(vdoc["description"]))
    if vdoc.get("deprecated"):
        out.warn(f"deprecated: {vdoc['deprecated']}")
    out.line(f"published  {published or 'unknown'}")
    out.line("tags       " + ", ".join(f"{t}: {v}" for t, v in sorted(doc.get("dist-tags", {}).items())))
    out.line("versions   " + ", ".join(versions[-12:]) + (" …" if len(versions) > 12 else ""))
    deps = vdoc.get("dependencies") or {}
    out.line("depends on " + (", ".join(f"{k}@{v}" for k, v in sorted(deps.items())) or "nothing"))
    out.line(f"integrity  {entry.integrity}")
    out.line("signature  " + (out.styled("verified", fg="green") if keyid else
                              out.styled(signature, fg="red")))


def _locked(s: Session) -> tuple[Project, dict[str, Entry]]:
    project = Project.load(s.env.cwd)
    locked = lockfile.read(project.dir)
    if locked is None:
        raise UsageProblem(f"no {lockfile.LOCKFILE} here", hint="run gati module install first")
    return project, locked[0]


@module.command(name="list")
@common
@click.option("--outdated", is_flag=True, help="Only modules with newer versions.")
@click.option("--all", "show_all", is_flag=True, help="Nested dependencies too.")
def list_(registry: str | None, json_mode: bool, outdated: bool, show_all: bool) -> None:
    """List the installed modules (from gati-lock.json)."""
    s = session(registry, json_mode)
    project, tree = _locked(s)
    deps, optional = project.all_deps()
    ranges = {**deps, **optional}
    rows = []
    wanted_latest: dict[str, tuple[str | None, str | None]] = {}
    if outdated:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            packuments = Packuments(s.http, Cache(s.env.cache_dir), s.out, pool)
            direct = {e.name for p, e in tree.items() if p.count("node_modules/") == 1}
            packuments.prefetch(direct)
            for name in direct:
                doc = packuments.get(name) or {}
                versions = list((doc.get("versions") or {}))
                wanted_latest[name] = (semver.max_satisfying(versions, ranges.get(name, "*")),
                                       (doc.get("dist-tags") or {}).get("latest"))
    for path, e in tree.items():
        top = path.count("node_modules/") == 1
        if not (show_all or top):
            continue
        wanted, latest = wanted_latest.get(e.name, (None, None)) if top else (None, None)
        if outdated and not (top and ((wanted and semver.gt(wanted, e.version)) or
                                      (latest and semver.gt(latest, e.version)))):
            continue
        rows.append({"name": e.name, "version": e.version, "path": path,
                     "range": ranges.get(e.name) if top else None,
                     "wanted": wanted, "latest": latest})
    s.out.data({"modules": rows})
    if outdated:
        if not rows:
            s.out.line("every module is up to date")
            return
        s.out.table(["NAME", "RANGE", "INSTALLED", "WANTED", "LATEST"],
                    [[r["name"], r["range"], r["version"], r["wanted"], r["latest"]] for r in rows],
                    [{"fg": "cyan"}, {}, {"fg": "red"}, {"fg": "green"}, {"fg": "magenta"}])
    else:
        s.out.table(["NAME", "VERSION", "RANGE" if not show_all else "PATH"],
                    [[r["name"], r["version"], r["range"] if not show_all else r["path"]]
                     for r in rows], [{"fg": "cyan"}, {}, {}])


@module.command()
@common
@click.argument("names", nargs=-1)
def verify(registry: str | None, json_mode: bool, names: tuple[str, ...]) -> None:
    """Check installed modules (all, or NAMES): organisation signature under the pinned
    keys, tarball integrity, and every file in node_modules against the tarball.
    Exits with 5 when anything does not match."""
    s = session(registry, json_mode)
    project, tree = _locked(s)
    unknown = set(names) - {e.name for e in tree.values()}
    if unknown:
        raise NotFoundProblem(f"not installed: {', '.join(sorted(unknown))}")
    trust = s.refreshed_trust()
    cache = Cache(s.env.cache_dir)

    def tarball(e: Entry) -> bytes:
        data = cache.get_tarball(e.integrity)
        if data is None:
            resp = s.http.check(s.http.send("GET", e.resolved), f"downloading {e.spec}")
            cache.put_tarball(e.spec, e.integrity, resp.body)
            data = resp.body
        return data

    findings = verify_tree(project.dir, tree, trust, tarball, set(names) or None)
    bad = [f for f in findings if not f.ok]
    s.out.data({"ok": not bad, "checked": len(findings),
                "modules": [{"path": f.path, "module": f.spec, "ok": f.ok,
                             "problems": f.problems, "keyid": f.keyid} for f in findings]})
    for f in findings:
        if f.ok:
            continue
        s.out.line(s.out.styled("✘ ", fg="red") + f"{f.spec} ({f.path})")
        for p in f.problems[:20]:
            s.out.line(f"    {p}")
    if bad:
        raise VerificationFailed(
            f"{len(bad)} of {len(findings)} modules failed verification",
            hint="do not run this code; reinstall with: gati module install --force, "
                 "and tell your registry administrators if it persists")
    s.out.success(f"{len(findings)} modules verified: signatures, integrity and files match")


__all__ = ["module", "ClientError"]
