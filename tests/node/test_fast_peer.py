"""The peer protocol's fast path (`node.server.http.fast_peer`, issue 16): it serves the
well-formed `POST /p2p/consensus` and `/p2p/events` itself, answers what the FastAPI routes
answered, and hands every other request to them, so their checks and problem documents stay
the routes'."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from ledger import codec
from ledger.crypto import PrivateKey
from node.server.http import fast_peer
from node.wire import MAX_PEER_MESSAGES, MAX_PUBLIC_BATCH
from tests.node.conftest import RunningNode, assert_problem, running_node

CONSENSUS, EVENTS = fast_peer.CONSENSUS, fast_peer.EVENTS


@pytest.fixture
def quick_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[bytes] | None]:
    """What the fast path's quick check returned, call by call."""
    calls: list[list[bytes] | None] = []
    real = fast_peer.quick_items

    def spy(body: bytes, name: str, limit: int) -> list[bytes] | None:
        calls.append(real(body, name, limit))
        return calls[-1]

    monkeypatch.setattr(fast_peer, "quick_items", spy)
    return calls


def test_the_fast_path_serves_each_route_with_its_own_list_and_bound() -> None:
    assert fast_peer.LISTS == {
        "/p2p/consensus": ("messages", MAX_PEER_MESSAGES),
        "/p2p/events": ("events", MAX_PUBLIC_BATCH),
    }


def test_quick_items_takes_only_the_plain_form() -> None:
    plain = codec.encode({"from": "n1", "events": [b"a", b"bc"]})
    assert fast_peer.quick_items(plain, "events", 2) == [b"a", b"bc"]
    assert fast_peer.quick_items(codec.encode({"events": []}), "events", 2) == []
    for body in (
        codec.encode({"events": [b"a", b"b", b"c"]}),  # more than the bound
        codec.encode({"messages": [b"a"]}),  # another route's list
        codec.encode({"events": [b"a", 1]}),
        codec.encode({"events": b"a"}),
        codec.encode([b"a"]),
        msgpack.packb({"from": "n1", "events": [b"a"]}),  # keys out of canonical order
        b"\xc1",
        b"",
    ):
        assert fast_peer.quick_items(body, "events", 2) is None, body


def test_gossiped_events_are_served_by_the_fast_path(
    node: RunningNode, quick_calls: list[list[bytes] | None]
) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "gossiped")
    response = node.peer_post(EVENTS, codec.encode({"events": [event.envelope], "from": "t"}))
    assert response.status_code == 204, response.text
    assert response.content == b""
    admitted = event.event_id in node.service.mempool  # or already in a block since
    assert admitted or node.service.store.locate(event.event_id) is not None
    assert quick_calls == [[event.envelope]]


def test_consensus_messages_are_served_by_the_fast_path(
    node: RunningNode, quick_calls: list[list[bytes] | None]
) -> None:
    rejected = node.service.stats.peer_messages_rejected
    response = node.peer_post(CONSENSUS, codec.encode({"from": "t", "messages": [b"junk"]}))
    assert response.status_code == 204, response.text
    assert quick_calls == [[b"junk"]]
    assert node.service.stats.peer_messages_rejected == rejected + 1, "the node saw it"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (EVENTS, codec.encode({"events": [b"x"] * (MAX_PUBLIC_BATCH + 1)}), 413),
        (CONSENSUS, codec.encode({"messages": [b"x"] * (MAX_PEER_MESSAGES + 1)}), 413),
        (EVENTS, codec.encode({"events": [b"x", 2]}), 400),
        (CONSENSUS, codec.encode(["not", "a", "map"]), 400),
        (CONSENSUS, msgpack.packb({"messages": [], "from": "t"}), 400),
        (EVENTS, b"\xc1", 400),
    ],
)
def test_bodies_the_quick_check_refuses_get_the_routes_own_answer(
    node: RunningNode,
    quick_calls: list[list[bytes] | None],
    path: str,
    body: bytes,
    status: int,
) -> None:
    doc = assert_problem(node.peer_post(path, body), status)
    assert doc["instance"] == path
    assert quick_calls == [None]


def test_a_refusal_on_the_fast_path_is_the_routes_problem_document(
    tmp_path: Path, quick_calls: list[list[bytes] | None]
) -> None:
    with running_node(tmp_path) as node:
        node.service.sync.best_peer_height = node.service.store.height + 10
        event = node.make.admit(node.registrar, PrivateKey.generate().public_key)
        doc = assert_problem(
            node.peer_post(EVENTS, codec.encode({"events": [event.envelope]})), 503
        )
        assert doc["type"].endswith("/not-caught-up") and doc["instance"] == EVENTS
        assert quick_calls == [[event.envelope]], (
            "the fast path took it, the app's handler answered"
        )


def test_requests_on_the_fast_path_are_counted_under_the_routes_label(
    node: RunningNode,
) -> None:
    before = node.requests_counted(CONSENSUS, "POST")
    body = codec.encode({"from": "t", "messages": []})
    assert node.peer_post(CONSENSUS, body).status_code == 204
    assert node.requests_counted(CONSENSUS, "POST") == before + 1
