"""Unit tests of ConsensusCore, one group per upon-rule of Algorithm 1 (line numbers cited)."""

from __future__ import annotations

import pytest

from consensus import (
    BlockApplied,
    Broadcast,
    CommitReceived,
    ConsensusConfig,
    EventsAvailable,
    EvidenceFound,
    MemorySignerPersistence,
    Output,
    ProposalReceived,
    Start,
    Step,
    Tick,
    TimeoutFired,
    TimeoutKind,
    VoteReceived,
)
from ledger.blocks import Block, Commit, CommitSignature
from tests.consensus.helpers import (
    CHAIN,
    PRECOMMIT,
    PREVOTE,
    Harness,
    broadcast_proposals,
    broadcast_votes,
    decisions,
    key,
    make_block,
    sign_proposal,
    sign_vote,
    timeouts,
)

# 4 equal validators; proposer(h, r) is validator (h + r) % 4, so at height 1 validator 0
# (the core under test) proposes in round 3 and validator 1 in round 0.


def started(**kwargs: object) -> Harness:
    h = Harness(**kwargs)  # type: ignore[arg-type]
    h.start()
    return h


def to_round(h: Harness, round: int) -> list[Output]:
    """Move the core to `round` through the round-skip rule (f+1 = 2 precommits of `round`)."""
    out = h.vote([2, 3], PRECOMMIT, round, None)
    assert h.core.round == round
    return out


# -- StartRound (lines 11-21) -----------------------------------------------------------------


def test_non_proposer_schedules_timeout_propose_on_start() -> None:
    h = Harness()
    out = h.start()
    assert h.core.round == 0 and h.core.step == Step.PROPOSE
    assert [(t.kind, t.round, t.delay_ms) for t in timeouts(out)] == [
        (TimeoutKind.PROPOSE, 0, 1000)
    ]
    assert broadcast_proposals(out) == []


def test_proposer_proposes_and_prevotes_its_own_block() -> None:
    h = Harness(me=1)
    out = h.start()
    (proposal,) = broadcast_proposals(out)
    assert (proposal.height, proposal.round, proposal.valid_round) == (1, 0, -1)
    assert proposal.block == h.app.built[0]
    (prevote,) = broadcast_votes(out, PREVOTE)
    assert prevote.block_hash == proposal.block_hash
    assert timeouts(out) == []


def test_proposer_reproposes_valid_value_with_valid_round() -> None:
    h = started()
    block = make_block(1, "x")
    h.propose(0, block)
    h.vote([1, 2], PREVOTE, 0, block.block_hash)  # polka in round 0 -> valid_value
    assert h.core.valid_value == block and h.core.valid_round == 0
    out = to_round(h, 3)  # validator 0 proposes in round 3
    assert [(p.round, p.block, p.valid_round) for p in broadcast_proposals(out)] == [(3, block, 0)]
    # the proof of lock is relayed with it, so that receivers can apply lines 28-33
    relayed = [v for v in broadcast_votes(out, PREVOTE) if v.round == 0]
    assert {v.validator for v in relayed} == {key(i).public_key for i in (0, 1, 2)}
    assert all(v.block_hash == block.block_hash for v in relayed)


# -- lines 22-27 ------------------------------------------------------------------------------


def test_line22_valid_proposal_gets_prevote_for_value() -> None:
    h = started()
    block = make_block(1)
    out = h.propose(0, block)
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == [block.block_hash]
    assert h.core.step == Step.PREVOTE


def test_line22_invalid_proposal_gets_prevote_nil() -> None:
    h = started()
    out = h.propose(0, make_block(1, bad=True))
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == [None]
    assert h.core.step == Step.PREVOTE


def test_line22_locked_on_other_value_prevotes_nil() -> None:
    h = started()
    a, b = make_block(1, "a"), make_block(1, "b")
    h.propose(0, a)
    h.vote([1, 2], PREVOTE, 0, a.block_hash)
    assert h.core.locked_value == a.block_hash and h.core.locked_round == 0
    h.vote([1, 2, 3], PRECOMMIT, 0, None)
    h.feed(TimeoutFired(TimeoutKind.PRECOMMIT, 1, 0, h.now))
    assert h.core.round == 1
    out = h.propose(1, b)
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == [None]
    out = h.propose(1, a)  # a second proposal in the round: step is no longer propose
    assert broadcast_votes(out) == []


