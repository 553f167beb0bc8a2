"""Tests of ledger.merkle_log.MerkleLog over a dict-backed node store."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import Corruption, Malformed
from ledger.merkle import NodeId
from ledger.merkle_log import (
    Extension,
    MerkleLog,
    ReadNode,
    TileId,
    created_nodes,
    parse_tile_key,
    perfect_node_count,
    tile_additions,
    tile_hash,
    tile_key,
    tile_slot,
    tile_width,
)
from tests.ledger import rfc_reference as ref

Store = dict[NodeId, bytes]


class CountingStore:
    """A node store that counts reads."""

    def __init__(self, nodes: Store) -> None:
        self.nodes = nodes
        self.reads = 0

    def read(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        return self.nodes.get((level, index))


def reader(store: Store) -> ReadNode:
    return lambda level, index: store.get((level, index))


def entries_for(salt: bytes, n: int, start: int = 0) -> list[bytes]:
    return [salt + i.to_bytes(4, "big") for i in range(start, start + n)]


def hashes(entries: Sequence[bytes]) -> list[bytes]:
    return [merkle.leaf_hash(x) for x in entries]


def append_persisted(log: MerkleLog, store: Store, leaf_hashes: Sequence[bytes]) -> None:
    store.update(log.append(leaf_hashes))
    log.persisted()


def new_perfect_nodes(old_size: int, new_size: int) -> set[NodeId]:
    """The perfect nodes completed when the log grows from old_size to new_size leaves."""
    return {
        (level, i)
        for level in range(new_size.bit_length())
        for i in range(new_size >> level)
        if old_size < (i + 1) << level <= new_size
    }


# --- tiles ---------------------------------------------------------------------------------


TILE = 5  # levels per stratum of the on-disk layout


def tile_of(level: int, index: int) -> TileId:
    """(stratum, tile number) of a node, computed independently of tile_slot."""
    row = level % TILE
    return level // TILE, index >> (TILE - row)


def all_nodes(size: int) -> list[NodeId]:
    return [(level, i) for level in range(size.bit_length()) for i in range(size >> level)]


def creation_order(size: int) -> list[NodeId]:
    """Every perfect node of a tree of `size` leaves in the order an append loop creates
    them, computed independently of created_nodes: by the last leaf under the node, then by
    level."""
    return sorted(all_nodes(size), key=lambda node: (((node[1] + 1) << node[0]) - 1, node[0]))


class TileStore:
    """A node store that keeps tile values, as ledger.store.Store does, in a dict."""

    def __init__(self) -> None:
        self.tiles: dict[TileId, bytes] = {}
        self.reads = 0

    def read(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        tile, slot = tile_slot(level, index)
        value = self.tiles.get(tile)
        return None if value is None else tile_hash(value, slot)

    def write(self, extension: Extension) -> None:
        for tile, (first, added) in tile_additions(extension.nodes()).items():
            old = self.tiles.get(tile, b"")
            assert first * 32 == len(old)
            self.tiles[tile] = old + added


def test_tile_slots_known_values() -> None:
    # Creation order within tile (0, 0): leaf 0, leaf 1, (1, 0), leaf 2, leaf 3, (1, 1), (2, 0)...
    assert [tile_slot(0, i) for i in range(3)] == [((0, 0), 0), ((0, 0), 1), ((0, 0), 3)]
    assert tile_slot(1, 0) == ((0, 0), 2)
    assert tile_slot(1, 1) == ((0, 0), 5)
    assert tile_slot(2, 0) == ((0, 0), 6)
    assert tile_slot(0, 31) == ((0, 0), 57)
    assert tile_slot(4, 0) == ((0, 0), 30)
    assert tile_slot(4, 1) == ((0, 0), 61)
    assert tile_slot(0, 32) == ((0, 1), 0)
    assert tile_slot(3, 258) == ((0, 64), 45)  # leaf 23 of the tile completes it
    assert tile_slot(5, 0) == ((1, 0), 0)
    assert tile_slot(9, 3) == ((1, 1), 61)
    assert tile_slot(63, 1) == ((12, 0), 29)
    assert tile_slot(62, 2**62) == ((12, 2**59), 6)


def test_tile_slots_of_one_tile_are_its_creation_order() -> None:
    order = [node for node in creation_order(32) if node[0] < TILE]
    assert [tile_slot(*node) for node in order] == [((0, 0), s) for s in range(62)]
    assert list(created_nodes(0, 32)) == creation_order(32)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3_000), st.integers(0, 3_000))
def test_created_nodes_are_the_new_nodes_in_creation_order(a: int, b: int) -> None:
    old, new = min(a, b), max(a, b)
    created = list(created_nodes(old, new))
    existing = set(all_nodes(old))
    assert created == [n for n in creation_order(new) if n not in existing]
    assert len(created) == perfect_node_count(new) - perfect_node_count(old)
    assert perfect_node_count(new) == len(all_nodes(new))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40_000))
def test_the_nodes_of_a_tile_at_any_size_are_a_prefix_of_its_slots(size: int) -> None:
    slots: dict[TileId, list[int]] = {}
    for node in creation_order(size):
        tile, slot = tile_slot(*node)
        assert tile == tile_of(*node)
        slots.setdefault(tile, []).append(slot)
    for tile, found in slots.items():
        assert found == list(range(len(found)))
        assert tile_width(tile, size) == len(found)
    for stratum in range(4):
        # tiles the tree does not reach yet are empty
        assert tile_width((stratum, (size >> 5 * stratum) // 32 + 1), size) == 0


def test_tile_width() -> None:
    assert tile_width((0, 0), 0) == 0
    assert tile_width((0, 0), 1) == 1
    assert tile_width((0, 0), 3) == 4
    assert tile_width((0, 0), 31) == 31 + 15 + 7 + 3 + 1
    assert tile_width((0, 0), 32) == tile_width((0, 0), 10**9) == 62
    assert tile_width((0, 1), 32) == 0
    assert tile_width((0, 1), 40) == 8 + 4 + 2 + 1
    assert tile_width((1, 0), 31) == 0
    assert tile_width((1, 0), 32 * 7 + 5) == 7 + 3 + 1
    assert tile_width((2, 0), 1 << 10) == 1
    with pytest.raises(ValueError):
        tile_width((0, 0), -1)


def test_tile_value_known_bytes() -> None:
    tiles = TileStore()
    log = MerkleLog(0, tiles.read)
    l0, l1, l2 = hashes([b"a", b"b", b"c"])
    tiles.write(log.extension([l0, l1, l2]))
    assert tiles.tiles == {(0, 0): l0 + l1 + merkle.node_hash(l0, l1) + l2}
    log = MerkleLog(3, tiles.read)
    l3 = merkle.leaf_hash(b"d")
    tiles.write(log.extension([l3]))
    h01, h23 = merkle.node_hash(l0, l1), merkle.node_hash(l2, l3)
    assert tiles.tiles == {(0, 0): l0 + l1 + h01 + l2 + l3 + h23 + merkle.node_hash(h01, h23)}
    assert tile_hash(tiles.tiles[(0, 0)], 5) == h23
    assert tile_hash(tiles.tiles[(0, 0)], 7) is None


def test_full_tiles_and_a_second_stratum() -> None:
    tiles = TileStore()
    log = MerkleLog(0, tiles.read)
    leaves = hashes(entries_for(b"f", 70))
    tiles.write(log.extension(leaves))
    assert set(tiles.tiles) == {(0, 0), (0, 1), (0, 2), (1, 0)}
    assert [len(tiles.tiles[t]) // 32 for t in sorted(tiles.tiles)] == [62, 62, 6 + 3 + 1, 2 + 1]
    assert tiles.tiles[(0, 1)][:32] == leaves[32]
    # the top of tile (0, 1) is on level 4; tile (1, 0) starts with the level-5 nodes
    assert tile_hash(tiles.tiles[(0, 1)], 61) == merkle.root_from_leaf_hashes(leaves[48:64])
    assert tile_hash(tiles.tiles[(1, 0)], 0) == merkle.root_from_leaf_hashes(leaves[:32])
    assert tile_hash(tiles.tiles[(1, 0)], 1) == merkle.root_from_leaf_hashes(leaves[32:64])
    assert tile_hash(tiles.tiles[(1, 0)], 2) == merkle.root_from_leaf_hashes(leaves[:64])


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 80), max_size=8), st.binary(max_size=4))
def test_tile_store_gives_the_reference_at_every_past_size(batches: list[int], salt: bytes) -> None:
    tiles = TileStore()
    log = MerkleLog(0, tiles.read)
    entries: list[bytes] = []
    for batch in batches:
        new = entries_for(salt, batch, len(entries))
        entries += new
        extension = log.extension(hashes(new))
        tiles.write(extension)
        log.adopt(extension)
        log.persisted()
        for tile, value in tiles.tiles.items():
            assert len(value) == 32 * tile_width(tile, len(entries))
        # a fresh log reads everything from the tiles
        log = MerkleLog(len(entries), tiles.read)
    n = len(entries)
    assert log.root() == ref.mth(entries)
    for size in range(n + 1):
        assert log.root(size) == ref.mth(entries[:size])
    for size in range(1, n + 1, 7):
        for index in range(0, size, 5):
            assert log.inclusion_proof(index, size) == ref.path(index, entries[:size])
        for first in range(1, size + 1, 6):
            assert log.consistency_proof(first, size) == ref.proof(first, entries[:size])


def test_tile_key_layout() -> None:
    # b"t" || stratum || tile number (8 bytes BE)
    assert tile_key((0, 0)) == b"t\x00" + bytes(8)
    assert tile_key((0, 33)) == b"t\x00" + (33).to_bytes(8, "big")
    assert tile_key((3, 258)) == b"t\x03" + (258).to_bytes(8, "big")
    assert tile_key((12, 2**63)) == b"t\x0c\x80" + bytes(7)
    keys = [tile_key((s, t)) for s in range(3) for t in (0, 1, 255, 256, 2**40)]
    assert keys == sorted(keys)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 51), st.integers(0, 2**64 - 1))
def test_tile_key_round_trips(stratum: int, number: int) -> None:
    key = tile_key((stratum, number))
    assert len(key) == 10 and key[:1] == b"t"
    assert parse_tile_key(key) == (stratum, number)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=9, max_size=9))
def test_parse_tile_key_accepts_only_keys_tile_key_makes(tail: bytes) -> None:
    key = b"t" + tail
    try:
        tile = parse_tile_key(key)
    except Corruption:
        return
    assert tile_key(tile) == key


@pytest.mark.parametrize(
    "key",
    [
        b"",
        b"m\x00" + bytes(8) + b"\x00",  # the former one-key-per-node layout
        b"t\x00" + bytes(7),
        b"t\x00" + bytes(9),
        b"x\x00" + bytes(8),
        b"t\x34" + bytes(8),  # stratum 52 starts at level 260
    ],
)
def test_parse_tile_key_rejects_foreign_keys(key: bytes) -> None:
    with pytest.raises(Corruption):
        parse_tile_key(key)


@pytest.mark.parametrize(("level", "index"), [(-1, 0), (256, 0), (0, -1), (0, 1 << 64)])
def test_tile_slot_rejects_unplaceable_nodes(level: int, index: int) -> None:
    with pytest.raises(ValueError):
        tile_slot(level, index)


def test_tile_hash_and_additions_check_their_arguments() -> None:
    with pytest.raises(ValueError):
        tile_hash(bytes(62 * 32), 62)
    with pytest.raises(ValueError):
        tile_hash(b"", -1)
    digest = merkle.leaf_hash(b"x")
    assert tile_additions(iter([((0, 32), digest), ((0, 33), digest)])) == {(0, 1): (0, digest * 2)}
    with pytest.raises(ValueError):  # slot 3 does not follow slot 0
        tile_additions(iter([((0, 0), digest), ((0, 2), digest)]))
    with pytest.raises(ValueError):
        tile_additions(iter([((0, 0), digest[:31])]))


def path_siblings(leaf: int, size: int) -> list[NodeId]:
    """The audit path's nodes that are siblings, one per level: all but the perfect nodes
    under the path's ephemeral node on the right border of the tree (if any)."""
    nodes = merkle.inclusion_nodes(leaf, size)
    return [*nodes.ids[: nodes.begin], *nodes.ids[nodes.end :]]


