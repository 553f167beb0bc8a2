"""The LevelDB store (PROTOCOL §12.2): blocks, indexes, the Merkle log, reopen and crash safety."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plyvel
import pytest

from ledger import codec, events, merkle, smt
from ledger.blocks import Block, Commit
from ledger.crypto import PrivateKey
from ledger.errors import Conflict, Corruption, Malformed, UnsupportedFormat
from ledger.events import Admit, Derive, Grant, Register, Revoke, SignedEvent, Transfer, Use
from ledger.genesis import Genesis
from ledger.merkle_log import TILE_HEIGHT, parse_tile_key, tile_key, tile_slot, tile_width
from ledger.rules import EventLocation, dataset_key
from ledger.store import FORMAT_VERSION, META, TILE_CACHE, Store
from tests.ledger.helpers import ChainBuilder, make_genesis, make_key

ROOT = Path(__file__).resolve().parents[2]
SEED = 1_000


def new_dataset() -> bytes:
    return hashlib.sha256(os.urandom(32)).digest()


@dataclass
class Env:
    path: Path
    genesis: Genesis
    keys: list[PrivateKey]
    registrar: PrivateKey
    store: Store
    chain: ChainBuilder

    def reopen(self) -> None:
        self.store.close()
        self.store = Store(self.path, self.genesis)
        self.chain = ChainBuilder(self.store, self.keys)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    keys, registrar, genesis = make_genesis(seed=SEED)
    path = tmp_path / "chain"
    store = Store(path, genesis)
    e = Env(path, genesis, keys, registrar, store, ChainBuilder(store, keys))
    yield e
    e.store.close()


def snapshot_db(db: Any) -> dict[bytes, bytes]:
    return dict(db.iterator())


def snapshot_path(path: Path) -> dict[bytes, bytes]:
    db = plyvel.DB(str(path))
    try:
        return snapshot_db(db)
    finally:
        db.close()


def registrations(env: Env, count: int) -> list[SignedEvent]:
    return [
        env.chain.ev(env.registrar, Register, dataset=new_dataset(), meta={"i": i}, open=False)
        for i in range(count)
    ]


def fill(env: Env, sizes: list[int]) -> list[list[SignedEvent]]:
    """Append one block per entry of `sizes` with that many registrations each."""
    blocks = []
    for size in sizes:
        batch = registrations(env, size)
        execution = env.chain.append(batch)
        assert len(execution.accepted) == size
        blocks.append(batch)
    return blocks


# --- append and read back -----------------------------------------------------------------


def test_fresh_store(env: Env) -> None:
    store = env.store
    assert store.height == 0
    assert store.tree_size == 0
    assert store.root() == merkle.EMPTY_ROOT
    assert store.head_hash == env.genesis.hash()
    assert store.state_root == smt.EMPTY
    assert store.head_time == env.genesis.genesis_time
    assert store.header(1) is None
    assert store.commit(1) is None
    assert store.block(1) is None
    assert list(store.iter_events()) == []
    with pytest.raises(Corruption):
        store.envelope(0)


def test_append_and_read_back(env: Env) -> None:
    store = env.store
    appended: list[tuple[Block, Commit, list[SignedEvent]]] = []
    leaf = 0
    for size in (3, 0, 1, 5):
        batch = registrations(env, size)
        execution = env.chain.execute(batch)
        block, commit = env.chain.seal(execution)
        store.append_block(block, commit, execution)
        appended.append((block, commit, batch))
        assert store.height == block.header.height
        assert store.head_hash == block.block_hash
        assert store.head_time == block.header.time
        assert store.tree_size == leaf + size
        assert store.state_root == block.header.state_root
        leaf += size
    leaf = 0
    for height, (block, commit, batch) in enumerate(appended, start=1):
        assert store.header(height) == block.header
        assert store.header_bytes(height) == block.header.encode()
        assert store.commit(height) == commit
        commit.verify(env.genesis.chain_id, env.genesis.validators)
        assert store.block(height) == block
        assert store.height_of(block.block_hash) == height
        assert store.block_leaves(height) == range(leaf, leaf + len(batch))
        assert block.header.prev == (
            env.genesis.hash() if height == 1 else appended[height - 2][0].block_hash
        )
        for offset, event in enumerate(batch):
            index = leaf + offset
            assert store.envelope(index) == event.envelope
            assert store.event_at(index).event_id == event.event_id
            assert store.event_at(index).body == event.body
            assert store.locate(event.event_id) == EventLocation(height, index)
        leaf += len(batch)
    assert [e.event_id for e in store.iter_events()] == [
        e.event_id for _, _, batch in appended for e in batch
    ]
    assert [e.event_id for e in store.iter_events(7)] == [
        e.event_id for _, _, batch in appended for e in batch
    ][7:]
    assert store.header(len(appended) + 1) is None
    assert store.height_of(hashlib.sha256(b"nope").digest()) is None
    assert store.locate(hashlib.sha256(b"nope").digest()) is None
    with pytest.raises(Corruption):
        store.envelope(store.tree_size)


def test_state_reads_follow_committed_blocks(env: Env) -> None:
    """Reads are cached, absences included; a committed block's writes replace them."""
    [[event]] = [registrations(env, 1)]
    key = dataset_key(event.body.dataset)
    assert env.store.state().get(key) is None
    duplicate = env.chain.execute([event, event])
    assert [len(duplicate.accepted), len(duplicate.rejected)] == [1, 1]
    env.chain.append([event])
    assert env.store.state().get(key) is not None
    assert env.store.state().get(key) == snapshot_db(env.store.db)[key]
    again = env.chain.execute([event])
    assert again.accepted == () and isinstance(again.rejected[0][1], Conflict)