def test_proposal_from_wrong_proposer_or_bad_signature_is_ignored() -> None:
    h = started()
    block = make_block(1)
    wrong = sign_proposal(2, 1, 0, block, -1)
    assert h.feed(ProposalReceived(wrong, h.now)) == []
    good = sign_proposal(1, 1, 0, block, -1)
    forged = ProposalReceived(type(good)(1, 0, block, -1, good.proposer, wrong.signature), h.now)
    assert h.feed(forged) == []
    assert h.core.step == Step.PROPOSE


# -- lines 28-33 ------------------------------------------------------------------------------


def test_line28_proposal_with_polka_unlocks_when_locked_round_le_vr() -> None:
    h = started()
    a, b = make_block(1, "a"), make_block(1, "b")
    h.propose(0, a)
    h.vote([1, 2], PREVOTE, 0, a.block_hash)  # lock a in round 0
    h.vote([1, 2, 3], PRECOMMIT, 0, None)
    h.feed(TimeoutFired(TimeoutKind.PRECOMMIT, 1, 0, h.now))
    # round 1: polka for b (others' prevotes), no proposal seen by us -> we prevote nil
    h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 1, h.now))
    h.vote([1, 2, 3], PREVOTE, 1, b.block_hash)
    assert h.core.locked_round == 0  # step is precommit-able but no proposal for b yet
    h.vote([1, 2, 3], PRECOMMIT, 1, None)
    h.feed(TimeoutFired(TimeoutKind.PRECOMMIT, 1, 1, h.now))
    assert h.core.round == 2
    out = h.propose(2, b, valid_round=1)  # locked_round 0 <= vr 1: prevote b
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == [b.block_hash]


def test_line28_locked_round_above_vr_prevotes_nil() -> None:
    h = started()
    a, b = make_block(1, "a"), make_block(1, "b")
    h.vote([1, 2, 3], PREVOTE, 0, b.block_hash)  # polka for b in round 0, b not seen
    h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, h.now))
    h.feed(TimeoutFired(TimeoutKind.PRECOMMIT, 1, 0, h.now))
    assert h.core.round == 1
    h.propose(1, a)
    h.vote([1, 2], PREVOTE, 1, a.block_hash)  # lock a in round 1
    assert (h.core.locked_value, h.core.locked_round) == (a.block_hash, 1)
    h.feed(TimeoutFired(TimeoutKind.PRECOMMIT, 1, 1, h.now))
    out = h.propose(2, b, valid_round=0)  # vr 0 < locked_round 1 and b != a: nil
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == [None]


def test_line28_fires_when_the_polka_arrives_after_the_proposal() -> None:
    h = started()
    b = make_block(1, "b")
    to_round(h, 1)
    assert h.propose(1, b, valid_round=0) == []  # no polka for vr yet: wait
    assert h.core.step == Step.PROPOSE
    out = h.vote([1, 2, 3], PREVOTE, 0, b.block_hash)
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == [b.block_hash]


# -- lines 34-35 and 47-48 --------------------------------------------------------------------


def test_line34_timeout_prevote_scheduled_once_on_any_quorum() -> None:
    h = started()
    h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, h.now))
    assert h.core.step == Step.PREVOTE
    out = h.vote([1], PREVOTE, 0, b"\x01" * 32) + h.vote([2], PREVOTE, 0, b"\x02" * 32)
    assert [(t.kind, t.round, t.delay_ms) for t in timeouts(out)] == [(TimeoutKind.PREVOTE, 0, 500)]
    assert timeouts(h.vote([3], PREVOTE, 0, None)) == []


def test_line47_timeout_precommit_scheduled_once_on_any_quorum() -> None:
    h = started()
    out = h.vote([1], PRECOMMIT, 0, b"\x01" * 32) + h.vote([2, 3], PRECOMMIT, 0, None)
    assert [(t.kind, t.round) for t in timeouts(out)] == [(TimeoutKind.PRECOMMIT, 0)]
    assert timeouts(h.vote([1], PRECOMMIT, 0, None)) == []