@pytest.mark.parametrize("size", [1_000_000, 2**20, 12_345])
def test_an_audit_path_spans_few_tiles(size: int) -> None:
    strata = -(-(size - 1).bit_length() // TILE)
    for leaf in (0, 1, size // 3, size // 2 + 7, size - 12_345, size - 1):
        siblings = path_siblings(leaf, size)
        tiles = {tile_slot(*node)[0] for node in siblings}
        assert len(tiles) <= strata
        assert tiles == {tile_of(*node) for node in siblings}


# --- appending and roots ---------------------------------------------------------------------


def test_empty_log() -> None:
    log = MerkleLog(0, reader({}))
    assert log.size == 0
    assert log.root() == log.root(0) == merkle.EMPTY_ROOT
    assert log.consistency_proof(0, 0) == []
    assert log.append([]) == {}
    with pytest.raises(Malformed):
        log.inclusion_proof(0, 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=12), st.binary(max_size=4))
def test_batched_appends_match_mth_at_every_size(batches: list[int], salt: bytes) -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    leaf_hashes: list[bytes] = []
    for batch in batches:
        new = hashes(entries_for(salt, batch, len(leaf_hashes)))
        old_size = len(leaf_hashes)
        created = log.append(new)
        leaf_hashes += new
        assert log.size == len(leaf_hashes)
        assert set(created) == new_perfect_nodes(old_size, len(leaf_hashes))
        for (level, index), digest in created.items():
            leaves = leaf_hashes[index << level : (index + 1) << level]
            assert digest == merkle.root_from_leaf_hashes(leaves)
        assert log.root() == merkle.root_from_leaf_hashes(leaf_hashes)
        store.update(created)
        log.persisted()
    for size in range(len(leaf_hashes) + 1):
        assert log.root(size) == merkle.root_from_leaf_hashes(leaf_hashes[:size])
    entries = entries_for(salt, len(leaf_hashes))
    assert log.root() == ref.mth(entries)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 200), st.data())
