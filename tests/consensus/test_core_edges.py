"""Edge cases of ConsensusCore found by mutation testing (issue 17): each test pins a boundary
or a bookkeeping step that the rule-by-rule tests of test_core.py leave free — the forgery
cache's order, the budgets' exact edges, what an eviction frees, what a rule returns."""

from __future__ import annotations

from dataclasses import replace

from consensus import BlockApplied, ConsensusConfig, ProposalReceived, VoteReceived
from consensus.core import MESSAGE_OVERHEAD
from ledger.blocks import PREVOTE, Block
from tests.consensus.helpers import (
    Harness,
    events_root,
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
