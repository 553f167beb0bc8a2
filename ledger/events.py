"""Signed data-circulation events: the envelope and the event types (PROTOCOL §3, §19).

An envelope is the canonical map `{"body": <bin>, "sig": <bin 64>}`; `body` is the canonical
encoding of the event's fields and `event_id = SHA-256(body)`. Parsing is strict: exactly the
fields a type allows, each of the right type and size. Randomness (the nonce) and time are
passed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import msgpack

from ledger import codec, crypto
from ledger.errors import Malformed, TooLarge
from ledger.governance import Change

VERSION = 1
NONCE_SIZE = 16
DATASET_ID_SIZE = 32
EVENT_ID_SIZE = 32
MAX_ENVELOPE_BYTES = 16 * 1024
MAX_TEXT = 1024
MAX_META_ENTRIES = 32
MAX_LIST = 64
ROLE_PARTICIPANT = "participant"
ROLE_REGISTRAR = "registrar"
ROLES = (ROLE_PARTICIPANT, ROLE_REGISTRAR)
DERIVE_PURPOSE = "derive"

MetaValue = str | int | bool | bytes


def _text(value: Any, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise Malformed(f"{name} must be text")
    if not allow_empty and not value:
        raise Malformed(f"{name} must not be empty")
    if len(value) > MAX_TEXT:
        raise Malformed(f"{name} is longer than {MAX_TEXT} characters")
    return value


def _hash32(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise Malformed(f"{name} must be 32 bytes")
    return value


def _pubkey(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes):
        raise Malformed(f"{name} must be a public key (bytes)")
    try:
        return crypto.check_public_key(value)
    except Malformed as exc:
        raise Malformed(f"{name}: {exc}") from exc


def _uint(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Malformed(f"{name} must be a non-negative integer")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise Malformed(f"{name} must be a boolean")
    return value


def _meta(value: Any, name: str = "meta") -> dict[str, MetaValue]:
    if not isinstance(value, dict):
        raise Malformed(f"{name} must be a map")
    if len(value) > MAX_META_ENTRIES:
        raise Malformed(f"{name} has more than {MAX_META_ENTRIES} entries")
    for key, item in value.items():
        _text(key, f"{name} key")
        if isinstance(item, str | bytes):
            if len(item) > MAX_TEXT:
                raise Malformed(f"{name}.{key} is longer than {MAX_TEXT}")
        elif not isinstance(item, int):
            raise Malformed(f"{name}.{key} must be text, bytes, an integer or a boolean")
    return value


def _text_list(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_LIST:
        raise Malformed(f"{name} must be a list of 1..{MAX_LIST} entries")
    items = tuple(_text(item, name) for item in value)
    if len(set(items)) != len(items):
        raise Malformed(f"{name} has duplicates")
    return items


def _hash_list(value: Any, name: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_LIST:
        raise Malformed(f"{name} must be a list of 1..{MAX_LIST} entries")
    items = tuple(_hash32(item, name) for item in value)
    if len(set(items)) != len(items):
        raise Malformed(f"{name} has duplicates")
    return items


# Memoized per class in plain dicts rather than with functools.cache, whose typed signature
# wants hashable arguments, which mypy does not see a frozen dataclass's class object as.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """A body class's field names, in declaration order (dataclasses.fields is slow)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(frozen=True)
class EventBody:
    """Fields common to every event; subclasses add their own and name their `TYPE`."""

    TYPE: ClassVar[str] = ""
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    chain: str
    actor: bytes
    time: int
    nonce: bytes

    def datasets(self) -> tuple[bytes, ...]:
        """Datasets this event names directly (revoke names a grant instead)."""
        return ()

    def to_map(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"v": VERSION, "type": self.TYPE}
        for name in field_names(type(self)):
            value = getattr(self, name)
            if value is None:
                continue
            doc[name] = list(value) if isinstance(value, tuple) else value
        return doc

    def encode(self) -> bytes:
        return codec.encode(self.to_map())


