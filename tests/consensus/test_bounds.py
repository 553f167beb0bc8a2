"""What one Byzantine validator can make an honest core hold or do (docs/PROTOCOL.md §7.12).

Each test drives a real `ConsensusCore` with a hostile sender — validator 3 of 4, signing
genuinely with its own key — and asserts a bound that fails if its guard is removed: vote sets
and sender entries freed after a future round is evicted, the byte budgets of proposals and of
the next height's buffer, bounded evidence, and forged signatures verified once.
"""

from __future__ import annotations

from dataclasses import replace

from consensus import BlockApplied, ConsensusConfig, EvidenceFound, ProposalReceived, VoteReceived
from consensus.core import MESSAGE_OVERHEAD
from ledger.blocks import PRECOMMIT, PREVOTE, Block
from tests.consensus.helpers import (
    Harness,
    events_root,
    make_block,
    sign_proposal,
    sign_vote,
)

BYZANTINE = 3
ROUNDS = 2_000


def big_block(height: int, tag: str, size: int) -> Block:
    """A block whose single event is `size` bytes (valid for the FakeApp: starts "tx-")."""
    events = (b"tx-" + tag.encode() + b"x" * size,)
    block = make_block(height, tag)
    return Block(replace(block.header, events_root=events_root(events)), events)


def started(**kwargs: object) -> Harness:
    h = Harness(**kwargs)  # type: ignore[arg-type]
    h.start()
    return h


def test_votes_for_ever_new_future_rounds_leave_nothing_behind() -> None:
    """Without freeing evicted vote sets and sender entries, this flood leaves 2 vote sets and
    one sender entry per round behind (4,000 and 2,000) and every input walks them all."""
    h = started()
    limit = h.config.max_future_rounds_per_validator
    for round_ in range(1, ROUNDS + 1):
        for vote_type in (PREVOTE, PRECOMMIT):
            h.feed(VoteReceived(sign_vote(BYZANTINE, vote_type, 1, round_, None), h.now))
    held = h.core.footprint()
    assert held["future_rounds"] == limit
    assert held["vote_sets"] <= 2 * limit
    assert held["sender_rounds"] <= limit + 1
    assert h.core.round == 0  # one sender never moves the round (f+1 needed)
    kept = sorted({round_ for (round_, _) in h.core._votes})
    assert kept == list(range(ROUNDS - limit + 1, ROUNDS + 1))


def test_a_forged_vote_is_verified_once_however_often_it_comes() -> None:
    h = started()
    genuine = sign_vote(1, PREVOTE, 1, 0, b"\x01" * 32)
    forged = replace(genuine, block_hash=b"\x02" * 32)  # 1 never signed this
    for _ in range(100):
        h.feed(VoteReceived(forged, h.now))
    assert h.verified == 1
    assert h.core.footprint()["votes"] == 0
    h.feed(VoteReceived(genuine, h.now))
    assert h.verified == 2 and h.core.footprint()["votes"] == 1


def test_the_forgery_cache_is_bounded() -> None:
    config = ConsensusConfig(max_rejected_signatures=16)
    h = started(config=config)
    genuine = sign_vote(1, PREVOTE, 1, 0, b"\x01" * 32)
    for i in range(100):
        forged = replace(genuine, block_hash=bytes([i]) * 32)
        h.feed(VoteReceived(forged, h.now))
    assert h.core.footprint()["rejected"] == 16


def test_equivocating_in_every_round_keeps_evidence_bounded() -> None:
    """One evidence per (validator, height, round, type) slot, at most max_evidence in all."""
    config = ConsensusConfig(max_evidence=8)
    h = started(config=config)
    found = 0
    for round_ in range(40):
        # f+1 (validators 1 and 2) move the core to `round_`; the Byzantine equivocates there.
        h.vote([1, 2], PRECOMMIT, round_, None)
        assert h.core.round == round_
        for value in (b"\x0a" * 32, b"\x0b" * 32):
            out = h.feed(VoteReceived(sign_vote(BYZANTINE, PREVOTE, 1, round_, value), h.now))
            found += sum(isinstance(o, EvidenceFound) for o in out)
    assert found == 40
    assert len(h.core.evidence) == 8
    assert h.core.footprint()["evidence"] == 8