def test_timeouts_grow_with_the_round() -> None:
    config = ConsensusConfig()
    assert [config.timeout(TimeoutKind.PROPOSE, r) for r in range(3)] == [1000, 1500, 2000]
    assert [config.timeout(TimeoutKind.PREVOTE, r) for r in range(3)] == [500, 1000, 1500]
    assert [config.timeout(TimeoutKind.PRECOMMIT, r) for r in range(3)] == [500, 1000, 1500]
    h = started()
    out = to_round(h, 2)
    assert [(t.kind, t.delay_ms) for t in timeouts(out)] == [(TimeoutKind.PROPOSE, 2000)]


# -- lines 36-43 ------------------------------------------------------------------------------


def test_line36_polka_locks_and_precommits() -> None:
    h = started()
    block = make_block(1)
    h.propose(0, block)
    out = h.vote([1, 2], PREVOTE, 0, block.block_hash)
    assert [v.block_hash for v in broadcast_votes(out, PRECOMMIT)] == [block.block_hash]
    assert (h.core.locked_value, h.core.locked_round) == (block.block_hash, 0)
    assert (h.core.valid_value, h.core.valid_round) == (block, 0)
    assert h.core.step == Step.PRECOMMIT


def test_line36_in_precommit_step_sets_valid_not_lock() -> None:
    h = started(n=7)
    block = make_block(1)
    h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, h.now))  # our prevote nil
    h.vote([1], PREVOTE, 0, None)
    h.vote([2, 3, 4], PREVOTE, 0, block.block_hash)  # 5 of 7 voted
    h.feed(TimeoutFired(TimeoutKind.PREVOTE, 1, 0, h.now))  # precommit nil
    assert h.core.step == Step.PRECOMMIT
    h.vote([5, 6], PREVOTE, 0, block.block_hash)  # 5 of 7 for block: polka
    out = h.propose(0, block)
    assert broadcast_votes(out) == []
    assert (h.core.valid_value, h.core.valid_round) == (block, 0)
    assert (h.core.locked_value, h.core.locked_round) == (None, -1)


# -- lines 44-46 ------------------------------------------------------------------------------


def test_line44_nil_polka_precommits_nil() -> None:
    h = started()
    h.propose(0, make_block(1, bad=True))  # our prevote nil
    out = h.vote([1, 2], PREVOTE, 0, None)
    assert [v.block_hash for v in broadcast_votes(out, PRECOMMIT)] == [None]
    assert h.core.step == Step.PRECOMMIT and h.core.locked_round == -1


# -- lines 49-54 ------------------------------------------------------------------------------


def test_line49_decides_with_a_verifiable_commit() -> None:
    h = started()
    block = make_block(1)
    h.propose(0, block)
    h.vote([1, 2], PREVOTE, 0, block.block_hash)
    out = h.vote([1, 2], PRECOMMIT, 0, block.block_hash)
    (decide,) = decisions(out)
    assert decide.block == block and h.core.decision == block
    decide.commit.verify(CHAIN, h.validators)
    assert decide.commit.block_hash == block.block_hash and decide.commit.round == 0
    assert h.vote([3], PRECOMMIT, 0, block.block_hash) == []  # decided: nothing more


def test_line49_precommits_before_proposal_decide_when_it_arrives() -> None:
    h = started()
    block = make_block(1)
    assert decisions(h.vote([1, 2, 3], PRECOMMIT, 0, block.block_hash)) == []
    (decide,) = decisions(h.propose(0, block))
    assert decide.block == block


def test_line49_decides_for_an_earlier_round() -> None:
    h = started()
    block = make_block(1)
    h.propose(0, block)
    to_round(h, 2)
    (decide,) = decisions(h.vote([1, 2, 3], PRECOMMIT, 0, block.block_hash))
    assert decide.commit.round == 0


def test_line49_invalid_value_is_not_decided() -> None:
    h = started()
    block = make_block(1, bad=True)
    h.propose(0, block)
    assert decisions(h.vote([1, 2, 3], PRECOMMIT, 0, block.block_hash)) == []


# -- lines 55-56 ------------------------------------------------------------------------------


def test_line55_f_plus_one_messages_of_higher_round_skip() -> None:
    h = started()
    assert h.vote([2], PREVOTE, 4, None) == []
    assert h.core.round == 0
    out = h.vote([3], PRECOMMIT, 4, None)  # 2 distinct senders of round 4: > 1/3
    assert h.core.round == 4 and h.core.step == Step.PROPOSE
    assert [(t.kind, t.round) for t in timeouts(out)] == [(TimeoutKind.PROPOSE, 4)]


