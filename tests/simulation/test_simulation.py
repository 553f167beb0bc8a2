"""Simulation tests: 500 seeded random scenarios, the fork detector, and the checkers."""

from __future__ import annotations

from collections import Counter

import pytest

from consensus import Step
from ledger.blocks import Commit
from tests.consensus.helpers import make_block
from tests.simulation.sim import (
    SILENT,
    SPLIT,
    AgreementChecker,
    DoubleSignChecker,
    Scenario,
    Simulation,
    SimulationFailure,
    ValidityChecker,
    check_liveness,
    run_seed,
    sim_validators,
)

SEEDS = 500
BATCHES = 10


@pytest.mark.parametrize("batch", range(BATCHES))
def test_random_scenarios_are_safe_and_live(batch: int) -> None:
    per_batch = SEEDS // BATCHES
    failures = []
    for seed in range(batch * per_batch, (batch + 1) * per_batch):
        try:
            run_seed(seed)
        except SimulationFailure as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


def test_the_seeds_cover_the_scenario_space() -> None:
    scenarios = [Scenario.random(seed) for seed in range(SEEDS)]
    sizes = Counter(s.validators for s in scenarios)
    assert sizes[4] > 150 and sizes[7] > 150
    strategies = Counter(b for s in scenarios for b in s.byzantine)
    assert all(strategies[k] > 50 for k in ("silent", "equivocate", "split"))
    assert sum(s.partition for s in scenarios) > 100
    assert sum(s.crashes > 0 for s in scenarios) > 150
    assert sum(s.loss > 0 for s in scenarios) > 250
    assert sum(not s.byzantine and not s.heal_at for s in scenarios) > 30
    assert sum(s.validators == 7 and len(s.byzantine) == 2 for s in scenarios) > 30


def test_a_seed_replays_identically() -> None:
    first, second = run_seed(41), run_seed(41)
    assert (first.heights, first.end_time, first.deliveries) == (
        second.heights,
        second.end_time,
        second.deliveries,
    )


def test_agreement_checker_catches_a_fork_with_a_third_byzantine() -> None:
    """2 of 4 validators split-brained and the honest two cut apart: a fork must happen."""
    for seed in range(20):
        try:
            Simulation(Scenario.fork(seed)).run()
        except SimulationFailure as exc:
            assert str(exc).startswith(f"seed {seed}: agreement violated")
            return
    pytest.fail("no seed in 0..19 forked with 1/2 of the power Byzantine")


@pytest.mark.parametrize("seed", range(5))
def test_one_split_brain_in_four_cannot_fork(seed: int) -> None:
    scenario = Scenario(**{**Scenario.fork(seed).__dict__, "byzantine": (SPLIT,)})
    result = Simulation(scenario).run()
    assert min(result.heights.values()) >= 0


def test_liveness_checker_catches_a_stall() -> None:
    """Half the power silent: no quorum, nothing commits, the liveness checker must fire."""
    scenario = Scenario(seed=7, validators=4, byzantine=(SILENT, SILENT), liveness_budget_ms=8000)
    with pytest.raises(SimulationFailure, match=r"^seed 7: liveness violated"):
        Simulation(scenario).run()


def test_checkers_fail_on_hand_made_violations() -> None:
    agreement = AgreementChecker(11)
    agreement.record("n0", 1, b"\x01" * 32)
    agreement.record("n1", 1, b"\x01" * 32)
    with pytest.raises(SimulationFailure, match=r"^seed 11: agreement violated at height 1"):
        agreement.record("n2", 1, b"\x02" * 32)

    signed = DoubleSignChecker(12)
    signed.record(b"v", 3, 1, Step.PREVOTE, b"nil")
    signed.record(b"v", 3, 1, Step.PREVOTE, b"nil")
    signed.record(b"v", 3, 1, Step.PRECOMMIT, b"other step")
    with pytest.raises(SimulationFailure, match=r"^seed 12: honest validator .* double-signed"):
        signed.record(b"v", 3, 1, Step.PREVOTE, b"value")

    validity = ValidityChecker(13, sim_validators(4))
    block = make_block(1)  # not chained on the simulator's genesis
    commit = Commit(1, 0, block.block_hash, ())
    with pytest.raises(SimulationFailure, match=r"^seed 13: .* invalid block .*nobody proposed"):
        validity.record("n0", [], block, commit)
    validity.built.add(block.block_hash)
    with pytest.raises(SimulationFailure, match=r"^seed 13: .* does not extend the chain"):
        validity.record("n0", [], block, commit)

    check_liveness(14, {"n0": 3, "n1": 4}, 3, 1000)
    with pytest.raises(SimulationFailure, match=r"^seed 14: liveness violated"):
        check_liveness(14, {"n0": 2, "n1": 4}, 3, 1000)
