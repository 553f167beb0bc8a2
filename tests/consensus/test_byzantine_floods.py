"""f Byzantine validators flood honest cores; agreement, liveness and memory bounds hold.

The simulator (tests/simulation) runs whole replicas; these tests drive bare `ConsensusCore`s
over a small seeded network so that the hostile sender can do what the issue names, every
step: votes for ever-new future rounds, equivocating prevotes and precommits in the round each
honest node is in, and maximum-size proposals (for the budgets configured here) for the next
height. 3 honest validators and 1 Byzantine (f = 1) must decide the same blocks, keep
deciding, and never hold more than the stated bound:

    proposal bytes + buffered bytes per honest core
        <= (validators) x (max_proposal_bytes_per_validator + per-sender buffer)

with vote sets at most 2 x (rounds entered + validators x max_future_rounds_per_validator).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field, replace

import pytest

from consensus import (
    BlockApplied,
    Broadcast,
    ConsensusConfig,
    ConsensusCore,
    Decide,
    Input,
    MemorySignerPersistence,
    Output,
    ProposalReceived,
    ScheduleTimeout,
    Signer,
    Start,
    Tick,
    TimeoutFired,
    VoteReceived,
    proposer,
)
from consensus.core import MIN_SENDER_BUFFER
from ledger.blocks import PRECOMMIT, PREVOTE, Block
from tests.consensus.helpers import (
    CHAIN,
    FakeApp,
    events_root,
    key,
    make_block,
    sign_proposal,
    sign_vote,
    validator_set,
)

N = 4
HONEST = (0, 1, 2)
BYZANTINE = 3
HEIGHTS = 12
FUTURE_ROUNDS_PER_STEP = 10
PROPOSALS_PER_STEP = 10
SIM_LIMIT_MS = 120_000
FLOOD_EVERY_MS = 50
TICK_MS = 500
PROPOSAL_SIZE = 256 << 10
CONFIG = ConsensusConfig(
    idle_block_interval_ms=0,
    max_proposal_bytes_per_validator=1 << 20,
    max_buffered_bytes=N << 20,
)
SEEDS = (1, 2, 3)


def memory_bound(config: ConsensusConfig) -> int:
    per_sender_buffer = max(MIN_SENDER_BUFFER, config.max_buffered_bytes // N)
    return N * (config.max_proposal_bytes_per_validator + per_sender_buffer)


@dataclass(order=True)
class Delivery:
    at: int
    seq: int
    target: int = field(compare=False)
    item: Input = field(compare=False)


class Network:
    """Honest cores, a seeded message delay, simulated time, and the Byzantine's floods."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.validators = validator_set(N)
        self.now = 1_000
        self.queue: list[Delivery] = []
        self.seq = 0
        self.cores = {
            i: ConsensusCore(
                CONFIG,
                CHAIN,
                self.validators,
                Signer(key(i), MemorySignerPersistence()),
                FakeApp(),
                1,
            )
            for i in HONEST
        }
        self.decided: dict[int, dict[int, bytes]] = {i: {} for i in HONEST}
        self.peak: dict[str, int] = {"bytes": 0, "vote_sets": 0, "rounds": 0}
        self.flood_round = 1

    def push(self, delay: int, target: int, item: Input) -> None:
        self.seq += 1
        heapq.heappush(self.queue, Delivery(self.now + delay, self.seq, target, item))

    def handle(self, target: int, item: Input) -> None:
        outputs = self.cores[target].handle(item)
        for output in outputs:
            self.carry_out(target, output)
        self.measure(target)

    def carry_out(self, source: int, output: Output) -> None:
        if isinstance(output, Broadcast):
            message = output.message
            for target in HONEST:
                if target != source:
                    wrap = (
                        ProposalReceived(message, 0)
                        if not hasattr(message, "validator")
                        else VoteReceived(message, 0)  # type: ignore[arg-type]
                    )
                    self.push(self.rng.randint(1, 30), target, wrap)
        elif isinstance(output, ScheduleTimeout):
            fired = TimeoutFired(output.kind, output.height, output.round, 0)
            self.push(output.delay_ms, source, fired)
        elif isinstance(output, Decide):
            block = output.block
            self.decided[source][block.header.height] = block.block_hash
            self.push(0, source, BlockApplied(block.header.height, 0))

    def measure(self, target: int) -> None:
        held = self.cores[target].footprint()
        self.peak["bytes"] = max(self.peak["bytes"], held["proposal_bytes"] + held["future_bytes"])
        self.peak["vote_sets"] = max(self.peak["vote_sets"], held["vote_sets"])
        self.peak["rounds"] = max(self.peak["rounds"], self.cores[target].round)

    def flood(self) -> None:
        """One step of the Byzantine validator: future rounds, equivocation, big proposals."""
        for target in HONEST:
            core = self.cores[target]
            h, r = core.height, core.round
            messages: list[Input] = []
            for _ in range(FUTURE_ROUNDS_PER_STEP):
                self.flood_round += 1
                messages += [
                    VoteReceived(sign_vote(BYZANTINE, t, h, r + self.flood_round, None), 0)
                    for t in (PREVOTE, PRECOMMIT)
                ]
            for vote_type in (PREVOTE, PRECOMMIT):
                for value in (self.rng.randbytes(32), self.rng.randbytes(32)):
                    vote = sign_vote(BYZANTINE, vote_type, h, r, value)
                    messages.append(VoteReceived(vote, 0))
            byzantine = key(BYZANTINE).public_key
            owned = [
                x for x in range(r, r + 200) if proposer(self.validators, h + 1, x) == byzantine
            ]
            for round_ in owned[:PROPOSALS_PER_STEP]:
                self.seq += 1
                block = big_block(h + 1, f"flood-{self.seq}", self.now)
                proposal = sign_proposal(BYZANTINE, h + 1, round_, block, -1)
                messages.append(ProposalReceived(proposal, 0))
            for item in messages:
                self.push(self.rng.randint(1, 30), target, item)

    def run(self) -> None:
        for i in HONEST:
            self.push(0, i, Start(0))
        next_flood = self.now
        next_tick = self.now + TICK_MS
        while self.now < SIM_LIMIT_MS:
            if all(len(d) >= HEIGHTS for d in self.decided.values()):
                return
            if next_flood <= next_tick and (not self.queue or next_flood <= self.queue[0].at):
                self.now = next_flood
                self.flood()
                next_flood += FLOOD_EVERY_MS
                continue
            if not self.queue or next_tick <= self.queue[0].at:
                self.now = next_tick
                for i in HONEST:
                    self.push(0, i, Tick(0))
                next_tick += TICK_MS
                continue
            delivery = heapq.heappop(self.queue)
            self.now = delivery.at
            self.handle(delivery.target, replace(delivery.item, now=self.now))  # type: ignore[type-var]


def big_block(height: int, tag: str, time: int) -> Block:
    events = (b"tx-" + tag.encode() + b"x" * PROPOSAL_SIZE,)
    block = make_block(height, tag, time)
    return Block(replace(block.header, events_root=events_root(events)), events)


# The first seed runs in the fast tier; the others are `slow` (./scripts/test runs them).
@pytest.mark.parametrize(
    "seed",
    [s if s == SEEDS[0] else pytest.param(s, marks=pytest.mark.slow) for s in SEEDS],
)
def test_agreement_liveness_and_bounded_memory_under_byzantine_floods(seed: int) -> None:
    net = Network(seed)
    net.run()
    heights = {i: len(d) for i, d in net.decided.items()}
    assert all(count >= HEIGHTS for count in heights.values()), (heights, net.now)
    for height in range(1, HEIGHTS + 1):
        assert len({net.decided[i][height] for i in HONEST}) == 1, height
    assert net.peak["bytes"] <= memory_bound(CONFIG), net.peak
    limit = CONFIG.max_future_rounds_per_validator
    assert net.peak["vote_sets"] <= 2 * (net.peak["rounds"] + 1 + N * limit), net.peak