def test_rejected_events_are_not_stored(env: Env) -> None:
    outsider = make_key(seed=SEED + 50)
    good = registrations(env, 2)
    bad = env.chain.ev(outsider, Register, dataset=new_dataset(), meta={}, open=False)
    execution = env.chain.append([good[0], bad, good[1]])
    assert [e.event_id for e in execution.accepted] == [good[0].event_id, good[1].event_id]
    assert env.store.tree_size == 2
    assert env.store.locate(bad.event_id) is None
    assert env.store.actor_leaves(outsider.public_key) == []


# --- indexes ------------------------------------------------------------------------------


def test_dataset_history_and_lineage_indexes(env: Env) -> None:
    chain, reg = env.chain, env.registrar
    alice, bob = make_key(seed=SEED + 51), make_key(seed=SEED + 52)
    chain.append(
        [
            chain.ev(reg, Admit, subject=k.public_key, role="participant", name=n)
            for k, n in ((alice, "A"), (bob, "B"))
        ]
    )
    d, other, e2, child, grand = (new_dataset() for _ in range(5))
    register = chain.ev(alice, Register, dataset=d, meta={}, open=False)
    noise = chain.ev(alice, Register, dataset=other, meta={}, open=False)
    grant = chain.ev(
        alice, Grant, dataset=d, to=bob.public_key, purposes=("x", "derive"), reshare=False
    )
    chain.append([noise, register, grant])
    use = chain.ev(bob, Use, dataset=d, purpose="x")
    noise_use = chain.ev(alice, Use, dataset=other, purpose="y")
    derive = chain.ev(bob, Derive, dataset=child, inputs=(d,), meta={})
    chain.append([use, noise_use, derive])
    revoke = chain.ev(alice, Revoke, grant=grant.event_id)
    both = chain.ev(alice, Derive, dataset=e2, inputs=(d, other), meta={})
    grandchild = chain.ev(bob, Derive, dataset=grand, inputs=(child,), meta={})
    transfer = chain.ev(alice, Transfer, dataset=other, to=bob.public_key)
    chain.append([revoke, both, grandchild, transfer])

    store = env.store

    def leaves(*evs: SignedEvent) -> list[int]:
        found = []
        for e in evs:
            location = store.locate(e.event_id)
            assert location is not None
            found.append(location.leaf_index)
        return found

    history = leaves(register, grant, use, derive, revoke, both)
    assert history == sorted(history)
    assert store.dataset_leaves(d) == history
    assert store.dataset_leaves(other) == leaves(noise, noise_use, both, transfer)
    assert store.dataset_leaves(child) == leaves(derive, grandchild)
    assert store.dataset_leaves(grand) == leaves(grandchild)
    assert store.dataset_leaves(new_dataset()) == []
    assert store.parents(child) == [d]
    assert sorted(store.parents(e2)) == sorted([d, other])
    assert store.parents(d) == []
    assert sorted(store.children(d)) == sorted([child, e2])
    assert store.children(other) == [e2]
    assert store.children(child) == [grand]
    assert store.parents(grand) == [child]


