"""Peer authentication on the peer listener (docs/PROTOCOL.md §15), against a real node.

Only configured peers reach /p2p/: a stranger gets 401 after a few header lookups — no
signature check, no body read — and so does a configured key with a bad or replayed
signature, a stale time, or a body other than the one it signed. The public listener serves
no /p2p/ route, and the peer listener no public route. Peer batches are bounded like public
ones, and a node that is catching up refuses gossiped events as it refuses clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import codec, crypto
from ledger.crypto import PrivateKey
from ledger.errors import Malformed
from node.clock import now_ms
from node.config import NodeSettings
from node.ops.homes import init_cluster
from node.server import peer_auth
from node.server.peer_auth import PeerAuthenticator, sign_request
from node.server.service import peer_keys
from node.wire import (
    MAX_PEER_MESSAGES,
    MAX_PUBLIC_BATCH,
    PEER_AUTH_WINDOW_MS,
    PEER_KEY_HEADER,
    PEER_SIGNATURE_HEADER,
    PEER_TIME_HEADER,
)
from tests.node.conftest import RunningNode, assert_problem, running_node

CONSENSUS = "/p2p/consensus"
EVENTS = "/p2p/events"
EMPTY_CONSENSUS = codec.encode({"from": "t", "messages": []})


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with running_node(tmp_path_factory.mktemp("peer-auth")) as running:
        yield running


@pytest.fixture
def verifies(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Counts the signature checks the authenticator makes."""
    calls: list[bytes] = []
    real = crypto.verify

    def counting(public_key: bytes, message: bytes, signature: bytes) -> None:
        calls.append(public_key)
        real(public_key, message, signature)

    monkeypatch.setattr(peer_auth.crypto, "verify", counting)
    return calls


def test_a_configured_peer_is_served(node: RunningNode) -> None:
    assert node.peer_post(CONSENSUS, EMPTY_CONSENSUS).status_code == 204
    status = codec.decode(node.peer_get("/p2p/status").content)
    assert status["height"] >= 1 and isinstance(status["header"], bytes)


@pytest.mark.parametrize("path", [CONSENSUS, EVENTS, "/p2p/status", "/p2p/blocks/1"])
def test_a_stranger_gets_401_without_a_signature_check(
    node: RunningNode, verifies: list[bytes], path: str
) -> None:
    url = node.peer_url(path)
    anonymous = node.client.post(url, content=EMPTY_CONSENSUS)
    assert_problem(anonymous, 401)
    stranger = PrivateKey.generate()
    headers = node.peer_headers("POST", path, EMPTY_CONSENSUS, key=stranger)
    assert_problem(node.client.post(url, content=EMPTY_CONSENSUS, headers=headers), 401)
    assert verifies == []


def test_a_stranger_is_refused_before_its_body_is_read(node: RunningNode) -> None:
    """A huge declared body from a stranger is 401, not 413: nothing was read."""
    response = node.client.post(
        node.peer_url(CONSENSUS),
        content=b"\x00" * (1 << 20),
        headers={"content-length": str(1 << 30)},
    )
    assert_problem(response, 401)


def test_a_known_key_with_a_bad_signature_is_401(node: RunningNode) -> None:
    headers = node.peer_headers("POST", CONSENSUS, EMPTY_CONSENSUS)
    signature = bytes.fromhex(headers[PEER_SIGNATURE_HEADER])
    headers[PEER_SIGNATURE_HEADER] = (signature[:-1] + bytes([signature[-1] ^ 1])).hex()
    url = node.peer_url(CONSENSUS)
    assert_problem(node.client.post(url, content=EMPTY_CONSENSUS, headers=headers), 401)


def test_a_replayed_request_is_401(node: RunningNode) -> None:
    headers = node.peer_headers("POST", CONSENSUS, EMPTY_CONSENSUS)
    url = node.peer_url(CONSENSUS)
    assert node.client.post(url, content=EMPTY_CONSENSUS, headers=headers).status_code == 204
    assert_problem(node.client.post(url, content=EMPTY_CONSENSUS, headers=headers), 401)


@pytest.mark.parametrize("skew", [PEER_AUTH_WINDOW_MS + 1_000, -(PEER_AUTH_WINDOW_MS + 1_000)])
def test_a_request_outside_the_time_window_is_401(node: RunningNode, skew: int) -> None:
    headers = sign_request(
        node.peer_key, node.genesis.chain_id, "POST", CONSENSUS, EMPTY_CONSENSUS, now_ms() + skew
    )
    url = node.peer_url(CONSENSUS)
    assert_problem(node.client.post(url, content=EMPTY_CONSENSUS, headers=headers), 401)


