"""npm's manifest normalisation, and the check that the metadata a client sent agrees
with the tarball's own package.json (manifest confusion), plus gati-module.json."""
from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import SplitResult, unquote, urlsplit


from ...errors import FieldError
from .names import clean_loose_version


def check_gati_module(gati_module: dict[str, Any], *, name: str, version: str
                      ) -> list[FieldError]:
    """When ``gati-module.json`` declares ``name`` or ``version``, they must be the
    package's. Versions are compared after npm's cleaning (so ``v1.0.0`` matches
    ``1.0.0``). Returns the problems as ``FieldError("gati-module.json", ...)``; never
    raises."""
    errors: list[FieldError] = []
    if "name" in gati_module:
        declared = gati_module["name"]
        if declared != name:
            errors.append(FieldError("gati-module.json",
                                     f"name is {declared!r} but the package is {name!r}"))
    if "version" in gati_module:
        declared = gati_module["version"]
        same = isinstance(declared, str) and (
            declared == version
            or (clean_loose_version(declared) is not None
                and clean_loose_version(declared) == clean_loose_version(version)))
        if not same:
            errors.append(FieldError("gati-module.json",
                                     f"version is {declared!r} but the package version is "
                                     f"{version!r}"))
    return errors


# --------------------------------------------------------------------------- manifests


def _unixify(ref: str) -> str:
    return re.sub(r"[\\:]", "/", ref)


def _secure_path(ref: str) -> str:
    """npm's ``secureAndUnixifyPath``: backslashes and colons become slashes, the path is
    resolved as if rooted (so ``..`` cannot climb out) and made relative; ``''`` when
    nothing is left. A trailing slash survives, as with Node's path.join."""
    unix = _unixify(ref)
    segs: list[str] = []
    for part in unix.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if segs:
                segs.pop()
            continue
        segs.append(part)
    if not segs:
        return ""
    return "/".join(segs) + ("/" if unix.endswith("/") else "")


def _basename(path: str) -> str:
    """Node's path.posix.basename (trailing slashes ignored)."""
    return path.rstrip("/").rpartition("/")[2]


def _normalize_bin(data: dict[str, Any]) -> None:
    """npm's normalizePackageBin: a string becomes ``{<name without scope>: path}``, an
    array ``{basename: path}``; keys are reduced to their basename, targets secured;
    invalid entries and an empty result are removed."""
    bin_ = data.get("bin")
    if not _js_truthy(bin_):
        data.pop("bin", None)
        return
    name = data.get("name")
    if isinstance(bin_, str):
        if not name or not isinstance(name, str):
            data.pop("bin", None)
            return
        bin_ = {name: bin_}  # the scope goes away below, with the basename of the key
    elif isinstance(bin_, list):
        bin_ = {_basename(k): k for k in bin_ if isinstance(k, str)}
    if not isinstance(bin_, dict):
        data.pop("bin", None)
        return
    result = dict(bin_)
    # Mirror npm's in-place for..in loop: renaming "sub/x" to "x" overwrites an "x" entry
    # that is visited later, so order of processing matters for colliding keys.
    for key in list(bin_):
        if key not in result:
            continue
        value = result[key]
        if not isinstance(value, str):
            del result[key]
            continue
        base = _basename(_secure_path(key))
        target = _secure_path(value)
        if not base or not target:
            del result[key]
            continue
        if base != key:
            del result[key]
        result[base] = target
    if result:
        data["bin"] = result
    else:
        data.pop("bin", None)


_SCRIPT_BIN_PREFIX: Final = re.compile(r"^(\.[/\\])?node_modules[/\\].bin[\\/]")  # npm's


