"""Shared fixtures for consensus tests: deterministic keys, a fake BlockSource, a harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from cryptography.hazmat.primitives.asymmetric import ec

from consensus import (
    Broadcast,
    ConsensusConfig,
    ConsensusCore,
    Decide,
    MemorySignerPersistence,
    Output,
    Proposal,
    ProposalReceived,
    ScheduleTimeout,
    Signer,
    Start,
    VoteReceived,
    proposal_sign_bytes,
    proposer,
)
from ledger import crypto
from ledger.blocks import PRECOMMIT, PREVOTE, Block, Header, Validator, ValidatorSet, Vote
from ledger.blocks import vote_sign_bytes as _vote_sign_bytes
from ledger.merkle import leaf_hash, root_from_leaf_hashes

CHAIN = "test-chain"
ZERO = b"\x00" * 32


@cache
def key(index: int) -> crypto.PrivateKey:
    """A deterministic P-256 key per index (same across runs)."""
    return crypto.PrivateKey(ec.derive_private_key(0x5EED0000 + index, ec.SECP256R1()))


def events_root(events: tuple[bytes, ...]) -> bytes:
    """The Merkle root a header commits its events to (as the ledger computes it)."""
    return root_from_leaf_hashes([leaf_hash(e) for e in events])


def validator_set(n: int, powers: list[int] | None = None) -> ValidatorSet:
    powers = powers or [1] * n
    return ValidatorSet(tuple(Validator(f"v{i}", key(i).public_key, powers[i]) for i in range(n)))


def make_block(
    height: int, tag: str = "a", time: int = 0, proposer_key: bytes = b"", bad: bool = False
) -> Block:
    events = (b"bad" if bad else b"tx-" + tag.encode(),)
    header = Header(
        chain=CHAIN,
        height=height,
        time=time,
        prev=ZERO,
        proposer=proposer_key,
        events_root=events_root(events),
        tree_size=height,
        tree_root=crypto.sha256(tag.encode()),
        state_root=ZERO,
        validators=ZERO,
    )
    return Block(header, events)


@dataclass
class FakeApp:
    """BlockSource: builds deterministic blocks; a block is valid unless it carries b"bad"."""

    pending: bool = True
    built: list[Block] = field(default_factory=list)
    validated: list[bytes] = field(default_factory=list)

    def has_pending(self) -> bool:
        return self.pending

    def build_block(self, height: int, round: int, time: int, proposer: bytes) -> Block:
        block = make_block(height, f"own-{height}-{round}", time, proposer)
        self.built.append(block)
        return block

    def validate_block(self, block: Block) -> bool:
        self.validated.append(block.block_hash)
        return all(e.startswith(b"tx-") for e in block.events)


def sign_vote(index: int, vote_type: str, height: int, round: int, value: bytes | None) -> Vote:
    k = key(index)
    message = _vote_sign_bytes(CHAIN, height, round, vote_type, value)
    return Vote(vote_type, height, round, value, k.public_key, k.sign(message))


def sign_proposal(index: int, height: int, round: int, block: Block, valid_round: int) -> Proposal:
    k = key(index)
    message = proposal_sign_bytes(CHAIN, height, round, block.block_hash, valid_round)
    return Proposal(height, round, block, valid_round, k.public_key, k.sign(message))


class Harness:
    """One core (validator `me` of `n`) driven by the test, which signs for the others."""

    def __init__(
        self,
        n: int = 4,
        me: int | None = 0,
        height: int = 1,
        pending: bool = True,
        config: ConsensusConfig | None = None,
        powers: list[int] | None = None,
        persistence: MemorySignerPersistence | None = None,
    ) -> None:
        self.n = n
        self.me = me
        self.validators = validator_set(n, powers)
        self.app = FakeApp(pending=pending)
        self.config = config or ConsensusConfig()
        self.persistence = persistence or MemorySignerPersistence()
        self.verified = 0
        self.now = 1_000
        self.core = self._build(height)

    def _verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        self.verified += 1
        crypto.verify(public_key, message, signature)

    def _build(self, height: int) -> ConsensusCore:
        signer = None if self.me is None else Signer(key(self.me), self.persistence)
        return ConsensusCore(
            self.config, CHAIN, self.validators, signer, self.app, height, verify=self._verify
        )

    def restart(self) -> list[Output]:
        self.core = self._build(self.core.height)
        return self.start()

    def feed(self, event: object) -> list[Output]:
        self.now += 1
        return self.core.handle(event)  # type: ignore[arg-type]

    def start(self) -> list[Output]:
        return self.feed(Start(self.now))

    def proposer_index(self, height: int, round: int) -> int:
        pk = proposer(self.validators, height, round)
        return next(i for i in range(self.n) if key(i).public_key == pk)

    def propose(
        self, round: int, block: Block, valid_round: int = -1, height: int | None = None
    ) -> list[Output]:
        height = self.core.height if height is None else height
        index = self.proposer_index(height, round)
        return self.feed(
            ProposalReceived(sign_proposal(index, height, round, block, valid_round), self.now)
        )

    def vote(
        self,
        indices: list[int] | range,
        vote_type: str,
        round: int,
        value: bytes | None,
        height: int | None = None,
    ) -> list[Output]:
        height = self.core.height if height is None else height
        outputs: list[Output] = []
        for index in indices:
            vote = sign_vote(index, vote_type, height, round, value)
            outputs += self.feed(VoteReceived(vote, self.now))
        return outputs

    def others(self) -> list[int]:
        return [i for i in range(self.n) if i != self.me]


def broadcast_votes(outputs: list[Output], vote_type: str | None = None) -> list[Vote]:
    return [
        o.message
        for o in outputs
        if isinstance(o, Broadcast)
        and isinstance(o.message, Vote)
        and (vote_type is None or o.message.type == vote_type)
    ]


def broadcast_proposals(outputs: list[Output]) -> list[Proposal]:
    return [
        o.message for o in outputs if isinstance(o, Broadcast) and isinstance(o.message, Proposal)
    ]


def timeouts(outputs: list[Output]) -> list[ScheduleTimeout]:
    return [o for o in outputs if isinstance(o, ScheduleTimeout)]


def decisions(outputs: list[Output]) -> list[Decide]:
    return [o for o in outputs if isinstance(o, Decide)]


__all__ = [
    "CHAIN",
    "PRECOMMIT",
    "PREVOTE",
    "FakeApp",
    "Harness",
    "broadcast_proposals",
    "broadcast_votes",
    "decisions",
    "key",
    "make_block",
    "sign_proposal",
    "sign_vote",
    "timeouts",
    "validator_set",
]