@dataclass(frozen=True)
class Admit(EventBody):
    TYPE: ClassVar[str] = "admit"
    subject: bytes
    role: str
    name: str


@dataclass(frozen=True)
class Register(EventBody):
    TYPE: ClassVar[str] = "register"
    dataset: bytes
    meta: dict[str, MetaValue]
    open: bool

    def datasets(self) -> tuple[bytes, ...]:
        return (self.dataset,)


@dataclass(frozen=True)
class Grant(EventBody):
    TYPE: ClassVar[str] = "grant"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"expires"})
    dataset: bytes
    to: bytes
    purposes: tuple[str, ...]
    reshare: bool
    expires: int | None = None

    def datasets(self) -> tuple[bytes, ...]:
        return (self.dataset,)


@dataclass(frozen=True)
class Revoke(EventBody):
    TYPE: ClassVar[str] = "revoke"
    grant: bytes


@dataclass(frozen=True)
class Transfer(EventBody):
    TYPE: ClassVar[str] = "transfer"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"grant"})
    dataset: bytes
    to: bytes
    grant: bytes | None = None

    def datasets(self) -> tuple[bytes, ...]:
        return (self.dataset,)


@dataclass(frozen=True)
class Use(EventBody):
    TYPE: ClassVar[str] = "use"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"grant"})
    dataset: bytes
    purpose: str
    grant: bytes | None = None

    def datasets(self) -> tuple[bytes, ...]:
        return (self.dataset,)


@dataclass(frozen=True)
class Derive(EventBody):
    TYPE: ClassVar[str] = "derive"
    dataset: bytes
    inputs: tuple[bytes, ...]
    meta: dict[str, MetaValue]

    def datasets(self) -> tuple[bytes, ...]:
        return (self.dataset, *self.inputs)


@dataclass(frozen=True)
class Destroy(EventBody):
    TYPE: ClassVar[str] = "destroy"
    dataset: bytes

    def datasets(self) -> tuple[bytes, ...]:
        return (self.dataset,)


@dataclass(frozen=True)
class Attest(EventBody):
    TYPE: ClassVar[str] = "attest"
    dataset: bytes
    claim: str
    meta: dict[str, MetaValue]

    def datasets(self) -> tuple[bytes, ...]:
        return (self.dataset,)


@dataclass(frozen=True)
class Propose(EventBody):
    """A validator proposes one governance change (ledger.governance.Change); proposing
    counts as its approval."""

    TYPE: ClassVar[str] = "propose"
    change: dict[str, Any]


@dataclass(frozen=True)
class Approve(EventBody):
    """A validator approves the open proposal whose `propose` event id is `proposal`."""

    TYPE: ClassVar[str] = "approve"
    proposal: bytes


@dataclass(frozen=True)
class Suspend(EventBody):
    """A registrar suspends a participant's key: it signs nothing new until reinstated."""

    TYPE: ClassVar[str] = "suspend"
    subject: bytes


@dataclass(frozen=True)
class Reinstate(EventBody):
    """A registrar lifts a suspension."""

    TYPE: ClassVar[str] = "reinstate"
    subject: bytes


@dataclass(frozen=True)
class Rotate(EventBody):
    """`subject`'s identity moves to the key `to`; signed by `subject` itself or, for a lost
    key, by a registrar. `possession` is `to`'s signature over the rotation message
    (`ledger.governance.rotation_message`), so no one can rotate onto a key they do not hold."""

    TYPE: ClassVar[str] = "rotate"
    subject: bytes
    to: bytes
    possession: bytes


EVENT_TYPES: dict[str, type[EventBody]] = {
    cls.TYPE: cls
    for cls in (
        Admit,
        Register,
        Grant,
        Revoke,
        Transfer,
        Use,
        Derive,
        Destroy,
        Attest,
        Propose,
        Approve,
        Suspend,
        Reinstate,
        Rotate,
    )
}
GOVERNANCE_TYPES = (Propose, Approve)


