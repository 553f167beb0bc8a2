"""Edge cases of ConsensusCore found by mutation testing (issue 17): each test pins a boundary
or a bookkeeping step that the rule-by-rule tests of test_core.py leave free — the forgery
cache's order, the budgets' exact edges, what an eviction frees, what a rule returns, the
validator set and config of each height (`validators_at`, `config_at`), the input guards, what
a restart brings back and what a stalled Tick retransmits."""

from __future__ import annotations

from dataclasses import replace

from consensus import (
    BlockApplied,
    Broadcast,
    CommitReceived,
    ConsensusConfig,
    ConsensusCore,
    Decide,
    MemorySignerPersistence,
    ProposalReceived,
    Signer,
    Start,
    Step,
    Tick,
    TimeoutFired,
    TimeoutKind,
    VoteReceived,
)
from consensus.core import MESSAGE_OVERHEAD, message_size
from consensus.messages import MAX_ROUND
from consensus.proposer import proposer
from consensus.signer import SignerState
from ledger import crypto
from ledger.blocks import PRECOMMIT, PREVOTE, Block, Validator, ValidatorSet
from tests.consensus.helpers import (
    CHAIN,
    FakeApp,
    Harness,
    broadcast_proposals,
    broadcast_votes,
    decisions,
    events_root,
    key,
    make_block,
    sign_proposal,
    sign_vote,
    timeouts,
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


# -- the validator set and config of each height (governance) ---------------------------------
# Height 1 is decided by validators 0-3; from height 2 validator 4 replaces validator 3. With
# equal powers proposer(h, r) is the member at (h + r) mod 4, so at (2, 1) that is validator 3
# in the old set and validator 4 in the new one.

OLD = (0, 1, 2, 3)
NEW = (0, 1, 2, 4)


def members(indices: tuple[int, ...]) -> ValidatorSet:
    return ValidatorSet(tuple(Validator(f"v{i}", key(i).public_key, 1) for i in indices))


class Schedule:
    """validators_at/config_at of a chain whose set changes at height 2 (height 3 unknown
    unless `known` says so), recording each call."""

    def __init__(self, known: int = 2) -> None:
        self.known = known
        self.sets = {1: members(OLD), 2: members(NEW), 3: members(NEW)}
        self.asked: list[int] = []
        self.configs: list[tuple[int, ConsensusConfig]] = []

    def validators_at(self, height: int) -> ValidatorSet | None:
        self.asked.append(height)
        return self.sets[height] if height <= self.known else None

    def config_at(self, height: int, current: ConsensusConfig) -> ConsensusConfig:
        self.configs.append((height, current))
        return replace(current, timeout_propose_ms=1000 * height + 7)


def governed(
    me: int | None, schedule: Schedule, height: int = 1, verified: list[bytes] | None = None
) -> ConsensusCore:
    """A core whose constructor set is a decoy: the schedule's set must replace it."""

    def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
        if verified is not None:
            verified.append(public_key)
        crypto.verify(public_key, message, signature)

    signer = None if me is None else Signer(key(me), MemorySignerPersistence())
    return ConsensusCore(
        ConsensusConfig(),
        CHAIN,
        members((5, 6, 7, 8)),
        signer,
        FakeApp(),
        height,
        verify=verify,
        validators_at=schedule.validators_at,
        config_at=schedule.config_at,
    )


def test_a_core_takes_the_set_and_config_of_the_height_it_starts_at() -> None:
    schedule = Schedule()
    core = governed(0, schedule)
    assert core.validators == members(OLD)
    assert schedule.asked == [1]
    assert [h for h, _ in schedule.configs] == [1]
    assert schedule.configs[0][1] == ConsensusConfig()  # given the config it had
    assert core.config.timeout_propose_ms == 1007
    out = core.handle(Start(10))
    assert [t.delay_ms for t in timeouts(out)] == [1007]  # validator 1 proposes (1, 0)


def test_a_member_of_the_new_set_only_signs_from_the_height_it_joins() -> None:
    schedule = Schedule()
    core = governed(4, schedule)
    assert not core.is_validator
    core.handle(Start(10))
    out = core.handle(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, 20))
    assert broadcast_votes(out) == []  # not a member at height 1: no nil prevote
    block = make_block(1, "one")
    core.handle(ProposalReceived(sign_proposal(1, 1, 0, block, -1), 30))
    for i in (0, 1, 2):
        core.handle(VoteReceived(sign_vote(i, PRECOMMIT, 1, 0, block.block_hash), 40))
    assert core.decision == block
    out = core.handle(BlockApplied(1, 50))
    assert core.height == 2 and core.validators == members(NEW) and core.is_validator
    assert core.config.timeout_propose_ms == 2007
    assert schedule.configs[-1][0] == 2 and schedule.configs[-1][1].timeout_propose_ms == 1007
    assert [t.delay_ms for t in timeouts(out)] == [2007]
    out = core.handle(TimeoutFired(TimeoutKind.PROPOSE, 2, 0, 60))
    assert [(v.type, v.validator, v.block_hash) for v in broadcast_votes(out)] == [
        (PREVOTE, key(4).public_key, None)
    ]