def test_log_proofs_equal_the_reference(size: int, data: st.DataObject) -> None:
    entries = entries_for(b"p", size)
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries))
    second = data.draw(st.integers(1, size))
    index = data.draw(st.integers(0, second - 1))
    first = data.draw(st.integers(1, second))
    assert log.inclusion_proof(index, second) == ref.path(index, entries[:second])
    assert log.consistency_proof(first, second) == ref.proof(first, entries[:second])
    merkle.verify_inclusion(
        merkle.leaf_hash(entries[index]),
        index,
        second,
        log.inclusion_proof(index, second),
        log.root(second),
    )
    merkle.verify_consistency(
        first, second, log.consistency_proof(first, second), log.root(first), log.root(second)
    )


def test_proof_arguments_out_of_range_are_malformed() -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries_for(b"r", 10)))
    for call in (
        lambda: log.root(11),
        lambda: log.root(-1),
        lambda: log.inclusion_proof(10, 10),
        lambda: log.inclusion_proof(3, 11),
        lambda: log.inclusion_proof(-1, 5),
        lambda: log.consistency_proof(4, 11),
        lambda: log.consistency_proof(6, 5),
    ):
        with pytest.raises(Malformed):
            call()


def test_append_rejects_bad_leaf_hashes_before_changing_anything() -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries_for(b"v", 5)))
    root = log.root()
    with pytest.raises(Malformed):
        log.append([merkle.leaf_hash(b"ok"), b"short"])
    assert (log.size, log.root(), log.pending) == (5, root, {})


