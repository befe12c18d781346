"""The organisation's keys as this client trusts them, and signature checks.

``gati registry login`` pins the registry's Ed25519 organisation keys (``/api/keys``):
trust on first use with the fingerprint shown, ``--trust-key FINGERPRINT`` to pin only
the key you were given out of band, or ``--yes`` for scripts. Later commands refresh the
pinned keys' state from the server: a revocation or an earlier expiry is taken, a key
that changed under a known id is refused, a new key is *not* trusted until the user pins
it (``gati registry login`` again).

A version is trusted when at least one ``dist.gatiSignatures`` entry verifies under a
pinned key that is not revoked and had not expired when the version was published, and
no entry under a pinned key fails (a failing one means tampering). The message signed is
the registry's: ``name@version:integrity`` (UTF-8).
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .errors import ClientError, VerificationFailed

ED25519 = "ed25519"


def fingerprint(spki_der: bytes) -> str:
    """sha256 of the DER public key, hex in groups of four (the registry's format)."""
    digest = hashlib.sha256(spki_der).hexdigest()
    return ":".join(digest[i:i + 4] for i in range(0, len(digest), 4))


def same_fingerprint(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return "".join(ch for ch in s.lower() if ch in "0123456789abcdef")
    return bool(norm(a)) and norm(a) == norm(b)


def message(name: str, version: str, integrity: str) -> bytes:
    return f"{name}@{version}:{integrity}".encode()


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class PinnedKey:
    keyid: str
    key: str  # base64 DER SubjectPublicKeyInfo
    fingerprint: str
    valid_until: str | None
    revoked: bool

    def as_json(self) -> dict[str, Any]:
        return {"keyid": self.keyid, "algorithm": ED25519, "key": self.key,
                "fingerprint": self.fingerprint, "valid_until": self.valid_until,
                "revoked": self.revoked}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "PinnedKey":
        return cls(keyid=str(doc["keyid"]), key=str(doc["key"]),
                   fingerprint=str(doc.get("fingerprint", "")),
                   valid_until=doc.get("valid_until"), revoked=bool(doc.get("revoked")))

    def verify_key(self) -> nacl.signing.VerifyKey:
        key = serialization.load_der_public_key(base64.b64decode(self.key))
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
        return nacl.signing.VerifyKey(key.public_bytes(serialization.Encoding.Raw,
                                                       serialization.PublicFormat.Raw))


def server_keys(doc: Any) -> list[PinnedKey]:
    """The Ed25519 keys of an ``/api/keys`` answer, fingerprints computed here (the
    server's own ``fingerprint`` field is not trusted). Raises :class:`ClientError` for
    an answer of the wrong shape."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ClientError("the registry's /api/keys answer has no key list",
                          hint="is this a Gati registry with signing enabled?")
    out = []
    for k in doc["keys"]:
        if not isinstance(k, dict) or k.get("algorithm") != ED25519:
            continue
        try:
            der = base64.b64decode(str(k["key"]), validate=True)
        except (KeyError, ValueError):
            continue
        out.append(PinnedKey(keyid=str(k.get("keyid")), key=str(k["key"]),
                             fingerprint=fingerprint(der),
                             valid_until=k.get("valid_until"), revoked=bool(k.get("revoked"))))
    return out


class Trust:
    """The pinned keys of one registry."""

    def __init__(self, keys: Iterable[PinnedKey] = ()) -> None:
        self.keys = {k.keyid: k for k in keys}

    @classmethod
    def from_store(cls, stored: dict[str, dict[str, Any]]) -> "Trust":
        return cls(PinnedKey.from_json(v) for v in stored.values())

    def to_store(self) -> dict[str, dict[str, Any]]:
        return {k: v.as_json() for k, v in sorted(self.keys.items())}

    def untrusted(self, offered: Iterable[PinnedKey]) -> list[PinnedKey]:
        """The offered keys not pinned yet (and not revoked), after checking that no
        pinned id now names a different key. Raises :class:`VerificationFailed` on a
        changed key."""
        new = []
        for k in offered:
            mine = self.keys.get(k.keyid)
            if mine is None:
                if not k.revoked:
                    new.append(k)
            elif mine.key != k.key:
                raise VerificationFailed(
                    f"the registry now serves a different key under the pinned id "
                    f"{k.keyid} (pinned {mine.fingerprint}, served {k.fingerprint})",
                    hint="this may be an attack; ask your registry administrators before "
                         "trusting anything from this registry")
        return new

    def pin(self, key: PinnedKey) -> None:
        self.keys[key.keyid] = key

    def refresh(self, offered: Iterable[PinnedKey]) -> bool:
        """Take revocations and expiries of pinned keys from the server (never undo a
        revocation). Returns whether anything changed. Raises like :meth:`untrusted`."""
        offered = list(offered)
        self.untrusted(offered)
        changed = False
        for k in offered:
            mine = self.keys.get(k.keyid)
            if mine is None:
                continue
            revoked = mine.revoked or k.revoked
            until = mine.valid_until
            if k.valid_until and (until is None or (_parse_time(k.valid_until) or _FAR)
                                  < (_parse_time(until) or _FAR)):
                until = k.valid_until
            if revoked != mine.revoked or until != mine.valid_until:
                self.keys[k.keyid] = PinnedKey(mine.keyid, mine.key, mine.fingerprint,
                                               until, revoked)
                changed = True
        return changed

    def check(self, name: str, version: str, integrity: str, signatures: Any,
              published: str | None) -> str:
        """Returns the keyid whose signature verified. Raises :class:`VerificationFailed`
        with the reason when ``name@version`` is not signed by a trusted key."""
        spec = f"{name}@{version}"
        if not self.keys:
            raise VerificationFailed(
                f"no organisation key is pinned, so {spec} cannot be verified",
                hint="run gati registry login (it pins the registry's keys)")
        if not isinstance(signatures, list) or not signatures:
            raise VerificationFailed(f"{spec} carries no organisation signature",
                                     hint="the registry signs approved versions; ask its "
                                          "administrators why this one is unsigned")
        when = _parse_time(published) or datetime.now(timezone.utc)
        msg = message(name, version, integrity)
        good: str | None = None
        reasons = []
        for sig in signatures:
            if not isinstance(sig, dict):
                continue
            keyid, value = str(sig.get("keyid")), sig.get("sig")
            key = self.keys.get(keyid)
            if key is None:
                reasons.append(f"signed with {keyid}, which is not pinned")
                continue
            try:
                key.verify_key().verify(msg, base64.b64decode(str(value), validate=True))
            except (ValueError, TypeError, nacl.exceptions.BadSignatureError):
                raise VerificationFailed(
                    f"{spec}: the signature under key {key.fingerprint} does not match "
                    f"{integrity[:20]}…: the module or its signature was altered",
                    hint="do not use this module; tell your registry administrators"
                ) from None
            if key.revoked:
                reasons.append(f"signed with key {key.fingerprint}, which is revoked")
                continue
            until = _parse_time(key.valid_until)
            if until is not None and when >= until:
                reasons.append(f"signed with key {key.fingerprint}, which expired "
                               f"{key.valid_until} (published {published})")
                continue
            good = good or keyid
        if good is None:
            raise VerificationFailed(
                f"{spec} has no valid organisation signature: " + "; ".join(reasons),
                hint="if the registry rotated its key, run gati registry login to pin "
                     "the new one (compare its fingerprint with your administrators')")
        return good


_FAR = datetime.max.replace(tzinfo=timezone.utc)
