"""Seeded runs in which the validator set changes mid-run (issue 13): a full node is added
as a validator, a validator's power is doubled and another validator is removed, while the
scenario's partitions, losses, crashes and up to f Byzantine validators do their worst. The
checkers judge every block against the set in force at its height (`ValidatorSetModel`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import merkle
from ledger.blocks import Block, Header, ValidatorSet
from ledger.events import Approve, Propose, sign_event
from ledger.store import Store
from tests.ledger.helpers import sign_commit
from tests.simulation.checkers import SimulationFailure, ValidatorSetModel, ValidityChecker
from tests.simulation.scenario import ADD, Scenario
from tests.simulation.sim import Simulation, governance_change
from tests.simulation.world import CHAIN_ID, EPOCH_MS, sim_genesis, sim_key

GOVERNED_SEEDS = 12


# Seeds 0-2 run in the fast tier; the others are `slow` (./scripts/test runs them).
@pytest.mark.parametrize(
    "seed",
    [s if s < 3 else pytest.param(s, marks=pytest.mark.slow) for s in range(GOVERNED_SEEDS)],
)
def test_changes_of_the_validator_set_keep_safety_and_liveness(seed: int) -> None:
    scenario = Scenario.governed(seed)
    simulation = Simulation(scenario)
    result = simulation.run()
    assert [op for _, op in result.governance_decided] == [
        "add-validator",
        "set-power",
        "remove-validator",
    ]
    heights = [height for height, _ in result.governance_decided]
    # The set the committed blocks ended with is the plan's: joiner in, one power doubled,
    # one member out.
    model = simulation.validity.sets
    final = {v.public_key: v.power for v in model.at(model.observed + 2).validators}
    add, power, remove = scenario.governance
    assert final[sim_key(add.node).public_key] == 1
    assert final[sim_key(power.node).public_key] == 2
    assert sim_key(remove.node).public_key not in final
    assert len(final) == scenario.validators
    joiner = f"n{scenario.validators}"
    assert result.heights[joiner] >= heights[-1] + 2, "the joiner follows to the end"


def test_the_joiner_votes_from_its_effective_height_and_the_removed_one_stops(
    tmp_path: Path,
) -> None:
    scenario = Scenario.governed(2)
    assert not scenario.byzantine
    result = Simulation(scenario, data_dir=tmp_path).run()
    (added, _), (_, _), (removed_at, _) = result.governance_decided
    joiner = sim_key(scenario.validators).public_key
    removed = sim_key(scenario.governance[2].node).public_key
    with Store(tmp_path / "n0", sim_genesis(scenario.validators)) as store:
        signers = {}
        for height in range(1, store.height + 1):
            commit = store.commit(height)
            assert commit is not None
            signers[height] = {entry.validator for entry in commit.signatures}
        head = store.height
    assert all(joiner not in signers[h] for h in range(1, added + 2))
    assert any(joiner in signers[h] for h in range(added + 2, head + 1))
    assert all(removed not in signers[h] for h in range(removed_at + 2, head + 1))


def test_the_model_moves_the_set_two_heights_after_the_deciding_block() -> None:
    genesis = sim_genesis(4)
    model = ValidatorSetModel(genesis)
    step = Scenario.governed(0).governance[0]
    assert step.op == ADD
    propose = sign_event(
        sim_key(0),
        Propose(
            chain=CHAIN_ID,
            actor=sim_key(0).public_key,
            time=EPOCH_MS,
            nonce=bytes(16),
            change=governance_change(step),
        ),
    )
    approvals = [
        sign_event(
            sim_key(i),
            Approve(
                chain=CHAIN_ID,
                actor=sim_key(i).public_key,
                time=EPOCH_MS,
                nonce=bytes(16),
                proposal=propose.event_id,
            ),
        )
        for i in (1, 2)
    ]
    model.observe(1, _block(1, [propose.envelope, approvals[0].envelope]))
    assert model.at(3) == genesis.validators  # 2 of 4 approvals are not > 2/3
    model.observe(2, _block(2, [approvals[1].envelope]))
    assert model.at(3) == genesis.validators and model.at(4) != genesis.validators
    assert model.at(4).get(sim_key(4).public_key) is not None
    assert model.decided == [(2, governance_change(step))]


def test_the_validity_checker_catches_a_block_signed_by_a_set_no_longer_in_force() -> None:
    genesis = sim_genesis(4)
    checker = ValidityChecker(0, genesis)
    model = checker.sets
    model.sets[1] = ValidatorSet(genesis.validators.validators[:3])  # as if a change removed n3
    block = _block(1, [])
    commit = sign_commit([sim_key(i) for i in range(4)], CHAIN_ID, 1, 0, block.block_hash)
    with pytest.raises(SimulationFailure, match="validator set in force"):
        checker.record("n0", 1, genesis.hash(), block, commit)


def _block(height: int, envelopes: list[bytes]) -> Block:
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in envelopes])
    genesis = sim_genesis(4)
    header = Header(
        chain=CHAIN_ID,
        height=height,
        time=EPOCH_MS + height,
        prev=genesis.hash(),
        proposer=sim_key(0).public_key,
        events_root=root,
        tree_size=len(envelopes),
        tree_root=root,
        state_root=bytes(32),
        validators=genesis.validators.hash(),
    )
    return Block(header, tuple(envelopes))
