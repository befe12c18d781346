from __future__ import annotations

import pytest
from gati_private_registry.hooks import Decision

from gati_registry_plugins import names
from helpers import candidate_from_tarball, defaults, package_tgz

EXISTING = ("express", "lodash", "@gati-module/postgres", "node-fetch", "chalk", "react",
            "left-pad", "@gati/db")


def review(name: str, existing=EXISTING, **config: object):
    cand = candidate_from_tarball(package_tgz({"name": name}), existing=existing)
    return names.gati_registry_review_version(candidate=cand, config=defaults(names, **config))


@pytest.mark.parametrize("name, similar", [
    ("expresss", "express"),                              # one added letter
    ("exrpess", "express"),                               # swapped neighbours
    ("@gati-modules/postgres", "@gati-module/postgres"),  # look-alike scope
    ("lodash_", "lodash"),                                # trailing separator
    ("left_pad", "left-pad"),                             # separator swap
    ("fetch", "node-fetch"),                              # dropped node- prefix
    ("chalkjs", "chalk"),                                 # added js suffix
    ("chalk.js", "chalk"),
    ("@evil/expresss", "express"),                        # scoped copy, one edit
])
def test_typosquats_need_review(name: str, similar: str) -> None:
    vote = review(name)
    assert vote.decision is Decision.NEEDS_REVIEW, vote.reasons
    assert f"'{similar}'" in vote.reasons[0] and "typosquatting" in vote.reasons[0]


@pytest.mark.parametrize("name", [
    "fastify",          # legit, distant
    "express",          # the same name: a new version, not a typosquat
    "@types/express",   # scoped reuse of an unscoped name is how scopes work
    "@gati/cache",      # same scope, different module
    "reactor",          # two edits from react
    "vue",              # short
])
def test_distinct_names_approve(name: str) -> None:
    vote = review(name)
    assert vote.decision is Decision.APPROVE, vote.reasons


def test_short_names_only_compared_for_variants() -> None:
    assert review("rect", existing=("reat",)).decision is Decision.APPROVE
    assert review("re_at", existing=("re-at",)).decision is Decision.NEEDS_REVIEW
    assert review("rect", existing=("reat",), min_length=3).decision is Decision.NEEDS_REVIEW


def test_all_similar_names_are_listed() -> None:
    vote = review("lodas", existing=("lodash", "lodaz", "unrelated"))
    assert "'lodash' (1 edit apart)" in vote.reasons[0] and "'lodaz'" in vote.reasons[0]
    assert "unrelated" not in vote.reasons[0]


def test_deny_list_rejects() -> None:
    vote = review("node_modules")
    assert vote.decision is Decision.REJECT
    assert "matches 'node_modules'" in vote.reasons[0]
    assert review("super-malware-kit").decision is Decision.REJECT
    assert review("acme-internal", deny=["acme-*"]).decision is Decision.REJECT
    assert review("node_modules", deny=[]).decision is Decision.APPROVE


def test_settings() -> None:
    assert review("expresss", max_distance=0).decision is Decision.APPROVE
    assert review("expreso", max_distance=2).decision is Decision.NEEDS_REVIEW
    assert review("expresss", action="reject").decision is Decision.REJECT
    assert review("expresss", allow=["expres*"]).decision is Decision.APPROVE


def test_distance() -> None:
    d = names._distance
    assert d("express", "express", 3) == 0
    assert d("express", "exrpess", 3) == 1
    assert d("kitten", "sitting", 5) == 3
    assert d("kitten", "sitting", 1) == 2  # capped at limit + 1