# --- persistence protocol --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 150), st.lists(st.integers(0, 30), min_size=1, max_size=5))
def test_reopening_continues_identically(size: int, batches: list[int]) -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries_for(b"o", size)))
    reopened = MerkleLog(size, reader(dict(store)))
    assert reopened.root() == log.root()
    start = size
    for batch in batches:
        new = hashes(entries_for(b"o", batch, start))
        start += batch
        assert reopened.append(new) == log.append(new)
        assert reopened.root() == log.root()
        assert reopened.size == log.size == start
    if start:
        assert reopened.inclusion_proof(0, start) == log.inclusion_proof(0, start)
        assert reopened.consistency_proof(1, start) == log.consistency_proof(1, start)


def test_reads_work_before_persisting() -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries_for(b"q", 9)))
    entries = entries_for(b"q", 23)
    log.append(hashes(entries[9:15]))
    log.append(hashes(entries[15:]))
    assert len(store) == len(new_perfect_nodes(0, 9))
    assert set(log.pending) == new_perfect_nodes(9, 23)
    assert log.root() == ref.mth(entries)
    assert log.root(17) == ref.mth(entries[:17])
    assert log.inclusion_proof(20, 23) == ref.path(20, entries)
    assert log.consistency_proof(9, 23) == ref.proof(9, entries)
    store.update(log.pending)
    log.persisted()
    assert log.pending == {}
    assert MerkleLog(23, reader(store)).root() == ref.mth(entries)


