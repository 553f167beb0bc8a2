"""Validator sets, block headers, votes and commits (PROTOCOL §6-8).

A header is a canonical map whose SHA-256 is the block hash. Votes sign the canonical map
`{"block", "chain", "height", "round", "type"}` (`block` omitted for a nil vote). A commit is
a set of precommits for one block carrying more than 2/3 of the voting power; checking one
needs only the validator set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from ledger import codec, crypto, merkle
from ledger.errors import BadSignature, Malformed, VerificationFailed

PREVOTE = "prevote"
PRECOMMIT = "precommit"
VOTE_TYPES = (PREVOTE, PRECOMMIT)
HASH_SIZE = 32
MAX_VALIDATORS = 128
MAX_POWER = 1 << 16

_T = TypeVar("_T")


def _field(doc: dict[str, Any], name: str, kind: type[_T]) -> _T:
    if name not in doc:
        raise Malformed(f"missing field {name!r}")
    value = doc[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Malformed(f"field {name!r} has the wrong type")
    return value


def _hash_field(doc: dict[str, Any], name: str) -> bytes:
    value = _field(doc, name, bytes)
    if len(value) != HASH_SIZE:
        raise Malformed(f"field {name!r} must be a 32-byte hash")
    return value


def _uint_field(doc: dict[str, Any], name: str) -> int:
    value = _field(doc, name, int)
    if isinstance(value, bool) or value < 0:
        raise Malformed(f"field {name!r} must be a non-negative integer")
    return value


@dataclass(frozen=True)
class Validator:
    """One member of the validator set: a name, a compressed public key, voting power, the
    URL its peers reach it at, and optionally an operator key that approves governance
    proposals on its behalf (the node key does when there is none)."""

    name: str
    public_key: bytes
    power: int
    url: str = ""
    operator: bytes = b""

    @property
    def approver(self) -> bytes:
        """The key whose `propose`/`approve` events count for this validator."""
        return self.operator or self.public_key

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "public_key": self.public_key.hex(),
            "power": self.power,
            "url": self.url,
        }
        if self.operator:
            doc["operator"] = self.operator.hex()
        return doc

    def to_doc(self) -> dict[str, Any]:
        """The member as a canonical map (the JSON form with raw bytes)."""
        doc: dict[str, Any] = {
            "name": self.name,
            "power": self.power,
            "public_key": self.public_key,
            "url": self.url,
        }
        if self.operator:
            doc["operator"] = self.operator
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Validator:
        """Inverse of `to_doc` for a map this code wrote (state records)."""
        return cls(
            doc["name"], doc["public_key"], doc["power"], doc["url"], doc.get("operator", b"")
        )

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Validator:
        try:
            public_key = crypto.check_public_key(bytes.fromhex(doc["public_key"]))
            power = doc["power"]
            name = doc["name"]
            url = doc.get("url", "")
            operator = (
                crypto.check_public_key(bytes.fromhex(doc["operator"]))
                if "operator" in doc
                else b""
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Malformed(f"bad validator entry: {exc}") from exc
        if not isinstance(power, int) or isinstance(power, bool) or not 0 < power <= MAX_POWER:
            raise Malformed(f"validator power must be an integer in 1..{MAX_POWER}")
        if not isinstance(name, str) or not isinstance(url, str):
            raise Malformed("validator name and url must be text")
        return cls(name=name, public_key=public_key, power=power, url=url, operator=operator)


@dataclass(frozen=True)
class ValidatorSet:
    """The fixed, ordered set of validators named in genesis."""

    validators: tuple[Validator, ...]
    _index: dict[bytes, Validator] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < len(self.validators) <= MAX_VALIDATORS:
            raise Malformed(f"a validator set has 1..{MAX_VALIDATORS} members")
        index = {v.public_key: v for v in self.validators}
        if len(index) != len(self.validators):
            raise Malformed("a validator appears twice in the set")
        object.__setattr__(self, "_index", index)

    @property
    def total_power(self) -> int:
        return sum(v.power for v in self.validators)

    def get(self, public_key: bytes) -> Validator | None:
        return self._index.get(public_key)

    def power_of(self, public_keys: set[bytes] | frozenset[bytes]) -> int:
        return sum(self._index[k].power for k in public_keys if k in self._index)

    def has_quorum(self, power: int) -> bool:
        """More than 2/3 of the total voting power."""
        return 3 * power > 2 * self.total_power

    def exceeds_one_third(self, power: int) -> bool:
        """More than 1/3 of the total voting power (at least one honest member among them)."""
        return 3 * power > self.total_power

    def hash(self) -> bytes:
        """Commitment to the set: SHA-256 of the canonical list of (name, key, power), each
        with its operator key when it has one."""
        return crypto.sha256(codec.encode([_committed(v) for v in self.validators]))

    def to_json(self) -> list[dict[str, Any]]:
        return [v.to_json() for v in self.validators]

    @classmethod
    def from_json(cls, doc: Any) -> ValidatorSet:
        if not isinstance(doc, list):
            raise Malformed("a validator set is a list")
        return cls(tuple(Validator.from_json(v) for v in doc))


def _committed(member: Validator) -> dict[str, Any]:
    """What the set hash commits to of a member: all but its URL (which may move)."""
    doc = member.to_doc()
    del doc["url"]
    return doc


def vote_sign_bytes(
    chain_id: str, height: int, round: int, vote_type: str, block_hash: bytes | None
) -> bytes:
    """The canonical bytes a validator signs for a prevote or precommit (nil: no `block`)."""
    assert vote_type in VOTE_TYPES
    doc: dict[str, Any] = {"chain": chain_id, "height": height, "round": round, "type": vote_type}
    if block_hash is not None:
        doc["block"] = block_hash
    return codec.encode(doc)


@dataclass(frozen=True)
class Vote:
    """A signed prevote or precommit; `block_hash` None is a vote for nil."""

    type: str
    height: int
    round: int
    block_hash: bytes | None
    validator: bytes
    signature: bytes

    def sign_bytes(self, chain_id: str) -> bytes:
        return vote_sign_bytes(chain_id, self.height, self.round, self.type, self.block_hash)

    def verify(self, chain_id: str, validators: ValidatorSet) -> None:
        """Raise BadSignature unless a member of `validators` signed this vote."""
        if validators.get(self.validator) is None:
            raise BadSignature("vote from a key outside the validator set")
        crypto.verify(self.validator, self.sign_bytes(chain_id), self.signature)

    def to_wire(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": self.type,
            "height": self.height,
            "round": self.round,
            "validator": self.validator,
            "signature": self.signature,
        }
        if self.block_hash is not None:
            doc["block"] = self.block_hash
        return doc

    @classmethod
    def from_wire(cls, doc: Any) -> Vote:
        if not isinstance(doc, dict):
            raise Malformed("a vote is a map")
        vote_type = _field(doc, "type", str)
        if vote_type not in VOTE_TYPES:
            raise Malformed(f"unknown vote type {vote_type!r}")
        block_hash = _hash_field(doc, "block") if "block" in doc else None
        return cls(
            type=vote_type,
            height=_uint_field(doc, "height"),
            round=_uint_field(doc, "round"),
            block_hash=block_hash,
            validator=_field(doc, "validator", bytes),
            signature=_field(doc, "signature", bytes),
        )


@dataclass(frozen=True)
class CommitSignature:
    """One validator's precommit signature inside a commit."""

    validator: bytes
    signature: bytes


