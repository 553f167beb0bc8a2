"""Canonical msgpack (PROTOCOL §2): exact byte forms, strict decoding, round-trip properties."""

from __future__ import annotations

import struct
from collections import OrderedDict
from enum import IntEnum, StrEnum
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger.errors import LedgerError, Malformed, TooLarge


def nest(levels: int, inner: object = 0, kind: str = "list") -> object:
    value = inner
    for _ in range(levels):
        value = [value] if kind == "list" else {"k": value}
    return value


def fixstr(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 32
    return bytes([0xA0 | len(raw)]) + raw


# --- encoding: exact bytes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "cc80"),
        (255, "ccff"),
        (256, "cd0100"),
        (65535, "cdffff"),
        (65536, "ce00010000"),
        (2**32 - 1, "ceffffffff"),
        (2**32, "cf0000000100000000"),
        (2**64 - 1, "cfffffffffffffffff"),
        (-1, "ff"),
        (-32, "e0"),
        (-33, "d0df"),
        (-128, "d080"),
        (-129, "d1ff7f"),
        (-32768, "d18000"),
        (-32769, "d2ffff7fff"),
        (-(2**31), "d280000000"),
        (-(2**31) - 1, "d3ffffffff7fffffff"),
        (-(2**63), "d38000000000000000"),
    ],
)
def test_integers_use_shortest_form(value: int, expected: str) -> None:
    assert codec.encode(value).hex() == expected
    assert codec.decode(bytes.fromhex(expected)) == value


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30, -(10**30)])
def test_integers_outside_64_bit_range_are_rejected(value: int) -> None:
    with pytest.raises(Malformed):
        codec.encode(value)


def test_scalars_exact_bytes() -> None:
    assert codec.encode(None) == b"\xc0"
    assert codec.encode(False) == b"\xc2"
    assert codec.encode(True) == b"\xc3"
    assert codec.decode(b"\xc3") is True
    assert codec.decode(b"\xc2") is False
    assert codec.decode(b"\xc0") is None
    # bool is not an int on the wire
    assert codec.encode(1) != codec.encode(True)


def test_str_is_msgpack_str_and_bytes_is_bin() -> None:
    assert codec.encode("a") == b"\xa1a"
    assert codec.encode("") == b"\xa0"
    assert codec.encode(b"a") == b"\xc4\x01a"
    assert codec.encode(b"") == b"\xc4\x00"
    assert codec.encode("é") == b"\xa2\xc3\xa9"
    assert codec.encode("x" * 31) == b"\xbf" + b"x" * 31
    assert codec.encode("x" * 32) == b"\xd9\x20" + b"x" * 32
    assert codec.encode("x" * 256) == b"\xda\x01\x00" + b"x" * 256
    assert codec.encode(b"x" * 255) == b"\xc4\xff" + b"x" * 255
    assert codec.encode(b"x" * 256) == b"\xc5\x01\x00" + b"x" * 256
    assert type(codec.decode(b"\xa1a")) is str
    assert type(codec.decode(b"\xc4\x01a")) is bytes


def test_containers_exact_bytes() -> None:
    assert codec.encode([]) == b"\x90"
    assert codec.encode({}) == b"\x80"
    assert codec.encode([1, "a", b"b"]) == b"\x93\x01\xa1a\xc4\x01b"
    assert codec.encode(list(range(16))) == b"\xdc\x00\x10" + bytes(range(16))
    # tuples encode as arrays and decode as lists
    assert codec.encode((1, 2)) == codec.encode([1, 2])
    assert codec.decode(codec.encode((1, 2))) == [1, 2]


def test_map_keys_sorted_by_utf8_bytes_regardless_of_insertion_order() -> None:
    assert codec.encode({"b": 1, "a": 2}) == b"\x82\xa1a\x02\xa1b\x01"
    assert codec.encode({"a": 2, "b": 1}) == b"\x82\xa1a\x02\xa1b\x01"