def test_a_member_left_out_of_the_new_set_stops_signing() -> None:
    schedule = Schedule()
    core = governed(3, schedule)
    assert core.is_validator
    core.handle(Start(10))
    out = core.handle(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, 20))
    assert [v.validator for v in broadcast_votes(out)] == [key(3).public_key]
    core.handle(BlockApplied(1, 30))
    assert not core.is_validator
    out = core.handle(TimeoutFired(TimeoutKind.PROPOSE, 2, 0, 40))
    assert broadcast_votes(out) == []


def test_the_next_heights_messages_are_buffered_from_its_own_set() -> None:
    """At height 1, height 2's proposer of round 1 is validator 4 (not 3), and validator 4's
    votes are kept while validator 3's are refused before any signature check."""
    schedule = Schedule()
    verified: list[bytes] = []
    core = governed(0, schedule, verified=verified)
    core.handle(Start(10))
    assert core.proposer(2, 1) == key(4).public_key == proposer(members(NEW), 2, 1)
    assert core.proposer(1, 2) == key(3).public_key
    block = make_block(2, "next")
    core.handle(ProposalReceived(sign_proposal(3, 2, 1, block, -1), 20))
    core.handle(VoteReceived(sign_vote(3, PREVOTE, 2, 1, block.block_hash), 20))
    assert core.footprint()["future_messages"] == 0 and verified == []
    core.handle(ProposalReceived(sign_proposal(4, 2, 1, block, -1), 20))
    for i in (1, 2, 4):
        core.handle(VoteReceived(sign_vote(i, PRECOMMIT, 2, 1, block.block_hash), 20))
    assert core.footprint()["future_messages"] == 4
    assert verified == [key(i).public_key for i in (4, 1, 2, 4)]
    # height 1 decided and applied: height 2 starts with what was buffered, and decides
    one = make_block(1, "one")
    core.handle(ProposalReceived(sign_proposal(1, 1, 0, one, -1), 30))
    for i in (1, 2, 3):
        core.handle(VoteReceived(sign_vote(i, PRECOMMIT, 1, 0, one.block_hash), 30))
    out = core.handle(BlockApplied(1, 40))
    assert [d.block for d in decisions(out)] == [block]


def test_a_coming_heights_messages_are_dropped_while_its_set_is_unknown() -> None:
    """Window 2: height 3's set is not known yet, so its messages are not even verified."""
    schedule = Schedule(known=2)
    verified: list[bytes] = []
    core = ConsensusCore(
        ConsensusConfig(future_height_window=2),
        CHAIN,
        members(OLD),
        None,
        FakeApp(),
        1,
        verify=lambda pk, m, s: verified.append(pk),
        validators_at=schedule.validators_at,
    )
    core.handle(Start(10))
    core.handle(VoteReceived(sign_vote(1, PREVOTE, 3, 0, None), 20))
    core.handle(ProposalReceived(sign_proposal(0, 3, 1, make_block(3, "x"), -1), 20))
    assert core.footprint()["future_messages"] == 0 and verified == []
    assert core.proposer(3, 1) == proposer(members(OLD), 3, 1)  # unknown: the current set
    core.handle(VoteReceived(sign_vote(1, PREVOTE, 2, 0, None), 20))
    assert core.footprint()["future_messages"] == 1 and verified == [key(1).public_key]


# -- initial values and the input guard of handle ----------------------------------------------