@dataclass(frozen=True)
class Commit:
    """Precommits for one block at (height, round) carrying more than 2/3 of the power."""

    height: int
    round: int
    block_hash: bytes
    signatures: tuple[CommitSignature, ...]

    def verify(self, chain_id: str, validators: ValidatorSet) -> None:
        """Check every signature and that distinct signers hold more than 2/3 of the power.

        Raises VerificationFailed naming what is wrong.
        """
        message = vote_sign_bytes(chain_id, self.height, self.round, PRECOMMIT, self.block_hash)
        signers: set[bytes] = set()
        for entry in self.signatures:
            if entry.validator in signers:
                raise VerificationFailed("commit invalid", "a validator signed twice")
            if validators.get(entry.validator) is None:
                raise VerificationFailed("commit invalid", "signature from a non-validator")
            try:
                crypto.verify(entry.validator, message, entry.signature)
            except BadSignature as exc:
                raise VerificationFailed(
                    "commit invalid", f"bad precommit signature: {exc}"
                ) from exc
            signers.add(entry.validator)
        if not validators.has_quorum(validators.power_of(signers)):
            raise VerificationFailed(
                "insufficient voting power",
                f"{validators.power_of(signers)} of {validators.total_power} is not more than 2/3",
            )

    def to_wire(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "block": self.block_hash,
            "signatures": [[s.validator, s.signature] for s in self.signatures],
        }

    @classmethod
    def from_wire(cls, doc: Any) -> Commit:
        if not isinstance(doc, dict):
            raise Malformed("a commit is a map")
        raw = _field(doc, "signatures", list)
        signatures = []
        for item in raw:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not all(isinstance(x, bytes) for x in item)
            ):
                raise Malformed("a commit signature is [validator, signature]")
            signatures.append(CommitSignature(item[0], item[1]))
        return cls(
            height=_uint_field(doc, "height"),
            round=_uint_field(doc, "round"),
            block_hash=_hash_field(doc, "block"),
            signatures=tuple(signatures),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "block_hash": self.block_hash.hex(),
            "signatures": [
                {"validator": s.validator.hex(), "signature": s.signature.hex()}
                for s in self.signatures
            ],
        }

    @classmethod
    def from_json(cls, doc: Any) -> Commit:
        """Parse the JSON form as strictly as the wire form."""
        if not isinstance(doc, dict) or not isinstance(doc.get("signatures"), list):
            raise Malformed("a commit is an object with a signatures list")
        try:
            wire = {
                "height": doc.get("height"),
                "round": doc.get("round"),
                "block": _from_hex(doc.get("block_hash")),
                "signatures": [
                    [_from_hex(s["validator"]), _from_hex(s["signature"])]
                    for s in doc["signatures"]
                ],
            }
        except (KeyError, TypeError) as exc:
            raise Malformed(f"bad commit signature entry: {exc}") from exc
        return cls.from_wire(wire)