def test_discard_pending_rolls_back_to_the_last_persisted_state() -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries_for(b"d", 11)))
    root = log.root()
    log.append(hashes(entries_for(b"x", 6)))
    log.append(hashes(entries_for(b"y", 3)))
    assert log.size == 20
    log.discard_pending()
    assert (log.size, log.root(), log.pending) == (11, root, {})
    with pytest.raises(Malformed):
        log.root(12)

    entries = entries_for(b"d", 16)
    created = log.append(hashes(entries[11:]))
    assert set(created) == new_perfect_nodes(11, 16)
    assert log.root() == ref.mth(entries)
    assert log.inclusion_proof(12, 16) == ref.path(12, entries)


def test_extension_leaves_the_log_alone_until_adopted() -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries_for(b"e", 11)))
    root = log.root()
    entries = entries_for(b"e", 30)
    extension = log.extension(hashes(entries[11:]))
    assert (log.size, log.root(), log.pending) == (11, root, {})
    assert (extension.base_size, extension.size) == (11, 30)
    assert extension.root == ref.mth(entries)
    nodes = dict(extension.nodes())
    assert list(nodes) == list(created_nodes(11, 30))
    assert set(nodes) == new_perfect_nodes(11, 30)
    log.adopt(extension)
    assert (log.size, log.root(), log.pending) == (30, ref.mth(entries), nodes)
    assert log.inclusion_proof(3, 30) == ref.path(3, entries)
    assert MerkleLog(0, reader({})).extension([]).root == merkle.EMPTY_ROOT