@pytest.mark.parametrize(
    "ordered_keys",
    [
        # upper case sorts before lower case (a case-insensitive order would differ)
        ["B", "a"],
        ["Z", "a", "b"],
        # "é" (c3 a9) sorts after every ASCII letter (a locale/collation order would not)
        ["e", "z", "é"],
        # a prefix sorts first; comparison is lexicographic, not length-first, and not by the
        # msgpack-encoded key (where the length header would put "b" before "aa")
        ["a", "aa", "b"],
        # U+FF61 (ef bd a1) sorts before U+1F600 (f0 9f 98 80); UTF-16 order is the reverse
        ["\uff61", "\U0001f600"],
        # U+00FF (c3 bf) before U+0100 (c4 80) before U+4E00 (e4 b8 80)
        ["\u00ff", "\u0100", "\u4e00"],
        # empty key first
        ["", "\x00", "a"],
    ],
)
def test_non_ascii_and_tricky_key_orders(ordered_keys: list[str]) -> None:
    assert ordered_keys == sorted(ordered_keys, key=lambda k: k.encode())
    expected = bytes([0x80 | len(ordered_keys)]) + b"".join(
        fixstr(k) + bytes([i]) for i, k in enumerate(ordered_keys)
    )
    for doc in (
        {k: i for i, k in enumerate(ordered_keys)},
        {k: i for i, k in reversed(list(enumerate(ordered_keys)))},
    ):
        assert codec.encode(doc) == expected
    decoded = codec.decode(expected)
    assert list(decoded) == ordered_keys
    # the same pairs in any other order are not canonical
    reverse = bytes([0x80 | len(ordered_keys)]) + b"".join(
        fixstr(k) + bytes([i]) for i, k in reversed(list(enumerate(ordered_keys)))
    )
    with pytest.raises(Malformed):
        codec.decode(reverse)


def test_nested_maps_are_sorted_too() -> None:
    value = {"z": [{"b": 1, "a": 2}], "a": {"y": 1, "x": 2}}
    encoded = codec.encode(value)
    assert encoded == (b"\x82\xa1a\x82\xa1x\x02\xa1y\x01\xa1z\x91\x82\xa1a\x02\xa1b\x01")
    assert codec.decode(encoded) == value


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        float("nan"),
        {1, 2},
        frozenset(),
        # an explicit id: repr(object()) holds an address, which differs per xdist worker
        pytest.param(object(), id="object()"),
        bytearray(b"x"),
        {1: "int key"},
        {b"k": "bytes key"},
        {None: 1},
        {(1,): 1},
        [1.5],
        {"a": {"b": 0.0}},
    ],
    ids=repr,
)
def test_encode_rejects_values_without_canonical_form(value: object) -> None:
    with pytest.raises(Malformed):
        codec.encode(value)


@pytest.mark.parametrize("value", ["\udcff", {"\ud800": 1}, ["ok", "\udfff"]], ids=ascii)
def test_encode_rejects_lone_surrogates_with_malformed(value: object) -> None:
    """A str that cannot be UTF-8 encoded has no canonical form: Malformed, not a crash.

    Such strings arise from e.g. non-UTF-8 command-line arguments (surrogateescape) or
    JSON "\\ud800" escapes.
    """
    with pytest.raises(Malformed):
        codec.encode(value)


# --- strict decoding -------------------------------------------------------------------------