def _normalize_scripts(data: dict[str, Any]) -> None:
    """npm's ``scriptpath`` step (non-string scripts dropped, a leading
    ``node_modules/.bin/`` removed), and a missing/invalid ``scripts`` becomes ``{}``."""
    scripts = data.get("scripts")
    if isinstance(scripts, dict):
        data["scripts"] = {k: _SCRIPT_BIN_PREFIX.sub("", v, count=1)
                           for k, v in scripts.items() if isinstance(v, str)}
    elif not isinstance(scripts, list):
        data["scripts"] = {}


def _js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value (objects and arrays are truthy even empty)."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    return True


def _js_keys(value: Any) -> list[str]:
    """``Object.keys(value || {})`` for a JSON value."""
    if isinstance(value, dict):
        return list(value)
    if isinstance(value, (list, str)):
        return [str(i) for i in range(len(value))]
    return []


def _normalize_bundle(data: dict[str, Any]) -> None:
    """npm's bundledDependencies/bundleDependencies steps: the misspelling is unified,
    ``true`` becomes the dependency names, ``false`` ``[]``, an object its keys, anything
    else is dropped. (The names are added to dependencies later, in _fix_bundle_deps.)"""
    if "bundleDependencies" not in data and "bundledDependencies" in data:
        data["bundleDependencies"] = data["bundledDependencies"]
    data.pop("bundledDependencies", None)
    if "bundleDependencies" not in data:
        return
    bd = data["bundleDependencies"]
    if bd is False:
        data["bundleDependencies"] = []  # npm 11.19 sends [] (seen in the captured bodies)
    elif bd is True:
        data["bundleDependencies"] = _js_keys(data.get("dependencies"))
    elif isinstance(bd, dict):
        data["bundleDependencies"] = list(bd)
    elif not isinstance(bd, list):
        del data["bundleDependencies"]


def _fix_dependencies(data: dict[str, Any]) -> None:
    """npm's fixDependencies: string and array forms become objects; for dependencies and
    devDependencies, invalid values are dropped and hosted-git shortcuts/URLs are rewritten
    to hosted-git-info's canonical form. (npm no longer copies optionalDependencies into
    dependencies here, and neither do we.)"""
    for field in ("dependencies", "devDependencies", "optionalDependencies"):
        value = data.get(field)
        if not _js_truthy(value):
            continue
        if isinstance(value, str):
            value = re.split(r"[\n\r\s\t ,]+", value.strip())
        if isinstance(value, list):
            converted: dict[str, Any] = {}
            for item in value:
                if isinstance(item, str):
                    pieces = re.split(r"(:?[@\s><=])", item.strip())
                    dep_name = pieces[0]
                    converted[dep_name] = re.sub(r"^@", "", "".join(pieces[1:])).strip()
            value = converted
        data[field] = value
    for field in ("dependencies", "devDependencies"):
        if field not in data:
            continue
        deps = data[field]
        if not _js_truthy(deps) or not isinstance(deps, dict):
            del data[field]
            continue
        fixed: dict[str, Any] = {}
        for dep, spec in deps.items():
            if not isinstance(spec, str):
                continue
            fixed[dep] = _canonical_git_spec(spec) or spec
        data[field] = fixed


def _fix_bundle_deps(data: dict[str, Any]) -> None:
    """normalize-data's fixBundleDependenciesField: bundled names missing from
    dependencies are added there with the range ``*`` (seen in real npm bodies)."""
    bd = data.get("bundleDependencies")
    if _js_truthy(bd) and not isinstance(bd, list):
        del data["bundleDependencies"]
        return
    if not bd:
        return
    kept = []
    for dep in bd:
        if not dep or not isinstance(dep, str):
            continue
        kept.append(dep)
        deps = data.get("dependencies")
        if not _js_truthy(deps):
            deps = data["dependencies"] = {}
        if isinstance(deps, dict) and dep not in deps:
            deps[dep] = "*"
    data["bundleDependencies"] = kept


# -- hosted git specs (a subset of hosted-git-info: GitHub, GitLab, Bitbucket) -------------

