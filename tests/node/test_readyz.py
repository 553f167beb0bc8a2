"""`GET /readyz`: 200 only while the node is caught up and, being a validator, voting.

Each condition of `node.server.readiness` has a test that a node failing only that condition
is answered 503 `not-ready`, on a real node where the condition can be produced and on the
pure judgement otherwise; removing a check makes its test fail.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from node.config import NodeSettings
from node.ops.homes import init_cluster
from node.server.readiness import (
    ReadinessView,
    head_age_bound_ms,
    not_ready_reason,
    view_of,
)
from tests.node.conftest import (
    NO_SYNC_MS,
    RunningNode,
    assert_problem,
    free_port,
    running_node,
    serving,
)

HOUR_MS = 3_600_000


def ready_view(**changes: object) -> ReadinessView:
    """A validator at height 5 that signed at height 5, its head 1 s old."""
    view = ReadinessView(
        consensus_alive=True,
        catching_up=False,
        height=5,
        head_time_ms=1_000_000,
        now_ms=1_001_000,
        idle_block_interval_ms=5_000,
        validator=True,
        last_signed_height=5,
    )
    return dataclasses.replace(view, **changes)  # type: ignore[arg-type]


def test_the_head_age_bound_is_four_idle_intervals_plus_the_clock_drift() -> None:
    assert head_age_bound_ms(5_000) == 50_000
    assert head_age_bound_ms(0) == 0


def test_a_caught_up_voting_validator_is_ready() -> None:
    assert not_ready_reason(ready_view()) is None
    assert not_ready_reason(ready_view(last_signed_height=6)) is None
    assert not_ready_reason(ready_view(validator=False, last_signed_height=None)) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"consensus_alive": False}, "consensus task has stopped"),
        ({"catching_up": True}, "catching up"),
        ({"height": 0, "last_signed_height": 0}, "no block committed"),
        ({"now_ms": 1_000_000 + 50_001}, "is 50001 ms old"),
        ({"last_signed_height": 4}, "has not voted since height 4"),
        ({"last_signed_height": None}, "has not voted"),
    ],
)
def test_each_condition_alone_makes_a_node_not_ready(
    changes: dict[str, object], reason: str
) -> None:
    found = not_ready_reason(ready_view(**changes))
    assert found is not None and reason in found


def test_an_old_head_is_fine_when_idle_blocks_are_off_and_for_a_full_node_votes_do_not_count() -> (
    None
):
    assert not_ready_reason(ready_view(now_ms=10**12, idle_block_interval_ms=0)) is None
    assert not_ready_reason(ready_view(validator=False, last_signed_height=None)) is None
    assert not_ready_reason(ready_view(now_ms=1_000_000 + 50_000)) is None


def test_a_key_the_current_set_does_not_name_is_judged_as_a_full_node() -> None:
    """A joining organisation's node, or a removed validator, has a signer but no vote: it is
    ready once caught up, however long ago it last signed (or never)."""

    def service(in_set: bool) -> Any:
        return SimpleNamespace(
            replica=SimpleNamespace(signer=SimpleNamespace(state=None)),
            core=SimpleNamespace(is_validator=in_set),
            consensus_alive=True,
            catching_up=False,
            store=SimpleNamespace(height=5, head_time=1_000_000),
            clock=lambda: 1_000_000,
            settings=SimpleNamespace(idle_block_interval_ms=5_000),
        )

    outside = view_of(service(in_set=False))
    assert not outside.validator and not_ready_reason(outside) is None
    member = view_of(service(in_set=True))
    assert member.validator and "has not voted" in str(not_ready_reason(member))


def test_a_committing_validator_is_ready(node: RunningNode) -> None:
    response = node.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"
    view = view_of(node.service)
    assert view.validator and view.last_signed_height is not None
    assert view.last_signed_height >= view.height >= 1


def test_not_ready_while_catching_up(tmp_path: Path) -> None:
    with running_node(tmp_path) as node:
        assert node.client.get("/readyz").status_code == 200
        node.service.sync.best_peer_height = node.service.store.height + 10
        doc = assert_problem(node.client.get("/readyz"), 503)
        assert doc["type"].endswith("/not-ready") and "catching up" in doc["detail"]
        assert node.client.get("/healthz").status_code == 200  # alive, just not ready


def test_not_ready_when_the_head_block_is_stale(tmp_path: Path) -> None:
    with running_node(tmp_path, idle_block_interval_ms=HOUR_MS) as node:
        assert node.client.get("/readyz").status_code == 200
        real_clock = node.service.clock
        later = head_age_bound_ms(HOUR_MS) + 1_000
        node.service.clock = lambda: real_clock() + later
        try:
            doc = assert_problem(node.client.get("/readyz"), 503)
        finally:
            node.service.clock = real_clock
        assert "ms old" in doc["detail"]


def test_not_ready_when_consensus_stopped(tmp_path: Path) -> None:
    with running_node(tmp_path) as node:
        node.service._tasks[0].cancel()
        deadline = time.monotonic() + 10
        while node.service.consensus_alive:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        doc = assert_problem(node.client.get("/readyz"), 503)
        assert "consensus task has stopped" in doc["detail"]


def test_a_validator_without_a_quorum_is_not_ready(tmp_path: Path) -> None:
    """One of four validators up alone (as a new StatefulSet's first pod): alive, not ready."""
    init_cluster(tmp_path, 4, base_port=free_port())
    settings = dataclasses.replace(
        NodeSettings.load(tmp_path / "node-0"), sync_interval_ms=NO_SYNC_MS, peers=()
    )
    with serving(settings) as (client, service):
        assert client.get("/healthz").status_code == 200
        doc = assert_problem(client.get("/readyz"), 503)
        assert "no block committed" in doc["detail"]
        assert service.store.height == 0
