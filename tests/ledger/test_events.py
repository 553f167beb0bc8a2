"""Signed events (PROTOCOL §2-3): envelopes, strict body parsing, signatures, event ids."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec, events
from ledger.crypto import CURVE_ORDER, HALF_ORDER, PrivateKey
from ledger.errors import BadSignature, Malformed, TooLarge
from ledger.events import (
    Admit,
    Approve,
    Attest,
    Derive,
    Destroy,
    EventBody,
    Grant,
    Propose,
    Register,
    Reinstate,
    Revoke,
    Rotate,
    SignedEvent,
    Suspend,
    Transfer,
    Use,
)
from tests.ledger.helpers import CHAIN_ID, make_key

T = 1_700_000_000_000
NONCE = bytes(range(16))
KEY = make_key(seed=11)
OTHER = make_key(seed=12)
D1 = hashlib.sha256(b"dataset one").digest()
D2 = hashlib.sha256(b"dataset two").digest()
D3 = hashlib.sha256(b"dataset three").digest()
GRANT_ID = hashlib.sha256(b"a grant").digest()


def body_of(cls: type[EventBody], **fields: Any) -> EventBody:
    return cls(chain=CHAIN_ID, actor=KEY.public_key, time=T, nonce=NONCE, **fields)


BODIES: dict[str, Callable[[], EventBody]] = {
    "admit": lambda: body_of(Admit, subject=OTHER.public_key, role="participant", name="Org B"),
    "admit-registrar": lambda: body_of(
        Admit, subject=OTHER.public_key, role="registrar", name="Reg"
    ),
    "register": lambda: body_of(
        Register,
        dataset=D1,
        meta={"title": "Sales 2024", "size": 1234, "media_type": "text/csv", "pii": False},
        open=False,
    ),
    "register-open-empty-meta": lambda: body_of(Register, dataset=D1, meta={}, open=True),
    "grant": lambda: body_of(
        Grant, dataset=D1, to=OTHER.public_key, purposes=("analytics", "derive"), reshare=True
    ),
    "grant-expires": lambda: body_of(
        Grant,
        dataset=D1,
        to=OTHER.public_key,
        purposes=("analytics",),
        reshare=False,
        expires=T + 60_000,
    ),
    "revoke": lambda: body_of(Revoke, grant=GRANT_ID),
    "transfer": lambda: body_of(Transfer, dataset=D1, to=OTHER.public_key),
    "transfer-grant": lambda: body_of(Transfer, dataset=D1, to=OTHER.public_key, grant=GRANT_ID),
    "use": lambda: body_of(Use, dataset=D1, purpose="analytics"),
    "use-grant": lambda: body_of(Use, dataset=D1, purpose="analytics", grant=GRANT_ID),
    "derive": lambda: body_of(
        Derive, dataset=D3, inputs=(D1, D2), meta={"title": "joined", "raw": b"\x00\x01"}
    ),
    "destroy": lambda: body_of(Destroy, dataset=D1),
    "attest": lambda: body_of(Attest, dataset=D1, claim="quality:ok", meta={"score": 97}),
    "propose": lambda: body_of(
        Propose,
        change={
            "name": "Org E",
            "op": "add-validator",
            "power": 10,
            "public_key": OTHER.public_key,
            "url": "http://127.0.0.1:8904",
        },
    ),
    "propose-param": lambda: body_of(
        Propose, change={"name": "time_window_ms", "op": "set-param", "value": 300_000}
    ),
    "approve": lambda: body_of(Approve, proposal=GRANT_ID),
    "suspend": lambda: body_of(Suspend, subject=OTHER.public_key),
    "reinstate": lambda: body_of(Reinstate, subject=OTHER.public_key),
    "rotate": lambda: body_of(
        Rotate, subject=KEY.public_key, to=OTHER.public_key, possession=bytes(range(64))
    ),
}


def envelope_of(body_bytes: bytes, sig: bytes) -> bytes:
    return codec.encode({"body": body_bytes, "sig": sig})


def sign_map(doc: dict[str, Any], key: PrivateKey = KEY) -> bytes:
    """A canonical, correctly signed envelope over an arbitrary body map."""
    body_bytes = codec.encode(doc)
    return envelope_of(body_bytes, key.sign(body_bytes))


def valid_map(name: str) -> dict[str, Any]:
    return BODIES[name]().to_map()


def test_all_fourteen_types_are_covered() -> None:
    covered = {BODIES[name]().TYPE for name in BODIES}
    assert (
        covered
        == set(events.EVENT_TYPES)
        == {
            "admit",
            "register",
            "grant",
            "revoke",
            "transfer",
            "use",
            "derive",
            "destroy",
            "attest",
            "propose",
            "approve",
            "suspend",
            "reinstate",
            "rotate",
        }
    )


@pytest.mark.parametrize(
    "change",
    [
        {"op": "add-validator", "public_key": bytes(33), "name": "x", "url": "", "power": 1},
        {"op": "remove-validator"},
        {"op": "remove-validator", "public_key": b"", "power": 3},
        {"op": "set-power", "public_key": bytes(33), "power": 0},
        {"op": "set-param", "name": "", "value": 1},
        {"op": "set-param", "name": "time_window_ms", "value": -1},
        {"op": "grow", "public_key": bytes(33)},
        [],
    ],
)
def test_a_malformed_change_is_refused(change: Any) -> None:
    doc = valid_map("propose")
    doc["change"] = change
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(doc), chain_id=CHAIN_ID)


def test_a_change_map_out_of_canonical_order_is_refused() -> None:
    body = BODIES["propose-param"]()
    doc = body.to_map()
    doc["change"] = dict(reversed(list(doc["change"].items())))
    packed = msgpack.packb(dict(sorted(doc.items())), use_bin_type=True)
    with pytest.raises(Malformed, match="canonical"):
        events.decode_envelope(envelope_of(packed, KEY.sign(packed)), chain_id=CHAIN_ID)


def test_possession_must_be_a_64_byte_signature() -> None:
    doc = valid_map("rotate")
    doc["possession"] = bytes(63)
    with pytest.raises(Malformed, match="possession"):
        events.decode_envelope(sign_map(doc), chain_id=CHAIN_ID)


@pytest.mark.parametrize("name", sorted(BODIES))
def test_round_trip(name: str) -> None:
    body = BODIES[name]()
    signed = events.sign_event(KEY, body)
    assert signed.event_id == hashlib.sha256(signed.body_bytes).digest()
    assert signed.body_bytes == codec.encode(body.to_map())
    assert len(signed.signature) == 64

    decoded = events.decode_envelope(signed.envelope, chain_id=CHAIN_ID)
    assert isinstance(decoded, SignedEvent)
    assert decoded.body == body
    assert type(decoded.body) is type(body)
    assert decoded.type == body.TYPE
    assert decoded.actor == KEY.public_key
    assert decoded.body_bytes == signed.body_bytes
    assert decoded.signature == signed.signature
    assert decoded.envelope == signed.envelope
    assert decoded.event_id == signed.event_id == hashlib.sha256(decoded.body_bytes).digest()
    # the envelope is the canonical two-key map
    outer = codec.decode_map(signed.envelope)
    assert outer == {"body": signed.body_bytes, "sig": signed.signature}
    # re-encoding the decoded body gives the same bytes (canonical and lossless)
    assert decoded.body.encode() == signed.body_bytes
    doc = decoded.to_json()
    assert doc["id"] == signed.event_id.hex()
    assert doc["type"] == body.TYPE
    assert doc["actor"] == KEY.public_key.hex()
    assert doc["envelope"] == signed.envelope.hex()


def test_optional_fields_are_omitted_not_nil() -> None:
    doc = BODIES["grant"]().to_map()
    assert "expires" not in doc
    assert "grant" not in BODIES["use"]().to_map()
    assert "grant" not in BODIES["transfer"]().to_map()
    assert valid_map("grant-expires")["expires"] == T + 60_000


def test_event_id_is_sha256_of_body_not_envelope() -> None:
    signed = events.sign_event(KEY, BODIES["register"]())
    assert signed.event_id == hashlib.sha256(signed.body_bytes).digest()
    assert signed.event_id != hashlib.sha256(signed.envelope).digest()
    assert events.event_id_of(signed.body_bytes) == signed.event_id


def test_different_nonce_different_id() -> None:
    a = events.sign_event(KEY, BODIES["use"]())
    b = events.sign_event(
        KEY,
        Use(
            chain=CHAIN_ID,
            actor=KEY.public_key,
            time=T,
            nonce=b"\x01" * 16,
            dataset=D1,
            purpose="analytics",
        ),
    )
    assert a.event_id != b.event_id


def test_sanity_sign_map_of_valid_map_decodes() -> None:
    # the malformed cases below differ from this by exactly one change
    for name in BODIES:
        events.decode_envelope(sign_map(valid_map(name)), chain_id=CHAIN_ID)


# --- strict body parsing ----------------------------------------------------------------------


def _drop(name: str, field: str) -> dict[str, Any]:
    doc = valid_map(name)
    del doc[field]
    return doc


def _set(name: str, /, **changes: Any) -> dict[str, Any]:
    doc = valid_map(name)
    doc.update(changes)
    return doc


MISSING = [
    (name, field)
    for name in (
        "admit",
        "register",
        "grant",
        "revoke",
        "transfer",
        "use",
        "derive",
        "destroy",
        "attest",
    )
    for field in valid_map(name)
]


@pytest.mark.parametrize(("name", "field"), MISSING)
def test_missing_field_is_malformed(name: str, field: str) -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_drop(name, field)))


@pytest.mark.parametrize("name", ["admit", "register", "grant", "use", "derive", "attest"])
def test_unknown_extra_field_is_malformed(name: str) -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set(name, colour="blue")))


def test_field_of_another_type_is_unknown() -> None:
    # "open" belongs to register, not to derive
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("derive", open=True)))
    # "expires" is optional for grant only
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("use", expires=T)))


WRONG_TYPES = [
    ("register", {"time": True}),  # bool where int
    ("grant-expires", {"expires": True}),  # bool where int
    ("register", {"time": -1}),  # negative
    ("register", {"time": "1700000000000"}),  # text where int
    ("register", {"open": 1}),  # int where bool
    ("register", {"open": 0}),
    ("grant", {"reshare": 1}),  # int where bool
    ("register", {"dataset": D1.hex()[:32]}),  # str where bytes
    ("register", {"dataset": D1.hex()}),  # str where bytes (64 chars)
    ("revoke", {"grant": "x" * 32}),  # str where bytes
    ("transfer", {"to": OTHER.public_key.hex()}),  # str where bytes
    ("register", {"actor": KEY.public_key.hex()}),  # str where bytes
    ("register", {"nonce": "n" * 16}),  # str where bytes
    ("register", {"chain": CHAIN_ID.encode()}),  # bytes where str
    ("use", {"purpose": b"analytics"}),  # bytes where str
    ("use", {"purpose": ""}),  # empty text
    ("admit", {"name": 7}),
    ("admit", {"role": "admin"}),  # not a role
    ("admit", {"role": b"participant"}),
    ("grant", {"purposes": "analytics"}),  # str where list
    ("grant", {"purposes": [1]}),
    ("derive", {"inputs": D1}),  # bytes where list
    ("register", {"meta": []}),  # list where map
    ("register", {"meta": {"x": [1]}}),  # list inside meta
    ("register", {"meta": {"x": None}}),  # nil inside meta
    ("attest", {"claim": 5}),
]


@pytest.mark.parametrize(("name", "changes"), WRONG_TYPES, ids=lambda x: repr(x)[:40])
def test_wrong_type_is_malformed(name: str, changes: dict[str, Any]) -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set(name, **changes)))


@pytest.mark.parametrize("size", [0, 15, 17, 32])
def test_nonce_must_be_16_bytes(size: int) -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("register", nonce=b"\x07" * size)))


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("register", "dataset", D1[:31]),
        ("register", "dataset", D1 + b"\x00"),
        ("revoke", "grant", GRANT_ID[:31]),
        ("use-grant", "grant", GRANT_ID[:31]),
        ("derive", "inputs", [D1, D2[:31]]),
    ],
)
def test_hash_must_be_32_bytes(name: str, field: str, value: Any) -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set(name, **{field: value})))


def _bad_points() -> list[bytes]:
    good = KEY.public_key
    uncompressed_prefix = b"\x04" + good[1:]
    # x = 0 is not on P-256 for either parity? find an x with no point
    from cryptography.hazmat.primitives.asymmetric import ec

    bad_x = None
    for x in range(100):
        candidate = b"\x02" + x.to_bytes(32, "big")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), candidate)
        except ValueError:
            bad_x = candidate
            break
    assert bad_x is not None
    return [good[:32], good + b"\x00", uncompressed_prefix, b"\x05" + good[1:], bad_x]


@pytest.mark.parametrize("field", ["actor", "subject"])
@pytest.mark.parametrize("point", range(5))
def test_bad_public_key_is_malformed(field: str, point: int) -> None:
    value = _bad_points()[point]
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("admit", **{field: value})), verify=False)


def test_bad_recipient_key_is_malformed() -> None:
    for value in _bad_points():
        with pytest.raises(Malformed):
            events.decode_envelope(sign_map(_set("transfer", to=value)))
        with pytest.raises(Malformed):
            events.decode_envelope(sign_map(_set("grant", to=value)))


@pytest.mark.parametrize("type_name", ["rename", "", "Admit", "REGISTER"])
def test_unknown_type_is_malformed(type_name: str) -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("register", type=type_name)))


@pytest.mark.parametrize("type_value", [1, b"register", True])
def test_non_text_type_is_malformed(type_value: Any) -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("register", type=type_value)))


@pytest.mark.parametrize("type_value", [["register"], {"a": 1}])
def test_unhashable_type_is_malformed_not_a_crash(type_value: Any) -> None:
    # A list or map as "type" must be refused as Malformed like any other wrong type, not
    # leak a TypeError out of the parser (a remote peer controls these bytes).
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("register", type=type_value)))


@pytest.mark.parametrize("version", [0, 2, True, "1", b"\x01"])
def test_version_other_than_1_is_malformed(version: Any) -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("register", v=version)))


def test_missing_version_or_type_is_malformed() -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_drop("register", "v")))
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_drop("register", "type")))


def test_duplicates_and_empty_lists_are_malformed() -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("grant", purposes=["analytics", "analytics"])))
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("grant", purposes=[])))
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("grant", purposes=["a", ""])))
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("derive", inputs=[D1, D2, D1])))
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("derive", inputs=[])))
    with pytest.raises(Malformed):
        events.decode_envelope(
            sign_map(_set("grant", purposes=[f"p{i}" for i in range(events.MAX_LIST + 1)]))
        )


def test_derive_listing_its_own_output_is_malformed() -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("derive", dataset=D1, inputs=[D1, D2])))
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("derive", dataset=D3, inputs=[D3])))


@pytest.mark.parametrize(
    "meta",
    [
        {f"k{i:02d}": i for i in range(events.MAX_META_ENTRIES + 1)},  # too many entries
        {"title": "x" * (events.MAX_TEXT + 1)},  # value too long
        {"blob": b"\x00" * (events.MAX_TEXT + 1)},
        {"k" * (events.MAX_TEXT + 1): 1},  # key too long
        {"": 1},  # empty key
        {"nested": {"a": 1}},  # nested map
        {"nested": {}},
    ],
    ids=["entries", "text", "bytes", "key", "empty-key", "nested", "nested-empty"],
)
@pytest.mark.parametrize("name", ["register", "derive", "attest"])
def test_bad_meta_is_malformed(name: str, meta: dict[str, Any]) -> None:
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set(name, meta=meta)))


def test_meta_at_the_limits_is_accepted() -> None:
    meta: dict[str, Any] = {f"k{i:02d}": "y" * 300 for i in range(events.MAX_META_ENTRIES)}
    meta["k00"] = "x" * events.MAX_TEXT
    event = events.decode_envelope(sign_map(_set("register", meta=meta)))
    assert isinstance(event.body, Register)
    assert event.body.meta == meta


# --- the envelope -----------------------------------------------------------------------------


def _signed(name: str = "register") -> SignedEvent:
    return events.sign_event(KEY, BODIES[name]())


def test_envelope_with_extra_key_is_malformed() -> None:
    s = _signed()
    raw = codec.encode({"body": s.body_bytes, "sig": s.signature, "x": 1})
    with pytest.raises(Malformed):
        events.decode_envelope(raw)


def test_envelope_missing_key_is_malformed() -> None:
    s = _signed()
    with pytest.raises(Malformed):
        events.decode_envelope(codec.encode({"body": s.body_bytes}))
    with pytest.raises(Malformed):
        events.decode_envelope(codec.encode({"sig": s.signature}))


def test_envelope_not_a_map_or_wrong_types_is_malformed() -> None:
    s = _signed()
    for raw in (
        codec.encode([s.body_bytes, s.signature]),
        codec.encode({"body": s.body_bytes.hex(), "sig": s.signature}),
        codec.encode({"body": s.body_bytes, "sig": s.signature.hex()}),
        codec.encode({"body": s.body_bytes, "sig": s.signature[:63]}),
        codec.encode({"body": s.body_bytes, "sig": s.signature + b"\x00"}),
        codec.encode({"body": codec.encode([1, 2]), "sig": s.signature}),
        b"",
        b"\xc1",
        s.envelope + b"\x00",  # trailing bytes
    ):
        with pytest.raises(Malformed):
            events.decode_envelope(raw)
    with pytest.raises(Malformed):
        events.decode_envelope(s.envelope.hex())  # type: ignore[arg-type]


def test_non_canonical_envelope_is_malformed() -> None:
    s = _signed()
    # keys unsorted: "sig" before "body"
    unsorted = msgpack.packb({"sig": s.signature, "body": s.body_bytes}, use_bin_type=True)
    assert unsorted != s.envelope
    with pytest.raises(Malformed):
        events.decode_envelope(unsorted)
    # bytes as str (use_bin_type=False packs bytes as raw str)
    legacy = msgpack.packb({"body": s.body_bytes, "sig": s.signature}, use_bin_type=False)
    with pytest.raises(Malformed):
        events.decode_envelope(legacy)


def test_non_canonical_body_is_malformed() -> None:
    s = _signed()
    doc = s.body.to_map()
    unsorted_body = msgpack.packb(dict(sorted(doc.items(), reverse=True)), use_bin_type=True)
    assert unsorted_body != s.body_bytes
    # properly signed over the non-canonical bytes: still refused
    raw = envelope_of(unsorted_body, KEY.sign(unsorted_body))
    with pytest.raises(Malformed):
        events.decode_envelope(raw)


def test_wrong_chain_id() -> None:
    s = _signed()
    with pytest.raises(Malformed):
        events.decode_envelope(s.envelope, chain_id="another-chain")
    # without a chain id to check, it decodes
    assert events.decode_envelope(s.envelope).body.chain == CHAIN_ID


def test_oversized_envelope_is_too_large() -> None:
    meta = {f"k{i:02d}": "z" * events.MAX_TEXT for i in range(events.MAX_META_ENTRIES)}
    signed = events.sign_event(
        KEY,
        Register(
            chain=CHAIN_ID,
            actor=KEY.public_key,
            time=T,
            nonce=NONCE,
            dataset=D1,
            meta=meta,
            open=False,
        ),
    )
    assert len(signed.envelope) > events.MAX_ENVELOPE_BYTES
    with pytest.raises(TooLarge):
        events.decode_envelope(signed.envelope)
    # a lower configured limit applies too
    small = _signed().envelope
    with pytest.raises(TooLarge):
        events.decode_envelope(small, max_bytes=len(small) - 1)
    assert events.decode_envelope(small, max_bytes=len(small)).envelope == small
    # TooLarge is a kind of Malformed
    assert issubclass(TooLarge, Malformed)


def test_tampered_body_byte_is_bad_signature() -> None:
    s = _signed()
    position = s.body_bytes.index(NONCE) + 3  # a byte inside the nonce: still well-formed
    tampered = bytearray(s.body_bytes)
    tampered[position] ^= 0x01
    raw = envelope_of(bytes(tampered), s.signature)
    event = events.decode_envelope(raw, verify=False)  # still parses
    assert event.event_id != s.event_id
    with pytest.raises(BadSignature):
        events.decode_envelope(raw)
    with pytest.raises(BadSignature):
        event.verify_signature()


def test_tampered_envelope_byte_in_place_is_bad_signature() -> None:
    s = _signed()
    position = s.envelope.index(NONCE) + 5
    tampered = bytearray(s.envelope)
    tampered[position] ^= 0x80
    with pytest.raises(BadSignature):
        events.decode_envelope(bytes(tampered))


def test_tampered_signature_is_bad_signature() -> None:
    s = _signed()
    sig = bytearray(s.signature)
    sig[40] ^= 0x01
    with pytest.raises(BadSignature):
        events.decode_envelope(envelope_of(s.body_bytes, bytes(sig)))


def test_signed_by_another_key_is_bad_signature() -> None:
    s = _signed()
    with pytest.raises(BadSignature):
        events.decode_envelope(envelope_of(s.body_bytes, OTHER.sign(s.body_bytes)))


def test_high_s_signature_is_bad_signature() -> None:
    s = _signed()
    r = int.from_bytes(s.signature[:32], "big")
    low = int.from_bytes(s.signature[32:], "big")
    assert low <= HALF_ORDER
    high = CURVE_ORDER - low
    assert high > HALF_ORDER
    raw = envelope_of(s.body_bytes, r.to_bytes(32, "big") + high.to_bytes(32, "big"))
    # the malleated envelope is canonical and well-formed ...
    assert codec.decode_map(raw)["sig"] != s.signature
    event = events.decode_envelope(raw, verify=False)
    assert event.event_id == s.event_id
    # ... but the signature is refused
    with pytest.raises(BadSignature):
        events.decode_envelope(raw)


def test_zero_signature_is_bad_signature() -> None:
    s = _signed()
    with pytest.raises(BadSignature):
        events.decode_envelope(envelope_of(s.body_bytes, bytes(64)))


def test_verify_false_skips_only_the_signature() -> None:
    s = _signed()
    raw = envelope_of(s.body_bytes, bytes(64))
    assert events.decode_envelope(raw, verify=False).body == s.body
    with pytest.raises(Malformed):
        events.decode_envelope(sign_map(_set("register", v=2)), verify=False)


def test_datasets_named_by_each_type() -> None:
    assert BODIES["admit"]().datasets() == ()
    assert BODIES["revoke"]().datasets() == ()
    assert BODIES["register"]().datasets() == (D1,)
    assert BODIES["derive"]().datasets() == (D3, D1, D2)
    for name in ("grant", "transfer", "use", "destroy", "attest"):
        assert BODIES[name]().datasets() == (D1,)


_KEY = PrivateKey.generate()
_meta_values = st.one_of(
    st.text(max_size=40), st.binary(max_size=40), st.integers(0, 2**64 - 1), st.booleans()
)


@given(
    meta=st.dictionaries(st.text(min_size=1, max_size=12), _meta_values, max_size=8),
    purposes=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=5, unique=True),
    expires=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
)
@settings(max_examples=150, deadline=None)
def test_parsed_bodies_re_encode_exactly_as_the_generic_encoder(
    meta: dict, purposes: list[str], expires: int | None
) -> None:
    """decode_envelope's fast canonical check must agree with codec.encode byte for byte."""
    key = _KEY
    for body in (
        events.Register(
            chain="c",
            actor=key.public_key,
            time=1,
            nonce=b"n" * 16,
            dataset=b"d" * 32,
            meta=meta,
            open=False,
        ),
        events.Grant(
            chain="c",
            actor=key.public_key,
            time=1,
            nonce=b"n" * 16,
            dataset=b"d" * 32,
            to=key.public_key,
            purposes=tuple(purposes),
            reshare=True,
            expires=expires,
        ),
    ):
        signed = events.sign_event(key, body)
        assert events.decode_envelope(signed.envelope, verify=False).body_bytes == body.encode()


