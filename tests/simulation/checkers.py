"""The checkers: what must hold in every run, judged on what the real replicas did and stored.

- agreement: no two honest nodes commit different blocks at one height;
- validity: each block an honest node stores extends its chain, names the validator set in
  force at its height and the next (worked out independently from the committed governance
  events, `ValidatorSetModel`), carries a commit with a quorum of valid precommit signatures
  from that set, holds the events its header commits to, each validly signed, and repeats no
  event already on the chain;
- no honest double-sign: an honest validator never signs two different messages for one
  (height, round, step), across crashes too;
- refused blocks: no honest validator votes for a block its executor must refuse;
- evidence: equivocation evidence verifies and names a Byzantine validator only;
- liveness: after the heal every honest node commits the target height;
- memory: what each honest node's consensus core holds (`ConsensusCore.footprint()`) stays
  under `memory_bound(config, n, round)`, however much the Byzantine validators flood;
- store agreement (end of every run): every honest store holds the same header bytes at every
  common height, its Merkle log has the header's tree root at every height and its state
  root is the head header's, and stores at the same height hold the same rules state.

Each raises SimulationFailure, whose message starts with `seed N:` so that N can be replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from consensus import ConsensusConfig, Evidence, Step
from consensus.core import MESSAGE_OVERHEAD, MIN_SENDER_BUFFER
from ledger import crypto
from ledger.blocks import (
    PRECOMMIT,
    Block,
    Commit,
    Header,
    Validator,
    ValidatorSet,
    Vote,
    vote_sign_bytes,
)
from ledger.errors import BadSignature, LedgerError, VerificationFailed
from ledger.events import Approve, Propose, decode_envelope
from ledger.genesis import Genesis
from ledger.store import Store
from tests.simulation.world import cached_verify

STATE_PREFIX = b"s"


class SimulationFailure(AssertionError):
    """A checker found a violation; the message starts with the seed to replay."""


Fail = Callable[[str], SimulationFailure]
"""Builds the failure of one check from why it failed."""


class AgreementChecker:
    """No two different blocks are committed at one height by honest nodes."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.decided: dict[int, tuple[bytes, str]] = {}

    def record(self, node: str, height: int, block_hash: bytes) -> None:
        first = self.decided.setdefault(height, (block_hash, node))
        if first[0] != block_hash:
            raise SimulationFailure(
                f"seed {self.seed}: agreement violated at height {height}: {first[1]} "
                f"committed {first[0].hex()[:12]}, {node} committed {block_hash.hex()[:12]}"
            )


class DoubleSignChecker:
    """No honest validator signs two different sign-bytes for one (height, round, step)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.signed: dict[tuple[bytes, int, int, int], bytes] = {}

    def record(self, validator: bytes, height: int, round: int, step: int, data: bytes) -> None:
        first = self.signed.setdefault((validator, height, round, step), data)
        if first != data:
            raise SimulationFailure(
                f"seed {self.seed}: honest validator {validator.hex()[:12]} double-signed "
                f"height {height} round {round} step {Step(step).name}"
            )


class ValidatorSetModel:
    """The validator set in force at each height, worked out independently of the rules from
    the committed blocks' governance events (docs/PROTOCOL.md §19): a proposal is decided in
    the block where its approvers (the proposer included) first hold more than 2/3 of the
    power in force there, and its change holds from two heights later. New members are
    appended; removals and power changes keep the order. The simulated validators approve
    with their node keys."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.observed = 0
        self.sets: dict[int, ValidatorSet] = {1: genesis.validators, 2: genesis.validators}
        self.proposals: dict[bytes, tuple[dict[str, Any], set[bytes]]] = {}
        self.decided: list[tuple[int, dict[str, Any]]] = []

    def at(self, height: int) -> ValidatorSet:
        assert height <= self.observed + 2, "the set of a height is known two blocks ahead"
        return self.sets[height]

    def observe(self, height: int, block: Block) -> None:
        """Take in the block of `height` (called once per height, in order)."""
        assert height == self.observed + 1
        validators = self.sets[height]
        following = self.sets[height + 1]
        for envelope in block.events:
            event = decode_envelope(envelope, verify=False)
            body = event.body
            if isinstance(body, Propose):
                self.proposals[event.event_id] = (body.change, {body.actor})
                proposal_id = event.event_id
            elif isinstance(body, Approve):
                self.proposals[body.proposal][1].add(body.actor)
                proposal_id = body.proposal
            else:
                continue
            change, approvers = self.proposals[proposal_id]
            if validators.has_quorum(validators.power_of(frozenset(approvers))):
                following = _apply(following, change)
                self.decided.append((height, change))
                del self.proposals[proposal_id]
        self.sets[height + 2] = following
        self.observed = height


