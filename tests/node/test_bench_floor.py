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
    event = floor.events.decode_envelope(floor._envelopes(1)[0], chain_id=floor.CHAIN_ID)
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