def _from_hex(value: Any) -> bytes:
    if not isinstance(value, str):
        raise Malformed("expected a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise Malformed("expected a hex string") from exc


HEADER_FIELDS = (
    "chain",
    "events_root",
    "height",
    "prev",
    "proposer",
    "state_root",
    "time",
    "tree_root",
    "tree_size",
    "validators",
)
NEXT_VALIDATORS = "next_validators"


@dataclass(frozen=True)
class Header:
    """A block header; its canonical encoding's SHA-256 is the block hash."""

    chain: str
    height: int
    time: int
    prev: bytes
    proposer: bytes
    events_root: bytes
    tree_size: int
    tree_root: bytes
    state_root: bytes
    validators: bytes
    next_validators: bytes | None = None
    """The hash of the set in force at `height + 1` when it differs from `validators` (a
    governance change takes effect there); absent otherwise (docs/PROTOCOL.md §19.4)."""

    def __post_init__(self) -> None:
        if self.next_validators == self.validators:
            raise Malformed("a header names next_validators only when the set changes")

    @property
    def next_set_hash(self) -> bytes:
        """The hash of the validator set in force at the next height."""
        return self.validators if self.next_validators is None else self.next_validators

    def to_wire(self) -> dict[str, Any]:
        doc = {name: getattr(self, name) for name in HEADER_FIELDS}
        if self.next_validators is not None:
            doc[NEXT_VALIDATORS] = self.next_validators
        return doc

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    @property
    def block_hash(self) -> bytes:
        return crypto.sha256(self.encode())

    @classmethod
    def from_wire(cls, doc: Any) -> Header:
        if not isinstance(doc, dict):
            raise Malformed("a header is a map")
        if set(doc) - {NEXT_VALIDATORS} != set(HEADER_FIELDS):
            raise Malformed(
                f"a header has exactly the fields {', '.join(HEADER_FIELDS)} "
                f"(and {NEXT_VALIDATORS} when the validator set changes)"
            )
        return cls(
            chain=_field(doc, "chain", str),
            height=_uint_field(doc, "height"),
            time=_uint_field(doc, "time"),
            prev=_hash_field(doc, "prev"),
            proposer=_field(doc, "proposer", bytes),
            events_root=_hash_field(doc, "events_root"),
            tree_size=_uint_field(doc, "tree_size"),
            tree_root=_hash_field(doc, "tree_root"),
            state_root=_hash_field(doc, "state_root"),
            validators=_hash_field(doc, "validators"),
            next_validators=_hash_field(doc, NEXT_VALIDATORS) if NEXT_VALIDATORS in doc else None,
        )

    @classmethod
    def decode(cls, data: bytes) -> Header:
        return cls.from_wire(codec.decode_map(data))

    def to_json(self) -> dict[str, Any]:
        return {
            name: value.hex() if isinstance(value, bytes) else value
            for name, value in self.to_wire().items()
        }


@dataclass(frozen=True)
class Block:
    """A header and the canonical envelopes it orders (the next leaves of the log)."""

    header: Header
    events: tuple[bytes, ...]

    @property
    def block_hash(self) -> bytes:
        return self.header.block_hash

    def events_match_header(self) -> bool:
        """Whether these are the events the header's `events_root` commits to.

        The block hash covers only the header, so a block travelling with the right header
        and other events is not the block that hash names. Judged once per Block object (it
        is immutable): consensus asks at every rule that reads valid(v), and the answer costs
        a hash per event.
        """
        return self._events_match_header

    @cached_property
    def _events_match_header(self) -> bool:
        leaves = [merkle.leaf_hash(envelope) for envelope in self.events]
        return merkle.root_from_leaf_hashes(leaves) == self.header.events_root

    def to_wire(self) -> dict[str, Any]:
        return {"header": self.header.encode(), "events": list(self.events)}

    @classmethod
    def from_wire(cls, doc: Any) -> Block:
        if not isinstance(doc, dict):
            raise Malformed("a block is a map")
        header_bytes = _field(doc, "header", bytes)
        events = _field(doc, "events", list)
        if not all(isinstance(e, bytes) for e in events):
            raise Malformed("block events are envelopes (bytes)")
        return cls(header=Header.decode(header_bytes), events=tuple(events))


def verify_checkpoint(
    header: Header, commit: Commit, chain_id: str, validators: ValidatorSet
) -> None:
    """Check that `commit` certifies `header` for this chain and validator set."""
    if header.chain != chain_id:
        raise VerificationFailed("wrong chain", f"{header.chain!r} is not {chain_id!r}")
    if header.validators != validators.hash():
        raise VerificationFailed("wrong validator set", "header names another validator set")
    if commit.height != header.height or commit.block_hash != header.block_hash:
        raise VerificationFailed("commit mismatch", "commit is for another block")
    commit.verify(chain_id, validators)


__all__ = [
    "PRECOMMIT",
    "PREVOTE",
    "Block",
    "Commit",
    "CommitSignature",
    "Header",
    "Validator",
    "ValidatorSet",
    "Vote",
    "verify_checkpoint",
    "vote_sign_bytes",
]
