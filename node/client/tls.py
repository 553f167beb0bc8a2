"""Trust for clients of nodes over HTTPS (docs/PROTOCOL.md §18).

- `client_context(ca)`: what a client of the public API (the CLI, ops, the OpenLineage
  bridge) verifies a node's certificate against: the CA bundle `ca`, else the one a caller
  put in force with `trusting(ca)` (the CLI's `--ca`), else the file named by
  `SSL_CERT_FILE`, else the system's trust store; the host name is always checked.
- `PeerTrust`: how a node verifies its `https://` peers. The certificate of a genesis
  validator's peer URL MUST carry that validator's node key as its public key (the key is
  pinned by genesis; checked right after the handshake, before any request is written), and
  chains to the node's `tls_ca` bundle when one is configured. A peer URL that genesis does
  not name is verified against `tls_ca` (or the default trust store) with its host name.

Peer connections speak TLS 1.3 only (the node key also signs consensus messages; TLS 1.3's
signed content starts with 64 spaces, which no canonical message does).
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.blocks import Validator
from node.client.http11 import HttpError

CERT_ENV = "SSL_CERT_FILE"
PEER_TLS_VERSION = ssl.TLSVersion.TLSv1_3
_TRUSTED_CA: ContextVar[Path | None] = ContextVar("provledger_trusted_ca", default=None)


class CaBundleError(ValueError):
    """A CA bundle that cannot be read or holds no certificate."""


def _load_ca(context: ssl.SSLContext, ca: str | Path, origin: str) -> None:
    try:
        context.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise CaBundleError(f"cannot use the CA bundle {ca} ({origin}): {reason}") from exc


@contextlib.contextmanager
def trusting(ca: Path | None) -> Iterator[None]:
    """Inside, clients made without their own `ca` trust `ca` (None: no change)."""
    token = _TRUSTED_CA.set(ca if ca is not None else _TRUSTED_CA.get())
    try:
        yield
    finally:
        _TRUSTED_CA.reset(token)


def client_context(ca: str | Path | None = None) -> ssl.SSLContext:
    """The context a client verifies a node with: `ca`, else the one `trusting` put in
    force, else `$SSL_CERT_FILE`, else the system's trust store. Raises CaBundleError for a
    file that is not a PEM CA bundle."""
    origin = "--ca"
    if ca is None:
        ca = _TRUSTED_CA.get()
    if ca is None and os.environ.get(CERT_ENV):
        ca, origin = os.environ[CERT_ENV], CERT_ENV
    if ca is None:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # host name and chain checked
    _load_ca(context, ca, origin)
    return context


def certificate_key(der: bytes) -> bytes | None:
    """The public key of a DER certificate as a compressed P-256 point (33 bytes), or None
    if it is not a P-256 key."""
    try:
        public = x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return None
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        return None
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )


def pin_check(pin: bytes, where: str) -> Callable[[ssl.SSLObject | None], None]:
    """The check `http11.Connection.open` runs on a TLS session before writing anything: its
    certificate must carry `pin`, the node key genesis names for the peer `where`."""

    def check(ssl_object: ssl.SSLObject | None) -> None:
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        key = certificate_key(der) if der else None
        if key != pin:
            shown = key.hex() if key is not None else "no P-256 key"
            raise HttpError(
                f"the TLS certificate of {where} carries {shown}, "
                f"not the node key {pin.hex()} that genesis names for it"
            )

    return check


def peer_context(ca: Path | None, pinned: bool) -> ssl.SSLContext:
    """TLS 1.3 client context for one peer: chained to `ca` with the host name checked, or,
    for a pinned peer without `ca`, no chain at all (the key pin is the authentication)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = PEER_TLS_VERSION
    if ca is not None:
        _load_ca(context, ca, "tls_ca")
    elif pinned:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_default_certs()
        if os.environ.get(CERT_ENV):
            _load_ca(context, os.environ[CERT_ENV], CERT_ENV)
    return context


@dataclass(frozen=True)
class PeerTrust:
    """How a node verifies its peers: the CA bundle `ca` (or none), and the node key each
    genesis validator's peer URL must show."""

    ca: Path | None = None
    pins: Mapping[str, bytes] = field(default_factory=dict)

    @classmethod
    def from_genesis(cls, ca: Path | None, validators: Iterable[Validator]) -> PeerTrust:
        return cls(ca).with_validators(validators)

    def with_validators(self, validators: Iterable[Validator]) -> PeerTrust:
        """This trust, also pinning `validators`' URLs to their keys (a validator set that
        governance changed: the newest key of a URL wins)."""
        pins = {**self.pins, **{v.url.rstrip("/"): v.public_key for v in validators if v.url}}
        return PeerTrust(self.ca, pins)

    def security(self, url: str) -> tuple[ssl.SSLContext, bytes | None] | None:
        """The TLS context for the peer at `url` and the node key pinned to it (None: a peer
        genesis does not name); None for plain `http://`."""
        url = url.rstrip("/")
        if not url.lower().startswith("https://"):
            return None
        pin = self.pins.get(url)
        return peer_context(self.ca, pinned=pin is not None), pin


__all__ = [
    "CERT_ENV",
    "CaBundleError",
    "PeerTrust",
    "certificate_key",
    "client_context",
    "peer_context",
    "pin_check",
    "trusting",
]
