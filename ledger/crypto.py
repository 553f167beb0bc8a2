"""ECDSA P-256 keys and signatures in the wire forms of PROTOCOL §1.

Public keys are 33-byte compressed SEC1 points; signatures are 64 bytes r||s with low-S;
private keys are PKCS#8 PEM files written with mode 0600. OpenSSL (via `cryptography`)
does the arithmetic.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ledger.errors import BadSignature, Malformed

CURVE_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
HALF_ORDER = CURVE_ORDER // 2
PUBLIC_KEY_SIZE = 33
SIGNATURE_SIZE = 64
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def sha256(data: bytes) -> bytes:
    """SHA-256 digest, the ledger's one hash function."""
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class PrivateKey:
    """A P-256 signing key with its compressed public key."""

    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise Malformed(f"not a PKCS#8 PEM private key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise Malformed("the private key is not an ECDSA P-256 key")
        return cls(key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PrivateKey:
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise Malformed(f"cannot read key file {path}: {exc.strerror}") from exc
        return cls.from_pem(pem)

    def to_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key as PKCS#8 PEM, creating the file with mode 0600 (never wider)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.to_pem())
            handle.flush()
            os.fsync(handle.fileno())

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )

    def sign(self, message: bytes) -> bytes:
        """Sign SHA-256(message); returns 64-byte r||s normalised to low-S."""
        r, s = decode_dss_signature(self.key.sign(message, _ECDSA_SHA256))
        if s > HALF_ORDER:
            s = CURVE_ORDER - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def load_public_key(public_key: bytes) -> ec.EllipticCurvePublicKey:
    """Parse a 33-byte compressed SEC1 point, raising Malformed if it is not on P-256."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise Malformed("a public key is a 33-byte compressed P-256 point")
    if public_key[0] not in (2, 3):
        raise Malformed("a public key must be in compressed form")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
    except ValueError as exc:
        raise Malformed("not a point on P-256") from exc


def check_public_key(public_key: bytes) -> bytes:
    """Return `public_key` if it is a valid compressed P-256 point, else raise Malformed."""
    _cached_public_key(public_key)
    return public_key


_key_cache: dict[bytes, ec.EllipticCurvePublicKey] = {}


def _cached_public_key(public_key: bytes) -> ec.EllipticCurvePublicKey:
    """Parsed keys by their bytes: decompressing a point costs as much as a quarter verify."""
    if not isinstance(public_key, bytes):
        raise Malformed("a public key is 33 bytes")
    key = _key_cache.get(public_key)
    if key is None:
        key = load_public_key(public_key)
        if len(_key_cache) > 100_000:
            _key_cache.clear()
        _key_cache[public_key] = key
    return key


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Check a 64-byte low-S r||s signature over SHA-256(message); raise BadSignature if not."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise BadSignature("a signature is 64 bytes r||s")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < CURVE_ORDER and 0 < s <= HALF_ORDER):
        raise BadSignature("signature out of range or not low-S")
    if not isinstance(public_key, bytes):
        raise BadSignature("a public key is 33 bytes")
    try:
        key = _cached_public_key(public_key)
    except Malformed as exc:
        raise BadSignature(f"bad public key: {exc}") from exc
    try:
        key.verify(encode_dss_signature(r, s), message, _ECDSA_SHA256)
    except InvalidSignature as exc:
        raise BadSignature("signature does not verify") from exc