def test_line55_one_sender_is_not_enough_even_with_two_messages() -> None:
    h = started()
    h.vote([2], PREVOTE, 4, None)
    h.vote([2], PRECOMMIT, 4, None)
    assert h.core.round == 0


def test_line55_counts_the_proposer_too() -> None:
    h = started()
    h.propose(2, make_block(1))  # validator 3 proposes round 2
    h.vote([1], PREVOTE, 2, None)
    assert h.core.round == 2


# -- lines 57-67: timeouts and their stale-input guards ---------------------------------------


def test_on_timeout_propose_prevotes_nil_and_ignores_stale() -> None:
    h = started()
    assert h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 1, h.now)) == []  # other round
    assert h.feed(TimeoutFired(TimeoutKind.PROPOSE, 2, 0, h.now)) == []  # other height
    out = h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, h.now))
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == [None]
    assert h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, h.now)) == []  # step moved on


def test_on_timeout_prevote_precommits_nil_and_ignores_stale() -> None:
    h = started()
    assert h.feed(TimeoutFired(TimeoutKind.PREVOTE, 1, 0, h.now)) == []  # still propose
    h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, h.now))
    assert h.feed(TimeoutFired(TimeoutKind.PREVOTE, 1, 1, h.now)) == []
    out = h.feed(TimeoutFired(TimeoutKind.PREVOTE, 1, 0, h.now))
    assert [v.block_hash for v in broadcast_votes(out, PRECOMMIT)] == [None]
    assert h.core.step == Step.PRECOMMIT


def test_on_timeout_precommit_starts_next_round_and_ignores_stale() -> None:
    h = started()
    assert h.feed(TimeoutFired(TimeoutKind.PRECOMMIT, 1, 1, h.now)) == []
    assert h.feed(TimeoutFired(TimeoutKind.PRECOMMIT, 0, 0, h.now)) == []
    out = h.feed(TimeoutFired(TimeoutKind.PRECOMMIT, 1, 0, h.now))
    assert h.core.round == 1
    assert [(t.kind, t.round, t.delay_ms) for t in timeouts(out)] == [
        (TimeoutKind.PROPOSE, 1, 1500)
    ]
    assert h.feed(TimeoutFired(TimeoutKind.PRECOMMIT, 1, 0, h.now)) == []
    assert h.core.round == 1


def test_garbage_timeouts_are_ignored() -> None:
    h = started()
    assert h.feed(TimeoutFired("nonsense", 1, 0, h.now)) == []  # type: ignore[arg-type]
    assert h.feed(TimeoutFired(TimeoutKind.PROPOSE, -1, "x", h.now)) == []  # type: ignore[arg-type]


# -- heights: buffering, past messages, new height --------------------------------------------


def decide_height_1(h: Harness) -> None:
    block = make_block(1)
    h.propose(0, block)
    h.vote([1, 2], PREVOTE, 0, block.block_hash)
    assert decisions(h.vote([1, 2], PRECOMMIT, 0, block.block_hash))


def test_future_height_messages_are_buffered_and_replayed() -> None:
    h = started()
    decide_height_1(h)
    nxt = make_block(2, "next")
    # proposer(2, 0) is validator 2; its proposal and polka arrive before BlockApplied
    assert h.propose(0, nxt, height=2) == []
    assert h.vote([1, 2, 3], PREVOTE, 0, nxt.block_hash, height=2) == []
    out = h.feed(BlockApplied(1, h.now))
    assert h.core.height == 2
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == [nxt.block_hash]
    assert [v.block_hash for v in broadcast_votes(out, PRECOMMIT)] == [nxt.block_hash]


def test_messages_beyond_the_window_and_past_heights_are_dropped() -> None:
    h = started()
    verified = h.verified
    assert h.vote([1, 2, 3], PREVOTE, 0, None, height=3) == []
    assert h.verified == verified  # not even verified
    decide_height_1(h)
    h.feed(BlockApplied(1, h.now))
    assert h.vote([1, 2, 3], PRECOMMIT, 0, None, height=1) == []
    assert h.core.height == 2 and h.core.round == 0


def test_new_height_resets_locks() -> None:
    h = started()
    decide_height_1(h)
    assert h.core.locked_round == 0
    h.feed(BlockApplied(1, h.now))
    assert (h.core.locked_value, h.core.locked_round) == (None, -1)
    assert (h.core.valid_value, h.core.valid_round) == (None, -1)
    assert h.core.decision is None and h.core.step == Step.PROPOSE


