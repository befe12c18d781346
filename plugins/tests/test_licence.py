from __future__ import annotations

import pytest
from gati_private_registry.hooks import Decision

from gati_registry_plugins import licence
from helpers import candidate_from_tarball, defaults, package_tgz


def review(manifest: dict, files: dict | None = None, **config: object):
    cand = candidate_from_tarball(package_tgz(manifest, files))
    return licence.gati_registry_review_version(candidate=cand, config=defaults(licence, **config))


@pytest.mark.parametrize("license_, expected", [
    ("MIT", Decision.APPROVE),
    ("Apache-2.0", Decision.APPROVE),
    ("(MIT OR Apache-2.0)", Decision.APPROVE),
    ("MIT OR GPL-3.0", Decision.APPROVE),            # the user may pick MIT
    ("MIT AND GPL-3.0-only", Decision.REJECT),        # must comply with both
    ("GPL-3.0-or-later", Decision.REJECT),
    ("AGPL-3.0-only OR SSPL-1.0", Decision.REJECT),   # every branch denied
    ("MIT AND LGPL-2.1-only", Decision.NEEDS_REVIEW),  # unknown term, none denied
    ("LGPL-2.1-only OR GPL-2.0-only", Decision.NEEDS_REVIEW),
    ("GPL-2.0-only WITH Classpath-exception-2.0", Decision.NEEDS_REVIEW),
    ("mit", Decision.APPROVE),                        # case-normalised by the parser
    ("Foo-1.0", Decision.NEEDS_REVIEW),
    ("MIT OR", Decision.NEEDS_REVIEW),                # not a valid expression
    ("UNLICENSED", Decision.NEEDS_REVIEW),
])
def test_expressions(license_: str, expected: Decision) -> None:
    vote = review({"license": license_})
    assert vote.decision is expected, vote.reasons
    assert vote.reasons


def test_reason_names_the_expression() -> None:
    vote = review({"license": "MIT AND GPL-3.0-only"})
    assert "MIT AND GPL-3.0-only" in vote.reasons[0] and "denied" in vote.reasons[0]


def test_unknown_id_is_explained() -> None:
    assert any("'Foo-1.0' is not an SPDX licence id" in r for r in review({"license": "Foo-1.0"}).reasons)


def test_missing_licence() -> None:
    vote = review({})
    assert vote.decision is Decision.NEEDS_REVIEW
    assert "declares no licence" in vote.reasons[0]


def test_see_license_in_file() -> None:
    vote = review({"license": "SEE LICENSE IN LICENSE.md"}, {"LICENSE.md": "Custom terms"})
    assert vote.decision is Decision.NEEDS_REVIEW
    assert "'LICENSE.md'" in vote.reasons[0] and "not in the package" not in vote.reasons[0]
    missing = review({"license": "SEE LICENSE IN EULA.txt"})
    assert "not in the package" in missing.reasons[0]


def test_old_licenses_array_is_an_or() -> None:
    vote = review({"licenses": [{"type": "GPL-2.0", "url": "x"}, {"type": "MIT", "url": "y"}]})
    assert vote.decision is Decision.APPROVE
    assert review({"licenses": [{"type": "GPL-2.0"}]}).decision is Decision.REJECT
    assert review({"license": {"type": "ISC", "url": "z"}}).decision is Decision.APPROVE


def test_allow_list_change_flips_the_decision() -> None:
    assert review({"license": "MPL-2.0"}).decision is Decision.NEEDS_REVIEW
    assert review({"license": "MPL-2.0"}, allow=["MPL-2.0"]).decision is Decision.APPROVE
    assert review({"license": "MIT"}, allow=["ISC"]).decision is Decision.NEEDS_REVIEW


def test_deny_list_uses_canonical_ids() -> None:
    # "GPL-3.0" (deprecated id) in the settings matches a package's GPL-3.0-only
    assert review({"license": "GPL-3.0-only"}, deny=["GPL-3.0"]).decision is Decision.REJECT
    assert review({"license": "GPL-3.0-only"}, deny=[]).decision is Decision.NEEDS_REVIEW
    assert review({"license": "MIT"}, deny=["MIT"]).decision is Decision.REJECT


def test_with_exception_can_be_allowed_outright() -> None:
    expr = "GPL-2.0-only WITH Classpath-exception-2.0"
    assert review({"license": expr}, allow=[expr]).decision is Decision.APPROVE


@pytest.mark.parametrize("setting", ["approve", "reject"])
def test_unknown_setting(setting: str) -> None:
    assert review({"license": "Zlib"}, unknown=setting).decision is Decision(setting)
    assert review({}, unknown=setting).decision is Decision(setting)