REJECTED = {
    # map order / duplicates
    "unsorted keys": b"\x82\xa1b\x01\xa1a\x02",
    "duplicate keys": b"\x82\xa1a\x01\xa1a\x02",
    "duplicate keys, same value": b"\x82\xa1a\x01\xa1a\x01",
    "nested unsorted keys": b"\x91\x82\xa1b\x01\xa1a\x02",
    # non-shortest integers
    "uint8 for fixint": b"\xcc\x01",
    "uint8 zero": b"\xcc\x00",
    "uint16 for uint8": b"\xcd\x00\x80",
    "uint16 for fixint": b"\xcd\x00\x01",
    "uint32 for uint16": b"\xce\x00\x00\x01\x00",
    "uint64 for uint32": b"\xcf\x00\x00\x00\x00\xff\xff\xff\xff",
    "uint64 for fixint": b"\xcf" + (1).to_bytes(8, "big"),
    "int8 zero": b"\xd0\x00",
    "int8 for positive fixint": b"\xd0\x7f",
    "int8 for negative fixint": b"\xd0\xff",
    "int16 for int8": b"\xd1\xff\x80",
    "int16 for positive": b"\xd1\x00\x80",
    "int32 for int16": b"\xd2\xff\xff\x80\x00",
    "int64 for int32": b"\xd3" + (-(2**31)).to_bytes(8, "big", signed=True),
    "int64 for positive": b"\xd3" + (2**40).to_bytes(8, "big", signed=True),
    # floats
    "float32": b"\xca" + struct.pack(">f", 1.0),
    "float32 zero": b"\xca\x00\x00\x00\x00",
    "float64": b"\xcb" + struct.pack(">d", 1.5),
    "float64 integral": b"\xcb" + struct.pack(">d", 2.0),
    "float64 nan": b"\xcb" + struct.pack(">d", float("nan")),
    "float in array": b"\x91\xcb" + struct.pack(">d", 1.5),
    "float map value": b"\x81\xa1a\xca" + struct.pack(">f", 1.0),
    "float map key": b"\x81\xca" + struct.pack(">f", 1.0) + b"\x01",
    # ext types
    "fixext1": b"\xd4\x01\x00",
    "fixext4 timestamp": b"\xd6\xff\x00\x00\x00\x01",
    "fixext8": b"\xd7\x05" + bytes(8),
    "ext8 empty": b"\xc7\x00\x05",
    "ext8": b"\xc7\x02\x05ab",
    "ext16": b"\xc8\x00\x01\x05a",
    "ext in map": b"\x81\xa1a\xd4\x01\x00",
    # trailing data
    "trailing zero": b"\x01\x00",
    "two values": b"\xa1a\xa1b",
    "trailing nil": b"\x90\xc0",
    # truncated / empty
    "empty": b"",
    "truncated uint16": b"\xcd\x01",
    "truncated str": b"\xa3ab",
    "truncated array": b"\x92\x01",
    "truncated map": b"\x81\xa1a",
    "header only": b"\xc4",
    # non-str keys
    "int key": b"\x81\x01\x02",
    "negative int key": b"\x81\xff\x02",
    "bytes key": b"\x81\xc4\x01a\x01",
    "nil key": b"\x81\xc0\x01",
    "bool key": b"\x81\xc3\x01",
    "array key": b"\x81\x90\x01",
    # non-shortest strings / bins / containers
    "str8 for fixstr": b"\xd9\x01a",
    "str8 empty": b"\xd9\x00",
    "str16 for fixstr": b"\xda\x00\x01a",
    "str32 for fixstr": b"\xdb\x00\x00\x00\x01a",
    "str16 for str8": b"\xda\x00\x20" + b"x" * 32,
    "str8 key": b"\x81\xd9\x01a\x01",
    "bin16 for short bin": b"\xc5\x00\x01a",
    "bin16 empty": b"\xc5\x00\x00",
    "bin32 for short bin": b"\xc6\x00\x00\x00\x01a",
    "array16 for fixarray": b"\xdc\x00\x01\x01",
    "array32 for fixarray": b"\xdd\x00\x00\x00\x00",
    "map16 for fixmap": b"\xde\x00\x01\xa1a\x01",
    "map32 for fixmap": b"\xdf\x00\x00\x00\x00",
    # invalid text and reserved byte
    "invalid utf-8": b"\xa1\xff",
    "utf-8 surrogate": b"\xa3\xed\xa0\x80",
    "overlong utf-8": b"\xa2\xc0\xaf",
    "reserved 0xc1": b"\xc1",
}


@pytest.mark.parametrize("data", REJECTED.values(), ids=REJECTED.keys())
def test_strict_decode_rejects(data: bytes) -> None:
    with pytest.raises(Malformed):
        codec.decode(data)


