"""The Byzantine behaviours of up to f validators.

- SILENT: the validator never runs (no replica, no messages).
- EQUIVOCATE: a real replica whose own proposals and votes go to half of its peers as signed
  by its Signer and to the other half replaced by a conflicting message signed with the raw
  key (bypassing the Signer): a vote for another value or nil, a proposal of another block —
  mostly one that honest executors must refuse, so that they prevote nil.
- SPLIT: split-brain, two honest-looking replicas with the same key, each with its own store
  and signer state, each talking to half of the network (`network.Address.side`).

Floods (issue 11): a real replica that also sends, signed with its raw key, every FLOOD_MS —

- FLOOD: votes for ever-new future rounds of its height (a few rounds ahead, far ahead, up to
  MAX_ROUND) and for future heights, inside the buffered window and beyond it;
- EQUIVOCATE_ALL: in every round of its height it learns of, a conflicting pair of prevotes
  and a conflicting pair of precommits to everyone, and its own proposals and votes forged as
  EQUIVOCATE does, but the conflicting copy goes to every peer (each peer gets both);
- BIG: proposals of exactly the core's per-validator proposal byte budget (and now and then
  one byte over it) for the future rounds it is the proposer of, at its height, the next one
  and beyond the window; their events are garbage, so a core that reaches such a round must
  refuse the block.

`Equivocator` makes the conflicting messages, `Flooder` the floods; the simulator decides who
gets which.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from enum import StrEnum

from consensus import Message, Proposal, proposal_sign_bytes, proposer
from consensus.core import MESSAGE_OVERHEAD
from consensus.messages import MAX_ROUND, NO_ROUND
from ledger import crypto
from ledger.blocks import PRECOMMIT, PREVOTE, Block, Header, ValidatorSet, Vote, vote_sign_bytes
from ledger.merkle import leaf_hash, root_from_leaf_hashes

HONEST = "honest"
SILENT = "silent"
EQUIVOCATE = "equivocate"
SPLIT = "split"
FLOOD = "flood"
EQUIVOCATE_ALL = "equivocate-all"
BIG = "big"
BYZANTINE_STRATEGIES = (SILENT, EQUIVOCATE, SPLIT, FLOOD, EQUIVOCATE_ALL, BIG)
FLOODS = (FLOOD, EQUIVOCATE_ALL, BIG)
"""The strategies that run a real replica and flood on top of it."""

FLOOD_VOTES = 6
"""Votes a FLOOD validator signs per burst (sim.FLOOD_MS)."""
BIG_PROPOSALS = 3
"""Maximum-size proposals a BIG validator signs per burst (its height, the next, beyond)."""
FILLER = 16 << 10
"""The size of the garbage events a BIG proposal is made of."""


class Forgery(StrEnum):
    """How a conflicting proposal's block differs from the one the Signer signed."""

    GARBAGE = "garbage event bytes (events_root matches them)"
    WRONG_ROOT = "an events_root that its events do not have"
    WRONG_STATE = "a state root its events do not lead to"
    DUPLICATE = "an event twice (events_root matches)"
    OTHER_TIME = "the same events at another time (a valid block)"

    @property
    def refused(self) -> bool:
        """Whether every honest executor must refuse such a block (valid(v) is false)."""
        return self is not Forgery.OTHER_TIME


def events_root(events: tuple[bytes, ...]) -> bytes:
    """The Merkle root a header commits its events to (as the ledger computes it)."""
    return root_from_leaf_hashes([leaf_hash(e) for e in events])


def forge_block(
    block: Block, rng: random.Random, kind: Forgery | None = None
) -> tuple[Block, Forgery]:
    """Another block for the same height (of a random `kind` unless given): mostly one that
    honest executors refuse."""
    if kind is None:
        kind = rng.choice(list(Forgery))
    if kind is Forgery.DUPLICATE and not block.events:
        kind = Forgery.GARBAGE
    header = block.header
    events = block.events
    if kind is Forgery.GARBAGE:
        events = (*events, rng.randbytes(48))
        header = replace(header, events_root=events_root(events))
    elif kind is Forgery.WRONG_ROOT:
        header = replace(header, events_root=rng.randbytes(32))
    elif kind is Forgery.WRONG_STATE:
        header = replace(header, state_root=rng.randbytes(32))
    elif kind is Forgery.DUPLICATE:
        events = (*events, events[0])
        header = replace(header, events_root=events_root(events))
    else:
        header = replace(header, time=header.time + 1)
    return Block(header, events), kind


@dataclass(frozen=True)
class Conflict:
    """A conflicting message and, for a proposal, how its block was forged."""

    message: Message
    forgery: Forgery | None = None


