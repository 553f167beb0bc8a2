"""The floor under the batch figures (`node.bench.floor`): the core's work per event, timed
in one process on a real store (behaviour and arithmetic, never timings)."""

from __future__ import annotations

import tempfile

import pytest

from ledger.store import Store
from node.bench import floor
from node.bench.ledger import make_genesis


def test_the_floor_commits_every_event_and_adds_up_its_phases() -> None:
    result = floor.ledger_floor(events_total=120, block_events=50)  # blocks of 50, 50 and 20
    assert (result["events"], result["block_events"]) == (120, 50)
    phases = result["ms_per_event"]
    assert tuple(phases) == floor.PHASES
    assert all(ms > 0 for ms in phases.values())
    assert result["total_ms"] == pytest.approx(sum(phases.values()), abs=5e-4)
    ceiling = result["ceiling_vs_verify_bound"]
    assert 0 < ceiling < 1
    assert ceiling == pytest.approx(phases["signature"] / result["total_ms"], abs=2e-3)


def test_a_block_the_core_refuses_stops_the_floor() -> None:
    keys, genesis = make_genesis()
    event = floor.events.decode_envelope(floor.register_envelopes(1)[0], chain_id=floor.CHAIN_ID)
    clock = floor._Clock(dict.fromkeys(floor.PHASES, 0.0))
    with tempfile.TemporaryDirectory() as tmp, Store(tmp, genesis) as store:
        with pytest.raises(floor.FloorError, match="rejected"):
            floor._commit_block(store, keys, [event, event], clock)  # the second is a duplicate
        assert store.height == 0, "nothing was appended"


def test_over_floor_is_the_mean_node_cpu_against_the_floor() -> None:
    result = {"total_ms": 0.1}
    assert floor.over_floor(result, [0.13, 0.15]) == 0.4
    assert floor.over_floor(result, [0.1]) == 0.0


def test_floor_rows_name_each_phase_the_ceiling_and_the_excess() -> None:
    result = {
        "total_ms": 0.125,
        "ms_per_event": {
            "decode": 0.012,
            "signature": 0.065,
            "admission_rules": 0.01,
            "execution": 0.027,
            "append": 0.011,
        },
        "ceiling_vs_verify_bound": 0.52,
    }
    rows = dict(floor.floor_rows(result, [0.175, 0.175]))
    assert rows["ledger work per event, one process"].startswith("0.1250 ms CPU (decode 0.0120,")
    assert "admission rules 0.0100" in rows["ledger work per event, one process"]
    assert rows["  ceiling of the batch path"].startswith("52.0% of the verify bound")
    assert rows["  batch CPU per event over it"].startswith("+40%")


def test_the_batch_target_is_half_the_verify_bound() -> None:
    assert floor.BATCH_TARGET == 0.50


def _floor_of(signature: float, total: float) -> dict[str, object]:
    return {"total_ms": total, "ms_per_event": {"signature": signature}}


def test_the_core_budget_is_what_is_left_of_the_target_after_the_rest_of_the_node() -> None:
    # Nodes at 0.12 ms over a floor of 0.09 (signature 0.045): the rest costs 0.03 ms. At
    # 50%, a node may spend 0.09 ms: 0.045 signature, 0.03 rest, 0.015 for the core.
    budget = floor.core_budget(_floor_of(0.045, 0.09), [0.11, 0.13])
    assert budget.rest_ms == pytest.approx(0.03)
    assert budget.core_ms == pytest.approx(0.045)
    assert budget.budget_ms == pytest.approx(0.015)
    assert budget.share_with_free_core == pytest.approx(0.045 / 0.075)
    rows = dict(floor._budget_rows(budget))
    assert rows["  core budget for 50%"].startswith("0.0150 ms per event, now 0.0450 (3.0x it)")
    assert rows["  share with the core's other work free"].startswith("60.0%")


def test_no_core_budget_when_the_rest_of_the_node_alone_is_over_the_target() -> None:
    budget = floor.core_budget(_floor_of(0.045, 0.09), [0.15])  # the rest: 0.06 > 0.045
    assert budget.budget_ms < 0
    assert dict(floor._budget_rows(budget))["  core budget for 50%"].startswith("none")


def test_a_cluster_under_the_floor_has_no_rest() -> None:
    budget = floor.core_budget(_floor_of(0.045, 0.09), [0.08])
    assert budget.rest_ms == 0.0
    assert budget.share_with_free_core == 1.0


def test_the_calls_row_says_what_is_left_for_python_or_that_nothing_is() -> None:
    within = floor.core_budget(
        {"total_ms": 0.09, "ms_per_event": {"signature": 0.045}, "c_calls_ms_per_event": 0.01},
        [0.11, 0.13],
    )
    assert within.calls_ms == 0.01
    row = dict(floor._budget_rows(within))["  the core's C calls alone"]
    assert row == (
        "0.0100 ms per event, 0.0050 ms left for all the Python around them (now 0.0350)"
    )
    over = floor.core_budget(
        {"total_ms": 0.09, "ms_per_event": {"signature": 0.045}, "c_calls_ms_per_event": 0.02},
        [0.11, 0.13],
    )
    assert "over the budget" in dict(floor._budget_rows(over))["  the core's C calls alone"]
    unmeasured = floor.core_budget(_floor_of(0.045, 0.09), [0.12])
    assert "  the core's C calls alone" not in dict(floor._budget_rows(unmeasured))
