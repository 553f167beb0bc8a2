"""Peer authentication (docs/PROTOCOL.md §15): every peer request is signed by its sender.

A sender signs, with its node key, the canonical map

    {"body": SHA-256(body), "chain": chain id, "method": "POST", "target": "/p2p/...",
     "time": ms, "type": "p2p-request"}

and sends the key, time, body digest and signature as headers. The receiver accepts a request
only from a known key (the validators of every set the chain has had, keys an open
add-validator proposal names, and the full-node keys its operator listed), within
`PEER_AUTH_WINDOW_MS` of its own clock, not seen before, with a signature that verifies,
and whose body hashes to the signed digest. Every check before the signature is a
few dictionary and string operations, so a stranger costs O(1) work and reads no body.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ledger import codec, crypto
from ledger.errors import BadSignature, Malformed
from node.server.errors import PeerUnauthorized
from node.wire import (
    PEER_AUTH_WINDOW_MS,
    PEER_DIGEST_HEADER,
    PEER_KEY_HEADER,
    PEER_SIGNATURE_HEADER,
    PEER_TIME_HEADER,
)

REQUEST_TYPE = "p2p-request"
# Signatures of accepted requests remembered against replays (at most one window's worth).
MAX_REPLAY_ENTRIES = 200_000
_HEX = frozenset("0123456789abcdef")


def request_sign_bytes(chain_id: str, method: str, target: str, digest: bytes, time: int) -> bytes:
    """The canonical bytes a peer signs for one request."""
    return codec.encode(
        {
            "body": digest,
            "chain": chain_id,
            "method": method,
            "target": target,
            "time": time,
            "type": REQUEST_TYPE,
        }
    )


def sign_request(
    key: crypto.PrivateKey, chain_id: str, method: str, target: str, body: bytes, time: int
) -> dict[str, str]:
    """The authentication headers of one request."""
    digest = crypto.sha256(body)
    signature = key.sign(request_sign_bytes(chain_id, method, target, digest, time))
    return {
        PEER_KEY_HEADER: key.public_key.hex(),
        PEER_TIME_HEADER: str(time),
        PEER_DIGEST_HEADER: digest.hex(),
        PEER_SIGNATURE_HEADER: signature.hex(),
    }


def _hex_of(value: str | None, size: int) -> bytes | None:
    if value is None or len(value) != 2 * size or not _HEX.issuperset(value):
        return None
    return bytes.fromhex(value)


@dataclass(frozen=True)
class Credentials:
    """An authenticated request: who sent it, and the body digest its signature covers."""

    peer: bytes
    digest: bytes


class PeerAuthenticator:
    """Checks the authentication headers of peer requests for one node."""

    def __init__(
        self,
        chain_id: str,
        allowed: Iterable[bytes],
        clock: Callable[[], int],
        window_ms: int = PEER_AUTH_WINDOW_MS,
        max_replay_entries: int = MAX_REPLAY_ENTRIES,
    ) -> None:
        self.chain_id = chain_id
        self.allowed = frozenset(key.hex() for key in allowed)
        self.clock = clock
        self.window_ms = window_ms
        self.max_replay_entries = max_replay_entries
        self._seen: OrderedDict[str, int] = OrderedDict()
        self.rejected = 0

    def allow(self, keys: Iterable[bytes]) -> None:
        """Replace the keys accepted (the node's membership changed with governance)."""
        self.allowed = frozenset(key.hex() for key in keys)

    def authenticate(self, method: str, target: str, headers: Mapping[str, str]) -> Credentials:
        """Who sent this request, or PeerUnauthorized; cheap checks before the signature."""
        try:
            return self._authenticate(method, target, headers)
        except PeerUnauthorized:
            self.rejected += 1
            raise

    def _authenticate(self, method: str, target: str, headers: Mapping[str, str]) -> Credentials:
        key_hex = headers.get(PEER_KEY_HEADER)
        if key_hex is None or key_hex not in self.allowed:
            raise PeerUnauthorized("not a configured peer")
        time_text = headers.get(PEER_TIME_HEADER, "")
        if not time_text.isdigit() or len(time_text) > 19:
            raise PeerUnauthorized("missing or bad request time")
        time = int(time_text)
        now = self.clock()
        if abs(time - now) > self.window_ms:
            raise PeerUnauthorized(f"request time is over {self.window_ms} ms from this clock")
        digest = _hex_of(headers.get(PEER_DIGEST_HEADER), 32)
        signature_hex = headers.get(PEER_SIGNATURE_HEADER)
        signature = _hex_of(signature_hex, crypto.SIGNATURE_SIZE)
        if digest is None or signature is None or signature_hex is None:
            raise PeerUnauthorized("missing or bad digest or signature")
        if signature_hex in self._seen:
            raise PeerUnauthorized("a replayed request")
        peer = bytes.fromhex(key_hex)
        message = request_sign_bytes(self.chain_id, method, target, digest, time)
        try:
            crypto.verify(peer, message, signature)
        except (BadSignature, Malformed) as exc:
            raise PeerUnauthorized("the request signature does not verify") from exc
        self._remember(signature_hex, now)
        return Credentials(peer, digest)

    def _remember(self, signature_hex: str, now: int) -> None:
        """Keep accepted signatures for one window (bounded): a replay is refused."""
        seen = self._seen
        seen[signature_hex] = now
        horizon = now - 2 * self.window_ms
        while seen and (len(seen) > self.max_replay_entries or next(iter(seen.values())) < horizon):
            seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)


__all__ = [
    "Credentials",
    "PeerAuthenticator",
    "PeerUnauthorized",
    "request_sign_bytes",
    "sign_request",
]