def test_adopt_refuses_an_extension_of_another_log() -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries_for(b"a", 11)))
    extension = log.extension(hashes(entries_for(b"a", 4, 11)))
    # the log grew since: the extension no longer starts where the log ends
    log.append(hashes(entries_for(b"z", 1)))
    with pytest.raises(ValueError):
        log.adopt(extension)
    assert log.size == 12
    # back at the same size, it fits again
    log.discard_pending()
    log.adopt(extension)
    assert log.root() == ref.mth(entries_for(b"a", 15))
    # same size, other leaves: the border differs
    other: Store = {}
    stranger = MerkleLog(0, reader(other))
    append_persisted(stranger, other, hashes(entries_for(b"b", 11)))
    with pytest.raises(ValueError):
        stranger.adopt(log.extension(hashes(entries_for(b"a", 4, 15))))
    with pytest.raises(ValueError):
        stranger.adopt(MerkleLog(11, reader(store)).extension(hashes(entries_for(b"a", 4, 11))))
    assert (stranger.size, stranger.pending) == (11, {})


def test_extension_checks_its_digests() -> None:
    log = MerkleLog(0, reader({}))
    extension = log.extension(hashes(entries_for(b"c", 5)))
    assert len(extension.digests) == 32 * perfect_node_count(5)
    with pytest.raises(ValueError):
        Extension(0, (), 5, extension.border, extension.digests[:-32])
    with pytest.raises(ValueError):
        Extension(6, (), 5, extension.border, b"")


def test_discard_right_after_construction_keeps_the_opened_state() -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries_for(b"c", 7)))
    reopened = MerkleLog(7, reader(store))
    reopened.append(hashes(entries_for(b"z", 2)))
    reopened.discard_pending()
    assert (reopened.size, reopened.root()) == (7, log.root())


# --- corruption ------------------------------------------------------------------------------


def test_missing_node_is_corruption() -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries_for(b"m", 13)))
    del store[(1, 2)]
    with pytest.raises(Corruption, match=r"level 1, index 2"):
        log.inclusion_proof(6, 13)
    with pytest.raises(Corruption, match=r"level 1, index 2"):
        log.root(6)
    assert log.root() == merkle.root_from_leaf_hashes(hashes(entries_for(b"m", 13)))
    del store[(2, 2)]
    with pytest.raises(Corruption, match=r"level 2, index 2"):
        MerkleLog(13, reader(store))


def test_stored_hash_of_the_wrong_size_is_corruption() -> None:
    store: Store = {}
    log = MerkleLog(0, reader(store))
    append_persisted(log, store, hashes(entries_for(b"w", 4)))
    store[(0, 1)] = b"\x00" * 31
    with pytest.raises(Corruption):
        log.inclusion_proof(0, 4)


# --- cost ------------------------------------------------------------------------------------


def test_reads_are_logarithmic() -> None:
    size = 100_000
    store: Store = {}
    log = MerkleLog(0, reader(store))
    for start in range(0, size, 5_000):
        append_persisted(log, store, hashes(entries_for(b"n", 5_000, start)))
    height = math.ceil(math.log2(size))

    counter = CountingStore(store)
    reopened = MerkleLog(size, counter.read)
    # Construction reads the compact range of [0, size): one node per set bit of size.
    assert counter.reads == size.bit_count()
    assert reopened.root() == log.root()

    counter.reads = 0
    store.update(reopened.append(hashes(entries_for(b"n", 3, size))))
    reopened.persisted()
    assert counter.reads == 0

    size += 3
    probes = [(0, size), (size - 1, size), (12_345, size), (65_535, 65_537), (99_999, 100_001)]
    for index, tree_size in probes:
        counter.reads = 0
        proof = reopened.inclusion_proof(index, tree_size)
        # Siblings below the fork level, the nodes under the ephemeral node (all below it)
        # and the left siblings above it: at most twice the height.
        assert counter.reads <= 2 * height
        assert len(proof) <= height
    for first, second in [(1, size), (size - 1, size), (54_321, size), (65_536, 99_999)]:
        counter.reads = 0
        reopened.consistency_proof(first, second)
        # The same path nodes plus the seed subtree of the first tree.
        assert counter.reads <= 2 * height + 1
    for tree_size in (1, 65_535, 77_777, size - 1):
        counter.reads = 0
        reopened.root(tree_size)
        # One node per set bit of the size.
        assert counter.reads == tree_size.bit_count() <= height