def test_an_input_without_an_integer_time_leaves_the_clock_at_its_initial_zero() -> None:
    """`now` True (a bool) or a string is not a time: the core keeps its clock, 0 before any
    input, so the block it builds as proposer of (1, 0) is stamped 0; a later int is taken."""
    h = Harness(me=1)
    assert h.proposer_index(1, 0) == 1
    h.core.handle(Start(True))
    assert [(b.header.time, type(b.header.time)) for b in h.app.built] == [(0, int)]
    h.core.handle(TimeoutFired(TimeoutKind.PROPOSE, 1, 0, "late"))  # type: ignore[arg-type]
    h.core.handle(VoteReceived(sign_vote(2, PRECOMMIT, 1, 1, None), 1234))
    h.core.handle(VoteReceived(sign_vote(3, PRECOMMIT, 1, 1, None), 1235))
    assert h.core.round == 1
    h.core.handle(TimeoutFired(TimeoutKind.PRECOMMIT, 1, 1, "x"))  # type: ignore[arg-type]
    assert h.core.round == 2 and h.proposer_index(1, 2) == 3
    h.core.handle(VoteReceived(sign_vote(2, PRECOMMIT, 1, 4, None), 5000))
    h.core.handle(VoteReceived(sign_vote(3, PRECOMMIT, 1, 4, None), 5001))
    assert h.core.round == 4 and h.proposer_index(1, 4) == 1
    assert [b.header.time for b in h.app.built] == [0, 5001]


# -- the proposal budget: dropping a sender's older rounds to fit a new one --------------------
# At height 1 with 4 validators proposer(1, r) is validator (1 + r) % 4: validator 1 proposes
# rounds 0, 4, 8, 12 and validator 3 rounds 2, 6, 10. The cores are not started (round 0), so
# what arrives is only stored.


def height_one_block(tag: str, size: int) -> Block:
    """A valid height-1 block whose proposal is charged exactly `size` bytes."""
    events = (b"tx-" + tag.encode().ljust(size - MESSAGE_OVERHEAD - 3, b"x"),)
    block = make_block(1, tag)
    return Block(replace(block.header, events_root=events_root(events)), events)


def offer(h: Harness, round_: int, size: int, tag: str = "") -> bytes:
    block = height_one_block(tag or f"r{round_}", size)
    index = h.proposer_index(1, round_)
    h.feed(ProposalReceived(sign_proposal(index, 1, round_, block, -1), h.now))
    assert message_size(sign_proposal(index, 1, round_, block, -1)) == size
    return block.block_hash


def budget(h: Harness) -> tuple[list[int], dict[bytes, int], dict[bytes, int], set[object]]:
    core = h.core
    charged, proposed = dict(core._proposal_bytes), dict(core._proposed)
    return sorted(core._proposals), charged, proposed, set(core._arrival)


def test_the_budget_drops_the_senders_oldest_older_round_and_stops_once_the_new_one_fits() -> None:
    h = Harness(config=ConsensusConfig(max_proposal_bytes_per_validator=3000))
    one, three = key(1).public_key, key(3).public_key
    b0 = offer(h, 0, 1000)  # the current round: never dropped
    b2 = offer(h, 2, 1000)  # validator 3's: not validator 1's budget
    offer(h, 4, 1000)
    offer(h, 8, 1000)
    b12 = offer(h, 12, 1000)  # 4000 > 3000: round 4 goes, and only round 4 (exact fit)
    rounds, charged, proposed, arrivals = budget(h)
    assert rounds == [0, 2, 8, 12]
    assert charged == {one: 3000, three: 1000}
    b8 = next(iter(h.core._proposals[8]))[0]
    assert proposed == {b0: 1, b2: 1, b8: 1, b12: 1}
    assert arrivals == {(0, b0, -1), (2, b2, -1), (8, b8, -1), (12, b12, -1)}


def test_a_proposal_that_fits_only_by_dropping_its_own_round_is_refused() -> None:
    h = Harness(config=ConsensusConfig(max_proposal_bytes_per_validator=3000))
    b0 = offer(h, 0, 1000)
    b4 = offer(h, 4, 2000, "first")
    offer(h, 4, 1000, "second")  # round 4's first proposal is not older than round 4
    rounds, charged, proposed, _ = budget(h)
    assert rounds == [0, 4] and len(h.core._proposals[4]) == 1
    assert charged == {key(1).public_key: 3000} and proposed == {b0: 1, b4: 1}


def test_a_single_proposal_of_exactly_the_budget_is_kept() -> None:
    h = Harness(config=ConsensusConfig(max_proposal_bytes_per_validator=3000))
    b2 = offer(h, 2, 3000)
    assert budget(h)[:3] == ([2], {key(3).public_key: 3000}, {b2: 1})


