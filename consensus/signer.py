"""The validator's signer: persists what it signs before the signature can leave.

It signs in strictly increasing (height, round, step) order, proposal < prevote < precommit.
It refuses (SignerRefused) anything below the last signed slot, and anything different in the
same slot; the same bytes in the same slot get the stored signature back. The state is saved
through `SignerPersistence` before a new signature is returned, so the guard survives a crash.

Besides the last slot, the state keeps what a restarted core needs to carry on where it
stopped: the lock of the height (set by the last precommit for a block: Algorithm 1's
lockedRound and lockedValue, with the block and the prevotes that justified it when the core
passes them) and the latest votes of the height, which the core retransmits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from consensus.errors import SignerRefused
from consensus.messages import VOTE_STEP, Proposal, Step, proposal_sign_bytes
from ledger import codec, crypto
from ledger.blocks import PRECOMMIT, Block, Vote, vote_sign_bytes
from ledger.errors import Malformed

MAX_RECENT_VOTES = 6
MAX_STATE_BYTES = 64 << 20
_DECODE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, OverflowError)


@dataclass(frozen=True)
class Lock:
    """A precommit for a block: its round and hash, the block and its proof of lock if known."""

    round: int
    block_hash: bytes
    block: Block | None = None
    proof: tuple[Vote, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "round": self.round,
            "hash": self.block_hash,
            "proof": [v.to_wire() for v in self.proof],
        }
        if self.block is not None:
            doc["block"] = self.block.to_wire()
        return doc

    @classmethod
    def from_wire(cls, doc: Any) -> Lock:
        if not isinstance(doc, dict) or not isinstance(doc.get("proof"), list):
            raise Malformed("a lock is a map with a proof list")
        round_, block_hash = doc.get("round"), doc.get("hash")
        if not isinstance(round_, int) or isinstance(round_, bool) or round_ < 0:
            raise Malformed("a lock round is a non-negative integer")
        if not isinstance(block_hash, bytes):
            raise Malformed("a lock hash is bytes")
        block = Block.from_wire(doc["block"]) if "block" in doc else None
        if block is not None and block.block_hash != block_hash:
            raise Malformed("the locked block does not match its hash")
        return cls(round_, block_hash, block, tuple(Vote.from_wire(v) for v in doc["proof"]))


@dataclass(frozen=True)
class SignerState:
    """The last signed slot and its bytes/signature, plus this height's lock and recent votes."""

    height: int
    round: int
    step: int
    sign_bytes: bytes
    signature: bytes
    lock: Lock | None = None
    recent_votes: tuple[Vote, ...] = ()

    @property
    def slot(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "height": self.height,
            "round": self.round,
            "step": self.step,
            "sign_bytes": self.sign_bytes,
            "signature": self.signature,
            "recent_votes": [v.to_wire() for v in self.recent_votes],
        }
        if self.lock is not None:
            doc["lock"] = self.lock.to_wire()
        return codec.encode(doc)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignerState:
        """Decode a saved state; raises Malformed on anything wrong."""
        doc = codec.decode_map(data, MAX_STATE_BYTES)
        try:
            ints = [doc[name] for name in ("height", "round", "step")]
            blobs = [doc[name] for name in ("sign_bytes", "signature")]
            raw_votes = doc["recent_votes"]
            if not isinstance(raw_votes, list):
                raise Malformed("recent_votes is a list")
            votes = tuple(Vote.from_wire(v) for v in raw_votes)
            lock = Lock.from_wire(doc["lock"]) if "lock" in doc else None
        except _DECODE_ERRORS as exc:
            raise Malformed(f"bad signer state: {exc}") from exc
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in ints):
            raise Malformed("signer state height, round and step are non-negative integers")
        if any(not isinstance(v, bytes) for v in blobs):
            raise Malformed("signer state sign_bytes and signature are bytes")
        if ints[2] not in tuple(Step):
            raise Malformed("signer state step out of range")
        return cls(ints[0], ints[1], ints[2], blobs[0], blobs[1], lock, votes)


