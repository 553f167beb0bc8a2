"""Edge cases of ConsensusCore found by mutation testing (issue 17): each test pins a boundary
or a bookkeeping step that the rule-by-rule tests of test_core.py leave free — the forgery
cache's order, the budgets' exact edges, what an eviction frees, what a rule returns."""

from __future__ import annotations

from dataclasses import replace

from consensus import BlockApplied, ConsensusConfig, ProposalReceived, VoteReceived
from consensus.core import MESSAGE_OVERHEAD, message_size
from ledger.blocks import PRECOMMIT, PREVOTE, Block
from tests.consensus.helpers import (
    Harness,
    events_root,
    key,
    make_block,
    sign_proposal,
    sign_vote,
)


def started(**kwargs: object) -> Harness:
    h = Harness(**kwargs)  # type: ignore[arg-type]
    h.start()
    return h


def test_the_forgery_cache_drops_the_least_recently_seen_forgery() -> None:
    """Two slots: A, B, A again (refreshed, not verified), then C evicts B, the oldest."""
    h = started(config=ConsensusConfig(max_rejected_signatures=2))
    genuine = sign_vote(1, PREVOTE, 1, 0, b"\x01" * 32)
    a, b, c = (replace(genuine, block_hash=bytes([i]) * 32) for i in (0xA, 0xB, 0xC))
    for forged in (a, b, a, c):
        h.feed(VoteReceived(forged, h.now))
    assert h.verified == 3 and h.core.footprint()["rejected"] == 2
    h.feed(VoteReceived(a, h.now))
    h.feed(VoteReceived(c, h.now))
    assert h.verified == 3  # both still remembered
    h.feed(VoteReceived(b, h.now))
    assert h.verified == 4  # B was the one dropped


# -- the next height's buffer (docs/PROTOCOL.md §7.12) ----------------------------------------


def buffer_votes(h: Harness, sender: int, height: int, count: int) -> None:
    for round_ in range(count):
        h.feed(VoteReceived(sign_vote(sender, PREVOTE, height, round_, None), h.now))


def test_a_sender_buffers_at_least_8_messages_of_the_next_height() -> None:
    """max_buffered_messages 4 over 4 validators is 1 each: the floor of 8 applies."""
    h = started(config=ConsensusConfig(max_buffered_messages=4))
    buffer_votes(h, 3, 2, 12)
    assert h.core.footprint()["future_messages"] == 8
    assert h.verified == 8  # the refused ones are refused before their signature check


def test_a_sender_buffers_its_share_of_max_buffered_messages() -> None:
    """40 messages over 4 validators: exactly 10 per sender, each sender on its own."""
    h = started(config=ConsensusConfig(max_buffered_messages=40))
    buffer_votes(h, 3, 2, 12)
    assert h.core.footprint()["future_messages"] == 10
    buffer_votes(h, 2, 2, 3)
    held = h.core.footprint()
    assert (held["future_messages"], held["future_bytes"]) == (13, 13 * MESSAGE_OVERHEAD)


def sized_block(height: int, tag: str, size: int) -> Block:
    """A valid block whose proposal is charged exactly `size` bytes (one event)."""
    events = (b"tx-" + tag.encode().ljust(size - MESSAGE_OVERHEAD - 3, b"x"),)
    block = make_block(height, tag)
    return Block(replace(block.header, events_root=events_root(events)), events)


def proposal_rounds(h: Harness, height: int, index: int) -> list[int]:
    return [r for r in range(64) if h.proposer_index(height, r) == index]


def test_a_senders_next_height_bytes_fill_its_share_exactly_and_no_more() -> None:
    share = 3 << 20  # max_buffered_bytes / 4 validators, above MIN_SENDER_BUFFER
    h = started(config=ConsensusConfig(max_buffered_bytes=4 * share))
    r1, r2, r3, r4 = proposal_rounds(h, 2, 3)[:4]
    half = share // 2
    for round_, size in ((r1, half), (r2, half + 1), (r3, half), (r4, MESSAGE_OVERHEAD + 4)):
        block = sized_block(2, f"r{round_}", size)
        h.feed(ProposalReceived(sign_proposal(3, 2, round_, block, -1), h.now))
    held = h.core.footprint()
    assert (held["future_messages"], held["future_bytes"]) == (2, share)
    assert h.verified == 2  # over budget: refused before the signature check
    assert {m.round for m, _ in h.core._future.values()} == {r1, r3}


