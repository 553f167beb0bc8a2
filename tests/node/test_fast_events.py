"""The hot route's fast path (`node.server.http.fast_events`, issue 16): it serves the
common `POST /v1/events` itself, answers what the FastAPI route answered, and hands every
other request to that route, so its strict checks and problem documents stay the route's."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from ledger.crypto import PrivateKey
from ledger.errors import Malformed
from node.server.http import fast_events
from node.server.http.encoding import parse_submission
from node.wire import JSON, MSGPACK
from tests.node.conftest import RunningNode, assert_problem


@pytest.fixture
def quick_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes | None]:
    """What the fast path's quick check returned, call by call."""
    calls: list[bytes | None] = []
    real = fast_events.quick_envelope

    def spy(body: bytes) -> bytes | None:
        calls.append(real(body))
        return calls[-1]

    monkeypatch.setattr(fast_events, "quick_envelope", spy)
    return calls


def test_quick_envelope_takes_only_the_plain_form() -> None:
    assert fast_events.quick_envelope(b'{"envelope":"0aFF"}') == b"\x0a\xff"
    assert fast_events.quick_envelope(b'{ "envelope" : "0a0b" }') == b"\x0a\x0b"
    for body in (
        b'{"envelope":"0a 0b "}',  # bytes.fromhex would skip the spaces
        b'{"envelope":"0a0"}',
        b'{"envelope":""}',
        b'{"envelope":"zz"}',
        b'{"envelope":12}',
        b'{"envelope":"0a","extra":1}',
        b'["0a"]',
        b"{not json",
        b'{"envelope":"' + b"00" * (fast_events.MAX_ENVELOPE_HEX // 2 + 1) + b'"}',
    ):
        assert fast_events.quick_envelope(body) is None, body


def test_a_plain_submission_is_served_by_the_fast_path(
    node: RunningNode, quick_calls: list[bytes | None]
) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "fast")
    response = node.submit(event)
    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == JSON
    assert response.json() == {"event_id": event.event_id.hex(), "status": "pending"}
    assert quick_calls == [event.envelope]
    admitted = event.event_id in node.service.mempool
    assert admitted or node.service.store.locate(event.event_id) is not None


def test_wait_commit_on_the_fast_path_answers_the_commit(
    node: RunningNode, quick_calls: list[bytes | None]
) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "waited")
    doc = node.commit(event)
    assert doc["status"] == "committed" and doc["event_id"] == event.event_id.hex()
    assert doc["height"] >= 1 and doc["leaf_index"] >= 0
    assert quick_calls == [event.envelope]


def test_msgpack_answers_on_request(node: RunningNode, quick_calls: list[bytes | None]) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "packed")
    response = node.client.post(
        "/v1/events", json={"envelope": event.envelope.hex()}, headers={"accept": MSGPACK}
    )
    assert response.status_code == 202
    assert response.headers["content-type"] == MSGPACK
    assert msgpack.unpackb(response.content) == {
        "event_id": event.event_id.hex(),
        "status": "pending",
    }
    assert quick_calls == [event.envelope]


def test_a_refusal_on_the_fast_path_is_the_routes_problem_document(
    node: RunningNode, quick_calls: list[bytes | None]
) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "twice")
    assert node.submit(event).status_code == 202
    doc = assert_problem(node.submit(event), 409)
    assert doc["instance"] == "/v1/events"
    assert doc["type"].endswith("/conflict")
    assert quick_calls == [event.envelope, event.envelope]


@pytest.mark.parametrize(
    "body",
    [
        {"envelope": "zz" * 40},
        {"envelope": "0a 0b "},
        {"envelope": 12},
        {"envelope": "0a", "extra": 1},
        {},
    ],
)
def test_bodies_the_quick_check_refuses_get_the_routes_own_answer(
    node: RunningNode, quick_calls: list[bytes | None], body: dict[str, Any]
) -> None:
    raw = json.dumps(body).encode()
    with pytest.raises(Malformed) as refused:
        parse_submission(raw, JSON)
    response = node.client.post("/v1/events", content=raw, headers={"content-type": JSON})
    doc = assert_problem(response, 400)
    assert doc["detail"] == str(refused.value)
    assert quick_calls == [None]


def test_other_queries_and_msgpack_bodies_go_to_the_route_untouched(
    node: RunningNode, quick_calls: list[bytes | None]
) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "other")
    assert_problem(
        node.client.post("/v1/events?wait=maybe", json={"envelope": event.envelope.hex()}), 400
    )
    response = node.client.post(
        "/v1/events",
        content=msgpack.packb({"envelope": event.envelope}),
        headers={"content-type": MSGPACK},
    )
    assert response.status_code == 202, response.text
    assert quick_calls == []


def test_requests_on_the_fast_path_are_counted_under_the_routes_label(
    node: RunningNode,
) -> None:
    before = node.requests_counted("/v1/events", "POST")
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "counted")
    assert node.submit(event).status_code == 202
    assert node.requests_counted("/v1/events", "POST") == before + 1
