"""Stateful property test: one core among 4 validators, the other 3 driven by the test.

The test signs as validators 1-3 (conflicting messages included), delivers proposals and votes
for random rounds and heights, fires timeouts (stale ones too), ticks, and restarts the core
over the same signer persistence. Invariants: locked_round never decreases within a height and
incarnation (a restart restores the signer's lock), and across the whole run the core never
signs two different sign-bytes for one (height, round, step).
"""

from __future__ import annotations

from hypothesis import event as note_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from consensus import (
    BlockApplied,
    Broadcast,
    CommitReceived,
    ConsensusConfig,
    ConsensusCore,
    Decide,
    EventsAvailable,
    MemorySignerPersistence,
    Output,
    Proposal,
    ProposalReceived,
    Signer,
    Start,
    Step,
    Tick,
    TimeoutFired,
    TimeoutKind,
    VoteReceived,
)
from consensus.messages import VOTE_STEP
from ledger import crypto
from ledger.blocks import Block, Commit, CommitSignature
from tests.consensus.helpers import (
    CHAIN,
    PRECOMMIT,
    PREVOTE,
    FakeApp,
    key,
    make_block,
    sign_proposal,
    sign_vote,
    validator_set,
)

VALIDATORS = validator_set(4)
ME = 0
rounds = st.integers(0, 4)
values = st.sampled_from(["A", "B", "C", None])
height_offsets = st.sampled_from([0, 0, 0, 0, 1, -1])