def test_a_proposal_over_the_budget_left_after_dropping_every_older_round_is_refused() -> None:
    h = Harness(config=ConsensusConfig(max_proposal_bytes_per_validator=3000))
    offer(h, 0, 2000)
    offer(h, 4, 1000)
    offer(h, 8, 1500)  # dropping round 4 leaves 2000 + 1500: still over
    rounds, charged, _, arrivals = budget(h)
    assert rounds == [0] and charged == {key(1).public_key: 2000} and len(arrivals) == 1


def test_evicting_a_senders_only_proposal_round_frees_its_budget_entry() -> None:
    h = Harness()
    block_hash = offer(h, 2, 1000)
    for round_ in range(3, 7):  # validator 3's fifth future round evicts round 2
        h.feed(VoteReceived(sign_vote(3, PRECOMMIT, 1, round_, block_hash), h.now))
    assert budget(h) == ([], {}, {}, set())
    assert sorted(r for r, _ in h.core._votes) == [3, 4, 5, 6]


# -- the round window of a sender: _admit_round ------------------------------------------------


def test_a_sender_with_full_future_rounds_is_still_heard_in_the_current_round() -> None:
    h = Harness()
    for round_ in range(1, 5):
        h.feed(VoteReceived(sign_vote(2, PRECOMMIT, 1, round_, None), h.now))
    h.feed(VoteReceived(sign_vote(2, PREVOTE, 1, 0, None), h.now))
    assert h.core._votes[0, PREVOTE].get(key(2).public_key) is not None
    assert h.core._future_rounds[key(2).public_key] == {1, 2, 3, 4}


def test_a_round_below_a_full_window_is_refused_and_a_higher_one_replaces_the_lowest() -> None:
    h = Harness()
    three = key(3).public_key
    for round_ in (5, 6, 7, 8):
        h.feed(VoteReceived(sign_vote(3, PRECOMMIT, 1, round_, None), h.now))
    h.feed(VoteReceived(sign_vote(3, PRECOMMIT, 1, 2, None), h.now))
    assert (2, PRECOMMIT) not in h.core._votes
    h.feed(VoteReceived(sign_vote(3, PREVOTE, 1, 6, None), h.now))  # a round it holds
    assert h.core._votes[6, PREVOTE].get(three) is not None
    h.feed(VoteReceived(sign_vote(3, PRECOMMIT, 1, 9, None), h.now))
    assert h.core._votes[9, PRECOMMIT].get(three) is not None
    assert sorted({r for r, _ in h.core._votes}) == [6, 7, 8, 9]
    assert h.core._future_rounds[three] == {6, 7, 8, 9}
    h.feed(VoteReceived(sign_vote(3, PRECOMMIT, 1, 10, None), h.now))
    assert sorted({r for r, _ in h.core._votes}) == [7, 8, 9, 10]


def test_the_round_a_core_moved_to_no_longer_counts_against_the_senders_window() -> None:
    """Validator 3's round 2 becomes the current round: four more future rounds fit without
    evicting its round-2 precommit (the one that moved the core)."""
    h = Harness()
    h.start()
    h.vote([2, 3], PRECOMMIT, 2, None)
    assert h.core.round == 2
    for round_ in range(3, 7):
        h.feed(VoteReceived(sign_vote(3, PRECOMMIT, 1, round_, None), h.now))
    assert h.core._votes[2, PRECOMMIT].get(key(3).public_key) is not None
    assert h.core._future_rounds[key(3).public_key] == {3, 4, 5, 6}


# -- what the upon-rules return: a rule that fired makes every rule be evaluated again ----------


def test_a_round_skip_is_followed_in_the_same_input_by_the_prevote_for_that_rounds_proposal() -> (
    None
):
    h = Harness()
    h.start()
    block = make_block(1, "r2")
    h.propose(2, block)  # validator 3, proposer of round 2: power 1 of 4 is not f+1
    assert h.core.round == 0
    out = h.vote([2], PRECOMMIT, 2, None)
    assert h.core.round == 2
    assert [(v.round, v.block_hash) for v in broadcast_votes(out, PREVOTE)] == [
        (2, block.block_hash)
    ]


def deciding_alone() -> Harness:
    """Validator 3 holds 7 of 10: its precommit alone is a commit quorum and f+1 of its round
    (validator 3 proposes round 0, validator 1 round 3)."""
    h = Harness(powers=[1, 1, 1, 7])
    assert (h.proposer_index(1, 0), h.proposer_index(1, 3)) == (3, 1)
    h.start()
    return h


def test_deciding_from_a_later_rounds_proposal_starts_no_round_of_the_decided_height() -> None:
    h = deciding_alone()
    block = make_block(1, "r3")
    h.propose(3, block)
    out = h.vote([3], PRECOMMIT, 3, block.block_hash)
    assert [type(o) for o in out] == [Decide] and out[0].block == block  # type: ignore[union-attr]
    assert h.core.round == 0


