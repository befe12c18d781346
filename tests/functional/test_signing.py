"""Organisation signatures on approved versions: keys, signing, rotation, revocation
(both backends). Signatures are checked here with ``cryptography`` and PyNaCl directly,
not only through the registry's own verify()."""
from __future__ import annotations

import base64
import json
import os
import stat
from datetime import timedelta
from typing import Any

import nacl.exceptions
import nacl.signing
import pytest
from click.testing import CliRunner
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select, update

from gati_private_registry.cli.admin import main as admin_cli
from gati_private_registry.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gati_private_registry.services import signing
from gati_private_registry.settings import Settings
from gati_private_registry.storage.keyfiles import KeyFileError, KeyFiles
from gati_private_registry.storage.models import AuditEvent, SigningKey, VersionSignature
from gati_private_registry.testing import ModuleSpec, publish_body

from .driver import Registry


def npm_keys(registry: Registry) -> dict[str, dict[str, Any]]:
    resp = registry.client.get("/npm/-/npm/v1/keys")   # public: no token
    assert resp.status_code == 200
    return {k["keyid"]: k for k in resp.json["keys"]}


def api_keys(registry: Registry) -> dict[str, dict[str, Any]]:
    resp = registry.client.get("/api/keys")
    assert resp.status_code == 200
    return {k["keyid"]: k for k in resp.json["keys"]}