def test_rejection_table_is_really_decodable_by_lenient_msgpack_where_expected() -> None:
    """Sanity: the non-canonical samples above are valid msgpack that a lenient decoder takes,
    so the strict decoder is what rejects them (not a typo in the sample)."""
    for name in (
        "unsorted keys",
        "duplicate keys",
        "uint8 for fixint",
        "int8 zero",
        "float64",
        "str8 for fixstr",
        "bin16 for short bin",
        "array16 for fixarray",
    ):
        msgpack.unpackb(REJECTED[name], raw=False)


def test_str_bin_distinction_is_preserved() -> None:
    # a byte string sent as str (old raw form) decodes to str, and a str key must not be bin
    assert codec.decode(b"\xa1a") == "a"
    assert codec.decode(b"\xc4\x01a") == b"a"
    assert codec.decode(b"\x81\xa1a\xc4\x01a") == {"a": b"a"}


def test_depth_limit() -> None:
    ok = nest(codec.MAX_DEPTH)
    assert codec.decode(codec.encode(ok)) == ok
    ok_map = nest(codec.MAX_DEPTH, kind="map")
    assert codec.decode(codec.encode(ok_map)) == ok_map
    too_deep = nest(codec.MAX_DEPTH + 1)
    with pytest.raises(Malformed):
        codec.encode(too_deep)
    with pytest.raises(Malformed):
        codec.encode(nest(codec.MAX_DEPTH + 1, kind="map"))
    # the same bytes a lenient encoder would produce are rejected by decode
    with pytest.raises(Malformed):
        codec.decode(msgpack.packb(too_deep))
    with pytest.raises(Malformed):
        codec.decode(msgpack.packb(nest(codec.MAX_DEPTH + 1, kind="map")))
    # deep nesting that would exhaust a recursive parser is a clean Malformed
    for levels in (codec.MAX_DEPTH + 2, 100, 2_000, 100_000):
        with pytest.raises(Malformed):
            codec.decode(b"\x91" * levels + b"\xc0")


def test_size_limit_raises_too_large() -> None:
    data = codec.encode({"blob": b"x" * 100})
    assert codec.decode(data, max_bytes=len(data)) == {"blob": b"x" * 100}
    with pytest.raises(TooLarge):
        codec.decode(data, max_bytes=len(data) - 1)
    with pytest.raises(TooLarge):
        codec.decode(b"\x01", max_bytes=0)
    big = codec.encode(b"x" * codec.DEFAULT_MAX_BYTES)
    assert len(big) > codec.DEFAULT_MAX_BYTES
    with pytest.raises(TooLarge):
        codec.decode(big)
    assert issubclass(TooLarge, Malformed)
    assert issubclass(Malformed, LedgerError)


def test_declared_lengths_beyond_the_input_are_malformed() -> None:
    # headers claiming huge lengths must not allocate or hang, just fail
    for data in (
        b"\xdb\xff\xff\xff\xff",
        b"\xc6\xff\xff\xff\xff",
        b"\xdd\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
    ):
        with pytest.raises(Malformed):
            codec.decode(data)


def test_too_many_items_is_malformed() -> None:
    data = b"\xdd" + (codec.MAX_ITEMS + 1).to_bytes(4, "big") + b"\x00" * (codec.MAX_ITEMS + 1)
    with pytest.raises(Malformed):
        codec.decode(data)
    ok = [0] * codec.MAX_ITEMS
    assert codec.decode(codec.encode(ok)) == ok


@pytest.mark.parametrize("bad", ["\x01", 1, None, [1]], ids=repr)
def test_decode_requires_bytes(bad: object) -> None:
    with pytest.raises(Malformed):
        codec.decode(bad)  # type: ignore[arg-type]


def test_decode_accepts_bytes_likes() -> None:
    data = codec.encode({"a": [1, b"x"]})
    assert codec.decode(bytearray(data)) == {"a": [1, b"x"]}
    assert codec.decode(memoryview(data)) == {"a": [1, b"x"]}


def test_decode_map() -> None:
    assert codec.decode_map(codec.encode({"a": 1})) == {"a": 1}
    assert codec.decode_map(b"\x80") == {}
    for not_a_map in ([1], 1, "a", b"a", None):
        with pytest.raises(Malformed):
            codec.decode_map(codec.encode(not_a_map))
    with pytest.raises(TooLarge):
        codec.decode_map(codec.encode({"a": b"x" * 10}), max_bytes=5)


