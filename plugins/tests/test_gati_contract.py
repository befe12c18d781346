from __future__ import annotations

from gati_private_registry.hooks import Decision

from gati_registry_plugins import gati_contract
from helpers import candidate_from_tarball, defaults, package_tgz

GOOD = {"name": "demo", "version": "1.0.0", "type": "database",
        "contracts": ["gati.db/v1", {"id": "gati.cache/v2", "implementation": "lib/cache"}],
        "main": "./index.js", "types": "index.d.ts",
        "dependencies": {"@gati/core": "^1.2.0"}, "peerDependencies": {"pg": ">=8"}}
FILES = {"index.d.ts": "export {};", "lib/cache/index.js": "module.exports = {};"}


def review(module: dict | None, files: dict | None = None, **config: object):
    cand = candidate_from_tarball(package_tgz({}, files, gati_module=module))
    return gati_contract.gati_registry_review_version(
        candidate=cand, config=defaults(gati_contract, **config))


def test_valid_module_approves() -> None:
    vote = review(GOOD, FILES)
    assert vote.decision is Decision.APPROVE, vote.reasons
    assert vote.reasons == ("gati-module.json is a valid 'database' module implementing "
                            "gati.db/v1, gati.cache/v2",)


def test_no_manifest() -> None:
    vote = review(None)
    assert vote.decision is Decision.APPROVE
    assert "not a Gati module manifest" in vote.reasons[0]
    assert review(None, require_manifest=True).decision is Decision.REJECT


def test_every_problem_is_reported() -> None:
    bad = {"version": 3, "type": "blockchain",
           "contracts": ["gati.db/v1", "db/v1", "gati.Queue/1", 7,
                         {"id": "gati.http/v1", "implementation": "lib/http.js"}],
           "main": "dist/main.js", "entry": "", "types": "index.d.ts",
           "dependencies": ["pg"], "peerDependencies": {"Bad Name": "^1", "ok": 2}}
    vote = review(bad)
    assert vote.decision is Decision.REJECT
    reasons = "\n".join(vote.reasons)
    for expected in [
        "the required key 'name' is missing",
        "'version' must be a non-empty string, not int 3",
        "type 'blockchain' is not a known module type",
        "contracts[1] 'db/v1' is not a contract id like 'gati.db/v1'",
        "contracts[2] 'gati.Queue/1'",
        "contracts[3] must be a contract id string",
        "contracts[4] (gati.http/v1) names implementation 'lib/http.js', which is not in the package",
        "'main' names 'dist/main.js', which is not in the package",
        "'entry' must be a file path",
        "'types' names 'index.d.ts', which is not in the package",
        "'dependencies' must be an object of package name to version range, not list",
        "'peerDependencies' has an invalid package name 'Bad Name'",
        "peerDependencies['ok'] must be a version range string, not int 2",
    ]:
        assert expected in reasons, (expected, reasons)
    assert all(r.startswith("gati-module.json: ") for r in vote.reasons)
    assert len(vote.reasons) == 13


def test_contracts_must_be_a_list() -> None:
    vote = review({**GOOD, "contracts": "gati.db/v1"}, FILES)
    assert vote.reasons == ("gati-module.json: 'contracts' must be a list, not str 'gati.db/v1'",)


def test_types_setting() -> None:
    module = {**GOOD, "type": "blockchain"}
    assert review(module, FILES).decision is Decision.REJECT
    assert review(module, FILES, types=["blockchain"]).decision is Decision.APPROVE
    assert review(module, FILES, action="needs-review").decision is Decision.NEEDS_REVIEW