def test_deciding_from_a_certificate_starts_no_round_of_the_decided_height() -> None:
    """The round-1 quorum is for the block proposed in round 0: decided by the certificate
    rule (no round-1 proposal), and round 1 is not started although it has f+1."""
    h = deciding_alone()
    block = make_block(1, "r0")
    h.propose(0, block)
    out = h.vote([3], PRECOMMIT, 1, block.block_hash)
    assert [type(o) for o in out] == [Decide] and out[0].block == block  # type: ignore[union-attr]
    assert h.core.round == 0


# -- input guards: what is not a height, a round or a message of this height is ignored ---------


def test_a_block_applied_that_is_not_a_later_height_changes_nothing() -> None:
    h = Harness()
    h.start()
    h.vote([2, 3], PRECOMMIT, 2, None)
    for height in (True, 0, "2", -1, None):
        assert h.feed(BlockApplied(height, h.now)) == []  # type: ignore[arg-type]
        assert (h.core.height, h.core.round) == (1, 2)


def test_a_timeout_with_a_height_or_round_that_is_not_a_round_number_is_ignored() -> None:
    """True == 1: read as numbers these would be height 1 / round 1 of the core."""
    h = Harness()
    h.start()
    h.vote([2, 3], PRECOMMIT, 1, None)
    assert (h.core.round, h.core.step) == (1, Step.PROPOSE)
    for height, round_ in ((True, 1), (1, True), (1.0, 1), (1, 1.0)):
        out = h.feed(TimeoutFired(TimeoutKind.PROPOSE, height, round_, h.now))  # type: ignore[arg-type]
        assert out == [] and h.core.step == Step.PROPOSE
    assert broadcast_votes(h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 1, h.now)), PREVOTE)


def test_the_largest_round_number_is_a_round_and_one_more_or_a_negative_one_is_not() -> None:
    h = Harness()
    vote = sign_vote(2, PRECOMMIT, 1, MAX_ROUND, None)
    h.feed(VoteReceived(vote, h.now))
    assert (MAX_ROUND, PRECOMMIT) in h.core._votes
    for round_ in (MAX_ROUND + 1, -1):  # signed: only the range check can refuse them
        h.feed(VoteReceived(sign_vote(2, PRECOMMIT, 1, round_, None), h.now))
        assert (round_, PRECOMMIT) not in h.core._votes
    assert h.core.footprint()["vote_sets"] == 1 and h.verified == 1


def test_a_proposal_whose_valid_round_is_its_own_round_is_not_well_formed() -> None:
    h = Harness()
    block = make_block(1, "x")
    h.feed(ProposalReceived(sign_proposal(1, 1, 0, block, 0), h.now))
    h.feed(ProposalReceived(sign_proposal(3, 1, 2, block, 2), h.now))
    assert h.core.footprint()["proposals"] == 0 and h.verified == 0
    h.feed(ProposalReceived(sign_proposal(3, 1, 2, block, 1), h.now))
    assert h.core.footprint()["proposals"] == 1


def test_a_commit_that_is_not_a_commit_is_ignored() -> None:
    h = Harness()
    h.start()
    block = make_block(1, "x")
    for commit in ("junk", None, block):
        assert h.feed(CommitReceived(block, commit, h.now)) == []  # type: ignore[arg-type]
    assert h.core.decision is None


def test_a_decided_core_ignores_timeouts_and_proposals_of_its_height() -> None:
    h = deciding_alone()
    block = make_block(1, "r3")
    h.propose(3, block)
    h.vote([3], PRECOMMIT, 3, block.block_hash)
    assert h.core.decision == block
    held = h.core.footprint()
    for kind in TimeoutKind:
        assert h.feed(TimeoutFired(kind, 1, 0, h.now)) == []
    h.propose(0, make_block(1, "late"))
    assert h.core.footprint() == held and h.core.round == 0


def test_a_proposal_of_a_past_height_is_ignored() -> None:
    h = Harness()
    h.feed(BlockApplied(1, h.now))
    assert h.core.height == 2
    index = h.proposer_index(2, 1)  # would be the proposer if the height were not checked
    h.feed(ProposalReceived(sign_proposal(index, 1, 1, make_block(1, "old"), -1), h.now))
    assert h.core.footprint()["proposals"] == 0 and h.verified == 0