def test_starting_a_height_replays_its_messages_unverified_and_recounts_the_rest() -> None:
    """Window 2: height 2's messages are replayed without a second signature check, height
    3's stay buffered and are charged again, per sender, from scratch."""
    h = started(config=ConsensusConfig(future_height_window=2, max_buffered_messages=40))
    block = make_block(2, "next")
    proposer_2 = h.proposer_index(2, 0)
    h.feed(ProposalReceived(sign_proposal(proposer_2, 2, 0, block, -1), h.now))
    buffer_votes(h, 3, 2, 2)
    buffer_votes(h, 3, 3, 3)
    buffer_votes(h, 2, 3, 1)
    assert h.core.footprint()["future_messages"] == 7
    verified = h.verified
    h.feed(BlockApplied(1, h.now))
    assert h.verified == verified
    held = h.core.footprint()
    assert (held["future_messages"], held["future_bytes"]) == (4, 4 * MESSAGE_OVERHEAD)
    assert (held["proposals"], held["votes"]) == (1, 2 + 1)  # our own prevote for the block
    # sender 3 has 3 of its 10 slots used by height 3: 7 more fit, not 8
    buffer_votes(h, 3, 3, 12)
    assert h.core.footprint()["future_messages"] == 4 + 7


# -- what evicting a sender's future round frees -----------------------------------------------
# An unstarted core keeps what arrives (no rule runs yet), so one sender's rounds can be
# evicted while other senders' messages of the same rounds stay.


def precommit_rounds(h: Harness, sender: int, rounds: range, value: bytes | None = None) -> None:
    for round_ in rounds:
        h.feed(VoteReceived(sign_vote(sender, PRECOMMIT, 1, round_, value), h.now))


def test_an_evicted_round_loses_the_senders_proposals_and_keeps_the_others() -> None:
    h = Harness()
    assert h.config.max_future_rounds_per_validator == 4
    assert (h.proposer_index(1, 2), h.proposer_index(1, 4)) == (3, 1)
    other = make_block(1, "from-1")
    h.feed(ProposalReceived(sign_proposal(1, 1, 4, other, -1), h.now))
    h.feed(ProposalReceived(sign_proposal(3, 1, 2, make_block(1, "from-3"), -1), h.now))
    precommit_rounds(h, 3, range(2, 9))  # rounds 2, 3 and 4 are evicted for sender 3
    held = h.core.footprint()
    assert sorted(h.core._proposals) == [4]
    assert held["proposal_bytes"] == message_size(h.core._proposals[4][other.block_hash, -1])
    assert (held["vote_sets"], held["votes"]) == (4, 4)
    assert sorted(h.core._senders) == [4, 5, 6, 7, 8]
    assert h.core._senders[4] == {key(1).public_key} and h.core._sender_power[4] == 1


def test_an_evicted_senders_power_leaves_the_rounds_count() -> None:
    """After the eviction round 2 counts validator 1 only: two more senders make f+1, not one."""
    h = Harness(n=7)
    h.vote([1], PRECOMMIT, 2, None)
    precommit_rounds(h, 3, range(2, 7))
    assert h.core._sender_power[2] == 1 and h.core._senders[2] == {key(1).public_key}
    h.start()
    h.vote([2], PRECOMMIT, 2, None)  # 2 of 7: not f+1 (3)
    assert h.core.round == 0
    h.vote([4], PRECOMMIT, 2, None)
    assert h.core.round == 2


def test_an_eviction_that_breaks_a_quorum_forgets_its_commit_round() -> None:
    h = Harness()
    block = make_block(1, "x")
    h.vote([1, 2, 3], PRECOMMIT, 2, block.block_hash)
    assert h.core._commit_rounds == {2}
    precommit_rounds(h, 3, range(3, 7))
    assert h.core._commit_rounds == set()
    assert h.core._votes[2, PRECOMMIT].total_power == 2


def test_an_eviction_that_empties_a_vote_set_frees_it_and_its_commit_round() -> None:
    """A validator with more than 2/3 of the power commits alone; its evicted round is gone."""
    h = Harness(powers=[1, 1, 1, 7])
    block = make_block(1, "x")
    precommit_rounds(h, 3, range(2, 3), block.block_hash)
    assert h.core._commit_rounds == {2}
    precommit_rounds(h, 3, range(3, 7))
    assert h.core._commit_rounds == set() and (2, PRECOMMIT) not in h.core._votes
    h.start()  # the deciding rules look only at rounds that still hold a quorum
    assert h.core.round == 6 and h.core.decision is None