def proposer_of(h: Harness, height: int, index: int, after: int = 0) -> list[int]:
    """Rounds >= after in which validator `index` proposes at `height` (first 50)."""
    return [r for r in range(after, after + 200) if h.proposer_index(height, r) == index][:50]


def test_maximum_size_proposals_of_the_next_height_are_bounded_by_bytes() -> None:
    """Without the byte budget, 256 proposals per sender are kept (here 256 x 256 KiB)."""
    budget = 1 << 20
    config = ConsensusConfig(max_buffered_bytes=4 * budget)  # 4 validators: 1 MiB each
    h = started(config=config)
    size = 256 << 10
    for round_ in proposer_of(h, 2, BYZANTINE):
        block = big_block(2, f"future-{round_}", size)
        h.feed(ProposalReceived(sign_proposal(BYZANTINE, 2, round_, block, -1), h.now))
    held = h.core.footprint()
    assert 0 < held["future_bytes"] <= max(budget, 2 << 20)
    assert held["future_messages"] <= max(budget, 2 << 20) // size


def test_proposals_of_this_height_are_bounded_by_bytes_per_sender() -> None:
    """A Byzantine proposer re-proposing big blocks in every round it owns: the oldest go."""
    budget = 1 << 20
    config = ConsensusConfig(max_proposal_bytes_per_validator=budget)
    h = started(config=config)
    size = 200 << 10
    rounds = proposer_of(h, 1, BYZANTINE)
    h.vote([1, 2], PRECOMMIT, rounds[-1], None)  # honest f+1 move the core past them all
    assert h.core.round == rounds[-1]
    for round_ in rounds:
        block = big_block(1, f"big-{round_}", size)
        h.feed(ProposalReceived(sign_proposal(BYZANTINE, 1, round_, block, -1), h.now))
    held = h.core.footprint()
    assert held["proposal_bytes"] <= budget
    assert 1 <= held["proposals"] <= budget // (size + MESSAGE_OVERHEAD)
    # the proposal of the current round is among those kept
    assert rounds[-1] in h.core._proposals


def test_a_proposal_larger_than_the_budget_is_refused_before_its_signature() -> None:
    config = ConsensusConfig(max_proposal_bytes_per_validator=64 << 10)
    h = started(config=config)
    block = big_block(1, "huge", 128 << 10)
    index = h.proposer_index(1, 0)
    h.feed(ProposalReceived(sign_proposal(index, 1, 0, block, -1), h.now))
    assert h.verified == 0 and h.core.footprint()["proposals"] == 0


def test_the_next_heights_buffer_is_freed_when_the_height_starts() -> None:
    h = started()
    block = make_block(1)
    h.propose(0, block)
    h.vote([1, 2], PREVOTE, 0, block.block_hash)
    h.vote([1, 2, 3], PRECOMMIT, 0, block.block_hash)
    for round_ in range(3):
        h.feed(VoteReceived(sign_vote(BYZANTINE, PREVOTE, 2, round_, None), h.now))
    assert h.core.footprint()["future_messages"] == 3
    h.feed(BlockApplied(1, h.now))
    held = h.core.footprint()
    assert (held["future_messages"], held["future_bytes"]) == (0, 0)


def test_a_next_height_proposal_larger_than_the_budget_is_refused_before_its_signature() -> None:
    """It could never be accepted when its height starts, so it is not even verified (found by
    the simulator's `big` flooder: it used to be verified and buffered until then)."""
    config = ConsensusConfig(max_proposal_bytes_per_validator=64 << 10)
    h = started(config=config)
    block = big_block(2, "huge-next", 128 << 10)
    index = h.proposer_index(2, 0)
    h.feed(ProposalReceived(sign_proposal(index, 2, 0, block, -1), h.now))
    held = h.core.footprint()
    assert h.verified == 0 and (held["future_messages"], held["future_bytes"]) == (0, 0)
