"""An admitted event that a block refuses reaches its `?wait=commit` client as its own 4xx
(not a 504 after 30 s), is counted in /metrics, and frees its waiter (docs/PROTOCOL.md §10.4).

To make a block refuse an admitted event deterministically, admission runs 5 s behind the
clock consensus uses: an event 599 s old is inside the 600 s window when admitted, and 604 s
older than the block time when the block is built, so the block drops it.
"""

from __future__ import annotations

from pathlib import Path

from ledger.crypto import PrivateKey
from node.clock import now_ms
from tests.node.conftest import assert_problem, running_node

LAG_MS = 5_000
AGE_MS = 599_000


def dropped_metric(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("provledger_events_dropped "):
            return float(line.split()[1])
    raise AssertionError("provledger_events_dropped is not exported")


def test_a_dropped_event_reaches_its_waiter_as_422_and_is_counted(tmp_path: Path) -> None:
    with running_node(tmp_path) as node:
        service = node.service
        before = dropped_metric(node.client.get("/metrics").text)
        service.replica.admission.clock = lambda: now_ms() - LAG_MS
        old = node.make.admit(
            node.registrar, PrivateKey.generate().public_key, time=now_ms() - LAG_MS - AGE_MS
        )
        response = node.submit(old, wait=True)
        doc = assert_problem(response, 422)
        assert doc["type"].endswith("/rule-violation"), doc
        assert "outside" in doc["detail"]
        assert dropped_metric(node.client.get("/metrics").text) == before + 1
        assert len(service.replica.waiters) == 0
        assert len(service.mempool) == 0


def test_a_dropped_event_in_a_batch_carries_its_refusal(tmp_path: Path) -> None:
    with running_node(tmp_path) as node:
        node.service.replica.admission.clock = lambda: now_ms() - LAG_MS
        stale = node.make.admit(
            node.registrar, PrivateKey.generate().public_key, time=now_ms() - LAG_MS - AGE_MS
        )
        fresh = node.make.admit(node.registrar, PrivateKey.generate().public_key)
        body = {"envelopes": [stale.envelope.hex(), fresh.envelope.hex()]}
        response = node.client.post("/v1/events/batch?wait=commit", json=body)
        assert response.status_code == 200, response.text
        first, second = response.json()["results"]
        assert first["status"] == 422 and first["event_id"] == stale.event_id.hex()
        assert second["status"] == "committed"
        assert len(node.service.replica.waiters) == 0