def test_a_body_other_than_the_signed_one_is_401(node: RunningNode) -> None:
    headers = node.peer_headers("POST", CONSENSUS, EMPTY_CONSENSUS)
    other = codec.encode({"from": "u", "messages": []})
    url = node.peer_url(CONSENSUS)
    assert_problem(node.client.post(url, content=other, headers=headers), 401)


def test_a_signature_for_another_route_is_401(node: RunningNode) -> None:
    headers = node.peer_headers("POST", EVENTS, EMPTY_CONSENSUS)
    url = node.peer_url(CONSENSUS)
    assert_problem(node.client.post(url, content=EMPTY_CONSENSUS, headers=headers), 401)


def test_each_listener_serves_only_its_own_routes(node: RunningNode) -> None:
    assert_problem(node.client.post(CONSENSUS, content=EMPTY_CONSENSUS), 404)
    assert_problem(node.client.get("/p2p/status"), 404)
    assert_problem(node.client.get(node.peer_url("/v1/status")), 404)


def test_peer_batches_are_bounded(node: RunningNode) -> None:
    too_many = codec.encode({"from": "t", "messages": [b"x"] * (MAX_PEER_MESSAGES + 1)})
    assert_problem(node.peer_post(CONSENSUS, too_many), 413)
    events = codec.encode({"from": "t", "events": [b"x"] * (MAX_PUBLIC_BATCH + 1)})
    assert_problem(node.peer_post(EVENTS, events), 413)
    assert node.peer_post(EVENTS, codec.encode({"events": [b"x"] * 3})).status_code == 204


def test_gossiped_events_are_refused_while_catching_up(tmp_path: Path) -> None:
    with running_node(tmp_path) as node:
        node.service.sync.best_peer_height = node.service.store.height + 10
        event = node.make.admit(node.registrar, PrivateKey.generate().public_key)
        body = codec.encode({"events": [event.envelope]})
        assert_problem(node.peer_post(EVENTS, body), 503)
        assert len(node.service.mempool) == 0


def test_the_replay_memory_is_bounded() -> None:
    key = PrivateKey.generate()
    clock = [1_000_000]
    auth = PeerAuthenticator("c", [key.public_key], lambda: clock[0], max_replay_entries=8)
    for i in range(50):
        headers = sign_request(key, "c", "POST", "/p2p/x", b"%d" % i, clock[0])
        auth.authenticate("POST", "/p2p/x", headers)
    assert len(auth) == 8
    # and entries older than the window go first
    clock[0] += 3 * PEER_AUTH_WINDOW_MS
    headers = sign_request(key, "c", "POST", "/p2p/x", b"late", clock[0])
    auth.authenticate("POST", "/p2p/x", headers)
    assert len(auth) == 1


def test_headers_name_the_sender(node: RunningNode) -> None:
    headers = node.peer_headers("GET", "/p2p/status", b"")
    assert headers[PEER_KEY_HEADER] == node.peer_key.public_key.hex()
    assert headers[PEER_TIME_HEADER].isdigit()


def test_refused_peer_requests_are_counted_in_metrics(node: RunningNode) -> None:
    node.client.post(node.peer_url(CONSENSUS), content=EMPTY_CONSENSUS)
    metrics = node.client.get("/metrics").text
    (line,) = [x for x in metrics.splitlines() if x.startswith("provledger_peer_requests_refused ")]
    assert float(line.split()[1]) >= 1
    assert "provledger_consensus_inbox_dropped " in metrics


def test_the_peer_keys_setting_admits_valid_keys_and_refuses_the_rest(tmp_path: Path) -> None:
    """`peer_keys` (config.json, or PROVLEDGER_PEER_KEYS in a container) adds full nodes to
    the genesis validators; an entry that is no compressed P-256 key stops the node."""
    genesis = init_cluster(tmp_path / "c", 1)
    full = PrivateKey.generate().public_key
    settings = NodeSettings(home=tmp_path, peer_keys=(full.hex(),))
    admitted = peer_keys(settings, genesis)
    assert admitted == {full, *(v.public_key for v in genesis.validators.validators)}
    for bad in ("02abc", "zz" * 33, "04" + "11" * 32):
        with pytest.raises(Malformed, match=r"peer_keys: .* is not a public key"):
            peer_keys(NodeSettings(home=tmp_path, peer_keys=(bad,)), genesis)
