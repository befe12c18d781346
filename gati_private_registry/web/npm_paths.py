"""Paths below ``/npm/``, classified by hand rather than by Flask routing, because
``@scope%2fname`` arrives percent-decoded and a scoped name spans two segments."""
from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class NpmRoute:
    kind: str
    name: str = ""
    arg: str = ""


def parse_path(path: str) -> NpmRoute | None:
    """Classify a path below ``/npm/`` (already percent-decoded)."""
    # every npm request is classified twice (metrics labels, then the read path) and
    # installs ask for the same few paths again and again; long paths are not kept
    return _parse_cached(path) if len(path) <= 300 else _parse(path)


@functools.lru_cache(maxsize=4096)
def _parse_cached(path: str) -> NpmRoute | None:
    return _parse(path)


def _parse(path: str) -> NpmRoute | None:
    segs = path.split("/")
    while segs and segs[-1] == "":
        segs.pop()
    if not segs:
        return None
    if segs[0] == "-":
        rest = segs[1:]
        if rest == ["ping"]:
            return NpmRoute("ping")
        if rest and rest[0] == "stage":
            return _stage_route(rest[1:])
        if rest == ["whoami"]:
            return NpmRoute("whoami")
        if rest == ["v1", "search"]:
            return NpmRoute("search")
        if rest == ["v1", "login"]:
            return NpmRoute("web_login")
        if len(rest) == 3 and rest[:2] == ["v1", "done"]:
            return NpmRoute("web_done", arg=rest[2])
        if len(rest) >= 2 and rest[0] == "user" and rest[1].startswith("org.couchdb.user:"):
            return NpmRoute("couch_user", name=rest[1][len("org.couchdb.user:"):])
        if len(rest) >= 3 and rest[:2] == ["user", "token"]:
            return NpmRoute("logout", arg="/".join(rest[2:]))
        if rest == ["npm", "v1", "keys"]:
            return NpmRoute("keys")
        if len(rest) >= 4 and rest[:3] == ["npm", "v1", "attestations"]:
            return NpmRoute("attestations", arg="/".join(rest[3:]))
        if rest == ["npm", "v1", "tokens"]:
            return NpmRoute("tokens")
        if len(rest) >= 5 and rest[:4] == ["npm", "v1", "tokens", "token"]:
            return NpmRoute("token", arg="/".join(rest[4:]))
        if rest[:4] == ["npm", "v1", "security", "advisories"] or \
                rest[:4] == ["npm", "v1", "security", "audits"]:
            return NpmRoute("audit", arg="/".join(rest[4:]))
        if len(rest) >= 3 and rest[0] == "package":
            name_segs = rest[1:3] if rest[1].startswith("@") else rest[1:2]
            tail = rest[1 + len(name_segs):]
            name = "/".join(name_segs)
            if tail == ["dist-tags"]:
                return NpmRoute("dist_tags", name=name)
            if len(tail) == 2 and tail[0] == "dist-tags":
                return NpmRoute("dist_tag", name=name, arg=tail[1])
            if tail == ["visibility"]:
                return NpmRoute("visibility", name=name)
        return None
    if segs[0].startswith("@"):
        if len(segs) < 2:
            return None
        name, rest = f"{segs[0]}/{segs[1]}", segs[2:]
    else:
        name, rest = segs[0], segs[1:]
    if not rest:
        return NpmRoute("packument", name=name)
    if len(rest) == 2 and rest[0] == "-rev":
        return NpmRoute("rev", name=name, arg=rest[1])
    if rest[0] == "-" and len(rest) >= 2:
        if len(rest) >= 4 and rest[-2] == "-rev":
            return NpmRoute("tarball_rev", name=name, arg=rest[-3])
        # npm's own publish body names scoped tarballs ".../-/@scope/name-1.0.0.tgz"
        return NpmRoute("tarball", name=name, arg=rest[-1])
    if len(rest) == 1:
        return NpmRoute("version", name=name, arg=rest[0])
    return None


def _stage_route(rest: list[str]) -> NpmRoute | None:
    """npm's staged publishing (``npm stage ...``, npm >= 11.15)."""
    if not rest:
        return NpmRoute("stage_list")
    if rest[0] == "package" and len(rest) >= 2:
        return NpmRoute("stage_publish", name="/".join(rest[1:3] if rest[1].startswith("@") else rest[1:2]))
    if len(rest) == 1:
        return NpmRoute("stage_item", arg=rest[0])
    if len(rest) == 2 and rest[1] in ("tarball", "approve"):
        return NpmRoute("stage_" + rest[1], arg=rest[0])
    return None