_HOSTS: Final = {
    "github": ("github.com", ("git:", "http:", "git+ssh:", "git+https:", "ssh:", "https:")),
    "gitlab": ("gitlab.com", ("git+ssh:", "git+https:", "ssh:", "https:")),
    "bitbucket": ("bitbucket.org", ("git+ssh:", "git+https:", "ssh:", "https:")),
}
_HOST_BY_DOMAIN: Final = {domain: host for host, (domain, _) in _HOSTS.items()}
_GIT_PROTOCOLS: Final = ("git+ssh:", "ssh:", "git+https:", "git:", "http:", "https:",
                         "git+http:")
_AUTH_PROTOCOLS: Final = ("git+https:", "git:", "http:", "https:", "git+http:")


@dataclass(frozen=True)
class _Hosted:
    host: str
    user: str
    project: str
    committish: str
    auth: str
    representation: str  # shortcut, sshurl, https, git


def _is_github_shorthand(arg: str) -> bool:
    """hosted-git-info's test for ``user/repo[#ref]``."""
    hash_ = arg.find("#")
    slash = arg.find("/")
    second_slash = arg.find("/", slash + 1)
    colon = arg.find(":")
    space = re.search(r"\s", arg)
    at = arg.find("@")
    space_ok = space is None or (hash_ > -1 and space.start() > hash_)
    at_ok = at == -1 or (hash_ > -1 and at > hash_)
    colon_ok = colon == -1 or (hash_ > -1 and colon > hash_)
    second_ok = second_slash == -1 or (hash_ > -1 and second_slash > hash_)
    no_trailing = arg[hash_ - 1] != "/" if hash_ > -1 else not arg.endswith("/")
    return (space_ok and slash > 0 and no_trailing and not arg.startswith(".")
            and at_ok and colon_ok and second_ok)


def _try_url(text: str) -> SplitResult | None:
    """``text`` as a ``scheme://host/...`` URL, or None where WHATWG's URL parser would
    throw (no scheme, no host, a non-numeric port)."""
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        return None
    try:
        parsed = urlsplit(text)
        _ = parsed.port  # raises ValueError for "host:user" (scp style)
    except ValueError:
        return None
    return parsed if parsed.hostname else None