def npm_verifies(key: dict[str, Any], sig: str, msg: bytes) -> bool:
    public = serialization.load_der_public_key(base64.b64decode(key["key"]))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    try:
        public.verify(base64.b64decode(sig), msg, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def org_verifies(key: dict[str, Any], sig: str, msg: bytes) -> bool:
    raw = base64.b64decode(key["key"])[-32:]   # DER SPKI of Ed25519: 12-byte prefix + key
    try:
        nacl.signing.VerifyKey(raw).verify(msg, base64.b64decode(sig))
        return True
    except nacl.exceptions.BadSignatureError:
        return False


def dist(registry: Registry, name: str, version: str) -> dict[str, Any]:
    return registry.doc(name)["versions"][version]["dist"]  # type: ignore[no-any-return]


def admin(registry: Registry) -> Any:
    return registry.services.accounts.principal_for_user(
        registry.services.accounts.get_user("admin"))


def test_approved_versions_carry_both_signatures_that_verify(registry: Registry) -> None:
    registry.publish(ModuleSpec("@corp/signed", "1.0.0"))
    d = dist(registry, "@corp/signed", "1.0.0")
    msg = f"@corp/signed@1.0.0:{d['integrity']}".encode()
    keys, org = npm_keys(registry), api_keys(registry)
    [npm_sig] = d["signatures"]
    [org_sig] = d["gatiSignatures"]
    assert keys[npm_sig["keyid"]]["keytype"] == "ecdsa-sha2-nistp256"
    assert keys[npm_sig["keyid"]]["scheme"] == "ecdsa-sha2-nistp256"
    assert keys[npm_sig["keyid"]]["expires"] is None
    assert npm_verifies(keys[npm_sig["keyid"]], npm_sig["sig"], msg)
    assert org[org_sig["keyid"]]["algorithm"] == "ed25519" and not org[org_sig["keyid"]]["revoked"]
    assert org_verifies(org[org_sig["keyid"]], org_sig["sig"], msg)
    # npm's key list has only what Node's verifier can use
    assert all(k["keytype"] == "ecdsa-sha2-nistp256" for k in keys.values())
    # the abbreviated document (installs) carries them too
    abbreviated = registry.packument("@corp/signed", abbreviated=True).json
    assert abbreviated["versions"]["1.0.0"]["dist"]["signatures"] == d["signatures"]


@pytest.mark.parametrize("tamper", ["integrity", "signature", "name", "version"])
def test_any_flipped_bit_fails_verification(registry: Registry, tamper: str) -> None:
    registry.publish(ModuleSpec("flip", "1.0.0"))
    d = dist(registry, "flip", "1.0.0")
    org = api_keys(registry)
    name, version, integrity = "flip", "1.0.0", d["integrity"]
    for field in ("gatiSignatures", "signatures"):
        entry = d[field][0]
        key = org[entry["keyid"]]
        sig = entry["sig"]
        assert signing.verify(key["algorithm"], key["key"], sig, name, version, integrity)
        raw = bytearray(base64.b64decode(sig))
        n, v, i = name, version, integrity
        if tamper == "signature":
            raw[len(raw) // 2] ^= 0x01
        elif tamper == "integrity":
            digest = bytearray(base64.b64decode(integrity.split("-", 1)[1]))
            digest[0] ^= 0x01   # one bit of the tarball's sha512
            i = "sha512-" + base64.b64encode(bytes(digest)).decode()
        elif tamper == "name":
            n = "flop"
        else:
            v = "1.0.1"
        assert not signing.verify(key["algorithm"], key["key"], base64.b64encode(bytes(raw)).decode(),
                                  n, v, i)


def test_pending_versions_are_signed_when_approved(registry: Registry) -> None:
    # a staged publish always waits for a person, whatever the policy
    resp = registry.client.post("/npm/-/stage/package/later",
                                json=publish_body(ModuleSpec("later", "1.0.0")),
                                headers=registry.headers(registry.token()))
    assert resp.status_code == 201 and resp.json["state"] == "pending"
    with registry.services.db.read() as s:
        assert s.scalars(select(VersionSignature)).all() == []
    ok = registry.client.post("/api/modules/later/1.0.0/approve", json={},
                              headers=registry.headers(registry.token("admin", "approve")))
    assert ok.status_code == 200
    d = dist(registry, "later", "1.0.0")
    assert len(d["signatures"]) == 1 and len(d["gatiSignatures"]) == 1


def test_resign_survives_another_process_signing_the_same_batch(registry: Registry) -> None:
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from gati_private_registry.storage.models import Package, Version

    for i in range(3):
        registry.publish(ModuleSpec(f"race-{i}", "1.0.0"))
    keys = registry.services.keys
    db = registry.services.db
    keys.rotate(None)
    real_signer_for = keys._signer_for
    raced: list[str] = []

    class Racing:
        """The active signer, but another process commits the first version's
        signatures between our "already signed?" look and our insert."""

        def __init__(self, signer: Any) -> None:
            self.signer = signer

        def __getattr__(self, attr: str) -> Any:
            return getattr(self.signer, attr)

        def sign(self, name: str, version: str, integrity: str) -> Any:
            pairs = list(self.signer.sign(name, version, integrity))
            if not raced:
                raced.append(name)
                with db.read() as s:
                    vid = s.scalar(select(Version.id).join(Package).where(Package.name == name))
                rows = [{"version_id": vid, "keyid": keyid, "sig": sig,
                         "created_at": datetime.now(timezone.utc)} for keyid, sig in pairs]
                if db.is_sqlite:  # one writer at a time there: the clash is made in-batch
                    self.session.connection().execute(insert(VersionSignature), rows)
                else:
                    with db.write() as other:
                        other.connection().execute(insert(VersionSignature), rows)
            return pairs

    def signer_for(session: Any) -> Any:
        signer = real_signer_for(session)
        if signer is None:
            return None
        racing = Racing(signer)
        racing.session = session  # type: ignore[attr-defined]
        return racing

    keys._signer_for = signer_for  # type: ignore[method-assign]
    # the clashing batch rolls back; the next one signs what is still unsigned (on
    # PostgreSQL the other process's version is signed already)
    assert keys.resign() == (3 if db.is_sqlite else 2)
    assert raced and keys.pending_count() == (0, 3)


def test_rotation_resigns_everything_and_revocation_withdraws(registry: Registry) -> None:
    for i in range(5):
        registry.publish(ModuleSpec(f"rot-{i}", "1.0.0"))
    keys = registry.services.keys
    old = {k.keyid for k in keys.all()}
    old_sig = dist(registry, "rot-0", "1.0.0")["signatures"][0]

    keys.rotate(None)
    assert keys.pending_count() == (5, 5)
    seen: list[tuple[int, int]] = []
    assert keys.resign(batch=2, progress=lambda d, t: seen.append((d, t))) == 5
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert keys.pending_count() == (0, 5)
    assert keys.resign() == 0   # resumable: nothing left to do

    d = dist(registry, "rot-0", "1.0.0")
    msg = f"rot-0@1.0.0:{d['integrity']}".encode()
    published = npm_keys(registry)
    assert len(d["signatures"]) == 2 and len(d["gatiSignatures"]) == 2
    assert old_sig in d["signatures"]
    for entry in d["signatures"]:
        assert npm_verifies(published[entry["keyid"]], entry["sig"], msg)
    # the old npm key now expires: versions published before stay valid for npm
    old_npm = next(k for k in published.values() if k["keyid"] in old)
    assert old_npm["expires"] is not None
    # new versions get only the new pair
    registry.publish(ModuleSpec("rot-new", "1.0.0"))
    assert len(dist(registry, "rot-new", "1.0.0")["signatures"]) == 1

    # revoking: validation, then the old signatures leave the packuments
    old_keyid = old_sig["keyid"]
    active = next(k.keyid for k in keys.all() if k.active)
    with pytest.raises(ValidationFailed):
        keys.revoke(None, old_keyid, "  ")
    with pytest.raises(Conflict):
        keys.revoke(None, active, "no")
    with pytest.raises(NotFound):
        keys.revoke(None, "SHA256:nope", "gone")
    registry.add_user("ann", "approver")
    ann = registry.services.accounts.principal_for_user(registry.services.accounts.get_user("ann"))
    with pytest.raises(Forbidden):
        keys.revoke(ann, old_keyid, "compromised")
    assert sorted(keys.revoke(admin(registry), old_keyid, "laptop stolen")) == sorted(old)
    with pytest.raises(Conflict):
        keys.revoke(None, old_keyid, "again")
    d = dist(registry, "rot-0", "1.0.0")
    assert all(e["keyid"] not in old for e in d["signatures"] + d["gatiSignatures"])
    listed = api_keys(registry)
    assert all(listed[k]["revoked"] and listed[k]["revoked_reason"] == "laptop stolen" for k in old)
    revoked_npm = npm_keys(registry)[old_npm["keyid"]]
    assert revoked_npm["expires"] == listed[old_npm["keyid"]]["valid_from"]
    with registry.services.db.read() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("key.%"))).all()
    assert sorted(actions) == ["key.create", "key.revoke", "key.rotate"]