def test_every_strict_prefix_of_a_value_is_malformed() -> None:
    data = codec.encode({"a": [1, 2**40, "text", b"\x00\x01"], "b": {"c": None, "d": True}})
    for cut in range(len(data)):
        with pytest.raises(Malformed):
            codec.decode(data[:cut])
    codec.decode(data)


# --- properties ------------------------------------------------------------------------------

_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=40),
    st.binary(max_size=40),
)


def _canonical_values(max_depth: int) -> st.SearchStrategy[object]:
    levels = [_leaves]
    for _ in range(max_depth):
        inner = levels[-1]
        levels.append(
            st.one_of(
                _leaves,
                st.lists(inner, max_size=4),
                st.dictionaries(st.text(max_size=8), inner, max_size=4),
            )
        )
    return levels[-1]


canonical_values = _canonical_values(codec.MAX_DEPTH)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_values)
def test_roundtrip_value(value: object) -> None:
    data = codec.encode(value)
    assert codec.decode(data) == value
    assert codec.encode(codec.decode(data)) == data


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=6), st.integers(0, 3), min_size=1, max_size=8), st.randoms()
)
def test_key_order_of_input_does_not_matter(doc: dict[str, int], rnd: object) -> None:
    items = list(doc.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    data = codec.encode(dict(items))
    assert data == codec.encode(doc)
    assert list(codec.decode(data)) == sorted(doc, key=lambda k: k.encode())


def _reencodes_or_malformed(data: bytes) -> None:
    try:
        value = codec.decode(data)
    except Malformed:
        return
    assert codec.encode(value) == data


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_malformed_or_canonical(data: bytes) -> None:
    _reencodes_or_malformed(data)


@settings(max_examples=300, deadline=None)
@given(canonical_values, st.data())
def test_mutated_encodings_are_malformed_or_canonical(value: object, data: st.DataObject) -> None:
    encoded = bytearray(codec.encode(value))
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255))
    _reencodes_or_malformed(bytes(encoded))


@settings(max_examples=300, deadline=None)
@given(canonical_values)
def test_lenient_encodings_are_malformed_or_canonical(value: object) -> None:
    """msgpack with different options (floats allowed, no bin type) never sneaks past decode."""
    for packed in (
        msgpack.packb(value, use_bin_type=False),
        msgpack.packb(value, use_single_float=True),
    ):
        _reencodes_or_malformed(packed)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_values, st.randoms())
def test_encode_trusted_gives_the_canonical_bytes(value: object, rnd: Any) -> None:
    """The fast encoder for the node's own records agrees with `encode` byte for byte,
    whatever the insertion order of the maps and whether sequences are lists or tuples."""

    def scramble(item: object) -> object:
        if isinstance(item, dict):
            items = list(item.items())
            rnd.shuffle(items)
            return {key: scramble(inner) for key, inner in items}
        if isinstance(item, list):
            converted = [scramble(inner) for inner in item]
            return tuple(converted) if rnd.random() < 0.5 else converted
        return item

    assert codec.encode_trusted(scramble(value)) == codec.encode(value)


@pytest.mark.parametrize(
    "value",
    [
        0,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        2**32 - 1,
        2**32,
        2**64 - 1,
        -1,
        -32,
        -33,
        -128,
        -129,
        -(2**15),
        -(2**15) - 1,
        -(2**31) - 1,
        -(2**63),
        {"é": 1, "z": 2, "a": 3, "\U0001f600": 4, "\uffff": 5, "": 6},
        {"b": {"d": [b"\x00" * 300, "x" * 40_000]}, "a": None, "c": True},
    ],
)
def test_encode_trusted_known_edges(value: object) -> None:
    assert codec.encode_trusted(value) == codec.encode(value)


# --- subclasses: exactly as the base type, never nil ----------------------------------------


class _Level(IntEnum):
    LOW = 5
    HIGH = 300


class _Colour(StrEnum):
    RED = "red"