def _parse_nonce(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) != NONCE_SIZE:
        raise Malformed(f"nonce must be {NONCE_SIZE} bytes")
    return value


def _parse_role(value: Any) -> str:
    if not isinstance(value, str) or value not in ROLES:
        raise Malformed(f"role must be one of {ROLES}")
    return value


def _change(value: Any) -> dict[str, Any]:
    """A `change` map, checked strictly (the map is kept as given: canonical checks it)."""
    Change.parse(value)
    return dict(value)


def _signature(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) != crypto.SIGNATURE_SIZE:
        raise Malformed(f"possession must be a {crypto.SIGNATURE_SIZE}-byte signature r||s")
    return value


_FIELD_PARSERS: dict[str, Any] = {
    "nonce": _parse_nonce,
    "role": _parse_role,
    "chain": lambda v: _text(v, "chain"),
    "actor": lambda v: _pubkey(v, "actor"),
    "time": lambda v: _uint(v, "time"),
    "subject": lambda v: _pubkey(v, "subject"),
    "to": lambda v: _pubkey(v, "to"),
    "name": lambda v: _text(v, "name"),
    "dataset": lambda v: _hash32(v, "dataset"),
    "grant": lambda v: _hash32(v, "grant"),
    "meta": _meta,
    "open": lambda v: _bool(v, "open"),
    "reshare": lambda v: _bool(v, "reshare"),
    "purposes": lambda v: _text_list(v, "purposes"),
    "expires": lambda v: _uint(v, "expires"),
    "purpose": lambda v: _text(v, "purpose"),
    "inputs": lambda v: _hash_list(v, "inputs"),
    "claim": lambda v: _text(v, "claim"),
    "change": _change,
    "proposal": lambda v: _hash32(v, "proposal"),
    "possession": _signature,
}


_HEADER_KEYS = frozenset({"v", "type"})


_FIELD_SETS: dict[type[EventBody], tuple[frozenset[str], frozenset[str]]] = {}


def _field_sets(cls: type[EventBody]) -> tuple[frozenset[str], frozenset[str]]:
    """A body class's field names, and those of them it requires (memoized per class)."""
    sets = _FIELD_SETS.get(cls)
    if sets is None:
        names = frozenset(field_names(cls))
        sets = _FIELD_SETS[cls] = (names, names - cls.OPTIONAL)
    return sets


def parse_body(doc: dict[str, Any]) -> EventBody:
    """Build the typed body from a decoded map, checking every field strictly."""
    if doc.get("v") != VERSION or isinstance(doc.get("v"), bool):
        raise Malformed(f"unsupported event version (expected v = {VERSION})")
    event_type = doc.get("type")
    cls = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if cls is None:
        raise Malformed(f"unknown event type {doc.get('type')!r}")
    names, required = _field_sets(cls)
    given = doc.keys() - _HEADER_KEYS
    if not required <= given:
        raise Malformed(f"{cls.TYPE} event is missing {sorted(required - given)}")
    if not given <= names:
        raise Malformed(f"{cls.TYPE} event has unknown fields {sorted(given - names)}")
    values = {name: _FIELD_PARSERS[name](doc[name]) for name in given}
    body = cls(**values)
    if isinstance(body, Derive) and body.dataset in body.inputs:
        raise Malformed("a derived dataset cannot be its own input")
    return body