def _parse_hosted(spec: str) -> _Hosted | None:
    """Recognise a dependency spec naming a GitHub/GitLab/Bitbucket repository (shortcut,
    ``user/repo`` shorthand, https/ssh/git URL or scp-style), as hosted-git-info's
    ``fromUrl`` does, or None. Never raises."""
    if not spec:
        return None
    text = f"github:{spec}" if _is_github_shorthand(spec) else spec
    m = re.fullmatch(r"(github|gitlab|bitbucket):(?!//)([^#]*)(?:#(.*))?", text, re.DOTALL)
    if m:
        path = m.group(2).lstrip("/")
        path = path[path.find("@") + 1:]  # auth is ignored for shortcuts
        user, slash, project = path.rpartition("/")
        if not slash or not user or not project:
            return None
        project = project[:-4] if project.endswith(".git") else project
        return _Hosted(m.group(1), unquote(user), unquote(project),
                       unquote(m.group(3) or ""), "", "shortcut")
    # hosted-git-info's correctProtocol: "<host>:<path>@..." is taken as git+ssh
    colon = text.find(":")
    proto = text[: colon + 1] if colon > -1 else ""
    if proto not in _GIT_PROTOCOLS and text[colon:colon + 3] != "://":
        at = text.find("@")
        if at > colon > -1:
            text = f"git+ssh://{text}"
    parsed = _try_url(text)
    if parsed is None:
        # correctUrl: scp style "user@host:path" -> "git+ssh://user@host/path"
        before_hash = text.split("#", 1)[0]
        at, last_colon = before_hash.rfind("@"), before_hash.rfind(":")
        if last_colon > at:
            text = text[:last_colon] + "/" + text[last_colon + 1:]
        if ":" not in text.split("#", 1)[0] and "//" not in text:
            text = f"git+ssh://{text}"
        parsed = _try_url(text)
    if parsed is None:
        return None
    hostname = parsed.hostname or ""
    hostname = hostname[4:] if hostname.startswith("www.") else hostname
    host = _HOST_BY_DOMAIN.get(hostname)
    scheme = f"{parsed.scheme.lower()}:"
    if host is None or scheme not in _HOSTS[host][1]:
        return None
    segments = parsed.path.split("/")
    committish = parsed.fragment
    if host == "github":
        user, project = (segments + ["", ""])[1:3]
        kind = segments[3] if len(segments) > 3 else ""
        if kind and kind != "tree":
            return None
        if kind:
            committish = segments[4] if len(segments) > 4 else ""
    elif host == "gitlab":
        path = parsed.path[1:]
        if "/-/" in path or "/archive.tar.gz" in path:
            return None
        user, _, project = path.rpartition("/")
    else:
        user, project = (segments + ["", ""])[1:3]
        if len(segments) > 3 and segments[3] == "get":
            return None
    project = project[:-4] if project.endswith(".git") else project
    if not user or not project:
        return None
    auth = ""
    username, password = parsed.username, parsed.password
    if scheme in _AUTH_PROTOCOLS and (username or password):
        auth = (username or "") + (f":{password}" if password else "")
    # hosted-git-info's default representation; "http:"/"git+http:" have no template of
    # their own and fall back to sshurl
    representation = {"git+ssh:": "sshurl", "ssh:": "sshurl", "git+https:": "https",
                      "https:": "https", "git:": "git"}.get(scheme, "sshurl")
    return _Hosted(host, unquote(user), unquote(project), unquote(committish), auth,
                   representation)


def _canonical_git_spec(spec: str) -> str | None:
    """The spec as hosted-git-info's ``fromUrl(spec).toString()`` writes it (what npm puts
    in the published dependencies), or None when ``spec`` is not a known hosted repo."""
    h = _parse_hosted(spec)
    if h is None:
        return None
    ref = f"#{h.committish}" if h.committish else ""
    domain = _HOSTS[h.host][0]
    auth = f"{h.auth}@" if h.auth else ""
    if h.representation == "shortcut":
        return f"{h.host}:{h.user}/{h.project}{ref}"
    if h.representation == "https":
        return f"git+https://{auth}{domain}/{h.user}/{h.project}.git{ref}"
    if h.representation == "git" and h.host == "github":
        return f"git://{auth}{domain}/{h.user}/{h.project}.git{ref}"
    return f"git+ssh://git@{domain}/{h.user}/{h.project}.git{ref}"


