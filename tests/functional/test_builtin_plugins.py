"""The shipped policy plugins (plugins/, installed by scripts/test) loaded through their
entry points and deciding real publishes."""
from __future__ import annotations

import json

from sqlalchemy import select

import gati_registry_plugins  # noqa: F401  (must be installed: scripts/test does it)
from gati_private_registry.storage.models import VoteRecord
from gati_private_registry.testing import ModuleSpec

from .driver import Registry

FAKE_KEY = ("-----BEGIN RSA PRIVATE KEY-----\n"
            "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
            "-----END RSA PRIVATE KEY-----\n")


def votes_for(registry: Registry) -> dict[str, tuple[str, list[str]]]:
    with registry.services.db.read() as s:
        return {v.plugin: (v.decision, v.reasons) for v in s.scalars(select(VoteRecord))}


def test_all_builtins_are_loaded(registry: Registry) -> None:
    names = set(registry.services.plugins.names())
    assert {"licence", "install_scripts", "secrets", "size_limits", "names", "gati_contract"} <= names


def test_clean_module_is_approved_with_every_vote_recorded(registry: Registry) -> None:
    resp = registry.publish(ModuleSpec("@corp/clean", "1.0.0", extra={"license": "MIT"}))
    assert resp.json["state"] == "approved"
    votes = votes_for(registry)
    assert votes["licence"][0] == "approve" and votes["secrets"][0] == "approve"


def test_a_private_key_in_the_tarball_rejects_and_is_not_repeated(registry: Registry) -> None:
    spec = ModuleSpec("@corp/leaky", "1.0.0", extra={"license": "MIT"},
                      files={"config/deploy.pem": FAKE_KEY})
    resp = registry.publish(spec)
    assert resp.status_code == 201 and resp.json["state"] == "rejected"
    decision, reasons = votes_for(registry)["secrets"]
    assert decision == "reject" and any("config/deploy.pem" in r for r in reasons)
    assert "MIIEowIBAAKCAQEA" not in json.dumps(reasons)
    assert registry.packument("@corp/leaky").status_code == 404


def test_denied_licence_and_install_scripts(registry: Registry) -> None:
    gpl = registry.publish(ModuleSpec("@corp/copyleft", "1.0.0", extra={"license": "AGPL-3.0-only"}))
    assert gpl.json["state"] == "rejected"
    scripts = registry.publish(ModuleSpec("@corp/scripted", "1.0.0", extra={
        "license": "MIT", "scripts": {"postinstall": "node setup.js"}}))
    assert scripts.json["state"] == "approved"   # auto mode: doubts are recorded, not blocking
    decision, reasons = votes_for(registry)["install_scripts"]
    assert decision == "needs-review" and any("postinstall" in r for r in reasons)