def block_for(height: int, name: str) -> Block:
    return make_block(height, name, bad=name == "C")


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.persistence = MemorySignerPersistence()
        self.app = FakeApp(pending=True)
        self.now = 0
        self.signed: dict[tuple[int, int, int], bytes] = {}
        self.core = self._build(1)
        self.watermark = (self.core.height, self.core.locked_round)
        self._feed(Start(self.now))

    def _build(self, height: int) -> ConsensusCore:
        config = ConsensusConfig(idle_block_interval_ms=5000)
        signer = Signer(key(ME), self.persistence)
        return ConsensusCore(config, CHAIN, VALIDATORS, signer, self.app, height)

    def _feed(self, event: object) -> None:
        self.now += 10
        outputs: list[Output] = self.core.handle(event)  # type: ignore[arg-type]
        for output in outputs:
            if isinstance(output, Broadcast):
                self._record(output)
        for output in outputs:
            if isinstance(output, Decide):
                note_event("decided")
                output.commit.verify(CHAIN, VALIDATORS)
                assert output.block.block_hash == output.commit.block_hash
                self._feed(BlockApplied(output.block.header.height, self.now))

    def _record(self, output: Broadcast) -> None:
        message = output.message
        if isinstance(message, Proposal):
            signer, slot = message.proposer, (message.height, message.round, Step.PROPOSE)
        else:
            signer = message.validator
            slot = (message.height, message.round, VOTE_STEP[message.type])
        if signer != key(ME).public_key:  # a relay: the POL or the round's entry certificate
            crypto.verify(signer, message.sign_bytes(CHAIN), message.signature)
            return
        sign_bytes = message.sign_bytes(CHAIN)
        previous = self.signed.setdefault(slot, sign_bytes)
        assert previous == sign_bytes, f"double sign at {slot}"

    def _height(self, offset: int) -> int:
        return max(1, self.core.height + offset)

    @rule(
        round=rounds,
        name=values,
        valid_round=st.integers(-1, 3),
        offset=height_offsets,
        current=st.booleans(),
    )
    def deliver_proposal(
        self, round: int, name: str | None, valid_round: int, offset: int, current: bool
    ) -> None:
        height = self._height(offset)
        round = self.core.round if current else round
        index = next(i for i in range(4) if key(i).public_key == self.core.proposer(height, round))
        if index == ME:
            return
        block = block_for(height, name or "A")
        valid_round = valid_round if valid_round < round else -1
        self._feed(
            ProposalReceived(sign_proposal(index, height, round, block, valid_round), self.now)
        )

    @rule(
        validators=st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=3, unique=True),
        vote_type=st.sampled_from([PREVOTE, PRECOMMIT]),
        round=rounds,
        name=values,
        offset=height_offsets,
        current=st.booleans(),
    )
    def deliver_votes(
        self,
        validators: list[int],
        vote_type: str,
        round: int,
        name: str | None,
        offset: int,
        current: bool,
    ) -> None:
        height = self._height(offset)
        round = self.core.round if current else round
        value = None if name is None else block_for(height, name).block_hash
        for index in validators:
            self._feed(VoteReceived(sign_vote(index, vote_type, height, round, value), self.now))

    @rule(name=st.sampled_from(["A", "B"]), valid_round=st.integers(-1, 3))
    def polka_for_current_proposal(self, name: str, valid_round: int) -> None:
        """The current round's proposer proposes, and two others prevote it: a lock, likely."""
        height, round = self.core.height, self.core.round
        index = next(i for i in range(4) if key(i).public_key == self.core.proposer(height, round))
        block = block_for(height, name)
        if index != ME:
            valid_round = valid_round if valid_round < round else -1
            proposal = sign_proposal(index, height, round, block, valid_round)
            self._feed(ProposalReceived(proposal, self.now))
        for other in [i for i in (1, 2, 3) if i != index][:2]:
            vote = sign_vote(other, PREVOTE, height, round, block.block_hash)
            self._feed(VoteReceived(vote, self.now))

    @rule(
        kind=st.sampled_from(list(TimeoutKind)),
        round=rounds,
        current=st.booleans(),
    )
    def fire_timeout(self, kind: TimeoutKind, round: int, current: bool) -> None:
        round = self.core.round if current else round
        self._feed(TimeoutFired(kind, self.core.height, round, self.now))

    @rule()
    def tick(self) -> None:
        self._feed(Tick(self.now))

    @rule(pending=st.booleans())
    def events(self, pending: bool) -> None:
        self.app.pending = pending
        if pending:
            self._feed(EventsAvailable(self.now))

    @rule(round=rounds, name=st.sampled_from(["A", "B"]))
    def sync_commit(self, round: int, name: str) -> None:
        height = self.core.height
        block = block_for(height, name)
        votes = [sign_vote(i, PRECOMMIT, height, round, block.block_hash) for i in (1, 2, 3)]
        commit = Commit(
            height,
            round,
            block.block_hash,
            tuple(CommitSignature(v.validator, v.signature) for v in votes),
        )
        self._feed(CommitReceived(block, commit, self.now))

    @rule()
    def restart(self) -> None:
        self.core = self._build(self.core.height)
        self._feed(Start(self.now))
        signer_lock = Signer(key(ME), self.persistence).lock(self.core.height)
        expected = signer_lock.round if signer_lock is not None else -1
        assert self.core.locked_round == expected
        if signer_lock is not None:
            assert self.core.valid_value == signer_lock.block
            assert signer_lock.block is not None
        if expected >= 0:
            note_event("restarted with a lock restored")
        self.watermark = (self.core.height, self.core.locked_round)

    @precondition(lambda self: self.persistence.data is not None)
    @rule()
    def persisted_state_matches_what_was_sent(self) -> None:
        state = Signer(key(ME), self.persistence).state
        assert state is not None
        slot = (state.height, state.round, state.step)
        assert self.signed.get(slot, state.sign_bytes) == state.sign_bytes

    @invariant()
    def locked_round_never_decreases_within_a_height(self) -> None:
        height, locked_round = self.watermark
        if self.core.height == height:
            assert self.core.locked_round >= locked_round
        if self.core.locked_round >= 0:
            note_event(f"locked in round {min(self.core.locked_round, 2)}+")
        self.watermark = (self.core.height, self.core.locked_round)

    @invariant()
    def lock_and_valid_are_consistent(self) -> None:
        core = self.core
        assert (core.locked_value is None) == (core.locked_round == -1)
        assert (core.valid_value is None) == (core.valid_round == -1)
        assert core.valid_round <= core.round and core.locked_round <= core.round
        assert core.decision is None  # decided blocks are applied at once by this harness


TestCoreMachine = CoreMachine.TestCase
TestCoreMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, print_blob=True
)