def normalize_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``manifest`` normalised the way ``npm publish`` (npm 11,
    @npmcli/package-json's ``prepare`` steps) normalises package.json before sending it,
    for the fields that matter when comparing a publish body with the tarball:

    * ``name`` trimmed; ``version`` cleaned (``v1.2.3`` -> ``1.2.3``, build metadata
      dropped) when it parses loosely, else left as is;
    * ``bin``: a string becomes ``{<name without scope>: path}``, an array
      ``{basename: path}``; keys reduced to basenames; paths secured (``./x`` -> ``x``,
      ``a//b`` -> ``a/b``, ``..`` cannot climb, ``\\`` -> ``/``); invalid entries dropped;
    * ``scripts``: missing becomes ``{}``; non-string entries dropped; a leading
      ``node_modules/.bin/`` removed (npm's ``scriptpath`` step);
    * ``dependencies``/``devDependencies``/``optionalDependencies`` in string or array form
      become objects; ``dependencies``/``devDependencies`` lose non-string values and have
      GitHub/GitLab/Bitbucket specs rewritten as hosted-git-info does
      (``user/repo`` -> ``github:user/repo``, ``https://github.com/u/r`` ->
      ``git+https://github.com/u/r.git``);
    * ``bundledDependencies`` unified into ``bundleDependencies``; ``true`` expanded to the
      dependency names; bundled names missing from dependencies added there as ``*``.

    Not done, because npm needs the package's files for them: ``directories.bin`` is not
    expanded into ``bin``, and neither ``scripts.install = "node-gyp rebuild"`` (when a
    ``*.gyp`` file exists) nor ``scripts.start = "node server.js"`` (when server.js exists)
    is added; :func:`check_manifest_agreement` tolerates exactly those differences.
    Also not done: optionalDependencies are *not* merged into dependencies. npm 11 sends
    them separately (npm <= 6 used to copy them over); the comparison tolerates both.

    Returns the new dict; the argument is not modified. Never raises.
    """
    data = copy.deepcopy(manifest)
    name = data.get("name")
    if isinstance(name, str):
        data["name"] = name.strip()
    version = data.get("version")
    if isinstance(version, str) and version:
        cleaned = clean_loose_version(version)
        if cleaned is not None:
            data["version"] = cleaned
    # npm's order: bin (async step) first, then bundle, scripts, dependencies, normalizeData
    _normalize_bin(data)
    _normalize_bundle(data)
    _normalize_scripts(data)
    _fix_dependencies(data)
    _fix_bundle_deps(data)
    return data


# -- agreement ---------------------------------------------------------------------------

_GYP_INSTALL: Final = "node-gyp rebuild"
_SERVER_START: Final = "node server.js"
_MAX_LISTED: Final = 10


def _as_dict(value: Any) -> dict[str, Any] | None:
    """A dependency-like field as a dict: missing/null is ``{}``, a non-object None."""
    if value is None:
        return {}
    return value if isinstance(value, dict) else None


def _same_spec(a: Any, b: Any) -> bool:
    """Two dependency specs are the same: equal, or naming the same hosted repository and
    ref in different notations (``github:u/r`` vs ``git+ssh://git@github.com/u/r.git``)."""
    if a == b:
        return True
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    ha, hb = _parse_hosted(a), _parse_hosted(b)
    return ha is not None and hb is not None and \
        (ha.host, ha.user, ha.project, ha.committish) == (hb.host, hb.user, hb.project,
                                                          hb.committish)


def _describe(field: str, sent: dict[str, Any], packed: dict[str, Any], sep: str) -> str:
    """'<field> differ from the tarball's package.json: sent a@1, tarball a@2; ...'."""
    def show(key: str, value: Any) -> str:
        return f"{key}{sep}{value}" if sep == "@" else f"{key}{sep}{json.dumps(value)}"

    changed = [f"sent {show(k, sent[k])}, tarball {show(k, packed[k])}"
               for k in sent if k in packed and not _same_spec(sent[k], packed[k])]
    only_sent = [f"only sent {show(k, sent[k])}" for k in sent if k not in packed]
    only_packed = [f"only in the tarball {show(k, packed[k])}" for k in packed if k not in sent]
    parts = changed + only_sent + only_packed
    more = f"; and {len(parts) - _MAX_LISTED} more" if len(parts) > _MAX_LISTED else ""
    return (f"{field} differ from the tarball's package.json: "
            + "; ".join(parts[:_MAX_LISTED]) + more)


def _compare_mapping(field: str, sent: Any, packed: Any, sep: str,
                     allowed: Mapping[str, tuple[Any, ...]] | None = None
                     ) -> FieldError | None:
    """Compare one object-valued field; ``allowed[name]`` lists extra values (None meaning
    "absent") the sent side may have for that name."""
    s, p = _as_dict(sent), _as_dict(packed)
    if s is None or p is None:
        if sent == packed:
            return None
        return FieldError(field, f"{field} differ from the tarball's package.json: sent "
                                 f"{json.dumps(sent)}, tarball {json.dumps(packed)}")
    s = dict(s)
    for key, values in (allowed or {}).items():
        if key in s and any(v is not None and _same_spec(s[key], v) for v in values):
            if key in p:
                s[key] = p[key]
            else:
                del s[key]
        elif key not in s and None in values and key in p:
            s[key] = p[key]
    if s.keys() == p.keys() and all(_same_spec(s[k], p[k]) for k in s):
        return None
    return FieldError(field, _describe(field, s, p, sep))


def check_manifest_agreement(sent: dict[str, Any], packed: dict[str, Any]) -> list[FieldError]:
    """Compare the version manifest of a publish body (``sent``) with the tarball's
    package.json (``packed``), both through :func:`normalize_manifest`, for ``name``,
    ``version``, ``dependencies``, ``optionalDependencies``, ``peerDependencies``,
    ``scripts`` and ``bin``. A mismatch is "manifest confusion": installers trust the
    registry's copy while the tarball carries another.

    Tolerated, because real clients produce them from files we do not see here:
    ``scripts.install == "node-gyp rebuild"`` when package.json has neither install nor
    preinstall and ``gypfile`` is not false; ``scripts.start == "node server.js"`` when it
    has no start; a ``bin`` expanded from ``directories.bin`` (every entry inside that
    folder, named after its file); and, for a name that is also in the tarball's
    optionalDependencies, a ``dependencies`` entry that is absent, the tarball's, or the
    optional one (old npm copied optional dependencies into dependencies).

    Returns one ``FieldError(<field>, <what differs>)`` per disagreeing field; never raises.
    """
    s, p = normalize_manifest(sent), normalize_manifest(packed)
    errors: list[FieldError] = []
    for field in ("name", "version"):
        if s.get(field) != p.get(field):
            errors.append(FieldError(field, f"{field} differs from the tarball's package.json: "
                                            f"sent {s.get(field)!r}, tarball {p.get(field)!r}"))

    optional = p.get("optionalDependencies")
    allowed: dict[str, tuple[Any, ...]] = {}
    packed_deps = p.get("dependencies") if isinstance(p.get("dependencies"), dict) else {}
    if isinstance(optional, dict):
        for dep, spec in optional.items():
            allowed[dep] = (None, spec, (packed_deps or {}).get(dep))
    for field, sep, extra in (("dependencies", "@", allowed),
                              ("optionalDependencies", "@", None),
                              ("peerDependencies", "@", None)):
        err = _compare_mapping(field, s.get(field), p.get(field), sep, extra)
        if err:
            errors.append(err)

    sent_scripts, packed_scripts = s.get("scripts"), p.get("scripts")
    if isinstance(sent_scripts, dict) and isinstance(packed_scripts, dict):
        sent_scripts = dict(sent_scripts)
        if (sent_scripts.get("install") == _GYP_INSTALL and not packed_scripts.get("install")
                and not packed_scripts.get("preinstall") and p.get("gypfile") is not False):
            del sent_scripts["install"]
        if sent_scripts.get("start") == _SERVER_START and not packed_scripts.get("start"):
            del sent_scripts["start"]
    err = _compare_mapping("scripts", sent_scripts, packed_scripts, "=")
    if err:
        errors.append(err)

    sent_bin, packed_bin = s.get("bin"), p.get("bin")
    directories = p.get("directories")
    bin_dir = directories.get("bin") if isinstance(directories, dict) else None
    if packed_bin is None and isinstance(bin_dir, str) and bin_dir and isinstance(sent_bin, dict):
        prefix = _secure_path(bin_dir).rstrip("/")
        if all(isinstance(v, str) and (not prefix or v.startswith(prefix + "/"))
               and k == _basename(v) for k, v in sent_bin.items()):
            sent_bin = None  # npm expanded directories.bin from the files; fine
    err = _compare_mapping("bin", sent_bin, packed_bin, "=")
    if err:
        errors.append(err)
    return errors
