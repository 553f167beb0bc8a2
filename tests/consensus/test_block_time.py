"""Block-time attacks against proposer-based timestamps (docs/PROTOCOL.md §14).

A proposer may pick any block time. Whether it is timely — within the precision and the
message delay of when the proposal arrived — decides only this node's prevote in this round;
validity (judged by chain and block alone) is cached, "untimely" never is. So a block time at
the edge of the window is refused by every node that received it at the same moment, alike;
and a node that prevoted nil is never stranded: it decides the block from 2f+1 precommits.
"""

from __future__ import annotations

import pytest

from consensus import ConsensusConfig, ProposalReceived
from tests.consensus.helpers import (
    PRECOMMIT,
    PREVOTE,
    Harness,
    broadcast_votes,
    decisions,
    make_block,
    sign_proposal,
)

PRECISION = 1_000
DELAY = 5_000
CONFIG = ConsensusConfig(time_precision_ms=PRECISION, message_delay_ms=DELAY)


def arrive(h: Harness, time: int, round_: int = 0, valid_round: int = -1) -> bytes | None:
    """Deliver proposer(1, round_)'s proposal of a block with `time`; return our prevote."""
    block = make_block(1, f"t{time}", time)
    proposal = sign_proposal(h.proposer_index(1, round_), 1, round_, block, valid_round)
    out = h.feed(ProposalReceived(proposal, h.now))
    (prevote,) = broadcast_votes(out, PREVOTE)
    return prevote.block_hash


def started() -> Harness:
    h = Harness(config=CONFIG)
    h.start()
    h.now = 100_000
    return h


@pytest.mark.parametrize(
    ("offset", "timely"),
    [
        (0, True),
        (PRECISION, True),  # the block time is `precision` ahead of our clock
        (PRECISION + 1, False),  # a little more: in the future
        (-(PRECISION + DELAY), True),  # the oldest a proposal may be on arrival
        (-(PRECISION + DELAY) - 1, False),  # back-dated (e.g. after a stall)
        (-86_400_000, False),  # a day in the past
        (10 * 365 * 86_400_000, False),  # ten years ahead
    ],
)
def test_a_block_time_at_the_edge_is_judged_alike_by_every_node(offset: int, timely: bool) -> None:
    """Three honest nodes receiving the proposal at the same instant prevote alike."""
    verdicts = set()
    for _ in range(3):
        h = started()
        block_time = h.now + offset  # the proposal arrives at h.now
        prevote = arrive(h, block_time)
        verdicts.add(prevote is not None)
    assert verdicts == {timely}


def test_the_message_delay_grows_with_the_round() -> None:
    h = started()
    h.vote([2, 3], PRECOMMIT, 10, None)  # f+1 move us to round 10
    assert h.core.round == 10
    back = PRECISION + DELAY + 10 * (DELAY // 10)
    assert arrive(h, h.now - back, round_=10) is not None
    h2 = started()
    h2.vote([2, 3], PRECOMMIT, 10, None)
    assert arrive(h2, h2.now - back - 1, round_=10) is None


def test_a_node_that_prevoted_nil_for_an_untimely_block_still_decides_it() -> None:
    """Never "invalid" cached from the clock: 2f+1 precommits for the block decide it."""
    h = started()
    block = make_block(1, "late", h.now - 60_000)
    index = h.proposer_index(1, 0)
    out = h.feed(ProposalReceived(sign_proposal(index, 1, 0, block, -1), h.now))
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == [None]
    out = h.vote([1, 2, 3], PRECOMMIT, 0, block.block_hash)
    (decided,) = decisions(out)
    assert decided.block == block


def test_a_re_proposal_with_its_proof_of_lock_is_not_judged_by_time() -> None:
    """After a stall, a locked block re-proposed with its POL is prevoted whatever its age,
    or the chain could never decide a value that is locked."""
    h = started()
    old = make_block(1, "locked", h.now - 3_600_000)
    h.vote([1, 2, 3], PREVOTE, 0, old.block_hash)
    h.vote([2, 3], PRECOMMIT, 1, None)  # move on to round 1
    assert h.core.round == 1
    index = h.proposer_index(1, 1)
    out = h.feed(ProposalReceived(sign_proposal(index, 1, 1, old, 0), h.now))
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == [old.block_hash]


def test_the_timely_window_is_the_stated_formula() -> None:
    config = ConsensusConfig(time_precision_ms=10, message_delay_ms=100)
    assert config.timely(1_000, 990, 0) and not config.timely(1_000, 989, 0)
    assert config.timely(1_000, 1_110, 0) and not config.timely(1_000, 1_111, 0)
    assert config.timely(1_000, 1_130, 2) and not config.timely(1_000, 1_131, 2)