def test_a_body_with_unsorted_meta_keys_is_not_canonical() -> None:
    key = PrivateKey.generate()
    body = events.Register(
        chain="c",
        actor=key.public_key,
        time=1,
        nonce=b"n" * 16,
        dataset=b"d" * 32,
        meta={"a": "1", "b": "2"},
        open=False,
    )
    doc = body.to_map()
    doc["meta"] = {"b": "2", "a": "1"}
    ordered = {k: doc[k] for k in sorted(doc)}
    raw = msgpack.packb(ordered, use_bin_type=True)
    envelope = msgpack.packb({"body": raw, "sig": key.sign(raw)}, use_bin_type=True)
    with pytest.raises(Malformed, match="canonical"):
        events.decode_envelope(envelope, verify=False)


@given(
    order=st.one_of(st.just(list(range(9))), st.permutations(range(9))),
    meta_order=st.permutations(range(2)),
    wide_time=st.booleans(),
    repeated_key=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_the_fast_canonical_check_agrees_with_the_strict_decoder(
    order: list[int], meta_order: list[int], wide_time: bool, repeated_key: bool
) -> None:
    """decode_envelope refuses a body exactly when codec.decode would: any key order, an
    integer in a longer form than needed, or a repeated key."""
    body = events.Register(
        chain="c",
        actor=_KEY.public_key,
        time=5,
        nonce=b"n" * 16,
        dataset=b"d" * 32,
        meta={"a": "1", "b": 2},
        open=False,
    )
    canonical = dict(sorted(body.to_map().items()))
    assert len(canonical) == len(order)
    meta_items = sorted(canonical["meta"].items())
    canonical["meta"] = dict(meta_items[i] for i in meta_order)
    items = [list(canonical.items())[i] for i in order]
    parts = []
    for name, value in items:
        if name == "time" and wide_time:
            packed = b"\xcf" + value.to_bytes(8, "big")
        else:
            packed = msgpack.packb(value, use_bin_type=True)
        parts.append(msgpack.packb(name) + packed)
    if repeated_key:
        parts.append(parts[0])
    raw = bytes([0x80 | len(parts)]) + b"".join(parts)
    try:
        codec.decode(raw)
        strictly_canonical = True
    except Malformed:
        strictly_canonical = False
    assert strictly_canonical == (raw == body.encode())
    envelope = msgpack.packb({"body": raw, "sig": _KEY.sign(raw)}, use_bin_type=True)
    if strictly_canonical:
        assert events.decode_envelope(envelope, verify=False).body == body
    else:
        with pytest.raises(Malformed):
            events.decode_envelope(envelope, verify=False)