def test_create_refuses_a_second_active_pair_and_expired_keys_stop_signing(registry: Registry) -> None:
    with pytest.raises(Conflict):
        registry.services.keys.create(None)
    with registry.services.db.write() as s:
        s.execute(update(SigningKey).values(expires_at=signing.now() - timedelta(seconds=1)))
    registry.publish(ModuleSpec("late", "1.0.0"))
    assert "signatures" not in dist(registry, "late", "1.0.0")
    registry.services.keys.rotate(None)
    assert registry.services.keys.resign() >= 1
    assert len(dist(registry, "late", "1.0.0")["signatures"]) == 1


def test_key_files_are_private_and_encrypted_with_a_passphrase(tmp_path: Any) -> None:
    files = KeyFiles(tmp_path / "keys")
    keys = signing.PrivatePair(nacl.signing.SigningKey.generate(),
                               ec.generate_private_key(ec.SECP256R1()))
    files.write("11111111-2222-3333-4444-555555555555", keys, "correct horse")
    for path in (tmp_path / "keys").iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert bytes(keys.ed25519).hex() not in path.read_bytes().hex()
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    envelope = json.loads((tmp_path / "keys" / "11111111-2222-3333-4444-555555555555.ed25519").read_text())
    assert envelope["encrypted"] is True and "seed" not in envelope
    back = files.read("11111111-2222-3333-4444-555555555555", "correct horse")
    assert bytes(back.ed25519) == bytes(keys.ed25519)
    for wrong in ("", "wrong horse"):
        with pytest.raises(KeyFileError):
            files.read("11111111-2222-3333-4444-555555555555", wrong)
    with pytest.raises(KeyFileError):
        files.read("../../etc/passwd", "")


def test_a_server_that_cannot_open_its_keys_refuses_to_approve(registry: Registry,
                                                               settings: Settings) -> None:
    for path in (settings.data / "keys").iterdir():
        path.write_bytes(b"damaged")
    registry.services.keys._signer = None  # as after a restart
    resp = registry.publish(ModuleSpec("unsignable", "1.0.0"))
    assert resp.status_code == 503
    assert registry.packument("unsignable").status_code == 404


def test_keys_commands(settings: Settings, registry: Registry) -> None:
    env = {"GATI_REGISTRY_DATABASE__URL": settings.database_url}
    data = ["--data", str(settings.data)]
    run = CliRunner().invoke
    registry.publish(ModuleSpec("cli-signed", "1.0.0"))
    listed = run(admin_cli, ["keys", "list", *data], env=env)
    assert listed.exit_code == 0
    lines = [line.split("\t") for line in listed.stdout.strip().splitlines()]
    assert sorted(line[1] for line in lines) == ["ecdsa-p256", "ed25519"]
    assert {line[2] for line in lines} == {"active"}
    assert run(admin_cli, ["keys", "create", *data], env=env).exit_code == 1
    rotated = run(admin_cli, ["keys", "rotate", *data], env=env)
    assert rotated.exit_code == 0, rotated.output
    old = lines[0][0]
    refused = run(admin_cli, ["keys", "revoke", old, *data], env=env)
    assert refused.exit_code == 2   # --reason is required
    assert run(admin_cli, ["keys", "revoke", old, "--reason", "rotated out", *data], env=env).exit_code == 0
    states = [line.split("\t")[2] for line in run(admin_cli, ["keys", "list", *data], env=env)
              .stdout.strip().splitlines()]
    assert sorted(states) == ["active", "active", "revoked", "revoked"]
    # what the CLI signed, the running service's packument shows
    registry.services.keys._signer = None
    assert len(dist(registry, "cli-signed", "1.0.0")["signatures"]) == 1


def test_keys_page_shows_fingerprints_to_anyone(registry: Registry) -> None:
    keys = registry.services.keys
    keys.rotate(None)
    old = next(k for k in keys.all() if not k.active)
    keys.revoke(None, old.keyid, "drill <b>now</b>")
    page = registry.client.get("/keys")
    assert page.status_code == 200
    html = page.text
    for k in keys.all():
        assert k.fingerprint in html and k.keyid in html
    assert html.count('class="key-active"') == 2 and html.count('class="key-revoked"') == 2
    assert "drill &lt;b&gt;now&lt;/b&gt;" in html   # escaped
    assert signing.fingerprint(base64.b64decode(old.public_key)) == old.fingerprint
