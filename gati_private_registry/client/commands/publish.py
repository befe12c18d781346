"""``gati module create | publish | unpublish``."""
from __future__ import annotations

import base64
import hashlib
from typing import Any

import click

from .. import scaffold, semver
from ..cache import integrity_of
from ..errors import InvalidInput, NotFoundProblem, UsageProblem
from ..manifest import MODULE_TYPES, check
from ..pack import build, package_files
from ..project import split_spec
from . import common, session


@click.command()
@common
@click.argument("name")
@click.option("--type", "kind", type=click.Choice(MODULE_TYPES), default="other",
              show_default=True, help="The module's category.")
@click.option("--contract", metavar="ID", help="The contract it implements (gati.db/v1).")
def create(registry: str | None, json_mode: bool, name: str, kind: str,
           contract: str | None) -> None:
    """Scaffold a new module: src/, tests/, package.json, gati-module.json, README."""
    s = session(registry, json_mode)
    target = scaffold.create(s.env.cwd, name, kind, contract)
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    s.out.success(f"created {name} in {target}")
    for f in files:
        s.out.line(f"  {f}")
    s.out.line(f"next: cd {target.name} && npm install && npm run build && gati module publish")
    s.out.data({"name": name, "path": str(target), "files": files})


@click.command()
@common
@click.option("--tag", default="latest", show_default=True, help="The dist-tag to set.")
@click.option("--dry-run", is_flag=True, help="Validate and pack, do not upload.")
def publish(registry: str | None, json_mode: bool, tag: str, dry_run: bool) -> None:
    """Validate package.json and gati-module.json (every problem at once), pack the
    module in the current directory and publish it."""
    s = session(registry, json_mode)
    root = s.env.cwd
    pkg, _, problems = check(root)
    if semver.valid_range(tag):
        from ..errors import FieldProblem
        problems.append(FieldProblem("--tag", f"{tag!r} looks like a version range"))
    if problems or pkg is None:
        raise InvalidInput(f"the module in {root} cannot be published", details=problems,
                           hint="fix these, then run gati module publish again")
    name, version = pkg["name"], pkg["version"]
    files = package_files(root, pkg)
    tgz = build(root, files)
    integrity = integrity_of(tgz)
    readme = next((root / f for f in files if f.lower().startswith("readme")), None)
    vdoc: dict[str, Any] = dict(pkg)
    vdoc.update({
        "_id": f"{name}@{version}",
        "readme": readme.read_text(encoding="utf-8", errors="replace") if readme else "",
        "dist": {"integrity": integrity, "shasum": hashlib.sha1(tgz).hexdigest(),
                 "tarball": s.http.npm(f"{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz")},
    })
    body = {"_id": name, "name": name, "description": pkg.get("description", ""),
            "dist-tags": {tag: version}, "versions": {version: vdoc}, "access": None,
            "_attachments": {f"{name}-{version}.tgz": {
                "content_type": "application/octet-stream",
                "data": base64.b64encode(tgz).decode(), "length": len(tgz)}}}
    result: dict[str, Any] = {"name": name, "version": version, "tag": tag,
                              "integrity": integrity, "files": files, "size": len(tgz)}
    if dry_run:
        s.out.success(f"{name}@{version} is valid ({len(files)} files, {len(tgz)} bytes); "
                      "not uploaded (--dry-run)")
        result["published"] = False
        s.out.data(result)
        return
    resp = s.http.check(s.http.send("PUT", s.http.package_url(name), body=body),
                        f"publishing {name}@{version}")
    notice = resp.header("npm-notice")
    result.update({"published": True, "notice": notice})
    s.out.success(f"published {name}@{version} ({len(files)} files, {len(tgz)} bytes) "
                  f"with tag {tag}")
    if notice:
        s.out.line(s.out.styled(notice, fg="yellow"))
    s.out.data(result)


@click.command()
@common
@click.argument("spec")
def unpublish(registry: str | None, json_mode: bool, spec: str) -> None:
    """Unpublish one version (NAME@VERSION). The version number can never be reused."""
    s = session(registry, json_mode)
    name, version = split_spec(spec)
    if not version or not semver.valid_version(version):
        raise UsageProblem(f"{spec!r} does not name one version",
                           hint="give NAME@VERSION, e.g. @myorg/my-module@1.0.0")
    url = s.http.package_url(name)
    doc = s.http.get_json(url + "?write=true", f"reading {name}")
    if version not in (doc.get("versions") or {}):
        raise NotFoundProblem(f"{name}@{version} is not published")
    rev = doc.get("_rev", "0")
    doc["versions"].pop(version)
    if not doc["versions"]:
        s.http.check(s.http.send("DELETE", f"{url}/-rev/{rev}"), f"unpublishing {spec}")
    else:
        tags = {t: v for t, v in (doc.get("dist-tags") or {}).items() if v != version}
        if "latest" not in tags:
            tags["latest"] = max(doc["versions"], key=semver.sort_key)
        doc["dist-tags"] = tags
        s.http.check(s.http.send("PUT", f"{url}/-rev/{rev}", body=doc), f"unpublishing {spec}")
    s.out.success(f"unpublished {name}@{version}")
    s.out.data({"name": name, "version": version, "unpublished": True})
