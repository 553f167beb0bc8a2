"""Canonical msgpack: the one byte form of every signed or hashed structure (PROTOCOL §2).

`encode` writes maps with keys sorted by their UTF-8 bytes and integers in their shortest
form. `decode` is strict: it accepts only bytes that re-encode to themselves, and applies
explicit size limits instead of msgpack's 100 MiB defaults.
"""

from __future__ import annotations

from typing import Any

import msgpack
import ormsgpack

from ledger.errors import Malformed, TooLarge

MAX_DEPTH = 8
DEFAULT_MAX_BYTES = 1 << 20
MAX_ITEMS = 1 << 16

CanonicalValue = Any


_SCALARS = frozenset({str, bytes, bool, int, type(None)})


def _canonical(value: CanonicalValue, depth: int) -> CanonicalValue:
    """Validate a value tree and return it with every map's keys in canonical order.

    Keys are sorted as Python strings: for valid Unicode, code-point order is exactly the
    order of the keys' UTF-8 bytes. Integer range and unpaired surrogates are left to msgpack,
    whose errors `encode` turns into Malformed.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict or (kind is not list and kind is not tuple and isinstance(value, dict)):
        # A subclass is read through dict's own methods, its keys as their str values: a
        # dict, str or int subclass encodes exactly as its base type, whatever it overrides.
        items = {}
        for key, item in dict.items(value):
            if type(key) is not str:
                if not isinstance(key, str):
                    raise Malformed("map keys must be text")
                key = str.__str__(key)
            items[key] = item
        if len(items) != dict.__len__(value):
            raise Malformed("two map keys have the same text")
        if items and depth + 1 > MAX_DEPTH:
            raise Malformed(f"nesting deeper than {MAX_DEPTH}")
        canonical_map = {}
        for key in sorted(items):
            item = items[key]
            canonical_map[key] = item if type(item) in _SCALARS else _canonical(item, depth + 1)
        return canonical_map
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        if kind is not list and kind is not tuple:
            value = (
                list.copy(value)
                if isinstance(value, list)
                else tuple.__getitem__(value, slice(None))
            )
        if value and depth + 1 > MAX_DEPTH:
            raise Malformed(f"nesting deeper than {MAX_DEPTH}")
        return [item if type(item) in _SCALARS else _canonical(item, depth + 1) for item in value]
    # Exact bools, ints, text and bytes returned above; bool has no subclasses, so what is
    # left are subclasses (an IntEnum, a StrEnum, ...): each as its base type's value, read
    # through the base type's own method so that no override changes the bytes.
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes.__bytes__(value)
    raise Malformed(f"type {kind.__name__} has no canonical encoding")


def encode(value: CanonicalValue) -> bytes:
    """The canonical encoding of `value` (maps sorted, shortest ints, bin for bytes)."""
    try:
        return msgpack.packb(_canonical(value, 0), use_bin_type=True)
    except OverflowError as exc:
        raise Malformed("integer out of the 64-bit range") from exc
    except UnicodeEncodeError as exc:
        raise Malformed("text is not valid Unicode (unpaired surrogate)") from exc


def encode_trusted(value: CanonicalValue) -> bytes:
    """`encode` for a value this node built itself from already-checked data (the rules'
    state records): the same bytes, without the validating walk, because ormsgpack (Rust)
    sorts the keys of every map while it packs. Only for text-keyed maps, lists, tuples,
    text, bytes, ints, bools and None; anything else is a bug in the caller, not input.

    What ormsgpack refuses (a bytes subclass, a str-subclass key, an integer beyond 64 bits)
    goes through `encode`, which gives the same bytes or raises Malformed."""
    try:
        return ormsgpack.packb(value, option=ormsgpack.OPT_SORT_KEYS)
    except TypeError:  # ormsgpack.MsgpackEncodeError is a TypeError
        return encode(value)


def _reject_ext(code: int, data: bytes) -> Any:
    raise Malformed("msgpack ext types are not allowed")


def decode(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> CanonicalValue:
    """Decode canonical msgpack, rejecting anything that would not re-encode identically."""
    value = decode_uncanonical(data, max_bytes)
    _reject_floats(value, 0)
    if encode(value) != data:
        raise Malformed("not canonical: unsorted or duplicate keys, or non-shortest form")
    return value


def decode_uncanonical(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> CanonicalValue:
    """Parse msgpack within the size limits, rejecting ext types and trailing bytes, but NOT
    checking the canonical form: the caller must (for example by re-encoding what it built
    from the value and comparing with `data`, as event parsing does)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Malformed("expected bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise TooLarge(f"{len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_ext,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=MAX_ITEMS,
            max_map_len=MAX_ITEMS,
            max_ext_len=0,
        )
    except Malformed:
        raise
    except msgpack.ExtraData as exc:
        raise Malformed("trailing bytes after the value") from exc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise Malformed(f"not valid msgpack: {str(exc) or type(exc).__name__}") from exc
    except RecursionError as exc:  # msgpack's pure-Python fallback recurses per level
        raise Malformed("nesting too deep") from exc
    return value


def _reject_floats(value: CanonicalValue, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise Malformed(f"nesting deeper than {MAX_DEPTH}")
    if isinstance(value, float):
        raise Malformed("floats are not allowed")
    if isinstance(value, list):
        for item in value:
            _reject_floats(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _reject_floats(item, depth + 1)


def decode_trusted(data: bytes) -> CanonicalValue:
    """Decode bytes this node encoded itself (its own state records): no canonical re-check."""
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)


def decode_map(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Decode canonical bytes that must hold a map."""
    value = decode(data, max_bytes)
    if not isinstance(value, dict):
        raise Malformed("expected a map")
    return value