# -- a restart: the lock's proof and our own votes come back --------------------------------------


def locked(h: Harness) -> Block:
    """Validator 0 prevotes and precommits the round-0 block of validator 1 (locking on it)."""
    h.start()
    block = make_block(1, "locked")
    h.propose(0, block)
    h.vote([1, 2], PREVOTE, 0, block.block_hash)
    assert h.core.locked_value == block.block_hash
    return block


def test_a_restarted_core_checks_the_proof_of_its_lock_but_not_its_own_recent_votes() -> None:
    h = Harness()
    block = locked(h)
    before = h.verified
    h.core = h._build(1)
    assert h.verified - before == 3  # the three prevotes of the proof, ours included
    me = key(0).public_key
    prevotes, precommits = h.core._votes[0, PREVOTE], h.core._votes[0, PRECOMMIT]
    assert prevotes.has_quorum_for(block.block_hash)
    assert [(v.validator, v.block_hash) for v in precommits.votes()] == [(me, block.block_hash)]
    assert (h.core.locked_value, h.core.locked_round) == (block.block_hash, 0)


def test_a_restarted_core_skips_proof_votes_of_another_height_or_forged() -> None:
    h = Harness()
    block = locked(h)
    assert h.persistence.data is not None
    state = SignerState.from_bytes(h.persistence.data)
    assert state.lock is not None
    foreign = sign_vote(3, PREVOTE, 2, 0, block.block_hash)
    forged = replace(sign_vote(3, PREVOTE, 1, 0, block.block_hash), signature=b"\x01" * 64)
    lock = replace(state.lock, proof=(*state.lock.proof, foreign, forged))
    h.persistence.data = replace(state, lock=lock).to_bytes()
    h.core = h._build(1)
    voters = {v.validator for v in h.core._votes[0, PREVOTE].votes()}
    assert voters == {key(i).public_key for i in (0, 1, 2)}


# -- heights, restarts and retransmission -------------------------------------------------------


def test_a_new_height_starts_afresh_after_a_resumed_height_at_a_later_round() -> None:
    """Round 0, step propose, waiting for events (none pending), even though the height
    before was resumed after a restart at round 2 and decided there."""
    h = Harness()
    h.start()
    h.vote([2, 3], PRECOMMIT, 2, None)
    h.feed(TimeoutFired(TimeoutKind.PROPOSE, 1, 2, h.now))  # signs a nil prevote at round 2
    h.app.pending = False
    out = h.restart()  # resumes round 2 at once: no wait for events
    assert h.core.round == 2 and not h.core.waiting_for_events
    assert [(t.kind, t.round) for t in timeouts(out)] == [(TimeoutKind.PROPOSE, 2)]
    block = make_block(1, "r2")
    h.propose(2, block)
    h.vote([1, 2, 3], PRECOMMIT, 2, block.block_hash)
    assert h.core.decision == block
    h.app.pending = False
    out = h.feed(BlockApplied(1, h.now))
    assert (h.core.height, h.core.round, h.core.step) == (2, 0, Step.PROPOSE)
    assert h.core.waiting_for_events
    assert [(t.kind, t.height, t.round) for t in timeouts(out)] == [(TimeoutKind.IDLE, 2, 0)]


def test_a_signer_that_is_not_a_member_brings_no_round_or_lock_to_the_height() -> None:
    block = make_block(1, "elsewhere")
    signer = Signer(key(4), MemorySignerPersistence())
    signer.sign_vote(CHAIN, PRECOMMIT, 1, 3, block.block_hash, block=block, proof=())
    assert signer.last_round(1) == 3 and signer.lock(1) is not None
    core = ConsensusCore(ConsensusConfig(), CHAIN, members(OLD), signer, FakeApp(), 1)
    assert not core.is_validator
    assert (core.round, core.locked_value, core.valid_value) == (0, None, None)
    assert core.footprint()["votes"] == 0


def test_a_round_start_forgets_the_senders_of_earlier_rounds_only() -> None:
    h = Harness()
    h.start()
    h.vote([1], PREVOTE, 0, None)
    h.vote([1], PRECOMMIT, 1, None)
    h.vote([2, 3], PRECOMMIT, 2, None)
    assert h.core.round == 2
    assert h.core._senders == {2: {key(2).public_key, key(3).public_key}}
    assert h.core._sender_power == {2: 2}


def test_an_eviction_that_empties_a_rounds_senders_forgets_its_power() -> None:
    h = Harness()
    for round_ in range(2, 7):
        h.feed(VoteReceived(sign_vote(3, PRECOMMIT, 1, round_, None), h.now))
    assert sorted(h.core._senders) == [3, 4, 5, 6] == sorted(h.core._sender_power)