def _apply(validators: ValidatorSet, change: dict[str, Any]) -> ValidatorSet:
    members = list(validators.validators)
    key = change.get("public_key")
    if change["op"] == "add-validator":
        members.append(Validator(change["name"], key, change["power"], change["url"]))
    elif change["op"] == "remove-validator":
        members = [v for v in members if v.public_key != key]
    elif change["op"] == "set-power":
        members = [
            Validator(v.name, v.public_key, change["power"], v.url) if v.public_key == key else v
            for v in members
        ]
    return ValidatorSet(tuple(members))


class ValidityChecker:
    """Every block an honest node stores is a valid, certified extension of its chain, whose
    header names (and whose commit is signed by) the set in force at its height."""

    def __init__(self, seed: int, genesis: Genesis) -> None:
        self.seed = seed
        self.genesis = genesis
        self.sets = ValidatorSetModel(genesis)
        self.event_heights: dict[str, dict[bytes, int]] = {}
        """Per node (a chain of its own until agreement says otherwise): where each event is."""

    def record(
        self, node: str, height: int, prev: bytes, block: Block | None, commit: Commit | None
    ) -> None:
        """Judge the block and commit `node` stored at `height` on a chain whose head was
        `prev` (the genesis hash below height 1)."""

        def fail(why: str) -> SimulationFailure:
            return SimulationFailure(
                f"seed {self.seed}: {node} committed an invalid block at height {height}: {why}"
            )

        if block is None or commit is None:
            raise fail("the store does not hold it")
        header = block.header
        validators = self.sets.at(height)
        following = self.sets.at(height + 1)
        if (
            header.height != height
            or header.prev != prev
            or header.chain != self.genesis.chain_id
            or header.validators != validators.hash()
        ):
            raise fail("it does not extend the chain with the validator set in force")
        if header.next_set_hash != following.hash():
            raise fail("its header does not name the next height's validator set")
        if not block.events_match_header():
            raise fail("its events are not the ones its header commits to")
        if commit.block_hash != block.block_hash or commit.height != height:
            raise fail("the commit is for another block")
        self._check_commit(commit, validators, fail)
        self._check_events(self.event_heights.setdefault(node, {}), height, block, fail)
        if height == self.sets.observed + 1:
            self.sets.observe(height, block)

    @property
    def events(self) -> int:
        """How many distinct events the honest nodes committed."""
        return len({e for heights in self.event_heights.values() for e in heights})

    def _check_commit(self, commit: Commit, validators: ValidatorSet, fail: Fail) -> None:
        message = vote_sign_bytes(
            self.genesis.chain_id, commit.height, commit.round, PRECOMMIT, commit.block_hash
        )
        signers: set[bytes] = set()
        for entry in commit.signatures:
            if validators.get(entry.validator) is None or entry.validator in signers:
                raise fail("the commit has a signature from a non-validator or a repeated one")
            try:
                cached_verify(entry.validator, message, entry.signature)
            except BadSignature as exc:
                raise fail("the commit has a bad precommit signature") from exc
            signers.add(entry.validator)
        if not validators.has_quorum(validators.power_of(signers)):
            raise fail("the commit lacks a quorum")

    def _check_events(self, chain: dict[bytes, int], height: int, block: Block, fail: Fail) -> None:
        seen: set[bytes] = set()
        for envelope in block.events:
            try:
                event = decode_envelope(envelope, chain_id=self.genesis.chain_id, verify=False)
                cached_verify(event.actor, event.body_bytes, event.signature)
            except LedgerError as exc:
                raise fail(f"bad event: {exc}") from exc
            first = chain.setdefault(event.event_id, height)
            if first != height or event.event_id in seen:
                raise fail(f"event {event.event_id.hex()[:12]} is already at height {first}")
            seen.add(event.event_id)


