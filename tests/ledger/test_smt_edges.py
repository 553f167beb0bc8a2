"""Edges of the state map (ledger/smt.py, docs/PROTOCOL.md §17): the 256-sibling bound of a
proof, its failure messages, and unreadable stored tiles."""

from __future__ import annotations

import msgpack
import pytest

from ledger import smt
from ledger.errors import Corruption, Malformed, ProofMismatch, VerificationFailed
from tests.ledger.test_smt import MemoryMap


def test_a_proof_of_256_siblings_is_read_and_257_refused() -> None:
    """docs/PROTOCOL.md §17.5: a key's path has 256 bits, so a proof has at most 256 siblings."""
    sibling = "11" * 32
    proof = smt.StateProof.from_json({"siblings": [sibling] * 256, "leaf": None})
    assert len(proof.siblings) == 256
    with pytest.raises(Malformed, match="at most 256"):
        smt.StateProof.from_json({"siblings": [sibling] * 257, "leaf": None})
    # 256 siblings is a well-formed claim that merely leads elsewhere; 257 is no claim at all
    with pytest.raises(ProofMismatch):
        smt.verify(smt.EMPTY, b"k", None, proof)
    too_deep = smt.StateProof((bytes(32),) * 257, None)
    with pytest.raises(VerificationFailed, match="more than 256 siblings") as info:
        smt.verify(smt.EMPTY, b"k", None, too_deep)
    assert not isinstance(info.value, ProofMismatch)


@pytest.mark.parametrize("bad", [7, None, "00" * 31, "00" * 33, "0" * 63])
def test_a_proof_hash_must_be_64_hex_digits(bad: object) -> None:
    with pytest.raises(Malformed, match="64 hex digits"):
        smt.StateProof.from_json({"siblings": [bad], "leaf": None})
    with pytest.raises(Malformed, match="64 hex digits"):
        smt.StateProof.from_json({"siblings": [], "leaf": {"path": bad, "value_hash": "00" * 32}})


def test_failures_name_what_was_claimed() -> None:
    tree = MemoryMap()
    root = tree.apply({b"a": b"1", b"b": b"2", b"c": b"3"})
    with pytest.raises(ProofMismatch, match="the value of 61 does not lead to the state root"):
        smt.verify(bytes(32), b"a", b"1", tree.prove(b"a"))  # another root
    absence = tree.prove(b"zz")
    with pytest.raises(ProofMismatch, match="the absence of 7a7a does not lead"):
        smt.verify(bytes(32), b"zz", None, absence)
    with pytest.raises(VerificationFailed, match="is present, not absent"):
        smt.verify(root, b"a", None, tree.prove(b"a"))
    with pytest.raises(VerificationFailed, match="not this value"):
        smt.verify(root, b"a", b"2", tree.prove(b"a"))


def test_an_absence_proof_ending_at_a_leaf_off_the_path_is_refused() -> None:
    """A leaf is only evidence of absence where the key's path ends: a leaf whose path parts
    from the key's above the proof's depth proves nothing about the key."""
    tree = MemoryMap()
    root = tree.apply({bytes([i]): b"v" for i in range(16)})
    absent = next(k for k in (f"x{i}".encode() for i in range(1_000)) if tree.prove(k).leaf)
    proof = tree.prove(absent)
    assert proof.siblings
    smt.verify(root, absent, None, proof)
    path = smt.key_path(absent)
    for leaf_key in (bytes([i]) for i in range(16)):
        other = tree.prove(leaf_key)
        assert other.leaf is not None
        shares_prefix = (int.from_bytes(other.leaf[0], "big") ^ int.from_bytes(path, "big")) >> (
            smt.KEY_BITS - len(proof.siblings)
        ) == 0
        if not shares_prefix:
            forged = smt.StateProof(proof.siblings, other.leaf)
            with pytest.raises(VerificationFailed, match="off the path"):
                smt.verify(root, absent, None, forged)
            return
    raise AssertionError("no leaf off the absent key's path")


def test_an_unreadable_tile_is_corruption() -> None:
    with pytest.raises(Corruption, match="unreadable state-map tile"):
        smt.decode_tile(b"\xc1")
    with pytest.raises(Corruption, match="unreadable state-map tile"):
        smt.decode_tile(b"\x92\x01")  # truncated
    with pytest.raises(Corruption, match="not a map"):
        smt.decode_tile(msgpack.packb([1, 2]))
    tile = {1: bytes(32), 5: bytes(96)}
    assert smt.decode_tile(smt.encode_tile(tile)) == tile


def test_no_writes_change_nothing() -> None:
    tree = MemoryMap()
    tree.apply({b"a": b"1", b"b": b"2"})
    update = smt.update(tree.read, tree.root_entry, {})
    assert update == smt.MapUpdate(tree.root_entry, {})
    assert update.root == smt.reference_root([(b"a", b"1"), (b"b", b"2")])
    assert smt.MapUpdate(None, {}).root == smt.EMPTY


def test_wire_form_of_a_proof() -> None:
    tree = MemoryMap()
    tree.apply({bytes([i]): bytes([i]) for i in range(8)})
    proof = tree.prove(b"\x03")
    assert proof.leaf is not None
    assert proof.to_wire() == {"siblings": list(proof.siblings), "leaf": list(proof.leaf)}
    assert smt.StateProof((), None).to_wire() == {"siblings": [], "leaf": None}
    assert proof.to_json()["leaf"] == {
        "path": proof.leaf[0].hex(),
        "value_hash": proof.leaf[1].hex(),
    }


def test_update_reads_tiles_without_changing_them() -> None:
    """`update` computes the changed tiles; the stored ones stay as they were until the
    store writes the block (a block executed but not committed leaves no trace)."""
    tree = MemoryMap()
    tree.apply({bytes([i]): b"v" for i in range(40)})
    stored = {tile: dict(entries) for tile, entries in tree.tiles.items()}
    root_entry = tree.root_entry
    update = smt.update(tree.read, root_entry, {bytes([i]): b"w" for i in range(0, 60, 3)})
    assert tree.tiles == stored and tree.root_entry == root_entry
    assert update.tiles and all(update.tiles[t] is not tree.tiles.get(t) for t in update.tiles)
    expected = {bytes([i]): b"v" for i in range(40)} | {bytes([i]): b"w" for i in range(0, 60, 3)}
    assert update.root == smt.reference_root(expected.items())


def test_trailing_bytes_after_a_tile_are_corruption() -> None:
    with pytest.raises(Corruption, match="unreadable"):
        smt.decode_tile(smt.encode_tile({2: b"x"}) + b"\x00")


def test_tile_keys_are_pinned_at_every_depth_they_take() -> None:
    """docs/PROTOCOL.md §17.6: b"m" || t || p in ceil(t / 8) big-endian bytes, for tile
    depths 0, 4, ..., 252 and prefixes up to their largest."""
    assert smt.tile_key((0, 0)) == b"m\x00"
    assert smt.tile_key((4, 15)) == b"m\x04\x0f"
    assert smt.tile_key((12, 0xABC)) == b"m\x0c\x0a\xbc"
    assert smt.tile_key((64, 2**64 - 1)) == b"m\x40" + b"\xff" * 8
    assert smt.tile_key((252, 2**252 - 1)) == b"m\xfc" + b"\x0f" + b"\xff" * 31
    for depth in range(0, 256, 4):
        assert len(smt.tile_key((depth, 2**depth - 1))) == 2 + (depth + 7) // 8
