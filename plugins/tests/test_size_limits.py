from __future__ import annotations

from gati_private_registry.hooks import Decision

from gati_registry_plugins import size_limits
from helpers import candidate_from_tarball, defaults, package_tgz


def review(files: dict | None = None, **config: object):
    cand = candidate_from_tarball(package_tgz({}, files))
    return size_limits.gati_registry_review_version(
        candidate=cand, config=defaults(size_limits, **config))


def test_small_package_approves() -> None:
    vote = review({"lib/a.js": "a"})
    assert vote.decision is Decision.APPROVE
    assert "3 files" in vote.reasons[0]


def test_too_many_files() -> None:
    vote = review({f"lib/{i}.js": "x" for i in range(10)}, max_files=5)
    assert vote.decision is Decision.NEEDS_REVIEW
    assert vote.reasons == ("12 files is over the limit of 5",)


def test_unpacked_size_and_big_file() -> None:
    vote = review({"data.bin": b"\0" * 5000}, max_unpacked_size=4000, max_file_size=4500)
    assert vote.decision is Decision.NEEDS_REVIEW
    assert any("unpacked size" in r and "4000 bytes" in r for r in vote.reasons)
    assert any(r.startswith("data.bin is 5.0 kB (5000 bytes)") for r in vote.reasons)


def test_action_reject() -> None:
    assert review({"big.txt": "x" * 100}, max_file_size=10, action="reject").decision is Decision.REJECT


def test_defaults() -> None:
    config = defaults(size_limits)
    assert config == {"max_unpacked_size": 50_000_000, "max_files": 5000,
                      "max_file_size": 20_000_000, "action": "needs-review"}