# -- non-validator follower -------------------------------------------------------------------


def test_follower_decides_through_votes_and_never_signs() -> None:
    h = Harness(me=None)
    out = h.start()
    block = make_block(1)
    out += h.propose(0, block)
    out += h.vote([0, 1, 2], PREVOTE, 0, block.block_hash)
    out += h.vote([0, 1, 2], PRECOMMIT, 0, block.block_hash)
    assert not any(isinstance(o, Broadcast) for o in out)
    (decide,) = decisions(out)
    assert decide.block == block
    assert not h.core.is_validator


# -- block sync -------------------------------------------------------------------------------


def test_commit_received_decides_only_when_it_verifies() -> None:
    h = started()
    block = make_block(1)
    votes = [sign_vote(i, PRECOMMIT, 1, 0, block.block_hash) for i in (1, 2, 3)]
    sigs = tuple(CommitSignature(v.validator, v.signature) for v in votes)
    short = Commit(1, 0, block.block_hash, sigs[:2])
    assert h.feed(CommitReceived(block, short, h.now)) == []
    wrong_block = make_block(1, "other")
    full = Commit(1, 0, block.block_hash, sigs)
    assert h.feed(CommitReceived(wrong_block, full, h.now)) == []
    (decide,) = decisions(h.feed(CommitReceived(block, full, h.now)))
    assert decide.block == block and decide.commit == full
    assert h.feed(CommitReceived(block, full, h.now)) == []


def certify(block: Block) -> Commit:
    """Precommits of validators 1..3 for `block` at round 0: a commit with 3/4 of the power."""
    votes = [sign_vote(i, PRECOMMIT, block.header.height, 0, block.block_hash) for i in (1, 2, 3)]
    signatures = tuple(CommitSignature(v.validator, v.signature) for v in votes)
    return Commit(block.header.height, 0, block.block_hash, signatures)


def test_a_certified_header_with_swapped_events_neither_decides_nor_poisons() -> None:
    """The block hash covers only the header: events travelling with it must be the ones
    its events_root names, and a forged pairing must not make the real block look invalid."""
    h = started()
    block = make_block(1)
    full = certify(block)
    swapped = Block(block.header, (b"tx-forged",))
    assert swapped.block_hash == block.block_hash and not swapped.events_match_header()
    assert h.feed(CommitReceived(swapped, full, h.now)) == []
    (decide,) = decisions(h.feed(CommitReceived(block, full, h.now)))
    assert decide.block == block


def test_commit_received_refuses_an_invalid_block() -> None:
    h = started()
    block = make_block(1, bad=True)
    full = certify(block)
    assert h.feed(CommitReceived(block, full, h.now)) == []


# -- Byzantine inputs -------------------------------------------------------------------------


def test_equivocation_becomes_evidence_and_counts_once() -> None:
    h = started()
    a, b = b"\x0a" * 32, b"\x0b" * 32
    h.vote([1], PREVOTE, 0, a)
    out = h.vote([1], PREVOTE, 0, b)
    (found,) = [o for o in out if isinstance(o, EvidenceFound)]
    assert {found.evidence.vote_a.block_hash, found.evidence.vote_b.block_hash} == {a, b}
    found.evidence.verify(CHAIN, h.validators)
    assert h.core.evidence == (found.evidence,)
    verified = h.verified
    assert h.vote([1], PREVOTE, 0, b) == []  # retransmitted conflict: no new evidence
    assert h.verified == verified  # and not verified again
    h.vote([2], PREVOTE, 0, b)
    assert h.core._votes[(0, PREVOTE)].power_for(b) == 1


def test_each_message_is_verified_once() -> None:
    h = started()
    vote = sign_vote(1, PREVOTE, 1, 0, None)
    h.feed(VoteReceived(vote, h.now))
    h.feed(VoteReceived(vote, h.now))
    assert h.verified == 1
    proposal = sign_proposal(1, 1, 0, make_block(1), -1)
    h.feed(ProposalReceived(proposal, h.now))
    h.feed(ProposalReceived(proposal, h.now))
    assert h.verified == 2


