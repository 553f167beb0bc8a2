"""Consensus messages: signed proposals, votes and equivocation evidence, with wire forms.

Votes are `ledger.blocks.Vote`. A proposal signs the canonical map
`{"block", "chain", "height", "pol_round", "round", "type": "proposal"}`. Every message has a
canonical-codec-friendly wire dict; decoding raises `ledger.errors.Malformed` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ledger import codec, crypto
from ledger.blocks import PRECOMMIT, PREVOTE, VOTE_TYPES, Block, ValidatorSet, Vote
from ledger.errors import BadSignature, Malformed, VerificationFailed

PROPOSAL = "proposal"
EVIDENCE = "evidence"
NO_ROUND = -1
MAX_ROUND = (1 << 31) - 1

_VOTE_KEYS = frozenset({"type", "height", "round", "validator", "signature", "block"})
_PROPOSAL_KEYS = frozenset(
    {"type", "height", "round", "valid_round", "proposer", "signature", "block"}
)
_DECODE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError)


class Step(IntEnum):
    """The steps of a round, in the order a validator passes (and signs) them."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


VOTE_STEP = {PREVOTE: Step.PREVOTE, PRECOMMIT: Step.PRECOMMIT}


def proposal_sign_bytes(
    chain_id: str, height: int, round: int, block_hash: bytes, valid_round: int
) -> bytes:
    """The canonical bytes a proposer signs for <PROPOSAL, height, round, id(v), valid_round>."""
    return codec.encode(
        {
            "block": block_hash,
            "chain": chain_id,
            "height": height,
            "pol_round": valid_round,
            "round": round,
            "type": PROPOSAL,
        }
    )


@dataclass(frozen=True)
class Proposal:
    """<PROPOSAL, height, round, block, valid_round> signed by `proposer` (-1: no valid round)."""

    height: int
    round: int
    block: Block
    valid_round: int
    proposer: bytes
    signature: bytes

    @property
    def block_hash(self) -> bytes:
        return self.block.block_hash

    def sign_bytes(self, chain_id: str) -> bytes:
        return proposal_sign_bytes(
            chain_id, self.height, self.round, self.block_hash, self.valid_round
        )

    def verify(self, chain_id: str, validators: ValidatorSet) -> None:
        """Raise BadSignature unless a member of `validators` signed this proposal."""
        if validators.get(self.proposer) is None:
            raise BadSignature("proposal from a key outside the validator set")
        crypto.verify(self.proposer, self.sign_bytes(chain_id), self.signature)

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": PROPOSAL,
            "height": self.height,
            "round": self.round,
            "valid_round": self.valid_round,
            "proposer": self.proposer,
            "signature": self.signature,
            "block": self.block.to_wire(),
        }

    @classmethod
    def from_wire(cls, doc: Any) -> Proposal:
        try:
            return cls._from_wire(doc)
        except Malformed:
            raise
        except _DECODE_ERRORS as exc:
            raise Malformed(f"bad proposal: {type(exc).__name__}") from exc

    @classmethod
    def _from_wire(cls, doc: Any) -> Proposal:
        if not isinstance(doc, dict) or doc.get("type") != PROPOSAL:
            raise Malformed("a proposal is a map of type 'proposal'")
        if not set(doc) <= _PROPOSAL_KEYS:
            raise Malformed("unknown field in a proposal")
        height = _round_field(doc, "height", 0)
        round_ = _round_field(doc, "round", 0)
        valid_round = _round_field(doc, "valid_round", NO_ROUND)
        if valid_round >= round_:
            raise Malformed("a proposal's valid_round precedes its round")
        proposer = _bytes_field(doc, "proposer", crypto.PUBLIC_KEY_SIZE)
        signature = _bytes_field(doc, "signature", crypto.SIGNATURE_SIZE)
        if "block" not in doc:
            raise Malformed("missing field 'block'")
        block = Block.from_wire(doc["block"])
        return cls(height, round_, block, valid_round, proposer, signature)


