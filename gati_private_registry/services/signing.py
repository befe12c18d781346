"""Organisation signatures: key pairs (Ed25519 for the organisation, ECDSA P-256 for
npm's ``dist.signatures``), signing approved versions, rotation and revocation.

Every signature is over ``name@version:integrity`` (npm's message). Approval signs in
the same transaction that approves; :meth:`KeyService.resign` brings every approved
version up to the active pair after a create or rotate, in batches, and can be stopped
and run again (it signs only what lacks an active signature).
"""
from __future__ import annotations

import base64
import hashlib
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import and_, exists, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..storage.db import aware as _aware
from ..domain import Origin, Principal, VersionState
from ..errors import Conflict, FieldError, Forbidden, NotFound, Unavailable, ValidationFailed
from ..settings import SigningSettings
from ..storage import changes
from ..storage.db import Database
from ..storage.keyfiles import KeyFileError, KeyFiles, PrivatePair
from ..storage.models import Package, SigningKey, Version, VersionSignature
from . import audit, packuments
from .publish import now

log = logging.getLogger(__name__)

ED25519 = "ed25519"
P256 = "ecdsa-p256"


def message(name: str, version: str, integrity: str) -> bytes:
    """What every signature covers (npm's format)."""
    return f"{name}@{version}:{integrity}".encode()


def _spki(public: Any) -> bytes:
    return public.public_bytes(serialization.Encoding.DER,  # type: ignore[no-any-return]
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def keyid_for(spki_der: bytes) -> str:
    """npm's key id: ``SHA256:`` and the unpadded base64 of the DER key's sha256."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(spki_der).digest()).decode().rstrip("=")


def fingerprint(spki_der: bytes) -> str:
    """A key's fingerprint for people: sha256 of the DER key, hex in groups of four."""
    digest = hashlib.sha256(spki_der).hexdigest()
    return ":".join(digest[i:i + 4] for i in range(0, len(digest), 4))


def ed25519_public_from_spki(spki_der: bytes) -> nacl.signing.VerifyKey:
    """Raises ValueError when ``spki_der`` is not an Ed25519 public key."""
    key = serialization.load_der_public_key(spki_der)
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return nacl.signing.VerifyKey(key.public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw))


def verify(algorithm: str, public_key_b64: str, sig_b64: str, name: str, version: str,
           integrity: str) -> bool:
    """Whether ``sig_b64`` is a valid signature of ``name@version:integrity``."""
    try:
        spki = base64.b64decode(public_key_b64, validate=True)
        sig = base64.b64decode(sig_b64, validate=True)
        msg = message(name, version, integrity)
        if algorithm == ED25519:
            ed25519_public_from_spki(spki).verify(msg, sig)
            return True
        if algorithm == P256:
            key = serialization.load_der_public_key(spki)
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            key.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
            return True
    except (ValueError, TypeError, InvalidSignature, nacl.exceptions.BadSignatureError):
        return False
    return False


@dataclass(frozen=True)
class KeyInfo:
    keyid: str
    algorithm: str
    public_key: str
    fingerprint: str
    pair: str
    created_at: datetime
    valid_from: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str
    active: bool


@dataclass(frozen=True)
class _Signer:
    pair: str
    keys: PrivatePair
    ed_keyid: str
    p256_keyid: str

    def sign(self, name: str, version: str, integrity: str) -> list[tuple[str, str]]:
        msg = message(name, version, integrity)
        ed = base64.b64encode(self.keys.ed25519.sign(msg).signature).decode()
        p256 = base64.b64encode(self.keys.p256.sign(msg, ec.ECDSA(hashes.SHA256()))).decode()
        return [(self.ed_keyid, ed), (self.p256_keyid, p256)]


_ACTIVE = select(SigningKey.pair, SigningKey.keyid, SigningKey.algorithm,
                 SigningKey.expires_at).where(SigningKey.active.is_(True),
                                              SigningKey.revoked_at.is_(None))
_INSERT_SIG = insert(VersionSignature)


def _info(k: SigningKey) -> KeyInfo:
    return KeyInfo(keyid=k.keyid, algorithm=k.algorithm, public_key=k.public_key,
                   fingerprint=fingerprint(base64.b64decode(k.public_key)), pair=k.pair,
                   created_at=k.created_at, valid_from=k.valid_from, expires_at=k.expires_at,
                   revoked_at=k.revoked_at, revoked_reason=k.revoked_reason, active=k.active)


def _require_admin(principal: Principal | None) -> None:
    # None is the server's own command line (gati-registry keys ...)
    if principal is not None and not principal.is_admin:
        raise Forbidden("managing signing keys needs an admin token")


