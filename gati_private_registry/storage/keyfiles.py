"""Private signing keys on disk: ``<data>/keys/<pair>.ed25519`` (the Ed25519 seed, in a
small JSON envelope) and ``<pair>.p256.pem`` (PKCS#8). Both are written atomically with
mode 0600 in a 0700 directory, and encrypted when a passphrase is configured: the seed
with XSalsa20-Poly1305 under an Argon2id-derived key (PyNaCl), the P-256 key with the
best PKCS#8 encryption ``cryptography`` offers."""
from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ED25519_FORMAT = "gati-ed25519-seed-v1"


class KeyFileError(Exception):
    """A key file is missing, damaged, or the passphrase does not open it."""


@dataclass(frozen=True)
class PrivatePair:
    ed25519: nacl.signing.SigningKey
    p256: ec.EllipticCurvePrivateKey


class KeyFiles:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, pair: str, kind: str) -> Path:
        if not pair.replace("-", "").isalnum():  # pair ids are UUIDs: never a path
            raise KeyFileError(f"bad key pair id {pair!r}")
        return self.dir / f"{pair}.{kind}"

    def _write(self, path: Path, data: bytes) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def write(self, pair: str, keys: PrivatePair, passphrase: str) -> None:
        """Store both private keys of ``pair``; on any error neither file is left."""
        seed = bytes(keys.ed25519)
        envelope: dict[str, object] = {"format": ED25519_FORMAT, "encrypted": bool(passphrase)}
        if passphrase:
            salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
            ops, mem = nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE
            box = nacl.secret.SecretBox(nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt, opslimit=ops, memlimit=mem))
            envelope.update(salt=base64.b64encode(salt).decode(), opslimit=ops, memlimit=mem,
                            box=base64.b64encode(bytes(box.encrypt(seed))).decode())
        else:
            envelope["seed"] = base64.b64encode(seed).decode()
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
            else serialization.NoEncryption())
        pem = keys.p256.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8, encryption)
        ed_path, p256_path = self._path(pair, "ed25519"), self._path(pair, "p256.pem")
        try:
            self._write(ed_path, json.dumps(envelope).encode())
            self._write(p256_path, pem)
        except BaseException:
            self.delete(pair)
            raise

    def read(self, pair: str, passphrase: str) -> PrivatePair:
        """Raises :class:`KeyFileError` when a file is missing, damaged or locked with
        another passphrase."""
        try:
            envelope = json.loads(self._path(pair, "ed25519").read_bytes())
            pem = self._path(pair, "p256.pem").read_bytes()
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read the private keys of pair {pair}: {exc}") from None
        try:
            if envelope.get("format") != ED25519_FORMAT:
                raise KeyFileError(f"unknown key file format in pair {pair}")
            if envelope.get("encrypted"):
                if not passphrase:
                    raise KeyFileError("the signing keys are encrypted: set signing.passphrase")
                box = nacl.secret.SecretBox(nacl.pwhash.argon2id.kdf(
                    nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(),
                    base64.b64decode(envelope["salt"]), opslimit=int(envelope["opslimit"]),
                    memlimit=int(envelope["memlimit"])))
                seed = box.decrypt(base64.b64decode(envelope["box"]))
            else:
                seed = base64.b64decode(envelope["seed"])
            p256 = serialization.load_pem_private_key(pem, passphrase.encode() or None)
        except (nacl.exceptions.CryptoError, KeyError, ValueError, TypeError) as exc:
            raise KeyFileError(f"cannot open the private keys of pair {pair} "
                               f"(wrong passphrase?): {exc.__class__.__name__}") from None
        if not isinstance(p256, ec.EllipticCurvePrivateKey):
            raise KeyFileError(f"pair {pair}: the npm key is not an EC key")
        return PrivatePair(nacl.signing.SigningKey(seed), p256)

    def delete(self, pair: str) -> None:
        for kind in ("ed25519", "p256.pem"):
            self._path(pair, kind).unlink(missing_ok=True)