def test_junk_inputs_never_crash() -> None:
    h = started()
    block = make_block(1)
    good = sign_vote(1, PREVOTE, 1, 0, None)
    outsider = sign_vote(9, PREVOTE, 1, 0, None)
    junk = [
        VoteReceived(outsider, h.now),
        VoteReceived(type(good)("prevote", 1, 0, None, good.validator, b"\x00" * 64), h.now),
        VoteReceived(type(good)("bogus", 1, 0, None, good.validator, good.signature), h.now),
        VoteReceived(type(good)("prevote", 1, -3, None, good.validator, good.signature), h.now),
        VoteReceived(type(good)("prevote", 1, 0, None, [1], good.signature), h.now),  # type: ignore[arg-type]
        VoteReceived("not a vote", h.now),  # type: ignore[arg-type]
        ProposalReceived("nope", h.now),  # type: ignore[arg-type]
        ProposalReceived(sign_proposal(1, 1, 0, block, 5), h.now),
        CommitReceived("x", "y", h.now),  # type: ignore[arg-type]
        BlockApplied(-5, h.now),
        "not an input",
    ]
    for event in junk:
        assert h.feed(event) == []
    assert h.core.round == 0 and h.core.step == Step.PROPOSE


# -- empty blocks -----------------------------------------------------------------------------


def test_no_pending_events_waits_without_churning() -> None:
    h = Harness(pending=False, config=ConsensusConfig(idle_block_interval_ms=7000))
    out = h.start()
    assert [(t.kind, t.delay_ms) for t in timeouts(out)] == [(TimeoutKind.IDLE, 7000)]
    assert h.core.waiting_for_events
    assert h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, h.now)) == []
    assert h.feed(Tick(h.now)) == [] and h.feed(Tick(h.now)) == []
    out = h.feed(EventsAvailable(h.now))
    assert not h.core.waiting_for_events
    assert [t.kind for t in timeouts(out)] == [TimeoutKind.PROPOSE]


def test_idle_timeout_starts_an_empty_block_round() -> None:
    h = Harness(me=1, pending=False)
    h.start()
    assert h.core.waiting_for_events
    assert h.feed(TimeoutFired(TimeoutKind.IDLE, 2, 0, h.now)) == []
    out = h.feed(TimeoutFired(TimeoutKind.IDLE, 1, 0, h.now))
    assert len(broadcast_proposals(out)) == 1


def test_activity_of_others_ends_the_wait() -> None:
    h = Harness(pending=False)
    h.start()
    out = h.propose(0, make_block(1))
    assert not h.core.waiting_for_events
    assert len(broadcast_votes(out, PREVOTE)) == 1
    h2 = Harness(pending=False)
    h2.start()
    h2.vote([2], PREVOTE, 0, None)
    assert h2.core.waiting_for_events
    h2.vote([3], PREVOTE, 0, None)
    assert not h2.core.waiting_for_events


def test_zero_idle_interval_always_produces_blocks() -> None:
    h = Harness(me=1, pending=False, config=ConsensusConfig(idle_block_interval_ms=0))
    assert len(broadcast_proposals(h.start())) == 1


# -- the minimum block interval ---------------------------------------------------------------

PACED = ConsensusConfig(min_block_interval_ms=100)


def enter_height_2(h: Harness) -> list[Output]:
    """Decide height 1 with two other validators and apply it: height 2 begins."""
    block = make_block(1)
    h.propose(0, block)
    others = h.others()[:2]
    h.vote(others, PREVOTE, 0, block.block_hash)
    assert decisions(h.vote(others, PRECOMMIT, 0, block.block_hash))
    return h.feed(BlockApplied(1, h.now))


def test_a_loaded_height_gathers_for_the_minimum_interval_then_proposes() -> None:
    h = Harness(me=2, config=PACED)  # validator 2 proposes height 2, round 0
    h.start()
    out = enter_height_2(h)  # height 2 begins with events pending
    assert h.core.height == 2 and h.core.waiting_for_events
    assert broadcast_proposals(out) == []
    assert [(t.kind, t.height, t.round, t.delay_ms) for t in timeouts(out)] == [
        (TimeoutKind.GATHER, 2, 0, 100)
    ]
    # More events while gathering schedule nothing more; a stale GATHER changes nothing.
    assert h.feed(EventsAvailable(h.now)) == []
    assert h.feed(TimeoutFired(TimeoutKind.GATHER, 1, 0, h.now)) == []
    assert h.core.waiting_for_events
    out = h.feed(TimeoutFired(TimeoutKind.GATHER, 2, 0, h.now + 100))
    assert len(broadcast_proposals(out)) == 1 and not h.core.waiting_for_events