class KeyService:
    def __init__(self, settings: SigningSettings, db: Database, files: KeyFiles) -> None:
        self.settings = settings
        self.db = db
        self.files = files
        self._signer: _Signer | None = None
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------

    def all(self) -> list[KeyInfo]:
        with self.db.read() as s:
            rows = s.scalars(select(SigningKey).order_by(SigningKey.created_at,
                                                         SigningKey.algorithm)).all()
        return [_info(k) for k in rows]

    def _signer_for(self, session: Session) -> _Signer | None:
        """The active pair, loaded from disk once per pair (a rotation in another process
        is noticed here, by the key ids in the database)."""
        rows = session.execute(_ACTIVE).all()
        if not rows:
            return None
        if any(r.expires_at is not None and _aware(r.expires_at) <= now() for r in rows):
            # npm refuses a signature made after its key expired, and aborts the whole
            # audit: better unsigned (reported "missing") until an admin rotates
            log.warning("the active signing keys have expired: run gati-registry keys rotate")
            return None
        pair = rows[0].pair
        current = self._signer
        if current is not None and current.pair == pair:
            return current
        with self._lock:
            ids = {r.algorithm: r.keyid for r in rows if r.pair == pair}
            try:
                keys = self.files.read(pair, self.settings.passphrase)
            except KeyFileError as exc:
                # approving without signing would break the promise that every
                # approved version is signed: refuse, and say what is wrong
                log.error("cannot load the signing keys: %s", exc)
                raise Unavailable(f"the registry cannot sign right now: {exc}") from None
            self._signer = _Signer(pair, keys, ids[ED25519], ids[P256])
            return self._signer

    # -- signing inside other services' transactions -------------------------------------

    def sign_version(self, session: Session, version_id: int, name: str, version: str,
                     integrity: str) -> None:
        """Sign an approved version with the active pair, in the caller's transaction
        (nothing happens when no pair exists yet: ``keys create`` signs everything)."""
        signer = self._signer_for(session)
        if signer is None:
            return
        t = now()
        conn = session.connection()
        have = set(conn.execute(select(VersionSignature.keyid).where(
            VersionSignature.version_id == version_id)).scalars())
        for keyid, sig in signer.sign(name, version, integrity):
            if keyid not in have:
                conn.execute(_INSERT_SIG, {"version_id": version_id, "keyid": keyid,
                                           "sig": sig, "created_at": t})

    # -- key management -------------------------------------------------------------------

    def ensure(self) -> KeyInfo | None:
        """On first start: make the first pair when there is none at all (so every
        approved version is signed from day one). Returns the new Ed25519 key or None."""
        with self.db.read() as s:
            if s.scalar(select(exists().where(SigningKey.keyid.is_not(None)))):
                return None
        try:
            return self.create(None)
        except Conflict:  # another process made it first
            return None

    def create(self, principal: Principal | None, origin: Origin | None = None) -> KeyInfo:
        """Make a new active pair. Raises :class:`Conflict` when one is active (rotate
        it instead), :class:`Forbidden` for non-admins."""
        _require_admin(principal)
        return self._new_pair(principal, origin, rotate=False)

    def rotate(self, principal: Principal | None, origin: Origin | None = None) -> KeyInfo:
        """Make a new active pair; the old one stops signing and expires now, so what it
        signed before stays verifiable until it is revoked. Call :meth:`resign` next."""
        _require_admin(principal)
        return self._new_pair(principal, origin, rotate=True)

    def _new_pair(self, principal: Principal | None, origin: Origin | None,
                  rotate: bool) -> KeyInfo:
        pair = str(uuid.uuid4())
        private = PrivatePair(nacl.signing.SigningKey.generate(),
                              ec.generate_private_key(ec.SECP256R1()))
        ed_spki = _spki(ed25519.Ed25519PublicKey.from_public_bytes(
            bytes(private.ed25519.verify_key)))
        p256_spki = _spki(private.p256.public_key())
        # the private halves first: a row must never name a key that has no file
        self.files.write(pair, private, self.settings.passphrase)
        t = now()
        expires = (t + timedelta(days=self.settings.key_validity_days)
                   if self.settings.key_validity_days > 0 else None)
        try:
            with self.db.write() as s:
                active = s.scalars(select(SigningKey).where(SigningKey.active.is_(True))).all()
                if active and not rotate:
                    raise Conflict("a key pair is already active: rotate it instead")
                for old in active:
                    old.active = False
                    if old.expires_at is None or _aware(old.expires_at) > t:
                        old.expires_at = t
                rows = []
                for algorithm, spki in ((ED25519, ed_spki), (P256, p256_spki)):
                    row = SigningKey(keyid=keyid_for(spki), algorithm=algorithm,
                                     public_key=base64.b64encode(spki).decode(), pair=pair,
                                     created_at=t, valid_from=t, expires_at=expires,
                                     revoked_at=None, revoked_reason="", active=True)
                    s.add(row)
                    rows.append(row)
                s.flush()
                action = "key.rotate" if rotate else "key.create"
                audit.record(s, principal or "gati-registry", action, pair, origin,
                             keyids=[r.keyid for r in rows],
                             retired=[k.keyid for k in active])
                changes.append(s, "keys.change", action=action, pair=pair)
                return _info(rows[0])
        except BaseException:
            self.files.delete(pair)
            raise

    def revoke(self, principal: Principal | None, keyid: str, reason: str,
               origin: Origin | None = None) -> list[str]:
        """Revoke the pair ``keyid`` belongs to: its signatures leave every packument and
        clients refuse them. The active pair cannot be revoked (rotate first).
        Returns the revoked key ids. Raises :class:`ValidationFailed`, :class:`NotFound`,
        :class:`Conflict`, :class:`Forbidden`."""
        _require_admin(principal)
        reason = (reason or "").strip()
        if not reason:
            raise ValidationFailed("invalid revocation",
                                   details=[FieldError("reason", "say why the key is revoked")])
        with self.db.write() as s:
            key = s.get(SigningKey, keyid)
            if key is None:
                raise NotFound(f"no key {keyid}")
            if key.active:
                raise Conflict(f"{keyid} is the active key: rotate first, then revoke it")
            pair_keys = s.scalars(select(SigningKey).where(SigningKey.pair == key.pair)).all()
            if all(k.revoked_at is not None for k in pair_keys):
                raise Conflict(f"{keyid} is revoked already")
            t = now()
            for k in pair_keys:
                k.revoked_at, k.revoked_reason = t, reason
            s.flush()
            ids = [k.keyid for k in pair_keys]
            packages = s.execute(
                select(Package.name).distinct()
                .join(Version, Version.package_id == Package.id)
                .join(VersionSignature, VersionSignature.version_id == Version.id)
                .where(VersionSignature.keyid.in_(ids))).scalars().all()
            for name in packages:
                row = packuments.lock_package_row(s, name)
                if row is not None:
                    packuments.render(s, packuments.touch(s, row))
            audit.record(s, principal or "gati-registry", "key.revoke", key.pair, origin,
                         keyids=ids, reason=reason)
            changes.append(s, "keys.change", action="key.revoke", pair=key.pair)
        return ids

    def pending_count(self) -> tuple[int, int]:
        """(approved versions without an active signature, approved versions)."""
        with self.db.read() as s:
            active = [r.keyid for r in s.execute(_ACTIVE)]
            total = s.scalar(select(func.count()).select_from(Version).where(_approved())) or 0
            if not active:
                return total, total
            missing = s.scalar(select(func.count()).select_from(Version).where(
                _approved(), ~exists().where(VersionSignature.version_id == Version.id,
                                             VersionSignature.keyid.in_(active)))) or 0
        return missing, total

    def resign(self, batch: int = 200,
               progress: Callable[[int, int], None] | None = None) -> int:
        """Sign every approved version that lacks a signature by the active pair, a
        batch per transaction (each re-renders its packuments). Stoppable and resumable.
        Returns how many versions were signed."""
        done = 0
        clashes = 0
        _, total = self.pending_count()
        while True:
            try:
                with self.db.write() as s:
                    signer = self._signer_for(s)
                    if signer is None:
                        return done
                    rows = s.execute(
                        select(Version.id, Version.version, Version.integrity, Package.name)
                        .join(Package, Package.id == Version.package_id)
                        .where(_approved(), ~exists().where(
                            VersionSignature.version_id == Version.id,
                            VersionSignature.keyid.in_([signer.ed_keyid, signer.p256_keyid])))
                        .order_by(Version.id).limit(batch)).all()
                    if not rows:
                        return done
                    for r in rows:
                        self.sign_version(s, r.id, r.name, r.version, r.integrity)
                    for name in sorted({r.name for r in rows}):
                        pkg = packuments.lock_package_row(s, name)
                        if pkg is not None:
                            packuments.render(s, pkg)
            except IntegrityError:
                # another process (the CLI, or the server's re-signing follower) signed
                # some of this batch at the same moment (PostgreSQL does not serialise
                # the two): the batch rolled back, and the next one skips what it signed
                clashes += 1
                if clashes > 10:
                    raise
                continue
            clashes = 0
            done += len(rows)
            if progress is not None:
                progress(done, total)


def _approved() -> Any:
    return and_(Version.state == VersionState.APPROVED.value, Version.unpublished_at.is_(None))


