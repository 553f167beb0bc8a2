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
from ledger.merkle_log import MerkleLog, ReadNode, node_key, parse_node_key
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


# --- node keys -------------------------------------------------------------------------------


TILE = 5  # levels per stratum of the on-disk layout


def tile_of(level: int, index: int) -> tuple[int, int]:
    """(stratum, tile number) of a node, computed independently of node_key."""
    row = level % TILE
    return level // TILE, index >> (TILE - row)


def all_nodes(size: int) -> list[NodeId]:
    return [(level, i) for level in range(size.bit_length()) for i in range(size >> level)]


def test_node_key_layout() -> None:
    # b"m" || stratum || tile (8 bytes BE) || position in the tile, top row first.
    assert node_key(0, 0) == b"m\x00" + bytes(8) + bytes([30])
    assert node_key(0, 33) == b"m\x00" + (1).to_bytes(8, "big") + bytes([31])
    assert node_key(4, 0) == b"m\x00" + bytes(8) + b"\x00"
    assert node_key(4, 3) == b"m\x00" + (1).to_bytes(8, "big") + b"\x01"
    assert node_key(3, 258) == b"m\x00" + (64).to_bytes(8, "big") + bytes([4])
    assert node_key(5, 0) == b"m\x01" + bytes(8) + bytes([30])
    assert node_key(63, 1) == b"m\x0c" + bytes(8) + bytes([3])
    assert parse_node_key(node_key(17, 2**40 + 5)) == (17, 2**40 + 5)
    # One tile: its 62 positions are exactly 0..61, every row in index order.
    tile = sorted(node_key(level, i) for level in range(5) for i in range(32 >> level))
    assert [key[-1] for key in tile] == list(range(62))
    assert {key[:-1] for key in tile} == {b"m\x00" + bytes(8)}
    assert tile[:2] == [node_key(4, 0), node_key(4, 1)]
    assert tile[-32:] == [node_key(0, i) for i in range(32)]


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 63), st.integers(0, 2**64 - 1))
def test_node_key_round_trips(level: int, index: int) -> None:
    key = node_key(level, index)
    assert len(key) == 11 and key[:1] == b"m"
    assert parse_node_key(key) == (level, index)


@settings(max_examples=500, deadline=None)
@given(
    st.tuples(st.integers(0, 63), st.integers(0, 2**64 - 1)),
    st.tuples(st.integers(0, 63), st.integers(0, 2**64 - 1)),
)
def test_node_key_is_injective(a: NodeId, b: NodeId) -> None:
    assert (node_key(*a) == node_key(*b)) == (a == b)


def test_node_key_is_injective_on_a_whole_tree() -> None:
    nodes = all_nodes(3_000)
    assert len({node_key(*node) for node in nodes}) == len(nodes)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=10, max_size=10))
def test_parse_node_key_accepts_only_keys_node_key_makes(tail: bytes) -> None:
    key = b"m" + tail
    try:
        level, index = parse_node_key(key)
    except Corruption:
        return
    assert node_key(level, index) == key


@pytest.mark.parametrize(("level", "index"), [(-1, 0), (256, 0), (0, -1), (0, 1 << 64)])
def test_node_key_rejects_unencodable_nodes(level: int, index: int) -> None:
    with pytest.raises(ValueError):
        node_key(level, index)


@pytest.mark.parametrize(
    "key",
    [
        b"",
        b"m\x00" + bytes(8),  # the former layout: level || index
        b"x\x00" + bytes(9),
        b"m\x00" + bytes(8) + bytes([62]),  # no position 62 in a tile
        b"m\x33" + bytes(8) + b"\x00",  # level 51 * 5 + 4 = 259
        b"m\x00" + b"\xff" * 8 + b"\x00",  # index >= 2**64
    ],
)
def test_parse_node_key_rejects_foreign_keys(key: bytes) -> None:
    with pytest.raises(Corruption):
        parse_node_key(key)


def test_tiles_are_contiguous_runs_in_key_order() -> None:
    size = 5_000
    ordered = sorted(all_nodes(size), key=lambda node: node_key(*node))
    runs = [tile_of(*ordered[0])]
    for node in ordered[1:]:
        if tile_of(*node) != runs[-1]:
            runs.append(tile_of(*node))
    # Each tile is met once, in one run; strata in order from the leaves up.
    assert len(runs) == len(set(runs))
    assert runs == sorted(runs)
    full = [t for t in runs if t[0] == 0][:-1]
    assert all(sum(1 for n in ordered if tile_of(*n) == t) == 62 for t in full[:5])


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
        tiles = {tile_of(*node) for node in siblings}
        assert len(tiles) <= strata
        assert {node_key(*node)[:-1] for node in siblings} == {
            b"m" + bytes([s]) + t.to_bytes(8, "big") for s, t in tiles
        }


def test_an_audit_path_is_a_few_short_runs_of_adjacent_keys() -> None:
    size = 3 * 2**14 + 5
    order = sorted(all_nodes(size), key=lambda node: node_key(*node))
    rank = {node: i for i, node in enumerate(order)}
    strata = -(-(size - 1).bit_length() // TILE)
    for leaf in range(0, size, 997):
        ranks = sorted(rank[node] for node in path_siblings(leaf, size))
        runs = [[ranks[0]]]
        for r in ranks[1:]:
            if r - runs[-1][0] < 62:
                runs[-1].append(r)
            else:
                runs.append([r])
        # Runs of at most 62 adjacent keys (one tile, ~3 KiB), one per stratum.
        assert len(runs) <= strata, (leaf, runs)


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