def test_actor_index_and_pagination(env: Env) -> None:
    chain, reg = env.chain, env.registrar
    alice = make_key(seed=SEED + 53)
    chain.append([chain.ev(reg, Admit, subject=alice.public_key, role="participant", name="A")])
    mine: list[SignedEvent] = []
    for _ in range(4):
        batch = [
            chain.ev(alice, Register, dataset=new_dataset(), meta={}, open=False) for _ in range(2)
        ]
        chain.append([*batch, *registrations(env, 1)])
        mine.extend(batch)
    store = env.store
    expected = [store.locate(e.event_id).leaf_index for e in mine]  # type: ignore[union-attr]
    assert store.actor_leaves(alice.public_key) == expected
    assert store.actor_leaves(alice.public_key, limit=3) == expected[:3]
    # next pages start strictly after the last leaf index seen
    assert store.actor_leaves(alice.public_key, after=expected[2], limit=3) == expected[3:6]
    assert store.actor_leaves(alice.public_key, after=expected[5], limit=3) == expected[6:]
    assert store.actor_leaves(alice.public_key, after=expected[-1]) == []
    # `after` need not be one of the actor's own leaves
    assert store.actor_leaves(alice.public_key, after=expected[0] + 1) == [
        i for i in expected if i > expected[0] + 1
    ]
    pages: list[int] = []
    after = -1
    while True:
        page = store.actor_leaves(alice.public_key, after=after, limit=2)
        if not page:
            break
        pages.extend(page)
        after = page[-1]
    assert pages == expected
    # the registrar's own events are indexed too
    assert len(store.actor_leaves(reg.public_key)) == 1 + 4


# --- the Merkle log -----------------------------------------------------------------------


def test_roots_at_every_size_and_proofs(env: Env) -> None:
    fill(env, [1, 2, 0, 4, 3, 1, 6])
    store = env.store
    n = store.tree_size
    assert n == 17
    leaf_hashes = [merkle.leaf_hash(store.envelope(i)) for i in range(n)]
    roots = [merkle.root_from_leaf_hashes(leaf_hashes[:size]) for size in range(n + 1)]
    for size in range(n + 1):
        assert store.root(size) == roots[size]
    assert store.root() == roots[n]
    leaf = 0
    for height in range(1, store.height + 1):
        header = store.header(height)
        assert header is not None
        count = len(store.block_leaves(height))
        assert header.tree_size == leaf + count
        assert header.tree_root == roots[header.tree_size]
        assert header.events_root == merkle.root_from_leaf_hashes(leaf_hashes[leaf : leaf + count])
        leaf += count
    for size in range(1, n + 1):
        for index in range(size):
            proof = store.inclusion_proof(index, size)
            merkle.verify_inclusion(leaf_hashes[index], index, size, proof, roots[size])
    for second in range(n + 1):
        for first in range(second + 1):
            proof = store.consistency_proof(first, second)
            merkle.verify_consistency(first, second, proof, roots[first], roots[second])
    with pytest.raises(Malformed):
        store.root(n + 1)
    with pytest.raises(Malformed):
        store.inclusion_proof(0, n + 1)