@dataclass(frozen=True)
class SignedEvent:
    """A decoded, well-formed envelope. `signature_checked` says whether `verify` ran."""

    body: EventBody
    body_bytes: bytes
    signature: bytes
    envelope: bytes
    event_id: bytes

    @property
    def type(self) -> str:
        return self.body.TYPE

    @property
    def actor(self) -> bytes:
        return self.body.actor

    def verify_signature(self) -> None:
        """Raise BadSignature unless `actor` signed `body`."""
        crypto.verify(self.body.actor, self.body_bytes, self.signature)

    def to_json(self) -> dict[str, Any]:
        """The event as JSON: id, type, actor, the body's other fields (hex bytes), envelope."""
        doc: dict[str, Any] = {"id": self.event_id.hex()}
        for name, value in self.body.to_map().items():
            doc[name] = to_json_value(value)
        doc["envelope"] = self.envelope.hex()
        doc["signature"] = self.signature.hex()
        return doc


def to_json_value(value: Any) -> Any:
    """A decoded canonical value as JSON: bytes become lowercase hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    return value


def _is_canonical_body(doc: dict[str, Any], body_bytes: bytes) -> bool:
    """Whether `body_bytes`, which decoded to `doc` and passed `parse_body`, is canonical.

    `parse_body` accepts only scalars of exact types, lists of them, and `meta` (a flat map of
    them), so re-packing `doc` in decoded order reproduces the input exactly when every
    integer is in shortest form and no key repeats; sorted keys then make that order the
    canonical one.
    """
    keys = list(doc)
    if keys != sorted(keys):
        return False
    for nested in ("meta", "change"):
        inner = doc.get(nested)
        if inner is not None and list(inner) != sorted(inner):
            return False
    return msgpack.packb(doc, use_bin_type=True) == body_bytes


def event_id_of(body_bytes: bytes) -> bytes:
    return crypto.sha256(body_bytes)


def sign_event(key: crypto.PrivateKey, body: EventBody) -> SignedEvent:
    """Sign `body` with `key` (which must be the body's actor) and build the envelope."""
    assert body.actor == key.public_key, "the actor must be the signing key"
    body_bytes = body.encode()
    signature = key.sign(body_bytes)
    envelope = codec.encode({"body": body_bytes, "sig": signature})
    return SignedEvent(body, body_bytes, signature, envelope, event_id_of(body_bytes))


def decode_envelope(
    envelope: bytes,
    *,
    chain_id: str | None = None,
    verify: bool = True,
    max_bytes: int = MAX_ENVELOPE_BYTES,
) -> SignedEvent:
    """Parse a canonical envelope strictly; check the chain id and (by default) the signature.

    Raises TooLarge, Malformed, or BadSignature.
    """
    if not isinstance(envelope, bytes):
        raise Malformed("an envelope is bytes")
    if len(envelope) > max_bytes:
        raise TooLarge(f"envelope of {len(envelope)} bytes exceeds {max_bytes}")
    outer = codec.decode_uncanonical(envelope, max_bytes)
    if not isinstance(outer, dict) or set(outer) != {"body", "sig"}:
        raise Malformed('an envelope is exactly {"body", "sig"}')
    body_bytes, signature = outer["body"], outer["sig"]
    if not isinstance(body_bytes, bytes) or not isinstance(signature, bytes):
        raise Malformed("envelope body and sig are bytes")
    if len(signature) != crypto.SIGNATURE_SIZE:
        raise Malformed("sig must be 64 bytes r||s")
    # Both values are byte strings and "body" < "sig": packing in this order is canonical.
    if msgpack.packb({"body": body_bytes, "sig": signature}, use_bin_type=True) != envelope:
        raise Malformed("the envelope is not in canonical form")
    doc = codec.decode_uncanonical(body_bytes, max_bytes)
    if not isinstance(doc, dict):
        raise Malformed("an event body is a map")
    body = parse_body(doc)
    if not _is_canonical_body(doc, body_bytes):
        raise Malformed("the event body is not in canonical form")
    if chain_id is not None and body.chain != chain_id:
        raise Malformed(f"event is for chain {body.chain!r}, not {chain_id!r}")
    event = SignedEvent(body, body_bytes, signature, envelope, event_id_of(body_bytes))
    if verify:
        event.verify_signature()
    return event
