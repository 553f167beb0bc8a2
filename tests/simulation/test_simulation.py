"""Simulation tests: seeded random scenarios over real replicas, a crash-restart over the real
store, the fork detector, and the checkers on hand-made violations."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path

import pytest

from consensus import ConsensusConfig, Evidence, Message, ScheduleTimeout, Step, proposer
from consensus.core import MIN_SENDER_BUFFER, message_size
from ledger.blocks import PREVOTE, Block
from ledger.events import Register, SignedEvent
from ledger.store import Execution, Store
from node.server.replica import Replica
from tests.ledger.helpers import ChainBuilder, ev, sign_commit, sign_vote
from tests.simulation.byzantine import (
    BIG,
    BYZANTINE_STRATEGIES,
    EQUIVOCATE_ALL,
    FLOOD,
    FLOODS,
    SILENT,
    SPLIT,
    Flooder,
    Forgery,
    forge_block,
)
from tests.simulation.checkers import (
    AgreementChecker,
    DoubleSignChecker,
    EvidenceChecker,
    MemoryChecker,
    RefusedBlockChecker,
    SimulationFailure,
    ValidityChecker,
    check_liveness,
    check_store_agreement,
    memory_bound,
)
from tests.simulation.scenario import MAX_SKEW_MS, Scenario
from tests.simulation.sim import SIM_PROPOSAL_BYTES, Result, Simulation, run_seed, sim_config
from tests.simulation.world import CHAIN_ID, EPOCH_MS, LIMITS, client_key, sim_genesis, sim_key

SEEDS = 300
BATCHES = 10


# The first batch runs in the fast tier; the other nine are `slow` (./scripts/test runs them).
@pytest.mark.parametrize(
    "batch",
    [b if b == 0 else pytest.param(b, marks=pytest.mark.slow) for b in range(BATCHES)],
)
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
    """The thresholds are about 3/4 of what seeds 0..299 draw (so a change of the generator
    that starves a corner of the space shows)."""
    scenarios = [Scenario.random(seed) for seed in range(SEEDS)]
    sizes = Counter(s.validators for s in scenarios)
    assert sizes[4] > 100 and sizes[7] > 120
    strategies = Counter(b for s in scenarios for b in s.byzantine)
    assert set(strategies) == set(BYZANTINE_STRATEGIES)
    assert {FLOOD, EQUIVOCATE_ALL, BIG} <= set(BYZANTINE_STRATEGIES)
    assert all(strategies[k] > 30 for k in BYZANTINE_STRATEGIES), strategies
    for n, least in ((4, 9), (7, 20)):
        per_size = Counter(b for s in scenarios if s.validators == n for b in s.byzantine)
        assert all(per_size[k] > least for k in BYZANTINE_STRATEGIES), (n, per_size)
    assert sum(s.partition for s in scenarios) > 75
    assert sum(s.crashes > 0 for s in scenarios) > 110
    assert sum(s.loss > 0 for s in scenarios) > 165
    assert sum(not s.byzantine and not s.heal_at for s in scenarios) > 11
    assert sum(s.validators == 7 and len(s.byzantine) == 2 for s in scenarios) > 50
    assert sum(SPLIT in s.byzantine and s.crashes > 0 for s in scenarios) > 11
    assert sum(s.clock_skew_ms == MAX_SKEW_MS for s in scenarios) > 70
    assert sum(len(set(s.byzantine) & set(FLOODS)) == 2 for s in scenarios) > 8


def test_a_seed_replays_identically() -> None:
    """Signatures are randomized (ECDSA), so block hashes differ between runs; what happens
    does not."""
    first, second = run_seed(41), run_seed(41)
    assert first.block_hashes > 0

    def summary(result: Result) -> tuple[object, ...]:
        return (
            result.heights,
            result.end_time,
            result.deliveries,
            result.block_hashes,
            result.events_committed,
            result.refused_admissions,
            result.events_dropped,
        )

    assert summary(first) == summary(second)


def test_a_crashed_validator_restarts_over_its_store_and_agrees(tmp_path: Path) -> None:
    """n1 crashes twice after committing blocks; each restart is a new Replica over the same
    LevelDB directory and signer state. It commits again, and every store agrees."""
    scenario = Scenario.crash_restart(seed=3, victim=1)
    assert scenario.crashes > 0
    result = Simulation(scenario, data_dir=tmp_path).run()

    restarts = [r for r in result.restarts if r.name == "n1"]
    assert len(restarts) == 2 and all(r.height > 0 for r in restarts), result.restarts
    assert result.heights["n1"] > restarts[-1].height, "n1 committed nothing after its restart"
    assert set(result.heights) == {"n0", "n1", "n2", "n3"}

    genesis = sim_genesis(scenario.validators)
    stores = [Store(tmp_path / name, genesis) for name in sorted(result.heights)]
    try:
        assert [s.height for s in stores] == [result.heights[n] for n in sorted(result.heights)]
        common = min(s.height for s in stores)
        assert common >= result.target
        for height in range(1, common + 1):
            headers = {s.header_bytes(height) for s in stores}
            assert len(headers) == 1 and None not in headers, height
            header = stores[0].header(height)
            assert header is not None
            assert {s.root(header.tree_size) for s in stores} == {header.tree_root}
        for store in stores:
            head = store.header(store.height)
            assert head is not None
            assert store.state_root == head.state_root and store.root() == head.tree_root
        at_common = [s for s in stores if s.height == common]
        assert len({s.state_root for s in at_common}) == 1
        assert stores[1].tree_size > 0, "the victim's store holds committed events"
        check_store_agreement(scenario.seed, {f"n{i}": s for i, s in enumerate(stores)})
    finally:
        for store in stores:
            store.close()


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
    scenario = dataclasses.replace(Scenario.fork(seed), byzantine=(SPLIT,))
    result = Simulation(scenario).run()
    assert min(result.heights.values()) >= 1
    assert result.evidence > 0, "the two sides' votes conflict"


def test_liveness_checker_catches_a_stall() -> None:
    """Half the power silent: no quorum, nothing commits, the liveness checker must fire."""
    scenario = Scenario(seed=7, validators=4, byzantine=(SILENT, SILENT), liveness_budget_ms=8000)
    with pytest.raises(SimulationFailure, match=r"^seed 7: liveness violated"):
        Simulation(scenario).run()


# -- the checkers on hand-made violations ---------------------------------------------------------


def test_agreement_double_sign_and_liveness_checkers() -> None:
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

    check_liveness(14, {"n0": 3, "n1": 4}, 3, 1000)
    with pytest.raises(SimulationFailure, match=r"^seed 14: liveness violated"):
        check_liveness(14, {"n0": 2, "n1": 4}, 3, 1000)


def _chain(store: Store, step_ms: int = 1_000) -> ChainBuilder:
    return ChainBuilder(store, [sim_key(i) for i in range(4)], step_ms=step_ms)


def _register(builder: ChainBuilder, n: int) -> list[SignedEvent]:
    return [
        ev(
            client_key(0),
            Register,
            time=builder.now,
            chain=CHAIN_ID,
            dataset=bytes([i]) * 32,
            meta={"n": i},
            open=False,
        )
        for i in range(n)
    ]


def test_validity_checker(tmp_path: Path) -> None:
    genesis = sim_genesis(4)
    with Store(tmp_path / "a", genesis) as store:
        builder = _chain(store)
        execution = builder.execute(_register(builder, 2))
        block, commit = builder.seal(execution)
    validity = ValidityChecker(13, genesis)
    validity.record("n0", 1, genesis.hash(), block, commit)

    with pytest.raises(SimulationFailure, match=r"^seed 13: n1 .* height 1: .* extend the chain"):
        validity.record("n1", 1, b"\x00" * 32, block, commit)
    few = sign_commit([sim_key(0), sim_key(1)], CHAIN_ID, 1, 0, block.block_hash)
    with pytest.raises(SimulationFailure, match=r"^seed 13: .* the commit lacks a quorum"):
        validity.record("n1", 1, genesis.hash(), block, few)
    other = sign_commit([sim_key(i) for i in range(4)], CHAIN_ID, 1, 1, b"\x07" * 32)
    with pytest.raises(SimulationFailure, match=r"the commit is for another block"):
        validity.record("n1", 1, genesis.hash(), block, other)
    swapped = Block(block.header, block.events[:1])
    with pytest.raises(SimulationFailure, match=r"not the ones its header commits to"):
        validity.record("n1", 1, genesis.hash(), swapped, commit)
    with pytest.raises(SimulationFailure, match=r"the store does not hold it"):
        validity.record("n1", 1, genesis.hash(), None, None)

    # the same events again at height 2 of n0's chain
    header = dataclasses.replace(block.header, height=2, prev=block.block_hash)
    again = Block(header, block.events)
    commit2 = sign_commit([sim_key(i) for i in range(3)], CHAIN_ID, 2, 0, header.block_hash)
    with pytest.raises(SimulationFailure, match=r"^seed 13: n0 .* height 2: event .* at height 1"):
        validity.record("n0", 2, block.block_hash, again, commit2)


class _NoEffects:
    """Effects of a replica that is only asked to build and validate blocks."""

    def now(self) -> int:
        return EPOCH_MS

    def broadcast(self, message: Message) -> None:
        pass

    def schedule(self, timeout: ScheduleTimeout) -> None:
        pass

    def evidence(self, evidence: Evidence) -> None:
        pass

    def committed(self, block: Block, execution: Execution) -> None:
        pass


def test_a_real_executor_refuses_every_forgery_but_another_time(tmp_path: Path) -> None:
    genesis = sim_genesis(4)
    effects = _NoEffects()
    replica = Replica(
        genesis, tmp_path / "r", LIMITS, ConsensusConfig(), None, None, effects.now, effects
    )
    try:
        builder = _chain(replica.store)
        outcomes = replica.admission.admit([e.envelope for e in _register(builder, 2)])
        assert all(isinstance(o, SignedEvent) for o in outcomes), outcomes
        block = replica.executor.build_block(1, 0, EPOCH_MS + 1, sim_key(0).public_key)
        assert len(block.events) == 2 and replica.executor.validate_block(block)
        for kind in Forgery:
            forged, _ = forge_block(block, random.Random(kind.value), kind)
            assert forged.block_hash != block.block_hash
            valid = forged.events_match_header() and replica.executor.validate_block(forged)
            assert valid is not kind.refused, kind
    finally:
        replica.close()


def test_refused_block_and_evidence_checkers() -> None:
    refused = RefusedBlockChecker(15)
    forged = b"\x0f" * 32
    refused.forged(forged, Forgery.GARBAGE.value)
    refused.record("n0", sign_vote(sim_key(0), CHAIN_ID, 1, 0, None, PREVOTE))
    refused.record("n0", sign_vote(sim_key(0), CHAIN_ID, 1, 0, b"\x01" * 32, PREVOTE))
    with pytest.raises(SimulationFailure, match=r"^seed 15: honest n0 prevoted .* garbage"):
        refused.record("n0", sign_vote(sim_key(0), CHAIN_ID, 1, 0, forged, PREVOTE))

    checker = EvidenceChecker(16, sim_genesis(4), {sim_key(3).public_key: SPLIT})

    def equivocation(index: int) -> Evidence:
        a = sign_vote(sim_key(index), CHAIN_ID, 2, 0, None, PREVOTE)
        b = sign_vote(sim_key(index), CHAIN_ID, 2, 0, b"\x05" * 32, PREVOTE)
        return Evidence.of(a, b)

    assert checker.record("n0", equivocation(3)) == "n3"
    with pytest.raises(SimulationFailure, match=r"^seed 16: n0 found evidence against honest n1"):
        checker.record("n0", equivocation(1))
    unsigned = dataclasses.replace(equivocation(3).vote_b, signature=b"\x00" * 64)
    with pytest.raises(SimulationFailure, match=r"^seed 16: n0 kept invalid evidence"):
        checker.record("n0", Evidence(equivocation(3).vote_a, unsigned))


def test_store_agreement_checker(tmp_path: Path) -> None:
    genesis = sim_genesis(4)
    with (
        Store(tmp_path / "a", genesis) as a,
        Store(tmp_path / "b", genesis) as b,
        Store(tmp_path / "c", genesis) as c,
    ):
        events = _register(_chain(a), 3)
        for store in (a, b):
            _chain(store).append(events)
        _chain(c, step_ms=2_000).append(events[:2])
        check_store_agreement(17, {"a": a, "b": b})
        _chain(a).append([])
        check_store_agreement(17, {"a": a, "b": b})  # b is behind: heights 1.. agree
        with pytest.raises(
            SimulationFailure,
            match=r"^seed 17: store agreement violated: a and c hold different headers at "
            r"height 1",
        ):
            check_store_agreement(17, {"a": a, "b": b, "c": c})


# -- floods and the memory bound (issue 11) -------------------------------------------------------


def test_the_memory_bound_is_derived_from_the_config() -> None:
    """4 validators, the simulated config, round 0: 1 + 4 x 4 = 17 rounds a core may hold."""
    config = sim_config(Scenario(seed=0, validators=4))
    assert config.max_proposal_bytes_per_validator == SIM_PROPOSAL_BYTES == 256 << 10
    bound = memory_bound(config, 4, 0)
    assert bound == {
        "vote_sets": 34,
        "votes": 2516,  # 34 sets x (4 validators + 1 equivocator x (68 proposals + 2))
        "sender_rounds": 17,
        "proposals": 68,
        "proposal_bytes": 4 * (256 << 10),
        "future_messages": 256,
        "future_bytes": 4 * (2 << 20),
        "future_rounds": 16,
        "evidence": 256,
        "rejected": 4096,
        "bytes": 4 * (256 << 10) + 4 * (2 << 20) + 512 * 2516,
    }
    assert bound["bytes"] == 10_725_376
    assert memory_bound(config, 4, 10)["vote_sets"] == 54
    assert memory_bound(config, 7, 0)["bytes"] == 23_731_200


def test_memory_checker_catches_a_core_over_its_bound() -> None:
    config = sim_config(Scenario(seed=0, validators=4))
    checker = MemoryChecker(18, config, 4)
    at_bound = {k: v for k, v in memory_bound(config, 4, 2).items() if k != "bytes"}
    at_bound["votes"] = 0  # so that the charged bytes stay under theirs
    checker.record("n0", 1, 2, at_bound)
    assert checker.peak["future_bytes"] == 8 << 20 and checker.peak_round == 2
    over = {**at_bound, "future_bytes": (8 << 20) + 1}
    with pytest.raises(
        SimulationFailure,
        match=r"^seed 18: memory bound exceeded by n1 at height 1 round 2: "
        r"future_bytes 8388609 > 8388608",
    ):
        checker.record("n1", 1, 2, over)
    with pytest.raises(SimulationFailure, match=r"vote_sets 38 > 36"):
        checker.record("n1", 1, 1, at_bound)  # the same footprint, a round earlier


def test_a_flooder_signs_future_votes_and_maximum_size_proposals() -> None:
    genesis = sim_genesis(4)
    key = sim_key(3)
    flooder = Flooder(key, CHAIN_ID, genesis.validators, random.Random(1), SIM_PROPOSAL_BYTES)
    votes = [v for _ in range(20) for v in flooder.future_votes(5, 2)]
    assert all((v.height, v.round) > (5, 2) for v in votes)
    assert {v.height for v in votes} >= {5, 6} and max(v.height for v in votes) > 6
    assert (
        max(v.round for v in votes if v.height == 5)
        > 2 + ConsensusConfig().max_future_rounds_per_validator
    )
    for vote in votes[:5]:
        vote.verify(CHAIN_ID, genesis.validators)
    proposals = [p for _ in range(10) for p in flooder.big_proposals(5, 2, EPOCH_MS)]
    assert {message_size(p) for p in proposals} == {SIM_PROPOSAL_BYTES, SIM_PROPOSAL_BYTES + 1}
    for proposal in proposals:
        if proposal.height <= 6:
            assert proposer(genesis.validators, proposal.height, proposal.round) == key.public_key
        assert proposal.block.events_match_header()
    assert any(p.height == 5 and p.round > 2 for p in proposals)
    assert any(p.height == 6 for p in proposals) and any(p.height > 6 for p in proposals)


@pytest.mark.parametrize("strategy", FLOODS)
def test_each_flood_reaches_the_honest_cores_and_stays_under_the_bound(strategy: str) -> None:
    """One flooder in 4 with skewed clocks: agreement, liveness and the memory bound hold
    (the run checks them), and the flood did fill what it aims at."""
    scenario = Scenario(
        seed=2,
        validators=4,
        byzantine=(strategy,),
        heights_after_heal=10,
        idle_block_interval_ms=1000,
        clock_skew_ms=MAX_SKEW_MS,
    )
    result = Simulation(scenario).run()
    peak, bound = result.memory_peak, result.memory_bound
    assert all(peak[k] <= bound[k] for k in bound)
    config = sim_config(scenario)
    if strategy == FLOOD:
        assert peak["future_rounds"] == config.max_future_rounds_per_validator
        assert peak["future_messages"] > 4  # votes of the next height, buffered
    elif strategy == BIG:
        assert peak["future_bytes"] >= MIN_SENDER_BUFFER - SIM_PROPOSAL_BYTES
        assert peak["proposal_bytes"] > SIM_PROPOSAL_BYTES
    else:
        assert strategy == EQUIVOCATE_ALL
        assert result.evidence >= 2 * 3 * result.target  # both vote types, 3 honest, each height


def test_clocks_are_skewed_within_half_the_time_precision() -> None:
    assert 2 * MAX_SKEW_MS == sim_genesis(4).chain_params.time_precision_ms == 1000
    scenario = Scenario(seed=9, validators=7, clock_skew_ms=MAX_SKEW_MS, heights_after_heal=4)
    sim = Simulation(scenario)
    skews = [node.skew for node in sim.nodes]
    assert len(set(skews)) > 1 and all(abs(s) <= MAX_SKEW_MS for s in skews)
    assert sim.nodes[0].now() == EPOCH_MS + skews[0]
    result = sim.run()
    assert min(result.heights.values()) >= result.target


def test_a_memory_violation_inside_a_run_fails_its_seed() -> None:
    """The checker runs on the real cores during a run: judged by a bound made for a proposal
    budget of 64 KiB while the cores allow 256 KiB, a BIG flood must trip it."""
    scenario = Scenario(seed=4, validators=4, byzantine=(BIG,), heights_after_heal=6)
    sim = Simulation(scenario)
    small = dataclasses.replace(sim.config, max_proposal_bytes_per_validator=64 << 10)
    sim.memory = MemoryChecker(scenario.seed, small, 4)
    with pytest.raises(SimulationFailure, match=r"^seed 4: memory bound exceeded by n\d .*"):
        sim.run()


def _proposers(tmp_path: Path, scenario: Scenario, skew: int) -> set[bytes]:
    """The proposers of the blocks committed when n0's clock is `skew` ms ahead."""
    sim = Simulation(scenario, data_dir=tmp_path)
    sim.nodes[0].skew = skew
    result = sim.run()
    with Store(tmp_path / "n1", sim.genesis) as store:
        headers = [store.header(h) for h in range(1, store.height + 1)]
    assert result.heights["n0"] >= result.target, "n0 keeps up whatever its clock"
    return {h.proposer for h in headers if h is not None}


def test_a_clock_beyond_the_precision_gets_no_block_committed(tmp_path: Path) -> None:
    """The proposer-based time check is live in the simulator: with n0's clock 500 ms ahead
    (within the precision) its blocks are committed; 3 s ahead, the others find its block
    times untimely and prevote nil, and the chain goes on with the other proposers."""
    scenario = Scenario(seed=6, validators=4, heights_after_heal=12, idle_block_interval_ms=500)
    n0 = sim_key(0).public_key
    assert n0 in _proposers(tmp_path / "within", scenario, MAX_SKEW_MS)
    beyond = _proposers(tmp_path / "beyond", scenario, 3 * 1000)
    assert n0 not in beyond and len(beyond) == 3
