"""Validator-set transitions: how a verifier holding only genesis trusts a checkpoint signed
by a set that governance changed since (docs/PROTOCOL.md §19.4).

A change decided in block `h` is in force from `e = h + 2`. Header `e - 1` is the last one
of the old set, and it names the new set's hash as `next_validators`. So one transition is
that header, its commit (signed by more than 2/3 of the old set) and the new set itself:
a verifier that trusts the old set checks the commit, then the new set against the hash
the old set signed, and from then on trusts the new set. Walking every transition from
genesis up to a checkpoint gives the set that must have signed it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from ledger import codec
from ledger.blocks import Commit, Header, ValidatorSet, verify_checkpoint
from ledger.errors import LedgerError, VerificationFailed
from ledger.genesis import Genesis
from ledger.governance import ACTIVATION_DELAY, set_from_doc
from ledger.rules import TRANSITION
from ledger.store import ChainReader

MAX_TRANSITIONS = 4_096
"""At most this many transitions in one answer or bundle (a verifier refuses more)."""


@dataclass(frozen=True)
class Transition:
    """The set in force from `header.height + 1`, certified by the set before it."""

    header: Header
    commit: Commit
    validators: ValidatorSet

    @property
    def effective_height(self) -> int:
        return self.header.height + 1

    def to_json(self, header_bytes: bytes) -> dict[str, Any]:
        return {
            "height": self.effective_height,
            "header_bytes": header_bytes.hex(),
            "commit": self.commit.to_json(),
            "validators": self.validators.to_json(),
        }


def effective_heights(store: ChainReader, up_to: int) -> list[int]:
    """The heights (≤ `up_to`) at which a new validator set took effect, oldest first."""
    heights = []
    for key, _ in store.items(TRANSITION):
        height = int.from_bytes(key[len(TRANSITION) :], "big")
        if height > up_to:
            break
        heights.append(height)
    return heights


def transitions_json(store: ChainReader, up_to: int | None = None) -> list[dict[str, Any]]:
    """Every transition in force by height `up_to` (default: the head), as JSON."""
    up_to = store.height if up_to is None else up_to
    docs = []
    for height in effective_heights(store, up_to)[:MAX_TRANSITIONS]:
        header_bytes = store.header_bytes(height - 1)
        commit = store.commit(height - 1)
        raw = store.state().get(TRANSITION + height.to_bytes(8, "big"))
        assert header_bytes is not None and commit is not None and raw is not None
        validators = set_from_doc(codec.decode_trusted(raw))
        transition = Transition(Header.decode(header_bytes), commit, validators)
        docs.append(transition.to_json(header_bytes))
    return docs


def parse(doc: Any) -> Transition:
    """One transition from its JSON form (VerificationFailed if malformed)."""
    if not isinstance(doc, dict):
        raise VerificationFailed("malformed transition", "a transition is an object")
    try:
        header = Header.decode(bytes.fromhex(doc["header_bytes"]))
        commit = Commit.from_json(doc["commit"])
        validators = ValidatorSet.from_json(doc["validators"])
    except (LedgerError, KeyError, TypeError, ValueError) as exc:
        raise VerificationFailed("malformed transition", str(exc)) from exc
    if doc.get("height") != header.height + 1:
        raise VerificationFailed("malformed transition", "height is not the header's height + 1")
    return Transition(header, commit, validators)


def walk(genesis: Genesis, transitions: Iterable[Any], below: int) -> ValidatorSet:
    """The set that signs heights from the last transition below `below` on.

    Starting from genesis, each transition's header must be certified by the set trusted so
    far and name the new set's hash as its `next_validators`; heights strictly increase from
    at least `ACTIVATION_DELAY` (a change decided in block 1 is in force from height 3, so
    the first header that can name a new set is 2), and only transitions whose header lies
    below `below` (the checkpoint's height) may appear.
    More than `MAX_TRANSITIONS` are refused before any is parsed.
    """
    docs = list(islice(transitions, MAX_TRANSITIONS + 1))
    if len(docs) > MAX_TRANSITIONS:
        raise VerificationFailed("too many transitions", f"more than {MAX_TRANSITIONS}")
    trusted = genesis.validators
    last = 0
    for doc in docs:
        step = parse(doc)
        height = step.header.height
        if height < ACTIVATION_DELAY or height <= last or height >= below:
            raise VerificationFailed(
                "bad validator-set transition",
                f"transition at header {height} is out of order or not below {below}",
            )
        verify_checkpoint(step.header, step.commit, genesis.chain_id, trusted)
        if step.header.next_validators != step.validators.hash():
            raise VerificationFailed(
                "bad validator-set transition",
                f"the set given for height {height + 1} is not the one header {height} names",
            )
        trusted, last = step.validators, height
    return trusted
