"""Tendermint consensus, Algorithm 1 of "The latest gossip on BFT consensus", sans I/O.

`ConsensusCore.handle(input) -> list[Output]` is the only entry point. The shell feeds inputs
(messages, fired timeouts, ticks, applied blocks; each carries the time `now` in ms) and carries
out the outputs (broadcast, schedule a timeout, store and apply a decided block, keep evidence).
The core reads no clock, does no I/O and calls the application only through `BlockSource`.

Variables and upon-rules follow the paper: one method per rule, named after its line numbers.
After every input all rules are re-evaluated until none fires, so a rule that needs stored
messages fires when its last piece arrives, in whatever order they came. What the paper leaves
to its environment is done here as follows:

- gossip: the paper assumes a message received by one correct process reaches them all. Own
  messages of the height are retransmitted on a Tick when nothing progressed since the
  previous one, and the prevotes proving valid_value (its POL) are relayed with a re-proposal
  and on such ticks. A Byzantine validator's votes count for every value it signed (see
  `VoteSet`), since another correct process may have seen only one of them.
- heights: the decided block is applied by the shell (`Decide`, then `BlockApplied`); messages
  of the next height are buffered meanwhile; `CommitReceived` decides from a commit
  certificate (block sync), and so do 2f+1 precommits for a block the core holds from another
  round's proposal. Round 0 waits for events or the idle interval (empty blocks).
- crashes: the signer persists what it signed, its latest votes and the lock with its block
  and proof; a restarted validator resumes at the round of its last signature with that lock
  (and valid_value = the locked block, as line 36 leaves them). `locked_value` holds id(v),
  the block hash: the rules only compare it. A proposer whose signer refuses (after a restart)
  schedules timeoutPropose like any other process.
- valid(v) is "the block is for h_p and `BlockSource.validate_block` accepts it", a judgement
  of the chain and the block alone, cached per block for the height. Whether a new block's time
  is *timely* (proposer-based timestamps, docs/PROTOCOL.md §14) is a separate check against the
  time the proposal arrived: it decides only this node's prevote in line 22, and is never
  cached as "invalid", so a node whose clock disagrees is never stranded at a height.
  OnTimeoutPropose's guard is step_p = propose, as in the paper (some transcriptions of
  Algorithm 1 misprint it as prevote).
- bounds (docs/PROTOCOL.md §7.12): cheap checks (known sender, height window, duplicates,
  signatures already found forged) come before every signature check; per sender, at most a
  few rounds ahead, a byte budget of proposals of this height and of buffered messages of the
  next height; vote sets and sender entries of evicted rounds are freed; evidence is bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from consensus.errors import SignerRefused
from consensus.messages import MAX_ROUND, NO_ROUND, PROPOSAL, Evidence, Message, Proposal, Step
from consensus.proposer import proposer
from consensus.signer import Signer
from consensus.vote_set import VoteSet
from ledger import crypto
from ledger.blocks import PRECOMMIT, PREVOTE, VOTE_TYPES, Block, Commit, Header, ValidatorSet, Vote
from ledger.errors import LedgerError

Verifier = Callable[[bytes, bytes, bytes], None]
SetSchedule = Callable[[int], ValidatorSet | None]
"""The validator set in force at a height, or None when it is not known yet (governance)."""
ConfigSchedule = Callable[[int, "ConsensusConfig"], "ConsensusConfig"]
"""The config to use at a height, given the current one (the chain's timeouts may change)."""

# A sender may always buffer this much of the next height, however many validators there are.
MIN_SENDER_BUFFER = 2 << 20
# What a vote, or a proposal without its events, counts for in the byte budgets.
MESSAGE_OVERHEAD = 512


def message_size(message: Message) -> int:
    """The bytes a message is charged in the budgets: its events, plus a fixed overhead."""
    if isinstance(message, Proposal):
        return MESSAGE_OVERHEAD + sum(len(e) for e in message.block.events)
    return MESSAGE_OVERHEAD


class TimeoutKind(StrEnum):
    """The timeouts the core schedules; IDLE ends the wait for events at a new height, GATHER
    the wait for the minimum block interval."""

    PROPOSE = "propose"
    PREVOTE = "prevote"
    PRECOMMIT = "precommit"
    IDLE = "idle"
    GATHER = "gather"


@dataclass(frozen=True)
class ConsensusConfig:
    """Timeouts (ms, growing linearly with the round) and bounds on what the core buffers."""

    timeout_propose_ms: int = 1000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 500
    timeout_prevote_delta_ms: int = 500
    timeout_precommit_ms: int = 500
    timeout_precommit_delta_ms: int = 500
    idle_block_interval_ms: int = 10_000
    # A height that begins with events pending (its block applied) starts round 0 this long
    # after (a node-local pace: under load a block gathers what arrives meanwhile, so each
    # height's fixed costs are spread over more events). A height that begins idle starts as
    # soon as events come, so a lone or light client waits for nothing; so does the height a
    # node starts at.
    min_block_interval_ms: int = 0
    future_height_window: int = 1
    max_buffered_messages: int = 1024
    max_future_rounds_per_validator: int = 4
    max_proposals_per_round: int = 4
    max_evidence: int = 256
    # Proposer-based timestamps (docs/PROTOCOL.md §14): how far clocks may disagree, and how
    # long a proposal may travel (growing by a tenth per round, so a slow network still agrees).
    time_precision_ms: int = 1000
    message_delay_ms: int = 5000
    # Bytes a sender's messages may occupy: proposals of the current height, and messages of
    # the next height (the larger of max_buffered_bytes / validators and MIN_SENDER_BUFFER).
    max_proposal_bytes_per_validator: int = 24 << 20
    max_buffered_bytes: int = 64 << 20
    # (signer, sign bytes, signature) triples that failed to verify, remembered so that the
    # same forgery is never verified twice.
    max_rejected_signatures: int = 4096

    def timely(self, block_time: int, received: int, round: int) -> bool:
        """Whether a proposal received at `received` (local ms) carries a timely block time:
        block_time - precision <= received <= block_time + precision + delay(round)."""
        delay = self.message_delay_ms + round * (self.message_delay_ms // 10)
        precision = self.time_precision_ms
        return block_time - precision <= received <= block_time + precision + delay

    def timeout(self, kind: TimeoutKind, round: int) -> int:
        """timeout(kind, round) = base_kind + round * delta_kind; IDLE is the idle interval,
        GATHER the minimum block interval."""
        if kind == TimeoutKind.PROPOSE:
            return self.timeout_propose_ms + round * self.timeout_propose_delta_ms
        if kind == TimeoutKind.PREVOTE:
            return self.timeout_prevote_ms + round * self.timeout_prevote_delta_ms
        if kind == TimeoutKind.PRECOMMIT:
            return self.timeout_precommit_ms + round * self.timeout_precommit_delta_ms
        if kind == TimeoutKind.GATHER:
            return self.min_block_interval_ms
        return self.idle_block_interval_ms


class BlockSource(Protocol):
    """The application as the core sees it; called synchronously."""

    def has_pending(self) -> bool:
        """Whether the mempool holds events to order."""
        ...

    def build_block(self, height: int, round: int, time: int, proposer: bytes) -> Block:
        """getValue(): a new block for `height` proposed by `proposer` at `time` (ms)."""
        ...

    def validate_block(self, block: Block) -> bool:
        """valid(v): whether `block` may extend the chain (deterministic for a height)."""
        ...


@dataclass(frozen=True)
class Start:
    """Start the current height (the paper's `upon start`)."""

    now: int


@dataclass(frozen=True)
class ProposalReceived:
    proposal: Proposal
    now: int


@dataclass(frozen=True)
class VoteReceived:
    vote: Vote
    now: int


@dataclass(frozen=True)
class TimeoutFired:
    """A timeout scheduled by `ScheduleTimeout` expired (stale ones are ignored)."""

    kind: TimeoutKind
    height: int
    round: int
    now: int


@dataclass(frozen=True)
class EventsAvailable:
    """The mempool became non-empty."""

    now: int


@dataclass(frozen=True)
class CommitReceived:
    """Block sync: a block and its commit certificate for the current height."""

    block: Block
    commit: Commit
    now: int


@dataclass(frozen=True)
class BlockApplied:
    """The shell stored and executed block `height`; the core moves to `height + 1`."""

    height: int
    now: int


@dataclass(frozen=True)
class Tick:
    """Periodic: if nothing progressed since the last Tick, re-broadcast own messages."""

    now: int


Input = (
    Start
    | ProposalReceived
    | VoteReceived
    | TimeoutFired
    | EventsAvailable
    | CommitReceived
    | BlockApplied
    | Tick
)


@dataclass(frozen=True)
class Broadcast:
    """Send `message` to every peer. Own messages are already durable in the signer state;
    a message signed by another validator is a relay (the POL of a re-proposed value)."""

    message: Message


@dataclass(frozen=True)
class ScheduleTimeout:
    """Feed `TimeoutFired(kind, height, round, now)` after `delay_ms`."""

    kind: TimeoutKind
    height: int
    round: int
    delay_ms: int


@dataclass(frozen=True)
class Decide:
    """`block` is decided with `commit`: store and apply it, then feed `BlockApplied`."""

    block: Block
    commit: Commit


@dataclass(frozen=True)
class EvidenceFound:
    """A validator signed two different votes for one (height, round, type)."""

    evidence: Evidence


Output = Broadcast | ScheduleTimeout | Decide | EvidenceFound


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ROUND


def _well_typed_vote(vote: object) -> bool:
    return (
        isinstance(vote, Vote)
        and isinstance(vote.type, str)
        and vote.type in VOTE_TYPES
        and _is_uint(vote.height)
        and _is_uint(vote.round)
        and (vote.block_hash is None or isinstance(vote.block_hash, bytes))
        and isinstance(vote.validator, bytes)
        and isinstance(vote.signature, bytes)
    )


def _well_typed_proposal(proposal: object) -> bool:
    return (
        isinstance(proposal, Proposal)
        and _is_uint(proposal.height)
        and _is_uint(proposal.round)
        and isinstance(proposal.valid_round, int)
        and NO_ROUND <= proposal.valid_round < proposal.round
        and isinstance(proposal.proposer, bytes)
        and isinstance(proposal.signature, bytes)
        and isinstance(proposal.block, Block)
        and isinstance(proposal.block.header, Header)
    )


class ConsensusCore:
    """One node's Tendermint state machine.

    The validator set is `validators` for every height unless `validators_at` says which set
    is in force at each height (governance, docs/PROTOCOL.md §19.4): the core adopts it when
    it enters the height, and `config_at` likewise the timeouts. `signer` None (or a key
    outside the height's set) makes a follower: it runs the rules and decides from others'
    messages but never signs. `height` is the next height to decide; a restarted
    validator resumes at the round of its signer's last signature at that height, with the
    lock recorded by the signer.
    """

    def __init__(
        self,
        config: ConsensusConfig,
        chain_id: str,
        validators: ValidatorSet,
        signer: Signer | None,
        app: BlockSource,
        height: int,
        *,
        verify: Verifier = crypto.verify,
        validators_at: SetSchedule | None = None,
        config_at: ConfigSchedule | None = None,
    ) -> None:
        self.config = config
        self.chain_id = chain_id
        self.validators = validators
        self._signer = signer
        self._app = app
        self._verify = verify
        self._validators_at = validators_at
        self._config_at = config_at
        self._me: bytes | None = None
        self.height = height
        self.round = 0
        self.step = Step.PROPOSE
        self.decision: Block | None = None
        self.locked_value: bytes | None = None
        self.locked_round = NO_ROUND
        self.valid_value: Block | None = None
        self.valid_round = NO_ROUND
        self._started = False
        self._active = False
        self._resume = False
        self._now = 0
        self._out: list[Output] = []
        self._future: dict[tuple[object, ...], tuple[Message, int]] = {}
        self._future_count: dict[bytes, int] = {}
        self._future_bytes: dict[bytes, int] = {}
        self._rejected: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()
        self._evidence: dict[tuple[bytes, int, int, str], Evidence] = {}
        self._last_progress: tuple[object, ...] | None = None
        self._enter_height()

    # -- public view -------------------------------------------------------------------------

    @property
    def is_validator(self) -> bool:
        return self._me is not None

    @property
    def evidence(self) -> tuple[Evidence, ...]:
        """Equivocations seen so far (bounded, oldest dropped first)."""
        return tuple(self._evidence.values())

    def footprint(self) -> dict[str, int]:
        """How much the core holds (for the tests of its bounds): entries and charged bytes."""
        return {
            "vote_sets": len(self._votes),
            "votes": sum(len(v.votes()) for v in self._votes.values()),
            "sender_rounds": len(self._senders),
            "proposals": sum(len(b) for b in self._proposals.values()),
            "proposal_bytes": sum(self._proposal_bytes.values()),
            "future_messages": len(self._future),
            "future_bytes": sum(self._future_bytes.values()),
            "future_rounds": sum(len(r) for r in self._future_rounds.values()),
            "evidence": len(self._evidence),
            "rejected": len(self._rejected),
        }

    @property
    def waiting_for_events(self) -> bool:
        """Started, but holding round 0 back until events, activity or the idle timeout."""
        return self._started and not self._active and self.decision is None

    def proposer(self, height: int, round: int) -> bytes:
        validators = self._set_of(height)
        return proposer(validators if validators is not None else self.validators, height, round)

    def handle(self, event: Input) -> list[Output]:
        """Apply one input, re-evaluate every upon-rule until none fires, return the outputs."""
        self._out = []
        now = getattr(event, "now", None)
        if isinstance(now, int) and not isinstance(now, bool):
            self._now = now
        match event:
            case Start():
                self._on_start()
            case ProposalReceived(proposal=proposal):
                self._on_proposal(proposal)
            case VoteReceived(vote=vote):
                self._on_vote(vote)
            case TimeoutFired():
                self._on_timeout(event)
            case EventsAvailable():
                self._on_events_available()
            case CommitReceived(block=block, commit=commit):
                self._on_commit(block, commit)
            case BlockApplied(height=height):
                self._on_block_applied(height)
            case Tick():
                self._on_tick()
        self._evaluate()
        out, self._out = self._out, []
        return out

    # -- heights -------------------------------------------------------------------------------

    def _enter_height(self) -> None:
        """Line 53: reset locked/valid values and the message log for the new height, whose
        validator set (and timeouts) may differ from the last one's (governance)."""
        self._take_height_set()
        self.step = Step.PROPOSE
        self.decision = None
        self.locked_value = None
        self.locked_round = NO_ROUND
        self.valid_value = None
        self.valid_round = NO_ROUND
        self._active = False
        self._proposals: dict[int, dict[tuple[bytes, int], Proposal]] = {}
        self._arrival: dict[tuple[int, bytes, int], int] = {}
        self._proposal_bytes: dict[bytes, int] = {}
        self._votes: dict[tuple[int, str], VoteSet] = {}
        self._commit_rounds: set[int] = set()
        self._sender_power: dict[int, int] = {}
        self._senders: dict[int, set[bytes]] = {}
        self._future_rounds: dict[bytes, set[int]] = {}
        self._valid_cache: dict[bytes, bool] = {}
        self._proposed: dict[bytes, int] = {}
        self._fired: set[tuple[int, int]] = set()
        self._own_proposal: Proposal | None = None
        self._entry: tuple[Message, ...] = ()
        self._gathering = False
        last_round = self._signer.last_round(self.height) if self._signer and self._me else None
        self._resume = last_round is not None
        self.round = last_round if last_round is not None else 0
        if self._signer is not None and self._me is not None:
            self._restore(self._signer)
        self._replay_buffer()

    def _take_height_set(self) -> None:
        """Adopt the validator set and config in force at `height`; sign only as a member."""
        if self._validators_at is not None:
            found = self._validators_at(self.height)
            assert found is not None, "the set of the height being decided is known"
            self.validators = found
        if self._config_at is not None:
            self.config = self._config_at(self.height, self.config)
        signer = self._signer
        member = signer is not None and self.validators.get(signer.public_key) is not None
        self._me = signer.public_key if member and signer is not None else None

    def _set_of(self, height: int) -> ValidatorSet | None:
        """The set of `height` (this one or a coming one), if known yet."""
        if height == self.height or self._validators_at is None:
            return self.validators
        return self._validators_at(height)

    def _restore(self, signer: Signer) -> None:
        """After a restart: the lock (as line 36 set it: valid = locked) and our own votes."""
        lock = signer.lock(self.height)
        if lock is not None:
            self.locked_value, self.locked_round = lock.block_hash, lock.round
            if lock.block is not None:
                self.valid_value, self.valid_round = lock.block, lock.round
            for vote in lock.proof:
                if _well_typed_vote(vote) and vote.height == self.height:
                    self._add_vote(vote, verified=False)
        for vote in signer.recent_votes(self.height):
            self._add_vote(vote, verified=True)

    def _kickoff(self, gather: bool = False) -> None:
        """Start the height's first round now, or wait for events (empty-block policy); with
        `gather` (a height just begun), a round that would start now waits the minimum block
        interval first."""
        if self._resume or self.config.idle_block_interval_ms == 0 or self._app.has_pending():
            if gather:
                self._start_when_gathered()
            else:
                self._start_round(self.round)
        else:
            self._schedule(TimeoutKind.IDLE, self.round)

    def _on_start(self) -> None:
        """Line 10: upon start do StartRound(0) (after the empty-block wait, if any)."""
        if self._started:
            return
        self._started = True
        if self.decision is None:
            self._kickoff()

    def _on_events_available(self) -> None:
        if self.waiting_for_events and not self._gathering:
            self._start_round(self.round)

    def _start_when_gathered(self) -> None:
        """Start the first round of a height just begun after the minimum block interval, at
        a GATHER timeout (at once without one)."""
        if self.config.min_block_interval_ms <= 0:
            self._start_round(self.round)
        else:
            self._gathering = True
            self._schedule(TimeoutKind.GATHER, self.round)

    def _on_block_applied(self, height: int) -> None:
        """Line 52: h_p <- h_p + 1, once the shell stored and executed the decided block."""
        if not _is_uint(height) or height < self.height:
            return
        self.height = height + 1
        self._enter_height()
        if self._started:
            self._kickoff(gather=True)

    def _on_commit(self, block: Block, commit: Commit) -> None:
        """Block sync: a verified commit certificate for this height decides its block, if
        the block is valid(v) (its events are the certified ones and the application accepts
        it)."""
        if not isinstance(block, Block) or not isinstance(commit, Commit):
            return
        if self.decision is not None or commit.height != self.height:
            return
        try:
            if block.block_hash != commit.block_hash or block.header.height != self.height:
                return
            commit.verify(self.chain_id, self.validators)
        except (LedgerError, TypeError, ValueError, AttributeError):
            return
        if not self._valid(block):
            return
        self._decide(block, commit)

    # -- rounds, timeouts, broadcast ----------------------------------------------------------

    def _start_round(self, round: int) -> None:
        """Lines 11-21: StartRound(round)."""
        self.round = round
        for old in [r for r in self._senders if r < round]:
            del self._senders[old]
            del self._sender_power[old]
        self.step = Step.PROPOSE
        self._active = True
        if self._me is not None and self.proposer(self.height, round) == self._me:
            if self.valid_value is not None:
                block, valid_round = self.valid_value, self.valid_round
            else:
                block = self._app.build_block(self.height, round, self._now, self._me)
                valid_round = NO_ROUND
            if self._broadcast_proposal(block, valid_round):
                return
        self._schedule(TimeoutKind.PROPOSE, round)

    def _broadcast_proposal(self, block: Block, valid_round: int) -> bool:
        assert self._signer is not None
        try:
            proposal = self._signer.sign_proposal(
                self.chain_id, self.height, self.round, block, valid_round
            )
        except SignerRefused:
            return False
        self._own_proposal = proposal
        self._out.append(Broadcast(proposal))
        # Our own block time is timely by construction: it arrives "at" its own time.
        self._add_proposal(proposal, verified=True, received=block.header.time)
        self._relay_polka()
        return True

    def _polka(self) -> list[Vote]:
        """The 2f+1 prevotes for id(valid_value) in valid_round (the proof of lock, POL)."""
        if self.valid_value is None:
            return []
        prevotes = self._prevotes(self.valid_round)
        if prevotes is None:
            return []
        block_hash = self.valid_value.block_hash
        return [v for v in prevotes.votes() if v.block_hash == block_hash]

    def _relay_polka(self) -> None:
        """Relay the POL prevotes (ours included): the paper assumes every message a correct
        process received reaches all correct processes, and rule 28 needs them at receivers."""
        self._out.extend(Broadcast(v) for v in self._polka())

    def _broadcast_vote(
        self,
        vote_type: str,
        block_hash: bytes | None,
        *,
        block: Block | None = None,
        proof: Sequence[Vote] = (),
    ) -> None:
        """broadcast <vote_type, h_p, round_p, block_hash>, delivered to ourselves too."""
        if self._signer is None or self._me is None:
            return
        try:
            vote = self._signer.sign_vote(
                self.chain_id,
                vote_type,
                self.height,
                self.round,
                block_hash,
                block=block,
                proof=proof,
            )
        except SignerRefused:
            return
        self._out.append(Broadcast(vote))
        self._add_vote(vote, verified=True)

    def _schedule(self, kind: TimeoutKind, round: int) -> None:
        self._out.append(
            ScheduleTimeout(kind, self.height, round, self.config.timeout(kind, round))
        )

    def _on_timeout(self, event: TimeoutFired) -> None:
        if not self._started or self.decision is not None:
            return
        if not (_is_uint(event.height) and _is_uint(event.round)):
            return
        if event.kind == TimeoutKind.PROPOSE:
            self._on_timeout_propose(event.height, event.round)
        elif event.kind == TimeoutKind.PREVOTE:
            self._on_timeout_prevote(event.height, event.round)
        elif event.kind == TimeoutKind.PRECOMMIT:
            self._on_timeout_precommit(event.height, event.round)
        elif event.kind in (TimeoutKind.IDLE, TimeoutKind.GATHER):
            self._on_wait_over(event.height)

    def _on_timeout_propose(self, height: int, round: int) -> None:
        """Lines 57-60: OnTimeoutPropose(height, round)."""
        if not self._active:
            return
        if height == self.height and round == self.round and self.step == Step.PROPOSE:
            self._broadcast_vote(PREVOTE, None)
            self.step = Step.PREVOTE

    def _on_timeout_prevote(self, height: int, round: int) -> None:
        """Lines 61-64: OnTimeoutPrevote(height, round)."""
        if not self._active:
            return
        if height == self.height and round == self.round and self.step == Step.PREVOTE:
            self._broadcast_vote(PRECOMMIT, None)
            self.step = Step.PRECOMMIT

    def _on_timeout_precommit(self, height: int, round: int) -> None:
        """Lines 65-67: OnTimeoutPrecommit(height, round)."""
        if not self._active:
            return
        if height == self.height and round == self.round:
            precommits = self._precommits(round)
            self._entry = precommits.votes() if precommits is not None else ()
            self._start_round(self.round + 1)

    def _on_wait_over(self, height: int) -> None:
        """The idle interval passed without events (start round 0 for an empty block), or the
        minimum block interval passed (start round 0 for what was gathered)."""
        if height == self.height and self.waiting_for_events:
            self._start_round(self.round)

    def _on_tick(self) -> None:
        """If nothing progressed since the last Tick, retransmit own messages of this height
        and relay what justifies our state: the POL of valid_value and the messages that
        brought us to round_p (2f+1 precommits of the round before, or f+1 of round_p)."""
        progress = (self.height, self.round, self.step, self._active, self.decision is None)
        stalled = progress == self._last_progress
        self._last_progress = progress
        if not stalled or self._signer is None or self._me is None:
            return
        messages: list[Message] = []
        own = self._own_proposal
        if own is not None and own.height == self.height and own.round == self.round:
            messages.append(own)
        messages += self._signer.recent_votes(self.height)
        messages += self._polka()
        messages += self._entry
        sent: set[tuple[object, ...]] = set()
        for message in messages:
            key = (message.height, message.round, message.signature)
            if key not in sent:
                sent.add(key)
                self._out.append(Broadcast(message))

    def _decide(self, block: Block, commit: Commit) -> None:
        """Line 51: decision_p[h_p] = v (the shell applies it and feeds BlockApplied)."""
        self.decision = block
        self._out.append(Decide(block, commit))

    # -- the message log ------------------------------------------------------------------------

    def _on_proposal(self, proposal: Proposal) -> None:
        if not _well_typed_proposal(proposal):
            return
        if proposal.height > self.height:
            self._buffer(proposal)
        elif proposal.height == self.height and self.decision is None:
            self._add_proposal(proposal, verified=False)

    def _on_vote(self, vote: Vote) -> None:
        if not _well_typed_vote(vote):
            return
        if vote.height > self.height:
            self._buffer(vote)
        elif vote.height == self.height and self.decision is None:
            self._add_vote(vote, verified=False)

    def _check(self, signer: bytes, message: bytes, signature: bytes) -> bool:
        """Verify a signature, unless this very triple already failed (then refuse at once)."""
        key = (signer, message, signature)
        if key in self._rejected:
            self._rejected.move_to_end(key)
            return False
        try:
            self._verify(signer, message, signature)
        except LedgerError:
            self._rejected[key] = None
            while len(self._rejected) > self.config.max_rejected_signatures:
                self._rejected.popitem(last=False)
            return False
        return True

    def _proposal_key(self, proposal: Proposal) -> tuple[bytes, int] | None:
        try:
            return proposal.block_hash, proposal.valid_round
        except LedgerError:
            return None

    def _add_proposal(
        self, proposal: Proposal, verified: bool, received: int | None = None
    ) -> None:
        round = proposal.round
        sender = proposal.proposer
        if sender != self.proposer(self.height, round):
            return
        key = self._proposal_key(proposal)
        if key is None:
            return
        bucket = self._proposals.get(round, {})
        if key in bucket or len(bucket) >= self.config.max_proposals_per_round:
            return
        size = message_size(proposal)
        if size > self.config.max_proposal_bytes_per_validator:
            return
        if not verified and not self._check(
            sender, proposal.sign_bytes(self.chain_id), proposal.signature
        ):
            return
        if not self._proposal_room(sender, round, size) or not self._admit_round(sender, round):
            return
        self._proposals.setdefault(round, {})[key] = proposal
        self._arrival[(round, *key)] = self._now if received is None else received
        self._proposal_bytes[sender] = self._proposal_bytes.get(sender, 0) + size
        self._note_sender(round, sender)
        block_hash = key[0]
        self._proposed[block_hash] = self._proposed.get(block_hash, 0) + 1
        if self._proposed[block_hash] == 1:
            for (vote_round, vote_type), votes in self._votes.items():
                votes.promote(block_hash)
                if vote_type == PRECOMMIT:
                    self._note_commit_round(vote_round, votes)

    def _proposal_room(self, sender: bytes, round: int, size: int) -> bool:
        """Whether `sender`'s proposals of this height fit its byte budget with `size` more,
        after dropping its proposals of rounds older than `round` (never the current one)."""
        budget = self.config.max_proposal_bytes_per_validator
        older = sorted(
            r
            for r in self._proposals
            if r < round and r != self.round and self.proposer(self.height, r) == sender
        )
        for old in older:
            if self._proposal_bytes.get(sender, 0) + size <= budget:
                break
            self._drop_proposals(old)
        return self._proposal_bytes.get(sender, 0) + size <= budget

    def _drop_proposals(self, round: int) -> None:
        """Forget every proposal of `round` (a budget or a round eviction)."""
        sender = self.proposer(self.height, round)
        for (block_hash, valid_round), proposal in self._proposals.pop(round, {}).items():
            self._arrival.pop((round, block_hash, valid_round), None)
            self._proposal_bytes[sender] -= message_size(proposal)
            if not self._proposal_bytes[sender]:
                del self._proposal_bytes[sender]
            self._proposed[block_hash] -= 1
            if not self._proposed[block_hash]:
                del self._proposed[block_hash]

    def _relevant(self, value: bytes | None) -> bool:
        """Whether an equivocator's extra vote for `value` should count: nil or a known block."""
        if value is None or value in self._proposed:
            return True
        return self.valid_value is not None and value == self.valid_value.block_hash

    def _add_vote(self, vote: Vote, verified: bool) -> None:
        if self.validators.get(vote.validator) is None:
            return
        slot = (vote.round, vote.type)
        votes = self._votes.get(slot)
        if votes is not None and votes.seen(vote.validator, vote.block_hash):
            return
        if not verified and not self._check(
            vote.validator, vote.sign_bytes(self.chain_id), vote.signature
        ):
            return
        counted = votes is not None and votes.get(vote.validator) is not None
        if not counted and not self._admit_round(vote.validator, vote.round):
            return
        if votes is None:
            votes = VoteSet(self.validators, self.height, vote.round, vote.type, self._relevant)
            self._votes[slot] = votes
        evidence = votes.add(vote)
        if evidence is not None:
            self._record_evidence(evidence)
        else:
            self._note_sender(vote.round, vote.validator)
        if vote.type == PRECOMMIT:
            self._note_commit_round(vote.round, votes)

    def _note_commit_round(self, round: int, precommits: VoteSet) -> None:
        """Keep the set of rounds whose precommits hold a quorum for some block, so that the
        deciding rules look at those rounds only (not at every vote set of the height)."""
        if precommits.quorum_blocks():
            self._commit_rounds.add(round)
        else:
            self._commit_rounds.discard(round)

    def _note_sender(self, round: int, sender: bytes) -> None:
        if round < self.round:
            return  # only the current and higher rounds matter to rules 55 and the idle wait
        senders = self._senders.setdefault(round, set())
        if sender not in senders:
            senders.add(sender)
            self._sender_power[round] = self._sender_power.get(round, 0) + self._power(sender)

    def _power(self, validator: bytes) -> int:
        member = self.validators.get(validator)
        return member.power if member is not None else 0

    def _admit_round(self, sender: bytes, round: int) -> bool:
        """Keep at most a few rounds ahead of round_p per sender, preferring the highest."""
        if round <= self.round:
            return True
        rounds = self._future_rounds.setdefault(sender, set())
        for stale in [r for r in rounds if r <= self.round]:
            rounds.discard(stale)
        if round in rounds:
            return True
        if len(rounds) < self.config.max_future_rounds_per_validator:
            rounds.add(round)
            return True
        lowest = min(rounds)
        if round < lowest:
            return False
        self._evict(sender, lowest)
        rounds.discard(lowest)
        rounds.add(round)
        return True

    def _evict(self, sender: bytes, round: int) -> None:
        """Forget what `sender` sent for a future `round`, freeing emptied structures."""
        for vote_type in VOTE_TYPES:
            votes = self._votes.get((round, vote_type))
            if votes is None:
                continue
            votes.remove(sender)
            if votes.is_empty():
                del self._votes[(round, vote_type)]
                self._commit_rounds.discard(round)
            elif vote_type == PRECOMMIT:
                self._note_commit_round(round, votes)
        if self.proposer(self.height, round) == sender:
            self._drop_proposals(round)
        senders = self._senders.get(round)
        if senders is not None and sender in senders:
            senders.discard(sender)
            self._sender_power[round] -= self._power(sender)
            if not senders:
                del self._senders[round]
                del self._sender_power[round]

    def _record_evidence(self, evidence: Evidence) -> None:
        vote = evidence.vote_a
        key = (vote.validator, vote.height, vote.round, vote.type)
        if key in self._evidence:
            return
        if len(self._evidence) >= self.config.max_evidence:
            del self._evidence[next(iter(self._evidence))]
        self._evidence[key] = evidence
        self._out.append(EvidenceFound(evidence))

    def _sender_buffer(self) -> tuple[int, int]:
        """(messages, bytes) one sender may buffer for the next height."""
        n = len(self.validators.validators)
        count = max(8, self.config.max_buffered_messages // n)
        return count, max(MIN_SENDER_BUFFER, self.config.max_buffered_bytes // n)

    def _buffer(self, message: Message) -> None:
        """Keep a verified message of a coming height (bounded per sender, by count and by
        bytes) until it starts; every cheap check comes before the signature check."""
        height = message.height
        if height > self.height + self.config.future_height_window:
            return
        validators = self._set_of(height)
        if validators is None:
            return  # a height whose set is not known yet: its messages come again
        if isinstance(message, Proposal):
            sender = message.proposer
            if sender != proposer(validators, height, message.round):
                return
            proposal_key = self._proposal_key(message)
            if proposal_key is None:
                return
            key: tuple[object, ...] = (height, PROPOSAL, message.round, *proposal_key)
        else:
            sender = message.validator
            key = (height, message.type, message.round, sender, message.block_hash)
        if key in self._future or validators.get(sender) is None:
            return
        max_count, max_bytes = self._sender_buffer()
        size = message_size(message)
        if isinstance(message, Proposal) and size > self.config.max_proposal_bytes_per_validator:
            return  # it could never be accepted at its height either
        if self._future_count.get(sender, 0) >= max_count:
            return
        if self._future_bytes.get(sender, 0) + size > max_bytes:
            return
        if not self._check(sender, message.sign_bytes(self.chain_id), message.signature):
            return
        self._future[key] = (message, self._now)
        self._future_count[sender] = self._future_count.get(sender, 0) + 1
        self._future_bytes[sender] = self._future_bytes.get(sender, 0) + size

    def _replay_buffer(self) -> None:
        replay = [item for item in self._future.values() if item[0].height == self.height]
        self._future = {k: item for k, item in self._future.items() if item[0].height > self.height}
        self._future_count = {}
        self._future_bytes = {}
        for message, _ in self._future.values():
            sender = message.proposer if isinstance(message, Proposal) else message.validator
            self._future_count[sender] = self._future_count.get(sender, 0) + 1
            self._future_bytes[sender] = self._future_bytes.get(sender, 0) + message_size(message)
        for message, received in replay:
            if isinstance(message, Proposal):
                self._add_proposal(message, verified=True, received=received)
            else:
                self._add_vote(message, verified=True)

    def _prevotes(self, round: int) -> VoteSet | None:
        return self._votes.get((round, PREVOTE))

    def _precommits(self, round: int) -> VoteSet | None:
        return self._votes.get((round, PRECOMMIT))

    def _votes_of(self, round: int, vote_type: str) -> tuple[Vote, ...]:
        votes = self._votes.get((round, vote_type))
        return votes.votes() if votes is not None else ()

    def _proposal_for(self, round: int, block_hash: bytes) -> Proposal | None:
        for (proposed, _), proposal in self._proposals.get(round, {}).items():
            if proposed == block_hash:
                return proposal
        return None

    def _timely(self, proposal: Proposal) -> bool:
        """Proposer-based timestamps: the block time of a new proposal (valid_round -1) agrees
        with when it arrived here. A local judgement for this round's prevote only."""
        received = self._arrival.get((proposal.round, proposal.block_hash, proposal.valid_round))
        if received is None:
            return False
        return self.config.timely(proposal.block.header.time, received, proposal.round)

    def _valid(self, block: Block) -> bool:
        """valid(v): the block is for this height and the application accepts it (judged by
        the chain and the block alone, so every correct node judges it alike; cached)."""
        if not block.events_match_header():
            # Not the block its hash names (the events were swapped): judge and cache nothing,
            # or the genuine block with this hash would be refused later.
            return False
        block_hash = block.block_hash
        cached = self._valid_cache.get(block_hash)
        if cached is None:
            cached = block.header.height == self.height and bool(self._app.validate_block(block))
            self._valid_cache[block_hash] = cached
        return cached

    # -- the upon-rules ---------------------------------------------------------------------------

    def _evaluate(self) -> None:
        rules = (
            self._upon_activity_while_waiting,
            self._upon_proposal_22,
            self._upon_proposal_with_polka_28,
            self._upon_prevote_quorum_34,
            self._upon_polka_for_proposal_36,
            self._upon_polka_nil_44,
            self._upon_precommit_quorum_47,
            self._upon_commit_quorum_49,
            self._upon_commit_certificate,
            self._upon_round_skip_55,
        )
        while self._started and self.decision is None:
            if not any(rule() for rule in rules):
                break

    def _upon_activity_while_waiting(self) -> bool:
        """Empty-block wait (not in Algorithm 1): others started this height, so start too.

        upon a proposal for h_p, or f+1 messages of one round of h_p, while waiting for events.
        """
        if not self.waiting_for_events:
            return False
        if self._proposals or any(
            self.validators.exceeds_one_third(power) for power in self._sender_power.values()
        ):
            self._start_round(self.round)
            return True
        return False

    def _upon_proposal_22(self) -> bool:
        """Lines 22-27: upon <PROPOSAL, h_p, round_p, v, -1> from proposer(h_p, round_p)
        while step_p = propose."""
        if not self._active or self.step != Step.PROPOSE:
            return False
        for (block_hash, valid_round), proposal in self._proposals.get(self.round, {}).items():
            if valid_round != NO_ROUND:
                continue
            if (
                self._valid(proposal.block)
                and self._timely(proposal)
                and (self.locked_round == NO_ROUND or self.locked_value == block_hash)
            ):
                self._broadcast_vote(PREVOTE, block_hash)
            else:
                self._broadcast_vote(PREVOTE, None)
            self.step = Step.PREVOTE
            return True
        return False

    def _upon_proposal_with_polka_28(self) -> bool:
        """Lines 28-33: upon <PROPOSAL, h_p, round_p, v, vr> from proposer(h_p, round_p) AND
        2f+1 <PREVOTE, h_p, vr, id(v)> while step_p = propose and (vr >= 0 and vr < round_p)."""
        if not self._active or self.step != Step.PROPOSE:
            return False
        for (block_hash, valid_round), proposal in self._proposals.get(self.round, {}).items():
            if not 0 <= valid_round < self.round:
                continue
            prevotes = self._prevotes(valid_round)
            if prevotes is None or not prevotes.has_quorum_for(block_hash):
                continue
            if self._valid(proposal.block) and (
                self.locked_round <= valid_round or self.locked_value == block_hash
            ):
                self._broadcast_vote(PREVOTE, block_hash)
            else:
                self._broadcast_vote(PREVOTE, None)
            self.step = Step.PREVOTE
            return True
        return False

    def _upon_prevote_quorum_34(self) -> bool:
        """Lines 34-35: upon 2f+1 <PREVOTE, h_p, round_p, *> while step_p = prevote for the
        first time: schedule OnTimeoutPrevote(h_p, round_p)."""
        if not self._active or self.step != Step.PREVOTE or (34, self.round) in self._fired:
            return False
        prevotes = self._prevotes(self.round)
        if prevotes is None or not prevotes.has_quorum_any():
            return False
        self._fired.add((34, self.round))
        self._schedule(TimeoutKind.PREVOTE, self.round)
        return True

    def _upon_polka_for_proposal_36(self) -> bool:
        """Lines 36-43: upon <PROPOSAL, h_p, round_p, v, *> from proposer(h_p, round_p) AND
        2f+1 <PREVOTE, h_p, round_p, id(v)> while valid(v) and step_p >= prevote for the
        first time."""
        if not self._active or self.step < Step.PREVOTE or (36, self.round) in self._fired:
            return False
        prevotes = self._prevotes(self.round)
        if prevotes is None:
            return False
        for block_hash in prevotes.quorum_blocks():
            proposal = self._proposal_for(self.round, block_hash)
            if proposal is not None and self._valid(proposal.block):
                break
        else:
            return False
        self._fired.add((36, self.round))
        if self.step == Step.PREVOTE:
            self.locked_value = block_hash
            self.locked_round = self.round
            polka = [v for v in prevotes.votes() if v.block_hash == block_hash]
            self._broadcast_vote(PRECOMMIT, block_hash, block=proposal.block, proof=polka)
            self.step = Step.PRECOMMIT
        self.valid_value = proposal.block
        self.valid_round = self.round
        return True

    def _upon_polka_nil_44(self) -> bool:
        """Lines 44-46: upon 2f+1 <PREVOTE, h_p, round_p, nil> while step_p = prevote."""
        if not self._active or self.step != Step.PREVOTE:
            return False
        prevotes = self._prevotes(self.round)
        if prevotes is None or not prevotes.has_quorum_for(None):
            return False
        self._broadcast_vote(PRECOMMIT, None)
        self.step = Step.PRECOMMIT
        return True

    def _upon_precommit_quorum_47(self) -> bool:
        """Lines 47-48: upon 2f+1 <PRECOMMIT, h_p, round_p, *> for the first time:
        schedule OnTimeoutPrecommit(h_p, round_p)."""
        if not self._active or (47, self.round) in self._fired:
            return False
        precommits = self._precommits(self.round)
        if precommits is None or not precommits.has_quorum_any():
            return False
        self._fired.add((47, self.round))
        self._schedule(TimeoutKind.PRECOMMIT, self.round)
        return True

    def _upon_commit_quorum_49(self) -> bool:
        """Lines 49-54: upon <PROPOSAL, h_p, r, v, *> from proposer(h_p, r) AND
        2f+1 <PRECOMMIT, h_p, r, id(v)> while decision_p[h_p] = nil: if valid(v), decide."""
        if self.decision is not None:
            return False
        for round in sorted(self._commit_rounds):
            precommits = self._votes[(round, PRECOMMIT)]
            for block_hash in precommits.quorum_blocks():
                proposal = self._proposal_for(round, block_hash)
                if proposal is not None and self._valid(proposal.block):
                    self._decide(proposal.block, precommits.make_commit(block_hash))
                    return True
        return False

    def _upon_round_skip_55(self) -> bool:
        """Lines 55-56: upon f+1 <*, h_p, round, *, *> with round > round_p: StartRound(round).

        With several such rounds the highest is taken (each enables the rule; firing it for
        the highest first disables the others)."""
        if not self._active:
            return False
        target = max(
            (
                round
                for round, power in self._sender_power.items()
                if round > self.round and self.validators.exceeds_one_third(power)
            ),
            default=None,
        )
        if target is None:
            return False
        self._entry = (
            *self._proposals.get(target, {}).values(),
            *(v for t in VOTE_TYPES for v in self._votes_of(target, t)),
        )
        self._start_round(target)
        return True

    def _upon_commit_certificate(self) -> bool:
        """Not in Algorithm 1 (the block sync of line 49): upon 2f+1 <PRECOMMIT, h_p, r, id(v)>
        for a valid block v we hold from any proposal of h_p or as valid_value, decide v.

        This is CommitReceived built from our own log: it lets a validator that lost the
        round-r proposal (a crash, a lost message) decide from a later re-proposal of v."""
        if self.decision is not None:
            return False
        for round in sorted(self._commit_rounds):
            precommits = self._votes[(round, PRECOMMIT)]
            for block_hash in precommits.quorum_blocks():
                block = self._known_block(block_hash)
                if block is not None and self._valid(block):
                    self._decide(block, precommits.make_commit(block_hash))
                    return True
        return False

    def _known_block(self, block_hash: bytes) -> Block | None:
        if self.valid_value is not None and self.valid_value.block_hash == block_hash:
            return self.valid_value
        if block_hash not in self._proposed:
            return None
        for bucket in self._proposals.values():
            for (proposed, _), proposal in bucket.items():
                if proposed == block_hash:
                    return proposal.block
        return None


__all__ = [
    "BlockApplied",
    "BlockSource",
    "Broadcast",
    "CommitReceived",
    "ConsensusConfig",
    "ConsensusCore",
    "Decide",
    "EventsAvailable",
    "EvidenceFound",
    "Input",
    "Output",
    "ProposalReceived",
    "ScheduleTimeout",
    "Start",
    "Tick",
    "TimeoutFired",
    "TimeoutKind",
    "Verifier",
    "VoteReceived",
]