def expected_tile_values(leaf_hashes: list[bytes]) -> dict[tuple[int, int], bytes]:
    """The tiles of a log, built from scratch: every perfect node, by the tile its level and
    index say, in the order an append loop creates them (by last leaf, then level)."""
    nodes: dict[tuple[int, int], bytes] = {}
    for level in range(len(leaf_hashes).bit_length()):
        width = 1 << level
        for index in range(len(leaf_hashes) >> level):
            part = leaf_hashes[index * width : (index + 1) * width]
            nodes[(level, index)] = merkle.root_from_leaf_hashes(part)
    tiles: dict[tuple[int, int], bytes] = {}
    for level, index in sorted(nodes, key=lambda n: (((n[1] + 1) << n[0]) - 1, n[0])):
        row = level % TILE_HEIGHT
        tile = (level // TILE_HEIGHT, index >> (TILE_HEIGHT - row))
        tiles[tile] = tiles.get(tile, b"") + nodes[(level, index)]
    return tiles


def test_merkle_tiles_on_disk(env: Env) -> None:
    store = env.store
    for size in (3, 0, 30, 7, 1):
        fill(env, [size])
        check_tiles(store)
        leaf_hashes = [merkle.leaf_hash(store.envelope(i)) for i in range(store.tree_size)]
        stored = {parse_tile_key(k): v for k, v in store.db.iterator(prefix=b"t")}
        assert stored == expected_tile_values(leaf_hashes)
    assert store.tree_size == 41
    first = store.db.get(tile_key((0, 0)))
    lh = [merkle.leaf_hash(store.envelope(i)) for i in range(4)]
    h01, h23 = merkle.node_hash(lh[0], lh[1]), merkle.node_hash(lh[2], lh[3])
    assert first[: 7 * 32] == lh[0] + lh[1] + h01 + lh[2] + lh[3] + h23 + merkle.node_hash(h01, h23)
    assert len(first) == 62 * 32
    assert len(store.db.get(tile_key((0, 1)))) == (9 + 4 + 2 + 1) * 32
    assert len(store.db.get(tile_key((1, 0)))) == 32


def test_a_proof_reads_each_tile_once(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(env, [150, 150])
    env.reopen()
    store, size = env.store, env.store.tree_size
    reads: list[bytes] = []
    real = store.db

    class CountingDB:
        def get(self, key: bytes) -> bytes | None:
            reads.append(key)
            return real.get(key)

    store._reader = CountingDB()  # type: ignore[assignment]
    try:
        check_proof_reads(store, size, reads, monkeypatch)
    finally:
        store._reader = real


def check_proof_reads(
    store: Store, size: int, reads: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    store._tiles.clear()
    nodes = merkle.inclusion_nodes(5, size).ids
    proof = store.inclusion_proof(5, size)
    assert len(nodes) > 8
    assert sorted(reads) == sorted({tile_key(tile_slot(*node)[0]) for node in nodes})
    assert len(reads) == 3
    reads.clear()
    assert store.inclusion_proof(5, size) == proof
    assert reads == []
    # the cache is bounded; evicted tiles are read again
    monkeypatch.setattr("ledger.store.TILE_CACHE", 2)
    store._tiles.clear()
    assert store.inclusion_proof(5, size) == proof
    assert len(store._tiles) == 2 < len(reads)
    assert TILE_CACHE >= 8


def test_append_block_hashes_no_merkle_node(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(env, [5])
    calls: list[int] = []
    real = merkle.node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        calls.append(1)
        return real(left, right)

    monkeypatch.setattr(merkle, "node_hash", counting)
    execution = env.chain.execute(registrations(env, 11))
    block, commit = env.chain.seal(execution)
    assert len(calls) >= 11
    calls.clear()
    env.store.append_block(block, commit, execution)
    assert calls == []
    assert env.store.root() == block.header.tree_root
    monkeypatch.undo()
    env.reopen()
    leaf_hashes = [merkle.leaf_hash(env.store.envelope(i)) for i in range(16)]
    assert env.store.root() == merkle.root_from_leaf_hashes(leaf_hashes)


def test_damaged_right_edge_tile_stops_append(env: Env) -> None:
    fill(env, [40])
    store = env.store
    head = _head(store)
    key = tile_key((0, 1))
    store.db.put(key, store.db.get(key) + bytes(32))
    store._tiles.clear()
    with pytest.raises(Corruption, match=r"tile \(0, 1\) holds 512 bytes, expected 15 hashes"):
        env.chain.append(registrations(env, 2))
    assert _head(store) == head
    assert store.header(head[0] + 1) is None


# --- reopen -------------------------------------------------------------------------------


def test_reopen_restores_everything(env: Env) -> None:
    fill(env, [2, 3, 0, 1])
    store = env.store
    before = (
        store.height,
        store.tree_size,
        store.root(),
        store.state_root,
        store.head_hash,
        store.head_time,
    )
    proof = store.inclusion_proof(2, store.tree_size)
    env.reopen()
    store = env.store
    assert (
        store.height,
        store.tree_size,
        store.root(),
        store.state_root,
        store.head_hash,
        store.head_time,
    ) == before
    assert store.inclusion_proof(2, store.tree_size) == proof
    # further appends continue the same chain
    execution = env.chain.append(registrations(env, 2))
    assert store.height == before[0] + 1
    assert store.tree_size == before[1] + 2
    header = store.header(store.height)
    assert header is not None and header.prev == before[4]
    assert execution.tree_root == store.root()
    leaf_hashes = [merkle.leaf_hash(store.envelope(i)) for i in range(store.tree_size)]
    assert store.root() == merkle.root_from_leaf_hashes(leaf_hashes)
    env.reopen()
    assert env.store.root() == merkle.root_from_leaf_hashes(leaf_hashes)
    assert env.store.height == before[0] + 1


def test_reopen_empty_store(env: Env) -> None:
    env.reopen()
    assert env.store.height == 0
    assert env.store.head_hash == env.genesis.hash()
    fill(env, [1])
    assert env.store.height == 1


def test_open_same_path_twice_is_corruption(env: Env) -> None:
    with pytest.raises(Corruption) as info:
        Store(env.path, env.genesis)
    assert str(env.path) in str(info.value)
    # the first handle is unaffected
    fill(env, [1])
    assert env.store.height == 1


def test_store_of_another_genesis_is_corruption(env: Env) -> None:
    fill(env, [1])
    env.store.close()
    _, _, other = make_genesis(seed=SEED + 100, chain_id="other-chain")
    with pytest.raises(Corruption):
        Store(env.path, other)
    # same chain id, other validators
    _, _, other2 = make_genesis(seed=SEED + 200)
    assert other2.chain_id == env.genesis.chain_id
    with pytest.raises(Corruption):
        Store(env.path, other2)
    # the failed opens released the database
    env.store = Store(env.path, env.genesis)
    assert env.store.height == 1


def test_unreadable_meta_is_corruption(tmp_path: Path) -> None:
    _, _, genesis = make_genesis(seed=SEED)
    path = tmp_path / "db"
    db = plyvel.DB(str(path), create_if_missing=True)
    db.put(META, b"\xc1garbage")
    db.close()
    with pytest.raises(Corruption):
        Store(path, genesis)
    db = plyvel.DB(str(path))
    db.put(META, codec.encode({"genesis": genesis.hash()}))
    db.close()
    with pytest.raises(Corruption):
        Store(path, genesis)


def rewrite_meta(path: Path, **changes: Any) -> None:
    db = plyvel.DB(str(path))
    try:
        meta = codec.decode_map(db.get(META))
        meta.update(changes)
        db.put(META, codec.encode({k: v for k, v in meta.items() if v is not None}))
    finally:
        db.close()


@pytest.mark.parametrize("version", [None, 0, 1, 4, "3", True])
def test_store_of_another_format_is_refused(env: Env, version: object) -> None:
    fill(env, [3])
    env.store.close()
    # None: the META of every store written before tiles, which had no format version
    rewrite_meta(env.path, format=version)
    with pytest.raises(UnsupportedFormat, match="format version") as info:
        Store(env.path, env.genesis)
    assert str(env.path) in str(info.value)
    assert "unsupported" in str(info.value)
    rewrite_meta(env.path, format=FORMAT_VERSION)
    env.store = Store(env.path, env.genesis)
    assert env.store.tree_size == 3


def test_new_store_records_its_format(env: Env) -> None:
    meta = codec.decode_map(env.store.db.get(META))
    assert meta["format"] == FORMAT_VERSION == 3
    fill(env, [1])
    assert codec.decode_map(env.store.db.get(META))["format"] == FORMAT_VERSION


# --- crash consistency --------------------------------------------------------------------


class Boom(Exception):
    """The injected failure."""


class FailingBatch:
    def __init__(self, batch: Any, db: FailingDB) -> None:
        self._batch = batch
        self._db = db

    def put(self, key: bytes, value: bytes) -> None:
        self._db.puts += 1
        if self._db.should_fail(self._db.puts, key):
            raise Boom(f"injected failure at put {self._db.puts} ({key[:2]!r})")
        self._batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self._batch.delete(key)

    def __enter__(self) -> FailingBatch:
        self._batch.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._batch.__exit__(*exc)


class FailingDB:
    """Delegates to a real plyvel DB; batch puts raise when `should_fail(n, key)` says so."""

    def __init__(self, db: Any, should_fail: Callable[[int, bytes], bool]) -> None:
        self._db = db
        self.should_fail = should_fail
        self.puts = 0

    def write_batch(self, **kwargs: Any) -> FailingBatch:
        return FailingBatch(self._db.write_batch(**kwargs), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


FAIL_POINTS: dict[str, Callable[[int, bytes], bool]] = {
    "first-put": lambda n, key: n == 1,
    "third-put": lambda n, key: n == 3,
    "leaf": lambda n, key: key[:1] == b"l",
    "dataset-index": lambda n, key: key[:1] == b"D",
    "merkle-tile": lambda n, key: key[:1] == b"t",
    "rules-state": lambda n, key: key[:1] == b"s",
    "state-map-tile": lambda n, key: key[:1] == b"m" and len(key) > 1,
    "state-map-root": lambda n, key: key == smt.ROOT_KEY,
    "meta-last": lambda n, key: key == META,
}


def _head(store: Store) -> tuple[Any, ...]:
    return (
        store.height,
        store.tree_size,
        store.root(),
        store.state_root,
        store.head_hash,
        store.head_time,
        store.log.size,
    )


@pytest.mark.parametrize("point", sorted(FAIL_POINTS))
def test_failure_inside_append_block_leaves_previous_head(env: Env, point: str) -> None:
    fill(env, [2, 1])
    store = env.store
    head = _head(store)
    before = snapshot_db(store.db)
    batch = registrations(env, 3)
    execution = env.chain.execute(batch)
    block, commit = env.chain.seal(execution)
    real = store.db
    failing = FailingDB(real, FAIL_POINTS[point])
    store.db = failing
    try:
        with pytest.raises(Boom):
            store.append_block(block, commit, execution)
    finally:
        store.db = real
    assert failing.puts > 0
    # in memory: still the previous head
    assert _head(store) == head
    assert store.header(head[0] + 1) is None
    assert snapshot_db(real) == before
    for event in batch:
        assert store.locate(event.event_id) is None
    # on disk: exactly the previous head
    store.close()
    assert snapshot_path(env.path) == before
    env.store = store = Store(env.path, env.genesis)
    env.chain = ChainBuilder(store, env.keys)
    assert _head(store) == head
    # and the same block can now be appended
    execution = env.chain.execute(batch)
    assert len(execution.accepted) == 3
    again, again_commit = env.chain.seal(execution)
    assert again.block_hash == block.block_hash
    store.append_block(again, again_commit, execution)
    assert store.height == head[0] + 1
    assert store.tree_size == head[1] + 3
    assert store.root() == merkle.root_from_leaf_hashes(
        [merkle.leaf_hash(store.envelope(i)) for i in range(store.tree_size)]
    )


def test_failure_then_retry_without_reopen(env: Env) -> None:
    fill(env, [2])
    store = env.store
    head = _head(store)
    batch = registrations(env, 2)
    execution = env.chain.execute(batch)
    block, commit = env.chain.seal(execution)
    real = store.db
    store.db = FailingDB(real, FAIL_POINTS["merkle-tile"])
    with pytest.raises(Boom):
        store.append_block(block, commit, execution)
    store.db = real
    assert _head(store) == head
    # retry the very same block in the same process
    store.append_block(block, commit, execution)
    assert store.height == head[0] + 1
    assert store.root() == block.header.tree_root
    fill(env, [1])
    leaf_hashes = [merkle.leaf_hash(store.envelope(i)) for i in range(store.tree_size)]
    assert store.root() == merkle.root_from_leaf_hashes(leaf_hashes)
    env.reopen()
    assert env.store.root() == merkle.root_from_leaf_hashes(leaf_hashes)


class ExplodingWrites(dict):
    """State writes whose iteration fails half way through."""

    def items(self) -> Any:
        pairs = list(super().items())
        assert len(pairs) >= 2

        def gen() -> Iterator[tuple[bytes, bytes]]:
            yield from pairs[: len(pairs) // 2]
            raise Boom("state writes iteration failed")

        return gen()


def test_failure_while_iterating_state_writes(env: Env) -> None:
    fill(env, [1, 1])
    store = env.store
    head = _head(store)
    before = snapshot_db(store.db)
    batch = registrations(env, 2)
    execution = env.chain.execute(batch)
    block, commit = env.chain.seal(execution)
    broken = dataclasses.replace(execution, state_writes=ExplodingWrites(execution.state_writes))
    with pytest.raises(Boom):
        store.append_block(block, commit, broken)
    assert _head(store) == head
    assert snapshot_db(store.db) == before
    store.close()
    assert snapshot_path(env.path) == before
    env.reopen()
    env.store.append_block(block, commit, execution)
    assert env.store.height == head[0] + 1


# --- crash by SIGKILL ---------------------------------------------------------------------

CHILD = r"""
import hashlib, os, sys
from ledger.events import Register, Use
from ledger.store import Store
from tests.ledger.helpers import ChainBuilder, make_genesis

keys, registrar, genesis = make_genesis(seed=int(sys.argv[2]))
store = Store(sys.argv[1], genesis)
chain = ChainBuilder(store, keys)
for n in range(5000):
    batch = []
    for _ in range(3):
        d = hashlib.sha256(os.urandom(32)).digest()
        batch.append(chain.ev(registrar, Register, dataset=d, meta={"n": n}, open=False))
        batch.append(chain.ev(registrar, Use, dataset=d, purpose="p"))
    chain.append(batch)
    if n == 0:
        print("ready", flush=True)
"""


def check_tiles(store: Store) -> None:
    """Every tile the log has reached is stored with exactly its nodes so far, and no other."""
    size = store.tree_size
    stored = {
        parse_tile_key(key): value
        for key, value in store.db.iterator(prefix=b"t", fill_cache=False)
    }
    expected = {
        (stratum, number)
        for stratum in range(-(-size.bit_length() // TILE_HEIGHT))
        for number in range(-(-(size >> TILE_HEIGHT * stratum) // 32))
    }
    assert set(stored) == expected
    for tile, value in stored.items():
        assert len(value) == 32 * tile_width(tile, size) > 0


def check_consistent(store: Store, genesis: Genesis) -> None:
    height = store.height
    assert height >= 1
    header = store.header(height)
    assert header is not None
    assert header.block_hash == store.head_hash
    assert header.tree_size == store.tree_size
    assert header.tree_root == store.root()
    assert header.state_root == store.state_root
    assert store.header(height + 1) is None
    assert store.commit(height + 1) is None
    envelopes = [store.envelope(i) for i in range(store.tree_size)]
    with pytest.raises(Corruption):
        store.envelope(store.tree_size)
    check_tiles(store)
    assert merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in envelopes]) == (
        header.tree_root
    )
    prev, leaf = genesis.hash(), 0
    for h in range(1, height + 1):
        hdr = store.header(h)
        commit = store.commit(h)
        assert hdr is not None and commit is not None
        assert hdr.prev == prev
        assert commit.block_hash == hdr.block_hash
        assert store.height_of(hdr.block_hash) == h
        assert store.block_leaves(h) == range(leaf, hdr.tree_size)
        leaf, prev = hdr.tree_size, hdr.block_hash
    commit = store.commit(height)
    assert commit is not None
    commit.verify(genesis.chain_id, genesis.validators)
    for index in (0, store.tree_size - 1):
        event = events.decode_envelope(envelopes[index], chain_id=genesis.chain_id)
        location = store.locate(event.event_id)
        assert location is not None and location.leaf_index == index


def test_sigkill_during_appends_leaves_a_consistent_store(tmp_path: Path) -> None:
    seed = SEED + 300
    _, _, genesis = make_genesis(seed=seed)
    path = tmp_path / "killed"
    rng = random.Random()
    heights = []
    deadline = time.monotonic() + 20
    for _ in range(3):
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(seed)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as child:
            try:
                assert child.stdout is not None
                line = child.stdout.readline()
                assert line == b"ready\n", child.stderr.read() if child.stderr else line
                time.sleep(rng.uniform(0.05, 0.4))
                assert child.poll() is None, "the child stopped before it was killed"
                child.send_signal(signal.SIGKILL)
                child.wait(timeout=10)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        assert child.returncode == -signal.SIGKILL
        with Store(path, genesis) as store:
            check_consistent(store, genesis)
            heights.append(store.height)
        assert time.monotonic() < deadline
    assert heights == sorted(heights)
    assert heights[-1] > heights[0]