class RefusedBlockChecker:
    """No honest validator votes for a block every honest executor must refuse."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.refused: dict[bytes, str] = {}

    def forged(self, block_hash: bytes, how: str) -> None:
        self.refused[block_hash] = how

    def record(self, node: str, vote: Vote) -> None:
        if vote.block_hash is not None and vote.block_hash in self.refused:
            raise SimulationFailure(
                f"seed {self.seed}: honest {node} {vote.type}d {vote.block_hash.hex()[:12]} at "
                f"height {vote.height} round {vote.round}, a block with "
                f"{self.refused[vote.block_hash]}"
            )


class EvidenceChecker:
    """Equivocation evidence verifies and names one of the Byzantine validators."""

    def __init__(self, seed: int, genesis: Genesis, byzantine: Mapping[bytes, str]) -> None:
        self.seed = seed
        self.genesis = genesis
        self.byzantine = byzantine
        self.names = {v.public_key: v.name for v in genesis.validators.validators}

    def record(self, node: str, evidence: Evidence) -> str:
        """Check evidence found by `node`; returns the culprit's name."""
        try:
            evidence.verify(self.genesis.chain_id, self.genesis.validators)
        except VerificationFailed as exc:
            raise SimulationFailure(
                f"seed {self.seed}: {node} kept invalid evidence: {exc}"
            ) from exc
        culprit = self.names.get(evidence.validator, evidence.validator.hex()[:12])
        if evidence.validator not in self.byzantine:
            raise SimulationFailure(
                f"seed {self.seed}: {node} found evidence against honest {culprit}"
            )
        return culprit


