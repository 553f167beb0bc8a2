"""docs/PROTOCOL.md §11.4, §12.6, §15: the node's peer-protocol and bound constants, pinned."""

from __future__ import annotations

from pathlib import Path

from ledger.store import WRITE_BUFFER_BYTES
from node import wire
from node.client import http11
from node.config import MAX_MIN_BLOCK_INTERVAL_MS, P2P_PORT_OFFSET, NodeSettings
from node.server import evidence, inbox, p2p, peer_auth, replica, sync


def test_peer_protocol_constants() -> None:
    assert wire.MAX_PEER_MESSAGES == 512
    assert wire.MAX_PUBLIC_BATCH == 1_000
    assert wire.PEER_AUTH_WINDOW_MS == 30_000
    assert wire.PEER_KEY_HEADER == "x-provledger-peer"
    assert wire.PEER_TIME_HEADER == "x-provledger-time"
    assert wire.PEER_DIGEST_HEADER == "x-provledger-digest"
    assert wire.PEER_SIGNATURE_HEADER == "x-provledger-signature"
    assert peer_auth.REQUEST_TYPE == "p2p-request"
    assert peer_auth.MAX_REPLAY_ENTRIES == 200_000
    assert P2P_PORT_OFFSET == 100
    assert p2p.MAX_ANSWER_BYTES == 65_536
    assert p2p.CHANNELS == ("consensus", "events", "sync")
    assert p2p.POST_PATHS == {"consensus": "/p2p/consensus", "events": "/p2p/events"}
    assert p2p.FETCH_TIMEOUT_S == 30.0
    assert p2p.CONNECT_TIMEOUT_S == 1.0
    assert http11.MAX_HEAD_BYTES == 65_536


def test_node_bounds() -> None:
    assert inbox.CONTROL_LIMIT == 4_096
    assert inbox.PEER_MESSAGES_LIMIT == 4_096
    assert inbox.PEER_BYTES_LIMIT == 33_554_432
    assert evidence.MAX_RECORDS == 10_000
    assert evidence.MAX_PER_VALIDATOR == 256
    assert evidence.MAX_RECORD_BYTES == 4_096
    assert sync.CATCH_UP_LAG == 2
    settings = NodeSettings(home=Path("/nonexistent"))
    assert settings.max_public_requests == 256
    assert settings.max_peer_requests == 256
    assert settings.header_timeout_s == 10.0
    assert settings.body_timeout_s == 30.0
    assert settings.min_block_interval_ms == 100
    assert MAX_MIN_BLOCK_INTERVAL_MS == 500
    assert WRITE_BUFFER_BYTES == 16 * 1024 * 1024
    assert replica.WRITE_BUFFER_SPREAD_BYTES == 4 * 1024 * 1024


def test_the_peer_request_sign_bytes_vector() -> None:
    """docs/PROTOCOL.md §13: the sign bytes of a peer request."""
    digest = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    expected = (
        "86a4626f6479c420e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        "a5636861696ea464656d6fa66d6574686f64a4504f5354a6746172676574ae2f7032702f636f6e73656e737573"
        "a474696d65cf0000018bcfe56800a474797065ab7032702d72657175657374"
    )
    sign_bytes = peer_auth.request_sign_bytes(
        "demo", "POST", "/p2p/consensus", digest, 1_700_000_000_000
    )
    assert sign_bytes.hex() == expected