@pytest.mark.parametrize("after_ms", [1, 40, 100, 5_000])
def test_a_height_that_began_idle_starts_as_soon_as_events_come(after_ms: int) -> None:
    h = Harness(me=2, pending=False, config=PACED)
    h.start()
    out = enter_height_2(h)  # nothing pending: it waits for events
    assert [t.kind for t in timeouts(out)] == [TimeoutKind.IDLE]
    h.app.pending = True
    out = h.feed(EventsAvailable(h.now + after_ms))
    assert len(broadcast_proposals(out)) == 1
    assert TimeoutKind.GATHER not in [t.kind for t in timeouts(out)]


def test_a_proposal_ends_the_gathering_of_a_non_proposer() -> None:
    h = Harness(me=0, config=PACED)
    h.start()
    enter_height_2(h)
    assert h.core.waiting_for_events
    out = h.propose(0, make_block(2, "paced"))
    assert not h.core.waiting_for_events
    assert len(broadcast_votes(out, PREVOTE)) == 1


def test_a_node_starting_or_resuming_a_height_does_not_gather() -> None:
    config = ConsensusConfig(min_block_interval_ms=60_000)
    h = Harness(me=1, config=config)  # validator 1 proposes height 1, round 0
    out = h.start()
    assert len(broadcast_proposals(out)) == 1
    assert TimeoutKind.GATHER not in [t.kind for t in timeouts(out)]
    out = h.restart()  # it proposed (and signed) in height 1: it resumes at once
    assert h.core.round == 0 and not h.core.waiting_for_events
    assert TimeoutKind.GATHER not in [t.kind for t in timeouts(out)]


@pytest.mark.parametrize(("interval", "gather"), [(0, None), (1, 1), (250, 250)])
def test_a_loaded_height_gathers_for_exactly_the_interval(
    interval: int, gather: int | None
) -> None:
    config = ConsensusConfig(min_block_interval_ms=interval)
    h = Harness(me=2, config=config)
    h.start()
    out = enter_height_2(h)
    waits = [t.delay_ms for t in timeouts(out) if t.kind == TimeoutKind.GATHER]
    assert waits == ([] if gather is None else [gather])
    assert len(broadcast_proposals(out)) == (1 if gather is None else 0)
    assert config.timeout(TimeoutKind.GATHER, 3) == interval


# -- retransmission and restart ---------------------------------------------------------------


def test_tick_retransmits_only_when_stalled() -> None:
    h = Harness(me=1)
    h.start()
    assert h.feed(Tick(h.now)) == []  # first tick: progress unknown
    out = h.feed(Tick(h.now))
    assert len(broadcast_proposals(out)) == 1 and len(broadcast_votes(out, PREVOTE)) == 1
    h.vote([0, 2, 3], PREVOTE, 0, None)  # others' nil polka -> precommit nil
    assert h.feed(Tick(h.now)) == []
    out = h.feed(Tick(h.now))
    assert {v.type for v in broadcast_votes(out)} == {PREVOTE, PRECOMMIT}


def test_restart_resumes_round_and_lock_and_never_conflicts() -> None:
    persistence = MemorySignerPersistence()
    h = Harness(persistence=persistence)
    h.start()
    a, b = make_block(1, "a"), make_block(1, "b")
    to_round(h, 1)
    h.propose(1, a)
    h.vote([1, 2], PREVOTE, 1, a.block_hash)
    assert h.core.locked_round == 1
    h.restart()
    assert h.core.round == 1 and h.core.locked_round == 1
    assert h.core.locked_value == a.block_hash
    # the old proposal arrives again; our prevote for a is resent with the stored signature
    out = h.propose(1, a)
    assert [v.block_hash for v in broadcast_votes(out, PREVOTE)] == []
    h2 = Harness(persistence=MemorySignerPersistence())
    h2.start()
    h2.propose(0, a)
    first = broadcast_votes(h2.feed(Tick(h2.now)) + h2.feed(Tick(h2.now)), PREVOTE)
    h2.restart()
    out = h2.propose(0, b)  # a different value in the same slot: the signer refuses
    assert broadcast_votes(out) == []
    out = h2.feed(Tick(h2.now)) + h2.feed(Tick(h2.now))
    assert broadcast_votes(out, PREVOTE) == first
    h2.vote([1, 2, 3], PREVOTE, 2, b.block_hash)
    assert h2.core.round == 2