def test_a_proposer_that_proposed_schedules_no_propose_timeout() -> None:
    h = Harness(me=1)
    out = h.start()
    assert len(broadcast_proposals(out)) == 1 and timeouts(out) == []
    assert h.verified == 0  # our own proposal is not checked against our own signature


def test_a_restarted_proposer_whose_signer_refuses_to_propose_again_waits_like_the_others() -> None:
    h = Harness(me=1)
    h.start()  # proposes and prevotes its block at (1, 0)
    out = h.restart()
    assert broadcast_proposals(out) == []
    assert [(t.kind, t.round) for t in timeouts(out)] == [(TimeoutKind.PROPOSE, 0)]


def stalled_tick(h: Harness) -> list[object]:
    h.feed(Tick(h.now))
    return [o.message for o in h.feed(Tick(h.now)) if isinstance(o, Broadcast)]


def test_a_stalled_tick_relays_the_proof_of_lock_once_per_message() -> None:
    h = Harness()
    block = locked(h)
    sent = stalled_tick(h)
    assert sorted((m.type, m.validator) for m in sent) == sorted(  # type: ignore[attr-defined]
        [(PREVOTE, key(i).public_key) for i in (0, 1, 2)] + [(PRECOMMIT, key(0).public_key)]
    )
    assert all(m.block_hash == block.block_hash for m in sent)  # type: ignore[attr-defined]


def test_a_restart_from_a_state_without_proof_or_votes_keeps_its_lock_and_ticks() -> None:
    h = Harness()
    block = locked(h)
    assert h.persistence.data is not None
    state = SignerState.from_bytes(h.persistence.data)
    assert state.lock is not None
    bare = replace(state, lock=replace(state.lock, proof=()), recent_votes=())
    h.persistence.data = bare.to_bytes()
    h.restart()
    assert h.core.valid_value == block and h.core.locked_value == block.block_hash
    assert stalled_tick(h) == []


def test_a_restarted_core_decides_its_locked_block_from_precommits_alone() -> None:
    """No proposal survives a restart: the block is known as valid_value (the lock's)."""
    h = Harness()
    block = locked(h)
    h.restart()
    assert h.core.footprint()["proposals"] == 0
    out = h.vote([1, 2], PRECOMMIT, 0, block.block_hash)
    assert [d.block for d in decisions(out)] == [block]


def test_an_equivocators_vote_for_the_locked_block_counts_after_a_restart() -> None:
    """Validator 1 precommits an unknown block, then ours: the second counts because it is
    valid_value, and with validator 2 makes the quorum."""
    h = Harness()
    block = locked(h)
    h.restart()
    h.vote([1], PRECOMMIT, 0, make_block(1, "unknown").block_hash)
    h.vote([1], PRECOMMIT, 0, block.block_hash)
    assert h.core.decision is None
    out = h.vote([2], PRECOMMIT, 0, block.block_hash)
    assert [d.block for d in decisions(out)] == [block]


def test_valid_v_is_asked_of_the_application_once_per_block() -> None:
    h = Harness()
    h.start()
    block = make_block(1, "once")
    h.propose(0, block)
    h.vote([1, 2], PREVOTE, 0, block.block_hash)
    h.vote([1, 2], PRECOMMIT, 0, block.block_hash)
    assert h.core.decision == block
    assert h.app.validated.count(block.block_hash) == 1


def test_a_core_decides_nothing_before_it_is_started() -> None:
    h = Harness(powers=[1, 1, 1, 7])
    block = make_block(1, "early")
    h.propose(3, block)
    h.vote([3], PRECOMMIT, 3, block.block_hash)
    assert h.core.decision is None
    assert [d.block for d in decisions(h.start())] == [block]


def test_a_rounds_own_proposal_decides_before_a_block_known_from_another_round() -> None:
    """Two commit quorums (validator 3 holds 7 of 10): round 1's block is known only from
    round 0's proposal, round 3's from round 3's own; line 49 decides round 3's."""
    h = Harness(powers=[1, 1, 1, 7])
    first, second = make_block(1, "r0"), make_block(1, "r3")
    h.propose(0, first)
    h.propose(3, second)
    h.vote([3], PRECOMMIT, 1, first.block_hash)
    h.vote([3], PRECOMMIT, 3, second.block_hash)
    assert [d.block for d in decisions(h.start())] == [second]