class Equivocator:
    """Conflicting messages for one validator, signed with its raw key (no Signer)."""

    def __init__(self, key: crypto.PrivateKey, chain_id: str, rng: random.Random) -> None:
        self.key = key
        self.chain_id = chain_id
        self.rng = rng
        self.seen: dict[tuple[int, int], list[bytes]] = {}

    def saw(self, proposal: Proposal) -> None:
        """Remember a proposed value: a conflicting vote may go to it."""
        self.seen.setdefault((proposal.height, proposal.round), []).append(proposal.block_hash)

    def every_round(self, height: int, round: int) -> list[Vote]:
        """A conflicting pair of prevotes and one of precommits for (height, round): two of nil,
        the values proposed in that round and a value nobody proposed."""
        values: list[bytes | None] = [None, *self.seen.get((height, round), [])]
        values.append(self.rng.randbytes(32))
        votes = []
        for vote_type in (PREVOTE, PRECOMMIT):
            for value in self.rng.sample(values, 2):
                data = vote_sign_bytes(self.chain_id, height, round, vote_type, value)
                votes.append(
                    Vote(vote_type, height, round, value, self.key.public_key, self.key.sign(data))
                )
        return votes

    def forget_below(self, height: int) -> None:
        """Drop what it saw of heights below `height` (its memory stays bounded too)."""
        for key in [k for k in self.seen if k[0] < height]:
            del self.seen[key]

    def conflicting(self, message: Message) -> Conflict:
        if isinstance(message, Vote):
            return Conflict(self._vote(message))
        return self._proposal(message)

    def _vote(self, vote: Vote) -> Vote:
        """A vote for another proposed value, nil, or a value nobody proposed."""
        options: list[bytes | None] = [
            v for v in self.seen.get((vote.height, vote.round), []) if v != vote.block_hash
        ]
        if vote.block_hash is not None:
            options.append(None)
        value = self.rng.choice(options) if options else self.rng.randbytes(32)
        data = vote_sign_bytes(self.chain_id, vote.height, vote.round, vote.type, value)
        return replace(vote, block_hash=value, signature=self.key.sign(data))

    def _proposal(self, proposal: Proposal) -> Conflict:
        block, forgery = forge_block(proposal.block, self.rng)
        data = proposal_sign_bytes(
            self.chain_id, proposal.height, proposal.round, block.block_hash, proposal.valid_round
        )
        forged = replace(proposal, block=block, signature=self.key.sign(data))
        return Conflict(forged, forgery)


class Flooder:
    """Floods of one validator: future-round votes and maximum-size future proposals, signed
    with its raw key (no Signer), valid signatures all, so a core pays a check for each."""

    def __init__(
        self,
        key: crypto.PrivateKey,
        chain_id: str,
        validators: ValidatorSet,
        rng: random.Random,
        proposal_bytes: int,
    ) -> None:
        self.key = key
        self.me = key.public_key
        self.chain_id = chain_id
        self.validators = validators
        self.validators_hash = validators.hash()
        self.rng = rng
        self.proposal_bytes = proposal_bytes
        self.filler = rng.randbytes(FILLER)

    def _vote(self, height: int, round: int) -> Vote:
        vote_type = self.rng.choice((PREVOTE, PRECOMMIT))
        value = None if self.rng.random() < 0.3 else self.rng.randbytes(32)
        data = vote_sign_bytes(self.chain_id, height, round, vote_type, value)
        return Vote(vote_type, height, round, value, self.me, self.key.sign(data))

    def future_votes(self, height: int, round: int) -> list[Vote]:
        """FLOOD_VOTES votes ahead of (height, round): mostly a few rounds ahead (more than a
        core keeps per sender), some far ahead or at MAX_ROUND, some of the next height (the
        buffered window), some of heights beyond it."""
        rng = self.rng
        targets: list[tuple[int, int]] = []
        for _ in range(FLOOD_VOTES):
            roll = rng.random()
            if roll < 0.4:
                targets.append((height, round + rng.randint(1, 8)))
            elif roll < 0.55:
                targets.append((height, rng.choice((round + rng.randint(9, 10_000), MAX_ROUND))))
            elif roll < 0.85:
                targets.append((height + 1, rng.choice((rng.randint(0, 8), MAX_ROUND))))
            else:
                targets.append((height + rng.randint(2, 1000), rng.randint(0, 8)))
        return [self._vote(h, r) for h, r in targets]

    def proposer_rounds(self, height: int, after: int, count: int) -> list[int]:
        """The first `count` rounds after `after` whose proposer at `height` it is."""
        rounds: list[int] = []
        round = after + 1
        while len(rounds) < count and round <= MAX_ROUND:
            if proposer(self.validators, height, round) == self.me:
                rounds.append(round)
            round += 1
        return rounds

    def big_proposals(self, height: int, round: int, time: int) -> list[Proposal]:
        """BIG_PROPOSALS proposals of exactly `proposal_bytes` (one byte more, now and then):
        a future round of `height` it proposes, a round of the next height, one beyond."""
        rng = self.rng
        at_height = self.proposer_rounds(height, round, 4)
        next_height = self.proposer_rounds(height + 1, -1, 8)
        targets = [
            (height, rng.choice(at_height)),
            (height + 1, rng.choice(next_height)),
            (height + rng.randint(2, 100), rng.randint(0, 8)),
        ]
        return [self.big_proposal(h, r, time) for h, r in targets[:BIG_PROPOSALS]]

    def big_proposal(self, height: int, round: int, time: int) -> Proposal:
        size = self.proposal_bytes + (1 if self.rng.random() < 0.1 else 0)
        body = size - MESSAGE_OVERHEAD
        events = [self.rng.randbytes(32)]
        body -= 32
        while body > 0:
            events.append(self.filler[: min(FILLER, body)])
            body -= len(events[-1])
        header = Header(
            chain=self.chain_id,
            height=height,
            time=time,
            prev=self.rng.randbytes(32),
            proposer=self.me,
            events_root=events_root(tuple(events)),
            tree_size=0,
            tree_root=self.rng.randbytes(32),
            state_root=self.rng.randbytes(32),
            validators=self.validators_hash,
        )
        block = Block(header, tuple(events))
        data = proposal_sign_bytes(self.chain_id, height, round, block.block_hash, NO_ROUND)
        return Proposal(height, round, block, NO_ROUND, self.me, self.key.sign(data))


__all__ = [
    "BIG",
    "BYZANTINE_STRATEGIES",
    "EQUIVOCATE",
    "EQUIVOCATE_ALL",
    "FLOOD",
    "FLOODS",
    "HONEST",
    "SILENT",
    "SPLIT",
    "Conflict",
    "Equivocator",
    "Flooder",
    "Forgery",
    "events_root",
    "forge_block",
]