def memory_bound(config: ConsensusConfig, n: int, round: int) -> dict[str, int]:
    """The most a consensus core of `n` validators at round `round` of its height may hold,
    per `footprint()` key, derived from its config (docs/PROTOCOL.md §7.12):

    - rounds: every round up to its own (Tendermint keeps the votes of the height's past
      rounds) plus, per sender, `max_future_rounds_per_validator` rounds ahead;
    - vote sets: a prevote and a precommit set per round; votes: per set, one per validator,
      and for each of the f = (n-1)//3 Byzantine validators one more per relevant value (nil,
      each proposal held, valid_value) — honest validators never sign two (DoubleSignChecker);
    - proposals: `max_proposals_per_round` per round, and at most
      `max_proposal_bytes_per_validator` charged bytes per sender;
    - the next height's buffer: per sender, max(8, max_buffered_messages // n) messages and
      max(MIN_SENDER_BUFFER, max_buffered_bytes // n) bytes;
    - evidence `max_evidence`, forged signatures remembered `max_rejected_signatures`;
    - bytes (the headline figure): proposal bytes + buffered bytes + MESSAGE_OVERHEAD per vote.

    The round term is the only one that grows, and only as the height's rounds go by (each
    costs a timeout): no sender can make it grow faster.
    """
    f = (n - 1) // 3
    rounds = round + 1 + n * config.max_future_rounds_per_validator
    proposals = rounds * config.max_proposals_per_round
    votes = 2 * rounds * (n + f * (proposals + 2))
    bound = {
        "vote_sets": 2 * rounds,
        "votes": votes,
        "sender_rounds": rounds,
        "proposals": proposals,
        "proposal_bytes": n * config.max_proposal_bytes_per_validator,
        "future_messages": n * max(8, config.max_buffered_messages // n),
        "future_bytes": n * max(MIN_SENDER_BUFFER, config.max_buffered_bytes // n),
        "future_rounds": n * config.max_future_rounds_per_validator,
        "evidence": config.max_evidence,
        "rejected": config.max_rejected_signatures,
    }
    bound["bytes"] = bound["proposal_bytes"] + bound["future_bytes"] + MESSAGE_OVERHEAD * votes
    return bound


def charged_bytes(footprint: Mapping[str, int]) -> int:
    """The bytes a footprint charges: proposals, buffered messages, MESSAGE_OVERHEAD a vote."""
    return (
        footprint["proposal_bytes"]
        + footprint["future_bytes"]
        + MESSAGE_OVERHEAD * footprint["votes"]
    )


class MemoryChecker:
    """Each honest core's footprint stays under `memory_bound` for its round; keeps the peak
    of every key (and of the round it was reached at) for the report."""

    def __init__(self, seed: int, config: ConsensusConfig, n: int) -> None:
        self.seed = seed
        self.config = config
        self.n = n
        self.peak: dict[str, int] = {}
        self.peak_round = 0
        self._bounds: dict[int, dict[str, int]] = {}

    def record(self, node: str, height: int, round: int, footprint: Mapping[str, int]) -> None:
        held = {**footprint, "bytes": charged_bytes(footprint)}
        bound = self._bounds.get(round)
        if bound is None:
            bound = self._bounds[round] = memory_bound(self.config, self.n, round)
        over = {k: (v, bound[k]) for k, v in held.items() if k in bound and v > bound[k]}
        if over:
            raise SimulationFailure(
                f"seed {self.seed}: memory bound exceeded by {node} at height {height} round "
                f"{round}: " + ", ".join(f"{k} {v} > {b}" for k, (v, b) in sorted(over.items()))
            )
        for key, value in held.items():
            self.peak[key] = max(self.peak.get(key, 0), value)
        self.peak_round = max(self.peak_round, round)

    def bound(self) -> dict[str, int]:
        """The bound at the highest round a checked core was at."""
        return memory_bound(self.config, self.n, self.peak_round)


def check_liveness(seed: int, heights: dict[str, int], target: int, deadline: int) -> None:
    """Every honest node reached `target` committed blocks by the deadline."""
    behind = {name: h for name, h in heights.items() if h < target}
    if behind:
        raise SimulationFailure(
            f"seed {seed}: liveness violated: by t={deadline} ms these honest nodes have not "
            f"committed {target} blocks: {behind}"
        )


def state_digest(store: Store) -> bytes:
    """SHA-256 over every rules-state key and value of a store (what its state root sums)."""
    parts: list[bytes] = []
    with store.db.iterator(prefix=STATE_PREFIX, include_value=False) as keys:
        for key in keys:
            value = store.db.get(key)
            assert value is not None
            parts += (len(key).to_bytes(4, "big"), key, len(value).to_bytes(4, "big"), value)
    return crypto.sha256(b"".join(parts))


def check_store_agreement(seed: int, stores: Mapping[str, Store]) -> None:
    """The honest stores agree: header bytes at every common height, each store's Merkle log
    and state root match its headers, and stores at one height hold the same state."""

    def fail(why: str) -> SimulationFailure:
        return SimulationFailure(f"seed {seed}: store agreement violated: {why}")

    headers: dict[int, tuple[bytes, str]] = {}
    states: dict[int, tuple[bytes, str]] = {}
    for name, store in stores.items():
        for height in range(1, store.height + 1):
            raw = store.header_bytes(height)
            if raw is None:
                raise fail(f"{name} lacks the header of height {height} below its head")
            first = headers.setdefault(height, (raw, name))
            if first[0] != raw:
                raise fail(f"{first[1]} and {name} hold different headers at height {height}")
            header = Header.decode(raw)
            tree_root = store.root(header.tree_size)
            if tree_root != header.tree_root:
                raise fail(
                    f"{name}'s Merkle log of {header.tree_size} leaves has root "
                    f"{tree_root.hex()[:12]}, its header at height {height} says "
                    f"{header.tree_root.hex()[:12]}"
                )
            block = store.block(height)
            if block is None or not block.events_match_header():
                raise fail(f"{name}'s events at height {height} are not its header's")
        if store.height:
            head = store.header(store.height)
            assert head is not None
            if store.state_root != head.state_root or store.tree_size != head.tree_size:
                raise fail(f"{name}'s state root or tree size is not its head header's")
        digest = state_digest(store)
        first_state = states.setdefault(store.height, (digest, name))
        if first_state[0] != digest:
            raise fail(
                f"{first_state[1]} and {name} are both at height {store.height} with "
                "different rules state"
            )


__all__ = [
    "AgreementChecker",
    "DoubleSignChecker",
    "EvidenceChecker",
    "MemoryChecker",
    "RefusedBlockChecker",
    "SimulationFailure",
    "ValidatorSetModel",
    "ValidityChecker",
    "charged_bytes",
    "check_liveness",
    "check_store_agreement",
    "memory_bound",
    "state_digest",
]