class _LoudStr(str):
    """A str subclass whose overrides must not change what is hashed or signed."""

    def __str__(self) -> str:
        return "override"

    def __lt__(self, other: object) -> bool:  # reversed order
        return str.__gt__(self, other)  # type: ignore[operator]


class _LoudInt(int):
    def __int__(self) -> int:
        return 99

    def __index__(self) -> int:
        return 98


class _LoudBytes(bytes):
    def __bytes__(self) -> bytes:
        return b"override"


class _LoudDict(dict):  # type: ignore[type-arg]
    def items(self):  # type: ignore[no-untyped-def]
        return [("override", 1)]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(["override"])

    def __getitem__(self, key: object) -> object:
        return "override"

    def __len__(self) -> int:
        return 0


class _LoudList(list):  # type: ignore[type-arg]
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(["override"])

    def __len__(self) -> int:
        return 0


class _LoudTuple(tuple):  # type: ignore[type-arg]
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(["override"])


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        (_Level.LOW, 5),
        (_Level.HIGH, 300),
        (_Colour.RED, "red"),
        (_LoudStr("ab"), "ab"),
        (_LoudInt(3), 3),
        (_LoudInt(-200), -200),
        (_LoudBytes(b"ab"), b"ab"),
        (_LoudDict({"b": 1, "a": 2}), {"a": 2, "b": 1}),
        (OrderedDict([("b", 1), ("a", 2)]), {"a": 2, "b": 1}),
        (_LoudList([1, 2]), [1, 2]),
        (_LoudTuple((1, _Level.LOW)), [1, 5]),
        ({_LoudStr("b"): 1, "a": 2, _Colour.RED: _Level.HIGH}, {"a": 2, "b": 1, "red": 300}),
        ({"k": [_LoudBytes(b"x"), {"n": _LoudInt(7)}]}, {"k": [b"x", {"n": 7}]}),
    ],
)
def test_a_subclass_encodes_exactly_as_its_base_type(value: object, plain: object) -> None:
    """An IntEnum is its integer, a str subclass its text, a dict subclass its items: what is
    hashed or signed cannot depend on a subclass's overrides, and is never nil."""
    expected = codec.encode(plain)
    assert codec.encode(value) == expected
    assert codec.encode(value) != codec.encode(None)
    assert codec.encode_trusted(value) == expected
    assert codec.decode(expected) == plain


def test_bool_is_not_encoded_as_an_integer_subclass() -> None:
    assert codec.encode([True, False, 1, 0]).hex() == "94c3c20100"
    assert (
        codec.encode({"t": True}) == codec.encode_trusted({"t": True}) == bytes.fromhex("81a174c3")
    )


def test_map_keys_are_sorted_by_their_text_not_by_a_subclass_order() -> None:
    doc = {_LoudStr("a"): 1, _LoudStr("b"): 2, _LoudStr("c"): 3}
    assert codec.encode(doc) == codec.encode({"a": 1, "b": 2, "c": 3})
    assert list(codec.decode(codec.encode(doc))) == ["a", "b", "c"]


def test_two_keys_with_the_same_text_are_refused() -> None:
    class Distinct(str):
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            return self is other

    doc = {"a": 1, Distinct("a"): 2}
    assert len(doc) == 2
    with pytest.raises(Malformed, match="same text"):
        codec.encode(doc)
    with pytest.raises(Malformed, match="same text"):
        codec.encode_trusted(doc)


@pytest.mark.parametrize("value", [1.5, {1: "int key"}, {b"k": 1}, object(), {1, 2}])
def test_types_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(Malformed):
        codec.encode(value)
    with pytest.raises(Malformed):
        codec.encode([value])


@pytest.mark.parametrize("value", [{"k": _LoudBytes(b"x")}, {_Colour.RED: 1}, [2**64]])
def test_encode_trusted_falls_back_to_encode_for_what_ormsgpack_refuses(value: object) -> None:
    try:
        expected: bytes | None = codec.encode(value)
    except Malformed:
        expected = None
    if expected is None:
        with pytest.raises(Malformed):
            codec.encode_trusted(value)
    else:
        assert codec.encode_trusted(value) == expected


