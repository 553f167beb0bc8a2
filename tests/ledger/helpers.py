"""Shared builders for ledger tests: validator keys and sets, signed votes and commits, headers.

Other test modules import these; keep signatures stable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ledger import crypto, events
from ledger.blocks import (
    PRECOMMIT,
    Block,
    Commit,
    CommitSignature,
    Header,
    Validator,
    ValidatorSet,
    Vote,
    vote_sign_bytes,
)
from ledger.crypto import PrivateKey
from ledger.genesis import PERMISSIONED, Genesis
from ledger.store import Execution, Store

CHAIN_ID = "test-chain"


def make_key(seed: int | None = None) -> PrivateKey:
    """A fresh P-256 key; with `seed`, the same key every time (seed >= 0)."""
    if seed is None:
        return PrivateKey.generate()
    return PrivateKey(ec.derive_private_key(seed + 1, ec.SECP256R1()))


def make_keys(n: int, seed: int | None = None) -> list[PrivateKey]:
    """`n` distinct keys; with `seed`, deterministic (keys seed, seed+1, ...)."""
    return [make_key(None if seed is None else seed + i) for i in range(n)]


def make_validators(
    n: int, powers: Sequence[int] | None = None, *, seed: int | None = None
) -> tuple[list[PrivateKey], ValidatorSet]:
    """`n` validator keys and the ValidatorSet of them, named v0..v{n-1}, in key order.

    `powers` defaults to 1 each. Keys are random unless `seed` is given.
    """
    if powers is None:
        powers = [1] * n
    assert len(powers) == n, "one power per validator"
    keys = make_keys(n, seed)
    validators = ValidatorSet(
        tuple(
            Validator(name=f"v{i}", public_key=key.public_key, power=power)
            for i, (key, power) in enumerate(zip(keys, powers, strict=True))
        )
    )
    return keys, validators


def sign_vote(
    key: PrivateKey,
    chain_id: str,
    height: int,
    round: int,
    block_hash: bytes | None,
    vote_type: str = PRECOMMIT,
) -> Vote:
    """A vote signed by `key` (`block_hash` None is a nil vote)."""
    signature = key.sign(vote_sign_bytes(chain_id, height, round, vote_type, block_hash))
    return Vote(
        type=vote_type,
        height=height,
        round=round,
        block_hash=block_hash,
        validator=key.public_key,
        signature=signature,
    )


def sign_commit(
    keys: Sequence[PrivateKey], chain_id: str, height: int, round: int, block_hash: bytes
) -> Commit:
    """A commit of precommits by every key in `keys` (in order) for `block_hash`."""
    message = vote_sign_bytes(chain_id, height, round, PRECOMMIT, block_hash)
    return Commit(
        height=height,
        round=round,
        block_hash=block_hash,
        signatures=tuple(CommitSignature(k.public_key, k.sign(message)) for k in keys),
    )


def make_header(
    validators: ValidatorSet | None = None, proposer: bytes | None = None, **overrides: object
) -> Header:
    """A well-formed header; any field can be overridden by keyword."""
    fields: dict[str, object] = {
        "chain": CHAIN_ID,
        "height": 1,
        "time": 1_700_000_000_000,
        "prev": crypto.sha256(b"prev"),
        "proposer": proposer if proposer is not None else make_key(seed=9_999).public_key,
        "events_root": crypto.sha256(b""),
        "tree_size": 0,
        "tree_root": crypto.sha256(b""),
        "state_root": crypto.sha256(b"state"),
        "validators": validators.hash() if validators is not None else crypto.sha256(b"vals"),
    }
    fields.update(overrides)
    return Header(**fields)  # type: ignore[arg-type]


def make_genesis(
    n: int = 4,
    powers: Sequence[int] | None = None,
    *,
    chain_id: str = CHAIN_ID,
    admission: str = PERMISSIONED,
    genesis_time: int = 1_700_000_000_000,
    seed: int | None = None,
) -> tuple[list[PrivateKey], PrivateKey, Genesis]:
    """Validator keys, one registrar key and a Genesis naming them."""
    keys, validators = make_validators(n, powers, seed=seed)
    registrar = make_key(None if seed is None else seed + n)
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time=genesis_time,
        validators=validators,
        registrars=(registrar.public_key,),
        admission=admission,
    )
    return keys, registrar, genesis


def ev(
    key: PrivateKey,
    cls: type[events.EventBody],
    *,
    time: int,
    chain: str = CHAIN_ID,
    nonce: bytes | None = None,
    **fields: Any,
) -> events.SignedEvent:
    """A signed event of type `cls` by `key` (the actor), with a random nonce by default."""
    body = cls(
        chain=chain,
        actor=key.public_key,
        time=time,
        nonce=os.urandom(16) if nonce is None else nonce,
        **fields,
    )
    return events.sign_event(key, body)


class ChainBuilder:
    """Executes events into a Store and appends them as a block committed by `keys`.

    Block `h` gets time `head_time + step_ms`; `now` is the time the next block will get, so
    events built with `time=builder.now` are inside the rules' time window.
    """

    def __init__(
        self,
        store: Store,
        keys: Sequence[PrivateKey],
        *,
        step_ms: int = 1_000,
        proposer: bytes | None = None,
    ) -> None:
        self.store = store
        self.keys = list(keys)
        self.step_ms = step_ms
        self.proposer = proposer if proposer is not None else self.keys[0].public_key

    @property
    def chain_id(self) -> str:
        return self.store.genesis.chain_id

    @property
    def now(self) -> int:
        return self.store.head_time + self.step_ms

    def ev(self, key: PrivateKey, cls: type[events.EventBody], **fields: Any) -> events.SignedEvent:
        fields.setdefault("time", self.now)
        fields.setdefault("chain", self.chain_id)
        return ev(key, cls, **fields)

    def execute(
        self, candidates: Iterable[events.SignedEvent], time: int | None = None
    ) -> Execution:
        return self.store.execute(
            list(candidates), self.store.height + 1, self.now if time is None else time
        )

    def seal(self, execution: Execution) -> tuple[Block, Commit]:
        """The block, naming the set in force (and the next one's when governance changes it),
        with a commit by those of `keys` in the set."""
        state = self.store.state()
        current = self.store.rules.validators_at(state, execution.height)
        following = self.store.rules.validators_at(state, execution.height + 1)
        header = execution.header(
            self.chain_id,
            self.store.head_hash,
            self.proposer,
            current.hash(),
            None if following == current else following.hash(),
        )
        block = Block(header, tuple(e.envelope for e in execution.accepted))
        signers = [k for k in self.keys if current.get(k.public_key) is not None]
        commit = sign_commit(signers, self.chain_id, header.height, 0, header.block_hash)
        return block, commit

    def append(
        self, candidates: Iterable[events.SignedEvent], time: int | None = None
    ) -> Execution:
        """Execute `candidates` on the head and append the block; returns the execution."""
        execution = self.execute(candidates, time)
        block, commit = self.seal(execution)
        self.store.append_block(block, commit, execution)
        return execution