class SignerPersistence(Protocol):
    """Durable storage of the signer state (the node: an fsync'd file)."""

    def load(self) -> SignerState | None: ...

    def save(self, state: SignerState) -> None: ...


class MemorySignerPersistence:
    """SignerPersistence in memory, for tests and simulations (it survives a rebuilt Signer)."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.saves = 0

    def load(self) -> SignerState | None:
        return None if self.data is None else SignerState.from_bytes(self.data)

    def save(self, state: SignerState) -> None:
        self.data = state.to_bytes()
        self.saves += 1


class Signer:
    """Signs proposals and votes for one validator key, never twice differently per slot."""

    def __init__(self, private_key: crypto.PrivateKey, persistence: SignerPersistence) -> None:
        self._key = private_key
        self._persistence = persistence
        self._public_key = private_key.public_key
        self._state = persistence.load()

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def state(self) -> SignerState | None:
        return self._state

    def lock(self, height: int) -> Lock | None:
        """The lock at `height`, if the last signatures are at that height and include one."""
        state = self._state
        return state.lock if state is not None and state.height == height else None

    def last_round(self, height: int) -> int | None:
        """The round of the last signature, if it was at `height`."""
        state = self._state
        return state.round if state is not None and state.height == height else None

    def recent_votes(self, height: int) -> tuple[Vote, ...]:
        """The latest votes signed at `height`, oldest first (bounded)."""
        state = self._state
        if state is None or state.height != height:
            return ()
        return state.recent_votes

    def sign_proposal(
        self, chain_id: str, height: int, round: int, block: Block, valid_round: int
    ) -> Proposal:
        message = proposal_sign_bytes(chain_id, height, round, block.block_hash, valid_round)
        signature = self._sign(height, round, Step.PROPOSE, message, None, None)
        return Proposal(height, round, block, valid_round, self._public_key, signature)

    def sign_vote(
        self,
        chain_id: str,
        vote_type: str,
        height: int,
        round: int,
        block_hash: bytes | None,
        *,
        block: Block | None = None,
        proof: Sequence[Vote] = (),
    ) -> Vote:
        """Sign a vote. A precommit for a block sets the lock; pass the block and the prevotes
        that justify it so that a restart can re-propose it with its proof."""
        message = vote_sign_bytes(chain_id, height, round, vote_type, block_hash)
        unsigned = Vote(vote_type, height, round, block_hash, self._public_key, b"")
        lock = None
        if vote_type == PRECOMMIT and block_hash is not None:
            known = block if block is not None and block.block_hash == block_hash else None
            lock = Lock(round, block_hash, known, tuple(proof) if known else ())
        signature = self._sign(height, round, VOTE_STEP[vote_type], message, unsigned, lock)
        return replace(unsigned, signature=signature)

    def _sign(
        self,
        height: int,
        round: int,
        step: Step,
        message: bytes,
        vote: Vote | None,
        lock: Lock | None,
    ) -> bytes:
        last = self._state
        slot = (height, round, int(step))
        if last is not None:
            if slot < last.slot:
                raise SignerRefused(f"slot {slot} is below the last signed {last.slot}")
            if slot == last.slot:
                if message == last.sign_bytes:
                    return last.signature
                raise SignerRefused(f"slot {slot} was already signed with other bytes")
        signature = self._key.sign(message)
        same_height = last is not None and last.height == height
        recent = last.recent_votes if last is not None and same_height else ()
        if lock is None and last is not None and same_height:
            lock = last.lock
        if vote is not None:
            recent = (*recent, replace(vote, signature=signature))[-MAX_RECENT_VOTES:]
        state = SignerState(height, round, int(step), message, signature, lock, recent)
        self._persistence.save(state)
        self._state = state
        return signature


__all__ = ["Lock", "MemorySignerPersistence", "Signer", "SignerPersistence", "SignerState"]