def _subclassed(value: object, rnd: Any) -> object:
    """`value` with some of its parts replaced by equal values of subclasses."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return _LoudInt(value) if rnd.random() < 0.5 else value
    if isinstance(value, str):
        return _LoudStr(value) if rnd.random() < 0.5 else value
    if isinstance(value, bytes):
        return _LoudBytes(value) if rnd.random() < 0.5 else value
    if isinstance(value, list):
        items = [_subclassed(v, rnd) for v in value]
        return rnd.choice([list, tuple, _LoudList, _LoudTuple])(items)
    assert isinstance(value, dict)
    pairs = [(_subclassed(k, rnd), _subclassed(v, rnd)) for k, v in value.items()]
    rnd.shuffle(pairs)
    return rnd.choice([dict, OrderedDict, _LoudDict])(pairs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_values, st.randoms())
def test_subclassed_values_encode_as_their_plain_values(value: object, rnd: Any) -> None:
    """Property: the generic encoder and the fast path both encode any mix of subclasses
    exactly as the plain value."""
    expected = codec.encode(value)
    wrapped = _subclassed(value, rnd)
    assert codec.encode(wrapped) == expected
    assert codec.encode_trusted(wrapped) == expected


def test_nesting_beyond_the_unpackers_stack_is_malformed_by_name() -> None:
    """msgpack's C unpacker stops at 1024 levels with StackError (which has no message)."""
    with pytest.raises(Malformed, match="not valid msgpack: StackError"):
        codec.decode(b"\x91" * 1025 + b"\x00")
    with pytest.raises(Malformed, match="nesting deeper than 8"):
        codec.decode(b"\x91" * 1024 + b"\x00")


def test_recursion_in_the_unpacker_is_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-Python msgpack fallback recurses once per level: RecursionError is Malformed."""

    def deep(*args: object, **kwargs: object) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(msgpack, "unpackb", deep)
    with pytest.raises(Malformed, match="nesting too deep"):
        codec.decode(b"\x91\x00")


# --- each decoding check by its own error ---------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\xcb" + struct.pack(">d", 1.5),
        b"\x91\xcb" + struct.pack(">d", 1.5),
        b"\x81\xa1a\xca" + struct.pack(">f", 1.0),
        b"\x81\xa1a\x91\x81\xa1b\xca" + struct.pack(">f", 1.0),
    ],
)
def test_floats_are_refused_as_floats(data: bytes) -> None:
    with pytest.raises(Malformed, match="floats are not allowed"):
        codec.decode(data)


def test_ext_types_are_refused_as_ext_types() -> None:
    # an empty ext8 gets past max_ext_len=0 and reaches the ext hook
    with pytest.raises(Malformed, match="ext types are not allowed"):
        codec.decode(b"\xc7\x00\x05")
    # any ext with data is stopped by the unpacker's length limit
    with pytest.raises(Malformed, match="not valid msgpack"):
        codec.decode(b"\xd4\x01\x00")


def test_non_text_map_keys_are_refused_by_the_unpacker() -> None:
    with pytest.raises(Malformed, match="not valid msgpack"):
        codec.decode(b"\x81\x01\x02")


@pytest.mark.parametrize("kind", ["list", "map"])
def test_deep_nesting_is_refused_without_recursing_through_it(kind: str) -> None:
    """1000 levels (below the unpacker's 1024) stop at level 9, never a RecursionError."""
    level = b"\x91" if kind == "list" else b"\x81\xa1k"
    with pytest.raises(Malformed, match="nesting deeper than 8"):
        codec.decode(level * 1000 + b"\x00")


def test_decode_trusted_gives_lists_and_refuses_non_text_keys() -> None:
    value = codec.decode_trusted(codec.encode({"a": [1, [2]], "b": b"x", "c": "y"}))
    assert value == {"a": [1, [2]], "b": b"x", "c": "y"}
    assert type(value["a"]) is list and type(value["a"][1]) is list
    assert type(value["c"]) is str and type(value["b"]) is bytes
    with pytest.raises(ValueError):
        codec.decode_trusted(b"\x81\x01\x02")