@dataclass(frozen=True)
class Evidence:
    """Two different votes one validator signed for the same (height, round, type)."""

    vote_a: Vote
    vote_b: Vote

    @classmethod
    def of(cls, first: Vote, second: Vote) -> Evidence:
        """Evidence with its two votes in a canonical order (nil first, then by block hash)."""
        a, b = sorted((first, second), key=lambda v: (v.block_hash or b"", v.signature))
        return cls(a, b)

    @property
    def validator(self) -> bytes:
        return self.vote_a.validator

    def verify(self, chain_id: str, validators: ValidatorSet) -> None:
        """Raise VerificationFailed unless this proves one validator equivocated."""
        a, b = self.vote_a, self.vote_b
        if (a.validator, a.height, a.round, a.type) != (b.validator, b.height, b.round, b.type):
            raise VerificationFailed("evidence invalid", "votes are for different slots")
        if a.block_hash == b.block_hash:
            raise VerificationFailed("evidence invalid", "the votes do not conflict")
        for vote in (a, b):
            try:
                vote.verify(chain_id, validators)
            except BadSignature as exc:
                raise VerificationFailed("evidence invalid", str(exc)) from exc

    def to_wire(self) -> dict[str, Any]:
        return {"type": EVIDENCE, "a": self.vote_a.to_wire(), "b": self.vote_b.to_wire()}

    @classmethod
    def from_wire(cls, doc: Any) -> Evidence:
        if (
            not isinstance(doc, dict)
            or doc.get("type") != EVIDENCE
            or set(doc)
            != {
                "type",
                "a",
                "b",
            }
        ):
            raise Malformed("evidence is a map with fields type, a and b")
        return cls(_vote_from_wire(doc["a"]), _vote_from_wire(doc["b"]))


Message = Proposal | Vote


def message_to_wire(message: Message) -> dict[str, Any]:
    """The wire dict of a proposal or a vote (its `type` tells them apart)."""
    return message.to_wire()


def message_from_wire(doc: Any) -> Message:
    """Decode a proposal or a vote from its wire dict; raises Malformed on anything wrong."""
    if not isinstance(doc, dict):
        raise Malformed("a consensus message is a map")
    kind = doc.get("type")
    if kind == PROPOSAL:
        return Proposal.from_wire(doc)
    if kind in VOTE_TYPES:
        return _vote_from_wire(doc)
    raise Malformed("unknown consensus message type")


def encode_message(message: Message) -> bytes:
    """Canonical msgpack bytes of a proposal or a vote."""
    return codec.encode(message_to_wire(message))


def decode_message(data: bytes, max_bytes: int = codec.DEFAULT_MAX_BYTES) -> Message:
    """Decode canonical bytes into a proposal or a vote; raises Malformed (or TooLarge)."""
    return message_from_wire(codec.decode(data, max_bytes))


def _vote_from_wire(doc: Any) -> Vote:
    if not isinstance(doc, dict) or not set(doc) <= _VOTE_KEYS:
        raise Malformed("a vote is a map with the fields of a vote")
    try:
        vote = Vote.from_wire(doc)
    except Malformed:
        raise
    except _DECODE_ERRORS as exc:
        raise Malformed(f"bad vote: {type(exc).__name__}") from exc
    if vote.height > MAX_ROUND or vote.round > MAX_ROUND:
        raise Malformed("vote height or round out of range")
    if len(vote.validator) != crypto.PUBLIC_KEY_SIZE:
        raise Malformed("a vote's validator is a 33-byte public key")
    if len(vote.signature) != crypto.SIGNATURE_SIZE:
        raise Malformed("a vote's signature is 64 bytes")
    return vote


def _round_field(doc: dict[str, Any], name: str, minimum: int) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_ROUND:
        raise Malformed(f"field {name!r} must be an integer in {minimum}..{MAX_ROUND}")
    return value


def _bytes_field(doc: dict[str, Any], name: str, size: int) -> bytes:
    value = doc.get(name)
    if not isinstance(value, bytes) or len(value) != size:
        raise Malformed(f"field {name!r} must be {size} bytes")
    return value


__all__ = [
    "EVIDENCE",
    "NO_ROUND",
    "PROPOSAL",
    "VOTE_STEP",
    "Evidence",
    "Message",
    "Proposal",
    "Step",
    "decode_message",
    "encode_message",
    "message_from_wire",
    "message_to_wire",
    "proposal_sign_bytes",
]
