"""Signature checks under pinned keys: valid, altered, revoked, expired, unknown,
and a key that changed under a pinned id."""
from __future__ import annotations

import base64

import nacl.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gati_private_registry.client.errors import VerificationFailed
from gati_private_registry.client.trust import Trust, server_keys

INTEGRITY = "sha512-" + "A" * 86 + "=="


def keypair(kid: str, **extra):
    sk = nacl.signing.SigningKey.generate()
    spki = ed25519.Ed25519PublicKey.from_public_bytes(bytes(sk.verify_key)).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    doc = {"keyid": kid, "algorithm": "ed25519", "key": base64.b64encode(spki).decode(),
           "valid_until": None, "revoked": False, **extra}
    return sk, doc


def sign(sk, kid: str, name="m", version="1.0.0", integrity=INTEGRITY):
    sig = sk.sign(f"{name}@{version}:{integrity}".encode()).signature
    return [{"keyid": kid, "sig": base64.b64encode(sig).decode()}]


def test_valid_altered_and_unknown() -> None:
    sk, doc = keypair("k1")
    trust = Trust(server_keys({"keys": [doc, {"algorithm": "ecdsa-p256", "key": "x"}]}))
    assert trust.check("m", "1.0.0", INTEGRITY, sign(sk, "k1"), None) == "k1"
    with pytest.raises(VerificationFailed, match="altered"):
        trust.check("m", "1.0.1", INTEGRITY, sign(sk, "k1"), None)
    other, _ = keypair("k2")
    with pytest.raises(VerificationFailed, match="k2, which is not pinned"):
        trust.check("m", "1.0.0", INTEGRITY, sign(other, "k2"), None)
    with pytest.raises(VerificationFailed, match="no organisation signature"):
        trust.check("m", "1.0.0", INTEGRITY, [], None)
    with pytest.raises(VerificationFailed, match="no organisation key is pinned"):
        Trust().check("m", "1.0.0", INTEGRITY, sign(sk, "k1"), None)


def test_revocation_and_expiry_come_from_the_server() -> None:
    sk, doc = keypair("k1")
    trust = Trust(server_keys({"keys": [doc]}))
    assert trust.refresh(server_keys({"keys": [dict(doc, valid_until="2026-06-01T00:00:00Z")]}))
    sigs = sign(sk, "k1")
    assert trust.check("m", "1.0.0", INTEGRITY, sigs, "2026-05-01T00:00:00.000Z") == "k1"
    with pytest.raises(VerificationFailed, match="expired"):
        trust.check("m", "1.0.0", INTEGRITY, sigs, "2026-07-01T00:00:00.000Z")
    trust.refresh(server_keys({"keys": [dict(doc, revoked=True)]}))
    # a server that "un-revokes" is not believed
    trust.refresh(server_keys({"keys": [doc]}))
    with pytest.raises(VerificationFailed, match="revoked"):
        trust.check("m", "1.0.0", INTEGRITY, sigs, "2026-05-01T00:00:00.000Z")


def test_a_changed_key_under_a_pinned_id_is_refused() -> None:
    _, doc = keypair("k1")
    _, evil = keypair("k1")
    trust = Trust(server_keys({"keys": [doc]}))
    with pytest.raises(VerificationFailed, match="different key under the pinned id"):
        trust.refresh(server_keys({"keys": [evil]}))
    assert trust.untrusted(server_keys({"keys": [doc, keypair("k9")[1]]}))[0].keyid == "k9"
