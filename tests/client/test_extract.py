"""Safe extraction: nothing escapes the package directory, limits hold, and a refused
tarball writes nothing."""
from __future__ import annotations

import gzip
import io
import stat
import tarfile
from pathlib import Path

import pytest

from gati_private_registry.client.extract import Limits, UnsafeTarball, expected_files, extract


def tgz(*members: tuple[str, str, bytes | str]) -> bytes:
    """(name, kind, data-or-link-target) -> a gzipped tar."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                info.mode = 0o755 if name.endswith(".sh") else 0o600
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = str(payload)
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
    return gzip.compress(raw.getvalue())


def test_a_normal_package_is_unpacked_with_npms_modes(tmp_path: Path) -> None:
    data = tgz(("package/package.json", "file", "{}"), ("package/lib/a.js", "file", "x"),
               ("package/bin/run.sh", "file", "#!/bin/sh"), ("package/link.js", "sym", "lib/a.js"),
               ("package/copy.js", "hard", "package/lib/a.js"))
    dest = tmp_path / "pkg"
    extract(data, dest, "p@1")
    assert (dest / "lib/a.js").read_text() == "x"
    assert stat.S_IMODE((dest / "lib/a.js").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "bin/run.sh").stat().st_mode) == 0o755
    assert (dest / "link.js").is_symlink() and (dest / "link.js").read_text() == "x"
    assert (dest / "copy.js").read_text() == "x" and not (dest / "copy.js").is_symlink()
    assert expected_files(data, "p@1")["link.js"] == "lib/a.js"


@pytest.mark.parametrize("members,problem", [
    ([("package/../../evil.js", "file", "x")], "climbs out"),
    ([("/etc/evil", "file", "x")], "absolute path"),
    ([("package/..\\..\\evil.js", "file", "x")], "climbs out"),
    ([("package/l", "sym", "/etc/passwd")], "outside the package"),
    ([("package/l", "sym", "../../outside")], "outside the package"),
    ([("package/l", "hard", "/etc/passwd")], "absolute path"),
    ([("package/l", "hard", "other/x")], "outside the package"),
    ([("package/d", "sym", "lib"), ("package/d/x.js", "file", "x")], "through the link"),
    ([("package/p", "fifo", "")], "special file"),
])
def test_unsafe_entries_are_refused_before_anything_is_written(
        tmp_path: Path, members: list, problem: str) -> None:
    data = tgz(("package/package.json", "file", "{}"), *members)
    dest = tmp_path / "pkg"
    with pytest.raises(UnsafeTarball, match=problem):
        extract(data, dest, "p@1")
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_size_and_count_limits(tmp_path: Path) -> None:
    data = tgz(("package/a", "file", b"x" * 100), ("package/b", "file", b"y" * 100))
    with pytest.raises(UnsafeTarball, match="more than the limit of 50"):
        extract(data, tmp_path / "a", "p@1", Limits(max_file_size=50))
    with pytest.raises(UnsafeTarball, match="unpacks to more than 150"):
        extract(data, tmp_path / "b", "p@1", Limits(max_total_size=150))
    with pytest.raises(UnsafeTarball, match="more than the limit of 1"):
        extract(data, tmp_path / "c", "p@1", Limits(max_files=1))
    with pytest.raises(UnsafeTarball, match="cannot be read|damaged"):
        extract(b"not a tarball", tmp_path / "d", "p@1")
    assert not any(tmp_path.iterdir())