def test_restart_at_new_height_starts_fresh() -> None:
    persistence = MemorySignerPersistence()
    h = Harness(persistence=persistence)
    h.start()
    decide_height_1(h)
    h.feed(BlockApplied(1, h.now))
    h.restart()
    assert (h.core.height, h.core.round, h.core.locked_round) == (2, 0, -1)
    assert h.feed(Start(h.now)) == []  # a second Start is ignored


def test_an_equivocators_relayed_vote_counts_for_a_proposed_value() -> None:
    h = started()
    block = make_block(1)
    h.vote([3], PREVOTE, 0, None)  # validator 3 told us nil...
    h.propose(0, block)
    h.vote([1], PREVOTE, 0, block.block_hash)
    out = h.vote([3], PREVOTE, 0, block.block_hash)  # ...and told others the block (relayed)
    assert [o.evidence.validator for o in out if isinstance(o, EvidenceFound)] == [
        key(3).public_key
    ]
    assert [v.block_hash for v in broadcast_votes(out, PRECOMMIT)] == [block.block_hash]
    assert h.core._votes[(0, PREVOTE)].total_power == 3


def test_an_equivocators_vote_for_an_unknown_value_counts_once_proposed() -> None:
    h = started()
    block = make_block(1)
    h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, h.now))  # we prevote nil
    h.vote([3], PREVOTE, 0, None)
    h.vote([1, 2], PREVOTE, 0, block.block_hash)
    h.vote([3], PREVOTE, 0, block.block_hash)  # parked: nobody proposed it yet
    assert h.core._votes[(0, PREVOTE)].power_for(block.block_hash) == 2
    h.feed(TimeoutFired(TimeoutKind.PREVOTE, 1, 0, h.now))  # precommit nil
    h.propose(0, block)
    assert h.core._votes[(0, PREVOTE)].power_for(block.block_hash) == 3
    assert (h.core.valid_value, h.core.valid_round) == (block, 0)


def test_restart_restores_the_locked_block_and_reproposes_it_with_its_proof() -> None:
    h = started()
    a = make_block(1, "a")
    h.propose(0, a)
    h.vote([1, 2], PREVOTE, 0, a.block_hash)  # lock a; the signer keeps block and POL
    h.restart()
    assert (h.core.locked_value, h.core.locked_round) == (a.block_hash, 0)
    assert (h.core.valid_value, h.core.valid_round) == (a, 0)
    out = to_round(h, 3)  # validator 0 proposes round 3: the locked block, with its POL
    assert [(p.block, p.valid_round) for p in broadcast_proposals(out)] == [(a, 0)]
    pol = {v.validator for v in broadcast_votes(out, PREVOTE) if v.round == 0}
    assert pol == {key(i).public_key for i in (0, 1, 2)}


def test_stalled_tick_relays_the_round_entry_certificate() -> None:
    h = started()
    h.vote([1, 2, 3], PRECOMMIT, 0, None)
    h.feed(TimeoutFired(TimeoutKind.PRECOMMIT, 1, 0, h.now))
    assert h.core.round == 1
    h.feed(Tick(h.now))
    out = h.feed(Tick(h.now))
    relayed = {(v.validator, v.round) for v in broadcast_votes(out, PRECOMMIT)}
    assert relayed == {(key(i).public_key, 0) for i in (1, 2, 3)}
    h2 = started()
    h2.vote([2, 3], PREVOTE, 5, None)  # skip to round 5 on f+1 of its messages
    h2.feed(Tick(h2.now))
    out = h2.feed(Tick(h2.now))
    assert {
        (v.validator, v.round) for v in broadcast_votes(out) if v.validator != key(0).public_key
    } == {(key(i).public_key, 5) for i in (2, 3)}


def test_commit_certificate_decides_with_the_block_from_a_later_proposal() -> None:
    h = started()
    a = make_block(1, "a")
    h.vote([1, 2, 3], PRECOMMIT, 0, a.block_hash)  # round 0's proposal never arrived
    to_round(h, 2)
    (decide,) = decisions(h.propose(2, a, valid_round=-1))
    assert decide.block == a and decide.commit.round == 0
    decide.commit.verify(CHAIN, h.validators)