def test_a_round_holds_at_most_max_proposals_per_round() -> None:
    h = Harness()
    assert h.config.max_proposals_per_round == 4
    for i in range(6):
        h.propose(2, make_block(1, f"p{i}"))
    assert len(h.core._proposals[2]) == 4 and h.verified == 4


def test_a_proposal_that_completes_a_parked_precommit_quorum_decides() -> None:
    """Validator 1 precommits X, then B before B is proposed (parked); with 2 and 3 that is
    a quorum for B once B's proposal arrives."""
    h = Harness()
    h.start()
    block = make_block(1, "late")
    h.vote([1], PRECOMMIT, 0, make_block(1, "x").block_hash)
    h.vote([1, 2, 3], PRECOMMIT, 0, block.block_hash)
    assert h.core.decision is None
    out = h.propose(0, block)
    assert [d.block for d in decisions(out)] == [block]


def test_rule_22_finds_a_fresh_proposal_after_a_re_proposal_without_its_polka() -> None:
    h = Harness()
    h.start()
    h.vote([2, 3], PRECOMMIT, 1, None)
    assert h.core.round == 1 and h.proposer_index(1, 1) == 2
    again, fresh = make_block(1, "again"), make_block(1, "fresh")
    h.propose(1, again, valid_round=0)
    out = h.propose(1, fresh)
    assert [(v.round, v.block_hash) for v in broadcast_votes(out, PREVOTE)] == [
        (1, fresh.block_hash)
    ]


def test_rule_28_finds_a_re_proposal_with_its_polka_after_one_without() -> None:
    h = Harness()
    h.start()
    h.vote([2, 3], PRECOMMIT, 2, None)
    assert h.core.round == 2
    without, polka = make_block(1, "without"), make_block(1, "polka")
    h.vote([1, 2, 3], PREVOTE, 1, polka.block_hash)
    h.propose(2, without, valid_round=0)
    out = h.propose(2, polka, valid_round=1)
    assert [(v.round, v.block_hash) for v in broadcast_votes(out, PREVOTE)] == [
        (2, polka.block_hash)
    ]


def test_rule_28_accepts_a_polka_from_the_very_round_of_our_lock() -> None:
    """Locked on A in round 1; validators 1 and 2 also prevoted B there (equivocating), so
    B has a polka in round 1 too: a re-proposal of B with valid_round 1 gets our prevote
    (locked_round <= vr), not nil."""
    h = Harness()
    h.start()
    h.vote([2, 3], PRECOMMIT, 1, None)
    a, b = make_block(1, "a"), make_block(1, "b")
    h.propose(1, a)
    h.vote([1, 2], PREVOTE, 1, a.block_hash)
    assert (h.core.locked_value, h.core.locked_round) == (a.block_hash, 1)
    h.vote([1, 2, 3], PREVOTE, 1, b.block_hash)
    h.vote([2, 3], PRECOMMIT, 2, None)
    assert h.core.round == 2 and h.proposer_index(1, 2) == 3
    out = h.propose(2, b, valid_round=1)
    assert [(v.round, v.block_hash) for v in broadcast_votes(out, PREVOTE)] == [(2, b.block_hash)]


def test_a_coming_heights_proposal_of_exactly_the_proposal_budget_is_buffered() -> None:
    h = Harness(config=ConsensusConfig(max_proposal_bytes_per_validator=3000))
    index = h.proposer_index(2, 0)
    block = height_one_block("next", 3000)
    block = Block(replace(block.header, height=2), block.events)
    h.feed(ProposalReceived(sign_proposal(index, 2, 0, block, -1), h.now))
    assert h.core.footprint()["future_messages"] == 1


def test_a_senders_first_buffered_message_may_fill_its_share_exactly_not_more() -> None:
    share = 3 << 20
    h = Harness(config=ConsensusConfig(max_buffered_bytes=4 * share))
    rounds = [r for r in range(16) if h.proposer_index(2, r) == 3][:1]
    rounds2 = [r for r in range(16) if h.proposer_index(2, r) == 2][:1]
    over = height_one_block("over", share + 1)
    exact = height_one_block("exact", share)
    for index, round_, block in ((3, rounds[0], over), (2, rounds2[0], exact)):
        block = Block(replace(block.header, height=2), block.events)
        h.feed(ProposalReceived(sign_proposal(index, 2, round_, block, -1), h.now))
    assert h.core.footprint()["future_bytes"] == share
    assert {m.proposer for m, _ in h.core._future.values()} == {key(2).public_key}
