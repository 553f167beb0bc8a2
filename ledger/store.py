"""The LevelDB-backed chain: blocks, commits, events, indexes, Merkle nodes and rules state.

`Store.append_block` writes everything a block changes in ONE synced, transactional batch,
so a crash at any point leaves the previous block as the head and nothing half-written.
Reads never scan the whole log: the Merkle log keeps complete-subtree hashes, and every
query walks a key prefix.

The rules state's authenticated records also live in the state map (`ledger.smt`), whose
root is the header's `state_root`; a block's changed map tiles go into the same batch, so a
crash never leaves a root that disagrees with the state.

`!meta` carries the store's format version (`FORMAT_VERSION`). A store of an older format
that a migration in `MIGRATIONS` upgrades is refused with `NeedsMigration` until
`migrate_store` has upgraded it in place (the node backs it up first); any other format, or a
store written before formats were versioned, is refused when opened.

A store started from a snapshot (`SnapshotInstaller`, docs/PROTOCOL.md §20) holds the chain
from its `base` height on: the header and commit of `base`, the rules state and state map,
and the Merkle log's right-edge tiles at `base`, but no older block or event. Reads of what
it does not hold raise `Pruned`, never a silent gap.

Readers: `Store.view()` opens a `ChainView`, a LevelDB snapshot of the chain at its head that
another thread may read while the owner appends (bundles are built that way).

Key layout (all integers big-endian, fixed width):

    !meta                      format version, head height, tree size, state root, genesis hash,
                               base (the snapshot height the store started from, 0: genesis)
    H <height:8>               canonical header bytes
    C <height:8>               canonical commit
    B <height:8>               [first leaf index, event count]
    # <block hash>             height
    l <leaf:8>                 canonical envelope (the Merkle leaf)
    D <dataset> <leaf:8>       dataset history index
    G <dataset> <leaf:8>       the dataset's grants: leaf of each grant event -> grant id
    A <actor> <leaf:8>         actor index
    P <child> <parent>         lineage, upwards
    K <parent> <child>         lineage, downwards
    t <stratum:1><tile:8>      one Merkle tile: the hashes of its complete-subtree nodes that
                               exist so far, in creation order (merkle_log.tile_key)
    s...                       rules state (ledger.rules keys), including the event index
    m                          the state map's root entry (ledger.smt)
    m <t:1> <prefix>           one state-map tile (ledger.smt.tile_key)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import plyvel

from ledger import codec, events, merkle, smt
from ledger.blocks import Block, Commit, Header, ValidatorSet, verify_checkpoint
from ledger.errors import (
    Corruption,
    LedgerError,
    Malformed,
    Pruned,
    UnsupportedFormat,
    VerificationFailed,
)
from ledger.genesis import Genesis
from ledger.merkle_log import (
    Extension,
    MerkleLog,
    TileId,
    tile_additions,
    tile_hash,
    tile_key,
    tile_slot,
    tile_width,
)
from ledger.rules import (
    DATASET,
    PARTICIPANT,
    BlockContext,
    EventLocation,
    Rules,
    is_authenticated,
    lookup_event,
)
from ledger.state import StateOverlay, StateReadCache

META = b"!meta"
HEADER = b"H"
COMMIT = b"C"
BLOCK_RANGE = b"B"
BLOCK_BY_HASH = b"#"
LEAF = b"l"
DATASET_INDEX = b"D"
GRANT_INDEX = b"G"
ACTOR_INDEX = b"A"
LINEAGE_UP = b"P"
LINEAGE_DOWN = b"K"

STATE_PREFIX = b"s"
"""Every rules-state record (ledger.rules keys) starts with this byte: a snapshot carries
exactly the records under it, whatever they are."""

FORMAT_VERSION = 3
"""Version 3: `!meta` names the store's `base` (0: the whole chain from genesis; H: started
from a snapshot at height H, docs/PROTOCOL.md §20). Version 2 (the authenticated state map
(`m` keys), history commitments in the dataset records, grant indexes by slot, `state_root`
= the map's root) is upgraded in place by `MIGRATIONS[2]`. Version 1 (Merkle tiles,
`state_root` a hash chain of write sets) cannot be migrated: its blocks' headers carry the
old `state_root`, which this build's rules cannot reproduce, so its chain cannot be
re-validated; it is refused. Unversioned stores kept one LevelDB key per Merkle node."""

TILE_CACHE = 64
"""How many recently read Merkle tile values (~2 KiB each) a Store keeps in memory: an audit
path reads ~5 nodes from each tile it touches, and the right-edge tiles are read by every
proof at the head."""

STATE_READ_CACHE_ENTRIES = 1 << 17
"""Committed-state reads a Store remembers (~30 MiB at most): a node reads each event's keys
when admitting it and again when executing its block, which may be a full mempool later."""
WRITE_BUFFER_BYTES = 16 << 20
"""LevelDB's memtable size unless the owner picks another (node-local)."""

MAP_TILE_CACHE = 1 << 13
"""Decoded state-map tiles below the top (depth >= MAP_TOP_DEPTH) a Store keeps in an LRU
(~3 KiB each at most, ~25 MiB); a key's path reads about depth / 4 tiles."""

MAP_TOP_DEPTH = 16
"""A Store keeps every state-map tile above this depth (t < 16: the top four tile levels)
decoded for good, apart from the LRU: every update and proof passes through them, and a
block's thousands of deeper tiles would otherwise evict them (a proof's cold reads)."""

MAP_TOP_TILES = 1 + 16 + 256 + 4096
"""The most tiles there can be above MAP_TOP_DEPTH (~13 MiB decoded): the top cache's bound,
which the tree's shape enforces (tile ids (t, p) with t < 16 and p < 2**t)."""

VIEW_TILE_CACHE = 256
"""Decoded state-map tiles a ChainView keeps (a bundle reads a few paths that share tops)."""


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


class KeyIterator(Protocol):
    """A `plyvel` iterator opened with `include_value=False`: keys in order, closed on exit."""

    def __enter__(self) -> KeyIterator: ...

    def __exit__(self, *exc: object) -> None: ...

    def __iter__(self) -> Iterator[bytes]: ...


class WriteBatch(Protocol):
    """A `plyvel` write batch: applied when its `with` block ends without an exception."""

    def __enter__(self) -> WriteBatch: ...

    def __exit__(self, *exc: object) -> None: ...

    def put(self, key: bytes, value: bytes) -> None: ...


class ItemIterator(Protocol):
    """A `plyvel` iterator over (key, value) pairs, closed on exit."""

    def __enter__(self) -> ItemIterator: ...

    def __exit__(self, *exc: object) -> None: ...

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]: ...


class LevelReader(Protocol):
    """What a `plyvel` DB and its snapshots both offer: reads."""

    def get(self, key: bytes) -> bytes | None: ...

    def iterator(
        self,
        *,
        start: bytes | None = None,
        stop: bytes | None = None,
        prefix: bytes | None = None,
        include_value: Literal[False],
    ) -> KeyIterator: ...


class Snapshot(LevelReader, Protocol):
    def close(self) -> None: ...


class LevelDB(LevelReader, Protocol):
    """The part of `plyvel.DB` the store uses (plyvel ships no type information)."""

    @property
    def closed(self) -> bool: ...

    def put(self, key: bytes, value: bytes, *, sync: bool = False) -> None: ...

    def close(self) -> None: ...

    def write_batch(self, *, transaction: bool = False, sync: bool = False) -> WriteBatch: ...

    def snapshot(self) -> Snapshot: ...


@dataclass(frozen=True)
class Execution:
    """The outcome of running candidate events on top of the head, not yet stored."""

    height: int
    time: int
    accepted: tuple[events.SignedEvent, ...]
    rejected: tuple[tuple[events.SignedEvent, LedgerError], ...]
    touched: tuple[tuple[bytes, ...], ...]
    state_writes: dict[bytes, bytes]
    events_root: bytes
    tree_size: int
    tree_root: bytes
    state_root: bytes
    log_extension: Extension
    """The accepted events' Merkle nodes, hashed once here and adopted by `append_block`."""
    map_update: smt.MapUpdate
    """The state map's new root entry and changed tiles, written by `append_block`."""

    def header(
        self,
        chain: str,
        prev: bytes,
        proposer: bytes,
        validators: bytes,
        next_validators: bytes | None = None,
    ) -> Header:
        return Header(
            chain=chain,
            height=self.height,
            time=self.time,
            prev=prev,
            proposer=proposer,
            events_root=self.events_root,
            tree_size=self.tree_size,
            tree_root=self.tree_root,
            state_root=self.state_root,
            validators=validators,
            next_validators=next_validators,
        )

    def matches(self, header: Header) -> bool:
        return (
            header.height == self.height
            and header.events_root == self.events_root
            and header.tree_size == self.tree_size
            and header.tree_root == self.tree_root
            and header.state_root == self.state_root
        )


class ChainReader:
    """Reads of one chain in LevelDB (the store itself, or a snapshot of it): blocks, events,
    indexes, Merkle proofs, rules state and state-map proofs. Not thread-safe: its caches
    belong to one thread."""

    path: Path
    genesis: Genesis
    height: int
    tree_size: int
    state_root: bytes
    log: MerkleLog
    base: int = 0
    """The snapshot height this store started from (0: it holds the chain from genesis)."""
    base_leaf: int = 0
    """The tree size at `base`: leaves below it are not held."""

    def __init__(self, reader: LevelReader, tile_cache: int, top_depth: int = 0) -> None:
        self._reader = reader
        self._tiles: dict[TileId, bytes] = {}
        self._map_tiles: OrderedDict[smt.TileId, smt.Tile] = OrderedDict()
        self._map_tile_cache = tile_cache
        self._map_top: dict[smt.TileId, smt.Tile] = {}
        self._map_top_depth = top_depth
        self._map_root: bytes | None = None

    # --- Merkle log -----------------------------------------------------------------------

    def _read_node(self, level: int, index: int) -> bytes | None:
        tile, slot = tile_slot(level, index)
        value = self._tile_value(tile)
        found = None if value is None else tile_hash(value, slot)
        if found is None and self.base_leaf:
            raise self.pruned(f"merkle node ({level}, {index})")
        return found

    def pruned(self, what: str) -> Pruned:
        """The error for a read of history this store does not hold (started from a
        snapshot at `base`)."""
        return Pruned(
            f"pruned: this node started from a snapshot at height {self.base}; older events "
            f"live on archive nodes ({what} is older)"
        )

    def _check_leaf(self, leaf_index: int) -> None:
        if leaf_index < self.base_leaf:
            raise self.pruned(f"leaf {leaf_index}")

    def _check_dataset_history(self, dataset: bytes, after: int = -1) -> None:
        """Pruned if the dataset's indexes would miss events older than the base: it was
        registered at or before the snapshot height and the read starts before it."""
        if not self.base or after + 1 >= self.base_leaf:
            return
        raw = self._state_get(DATASET + dataset)
        if raw is None:
            return
        try:
            origin_height = codec.decode_map(raw)["height"]
        except (Malformed, KeyError) as exc:
            raise Corruption(f"store {self.path}: unreadable dataset record") from exc
        if origin_height <= self.base:
            raise self.pruned(f"the history of dataset {dataset.hex()}")

    def _check_actor_history(self, actor: bytes, after: int) -> None:
        """Pruned if the key may have signed events before the base (it was admitted then,
        or is a registrar with no participant record) and the read starts before it."""
        if not self.base or after + 1 >= self.base_leaf:
            return
        raw = self._state_get(PARTICIPANT + actor)
        location = None
        if raw is not None:
            try:
                admit = codec.decode_map(raw)["event"]
            except (Malformed, KeyError) as exc:
                raise Corruption(f"store {self.path}: unreadable participant record") from exc
            location = self.locate(admit)
        if location is None or location.leaf_index < self.base_leaf:
            raise self.pruned(f"the events of {actor.hex()}")

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) under `prefix`, in key order."""
        reader: Any = self._reader  # plyvel: include_value=True yields pairs
        with reader.iterator(prefix=prefix) as iterator:
            yield from iterator

    def _tile_value(self, tile: TileId) -> bytes | None:
        """A tile's stored value, through a small LRU (a plain dict kept in recency order)."""
        tiles = self._tiles
        value = tiles.pop(tile, None)
        if value is None:
            value = self._reader.get(tile_key(tile))
            if value is None:
                return None
            if len(tiles) >= TILE_CACHE:
                del tiles[next(iter(tiles))]
        tiles[tile] = value
        return value

    def root(self, size: int | None = None) -> bytes:
        if size is not None and 0 < size < self.base_leaf:
            raise self.pruned(f"the tree of {size} leaves")
        return self.log.root(self.tree_size if size is None else size)

    def inclusion_proof(self, leaf_index: int, size: int) -> list[bytes]:
        self._check_leaf(leaf_index)
        return self.log.inclusion_proof(leaf_index, size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if 0 < first < self.base_leaf:
            raise self.pruned(f"the tree of {first} leaves")
        return self.log.consistency_proof(first, second)

    # --- state map ------------------------------------------------------------------------

    def _map_tile(self, tile: smt.TileId) -> smt.Tile | None:
        """A decoded state-map tile (shared: callers must not change it): a top tile
        (t < top depth) from the top cache, any other through an LRU."""
        if tile[0] < self._map_top_depth:
            top = self._map_top
            found = top.get(tile)
            if found is None:
                raw = self._reader.get(smt.tile_key(tile))
                if raw is None:
                    return None
                found = top[tile] = smt.decode_tile(raw)
                assert len(top) <= MAP_TOP_TILES, "top tiles are t < 16, p < 2**t"
            return found
        tiles = self._map_tiles
        value = tiles.get(tile)
        if value is not None:
            tiles.move_to_end(tile)
            return value
        raw = self._reader.get(smt.tile_key(tile))
        if raw is None:
            return None
        value = tiles[tile] = smt.decode_tile(raw)
        if len(tiles) > self._map_tile_cache:
            tiles.popitem(last=False)
        return value

    def _remember_map_tiles(self, update: smt.MapUpdate) -> None:
        """The committed caches take the block's tiles (which nobody changes any more): the
        top ones for good, the others as the most recently used (the next blocks' writes
        often fall near this block's)."""
        top, cache, top_depth = self._map_top, self._map_tiles, self._map_top_depth
        for tile, value in update.tiles.items():
            if tile[0] < top_depth:
                top[tile] = value
            else:
                cache[tile] = value
                cache.move_to_end(tile)
        while len(cache) > self._map_tile_cache:
            cache.popitem(last=False)
        assert len(top) <= MAP_TOP_TILES, "top tiles are t < 16, p < 2**t"
        self._map_root = update.root_entry

    def _load_map_root(self) -> None:
        self._map_root = self._reader.get(smt.ROOT_KEY)
        if smt.root_of(self._map_root) != self.state_root:
            raise Corruption(f"store {self.path}: the state map's root is not the state root")

    def state_proof(self, key: bytes) -> tuple[bytes | None, smt.StateProof]:
        """The committed value of the authenticated state `key` (None: absent) and its proof
        against `state_root`."""
        assert is_authenticated(key), "only authenticated records have proofs"
        value = self._state_get(key)
        return value, smt.prove(self._map_tile, self._map_root, key)

    # --- blocks and events ----------------------------------------------------------------

    def _state_get(self, key: bytes) -> bytes | None:
        return self._reader.get(key)

    def state(self) -> StateOverlay:
        """A fresh overlay over the committed rules state."""
        return StateOverlay(self._state_get)

    def header_bytes(self, height: int) -> bytes | None:
        return self._reader.get(HEADER + _u64(height))

    def header(self, height: int) -> Header | None:
        raw = self.header_bytes(height)
        return None if raw is None else Header.decode(raw)

    def commit(self, height: int) -> Commit | None:
        raw = self._reader.get(COMMIT + _u64(height))
        return None if raw is None else Commit.from_wire(codec.decode(raw))

    def height_of(self, block_hash: bytes) -> int | None:
        raw = self._reader.get(BLOCK_BY_HASH + block_hash)
        return None if raw is None else int.from_bytes(raw, "big")

    def block_leaves(self, height: int) -> range:
        raw = self._reader.get(BLOCK_RANGE + _u64(height))
        if raw is None:
            return range(0)
        first, count = codec.decode(raw)
        return range(first, first + count)

    def block(self, height: int) -> Block | None:
        if 0 < height <= self.base:
            raise self.pruned(f"block {height}")
        header = self.header(height)
        if header is None:
            return None
        return Block(header, tuple(self.envelope(i) for i in self.block_leaves(height)))

    def envelope(self, leaf_index: int) -> bytes:
        self._check_leaf(leaf_index)
        raw = self._reader.get(LEAF + _u64(leaf_index))
        if raw is None:
            raise Corruption(f"store {self.path} lacks leaf {leaf_index}")
        return raw

    def event_at(self, leaf_index: int) -> events.SignedEvent:
        return events.decode_envelope(self.envelope(leaf_index), verify=False)

    def locate(self, event_id: bytes) -> EventLocation | None:
        return lookup_event(self.state(), event_id)

    def _leaf_indexes(
        self, prefix: bytes, after: int = -1, limit: int | None = None, below: int | None = None
    ) -> list[int]:
        start = prefix + _u64(after + 1) if after >= 0 else prefix
        stop = prefix + (_u64(below) if below is not None else b"\xff" * 9)
        found: list[int] = []
        iterator = self._reader.iterator(start=start, stop=stop, include_value=False)
        with iterator:
            for key in iterator:
                found.append(int.from_bytes(key[-8:], "big"))
                if limit is not None and len(found) >= limit:
                    break
        return found

    def dataset_leaves(
        self, dataset: bytes, after: int = -1, limit: int | None = None, below: int | None = None
    ) -> list[int]:
        """Leaf indexes of the events that name `dataset`, in log order: after leaf `after`,
        before leaf `below`, at most `limit`."""
        self._check_dataset_history(dataset, after)
        return self._leaf_indexes(DATASET_INDEX + dataset, after, limit, below)

    def dataset_grants(self, dataset: bytes, below: int | None = None) -> list[bytes]:
        """Ids of the grants made on `dataset` (before leaf `below`), in log order."""
        self._check_dataset_history(dataset)
        prefix = GRANT_INDEX + dataset
        stop = prefix + (_u64(below) if below is not None else b"\xff" * 9)
        grants = []
        with self._reader.iterator(start=prefix, stop=stop, include_value=False) as iterator:
            for key in iterator:
                value = self._reader.get(key)
                assert value is not None, "an index key read a moment ago is still there"
                grants.append(value)
        return grants

    def actor_leaves(self, actor: bytes, after: int = -1, limit: int = 100) -> list[int]:
        self._check_actor_history(actor, after)
        return self._leaf_indexes(ACTOR_INDEX + actor, after, limit)

    def _related(self, prefix: bytes) -> list[bytes]:
        with self._reader.iterator(prefix=prefix, include_value=False) as iterator:
            return [key[len(prefix) :] for key in iterator]

    def parents(self, dataset: bytes) -> list[bytes]:
        self._check_dataset_history(dataset)
        return self._related(LINEAGE_UP + dataset)

    def children(self, dataset: bytes) -> list[bytes]:
        self._check_dataset_history(dataset)
        return self._related(LINEAGE_DOWN + dataset)


class ChainView(ChainReader):
    """A consistent snapshot of a store at the head it had when opened; any one thread may
    read it while the store appends. Close it (or use `with`) to release the snapshot."""

    def __init__(self, store: Store) -> None:
        self._snapshot = store.db.snapshot()
        super().__init__(self._snapshot, VIEW_TILE_CACHE)
        self.path = store.path
        self.genesis = store.genesis
        self.height = store.height
        self.tree_size = store.tree_size
        self.state_root = store.state_root
        self.base = store.base
        self.base_leaf = store.base_leaf
        self._map_root = store._map_root
        self.log = MerkleLog(self.tree_size, self._read_node)

    def close(self) -> None:
        self._snapshot.close()

    def __enter__(self) -> ChainView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Store(ChainReader):
    """One node's chain in LevelDB. Not thread-safe: one owner appends (see `view`)."""

    def __init__(
        self,
        path: str | Path,
        genesis: Genesis,
        rules: Rules | None = None,
        *,
        state_map: bool = True,
        write_buffer_bytes: int = WRITE_BUFFER_BYTES,
    ) -> None:
        """`state_map=False` leaves the state map out (state_root stays empty): only to
        measure what the map costs (scripts/bench). `write_buffer_bytes` is LevelDB's
        memtable size (node-local: nothing stored depends on it)."""
        self.path = Path(path)
        self.genesis = genesis
        self.rules = rules or Rules(genesis)
        self.state_map = state_map
        self.write_buffer_bytes = write_buffer_bytes
        self.db: LevelDB = self._open(self.path, write_buffer_bytes)
        super().__init__(self.db, MAP_TILE_CACHE, MAP_TOP_DEPTH)
        self._state_reads = StateReadCache(self.db.get, STATE_READ_CACHE_ENTRIES)
        try:
            self._load_meta()
            self._load_map_root()
            if self._map_root is not None and not state_map:
                raise Corruption(f"store {self.path} holds a state map: it cannot run without")
        except BaseException:
            self.db.close()
            raise
        self.head_hash: bytes
        self.head_time: int

    @staticmethod
    def _open(path: Path, write_buffer_bytes: int = WRITE_BUFFER_BYTES) -> LevelDB:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db: LevelDB = plyvel.DB(
                str(path),
                create_if_missing=True,
                paranoid_checks=True,
                bloom_filter_bits=10,
                lru_cache_size=64 << 20,
                # Snappy would shrink a store by about 30% (its events and state compress by
                # ~40%; hashes and signatures do not), but it costs a node ~8 µs of CPU per
                # event in flushes, compactions and decompressing blocks on reads; this
                # node trades that disk for throughput. A 16 MiB memtable (the default)
                # flushes a quarter as often as LevelDB's 4 MiB, so fewer level-0 files sit
                # in front of every lookup.
                compression=None,
                write_buffer_size=write_buffer_bytes,
            )
            return db
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise Corruption(f"store {path} is locked: another process has it open") from exc
            raise Corruption(f"cannot open store {path}: {exc}") from exc
        except plyvel.CorruptionError as exc:
            raise Corruption(f"store {path} is corrupt: {exc}") from exc
        except OSError as exc:
            raise Corruption(f"cannot open store {path}: {exc}") from exc

    def _load_meta(self) -> None:
        raw = self.db.get(META)
        if raw is None:
            self.height = 0
            self.tree_size = 0
            self.state_root = smt.EMPTY
            self.head_hash = self.genesis.hash()
            self.head_time = self.genesis.genesis_time
            self.db.put(META, self._meta_bytes(0, 0, self.state_root), sync=True)
        else:
            try:
                meta = codec.decode_map(raw)
                self._check_format(meta.get("format"))
                if meta["genesis"] != self.genesis.hash():
                    raise Corruption(f"store {self.path} belongs to another genesis")
                self.height = meta["height"]
                self.tree_size = meta["tree_size"]
                self.state_root = meta["state_root"]
                self.base = meta["base"]
            except (Malformed, KeyError, TypeError) as exc:
                raise Corruption(f"store {self.path} has unreadable metadata: {exc}") from exc
            if self.base:
                base_header = self.header(self.base)
                if base_header is None:
                    raise Corruption(f"store {self.path} lacks the header of its base {self.base}")
                self.base_leaf = base_header.tree_size
            head = self.header(self.height) if self.height else None
            self.head_hash = head.block_hash if head else self.genesis.hash()
            self.head_time = head.time if head else self.genesis.genesis_time
        self.log = MerkleLog(self.tree_size, self._read_node)

    def _check_format(self, version: object) -> None:
        if version == FORMAT_VERSION and type(version) is int:
            return
        if type(version) is int and version in MIGRATIONS:
            raise NeedsMigration(
                f"store {self.path} has format version {version}: this build reads format "
                f"version {FORMAT_VERSION} and upgrades it in place (the node does so when it "
                "starts, after backing the store up; or run `provledger node migrate`)",
                version,
            )
        found = "no format version" if version is None else f"format version {version!r}"
        raise UnsupportedFormat(
            f"store {self.path} has {found}: that format version is unsupported, this build "
            f"reads only format version {FORMAT_VERSION} (the authenticated state map); a "
            "chain of an older format cannot be migrated (its headers' state roots are of "
            "the old kind): start a new chain, or keep running the build that wrote it"
        )

    def _meta_bytes(self, height: int, tree_size: int, state_root: bytes) -> bytes:
        return meta_bytes(self.genesis, height, tree_size, state_root, self.base)

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _state_get(self, key: bytes) -> bytes | None:
        return self._state_reads.get(key)

    def view(self) -> ChainView:
        """A snapshot of the chain at this head, for reading on another thread."""
        return ChainView(self)

    def _remember_tile(self, tile: TileId, value: bytes) -> None:
        self._tiles.pop(tile, None)
        self._tiles[tile] = value
        if len(self._tiles) > TILE_CACHE:
            del self._tiles[next(iter(self._tiles))]

    def _extended_tiles(self, extension: Extension) -> dict[TileId, bytes]:
        """The new value of every tile that `extension`'s nodes go into: the tile's stored
        value (empty for a tile the log has not reached yet) with the new hashes appended."""
        values: dict[TileId, bytes] = {}
        for tile, (first, added) in tile_additions(extension.nodes()).items():
            width = tile_width(tile, extension.base_size)
            old = self._tile_value(tile) if width else b""
            if old is None or len(old) != width * merkle.HASH_SIZE:
                found = "nothing" if old is None else f"{len(old)} bytes"
                raise Corruption(
                    f"store {self.path}: merkle tile {tile} holds {found}, expected "
                    f"{width} hashes for a log of {extension.base_size} leaves"
                )
            assert first == width, "new nodes continue the tile where it stops"
            values[tile] = old + added
            assert len(values[tile]) == tile_width(tile, extension.size) * merkle.HASH_SIZE
        return values

    # --- execution and append -------------------------------------------------------------

    def execute(
        self, candidates: Iterable[events.SignedEvent], height: int, time: int
    ) -> Execution:
        """Apply candidate events on top of the head, dropping each one that fails a rule.

        Nothing is written; the result carries everything `append_block` needs. The events
        must already have been decoded and their signatures checked.
        """
        assert height == self.height + 1, "blocks are executed in order"
        state = self.state()
        accepted: list[events.SignedEvent] = []
        rejected: list[tuple[events.SignedEvent, LedgerError]] = []
        touched: list[tuple[bytes, ...]] = []
        for event in candidates:
            ctx = BlockContext(height, time, self.tree_size + len(accepted))
            try:
                names = self.rules.apply(state, event, ctx)
            except LedgerError as exc:
                rejected.append((event, exc))
                continue
            accepted.append(event)
            touched.append(names)
        leaf_hashes = [merkle.leaf_hash(e.envelope) for e in accepted]
        assert self.log.size == self.tree_size, "the log holds exactly the stored leaves"
        extension = self.log.extension(leaf_hashes)
        map_update = self._map_update(state.writes)
        return Execution(
            height=height,
            time=time,
            accepted=tuple(accepted),
            rejected=tuple(rejected),
            touched=tuple(touched),
            state_writes=dict(state.writes),
            events_root=merkle.root_from_leaf_hashes(leaf_hashes),
            tree_size=extension.size,
            tree_root=extension.root,
            state_root=map_update.root,
            log_extension=extension,
            map_update=map_update,
        )

    def _map_update(self, writes: dict[bytes, bytes]) -> smt.MapUpdate:
        if not self.state_map:
            return smt.MapUpdate(None, {})
        authenticated = {k: v for k, v in writes.items() if is_authenticated(k)}
        return smt.update(self._map_tile, self._map_root, authenticated)

    def append_block(self, block: Block, commit: Commit, execution: Execution) -> None:
        """Store `block` and its commit with everything it changes, in one atomic batch.

        `execution` must be this block's execution on top of the current head (see `execute`);
        its accepted events must be exactly the block's events. The block's Merkle nodes are
        the ones `execute` hashed (`execution.log_extension`), not hashed again.
        """
        header = block.header
        assert header.height == self.height + 1 and header.prev == self.head_hash
        assert execution.matches(header)
        assert tuple(e.envelope for e in execution.accepted) == block.events
        height_key = _u64(header.height)
        first_leaf = self.tree_size
        extension = execution.log_extension
        assert (extension.base_size, extension.size) == (first_leaf, execution.tree_size)
        try:
            self.log.adopt(extension)
            tiles = self._extended_tiles(extension)
            with self.db.write_batch(transaction=True, sync=True) as batch:
                batch.put(HEADER + height_key, header.encode())
                batch.put(COMMIT + height_key, codec.encode(commit.to_wire()))
                batch.put(BLOCK_RANGE + height_key, codec.encode([first_leaf, len(block.events)]))
                batch.put(BLOCK_BY_HASH + header.block_hash, height_key)
                for offset, event in enumerate(execution.accepted):
                    leaf = _u64(first_leaf + offset)
                    batch.put(LEAF + leaf, event.envelope)
                    batch.put(ACTOR_INDEX + event.actor + leaf, b"")
                    for dataset in execution.touched[offset]:
                        batch.put(DATASET_INDEX + dataset + leaf, b"")
                    if isinstance(event.body, events.Grant):
                        batch.put(GRANT_INDEX + event.body.dataset + leaf, event.event_id)
                    if isinstance(event.body, events.Derive):
                        for parent in event.body.inputs:
                            batch.put(LINEAGE_UP + event.body.dataset + parent, b"")
                            batch.put(LINEAGE_DOWN + parent + event.body.dataset, b"")
                for tile, value in tiles.items():
                    batch.put(tile_key(tile), value)
                for key, value in execution.state_writes.items():
                    batch.put(key, value)
                update = execution.map_update
                for map_tile, tile_value in update.tiles.items():
                    batch.put(smt.tile_key(map_tile), smt.encode_tile(tile_value))
                if update.root_entry is not None:
                    batch.put(smt.ROOT_KEY, update.root_entry)
                batch.put(
                    META,
                    self._meta_bytes(header.height, execution.tree_size, execution.state_root),
                )
        except BaseException:
            self.log.discard_pending()
            raise
        self.log.persisted()
        self._state_reads.committed(execution.state_writes)
        for tile, value in tiles.items():
            self._remember_tile(tile, value)
        self._remember_map_tiles(execution.map_update)
        self.height = header.height
        self.tree_size = execution.tree_size
        self.state_root = execution.state_root
        self.head_hash = header.block_hash
        self.head_time = header.time

    def iter_events(self, start: int = 0) -> Iterator[events.SignedEvent]:
        for index in range(start, self.tree_size):
            yield self.event_at(index)


class NeedsMigration(UnsupportedFormat):
    """A store of an older format that `migrate_store` upgrades in place."""

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version


def meta_bytes(
    genesis: Genesis, height: int, tree_size: int, state_root: bytes, base: int
) -> bytes:
    """The `!meta` value of a store of this format."""
    return codec.encode(
        {
            "base": base,
            "format": FORMAT_VERSION,
            "genesis": genesis.hash(),
            "height": height,
            "state_root": state_root,
            "tree_size": tree_size,
        }
    )


# --- migrations ----------------------------------------------------------------------------

Progress = Callable[[int, int], None]
"""A migration's progress: (done, total) steps."""


def _migrate_2_to_3(db: LevelDB, genesis: Genesis, progress: Progress) -> None:
    """Format 2 -> 3: check the stored chain (every header links to the one before it and has
    its commit and block range), then name its base: 0, the chain from genesis."""
    raw = db.get(META)
    assert raw is not None, "a store of format 2 has metadata"
    meta = codec.decode_map(raw)
    height = meta["height"]
    prev = genesis.hash()
    for h in range(1, height + 1):
        key = _u64(h)
        header_raw = db.get(HEADER + key)
        if header_raw is None or db.get(COMMIT + key) is None or db.get(BLOCK_RANGE + key) is None:
            raise Corruption(f"store of format 2: block {h} is incomplete; not migrated")
        header = Header.decode(header_raw)
        if header.height != h or header.prev != prev:
            raise Corruption(f"store of format 2: header {h} does not link; not migrated")
        prev = header.block_hash
        progress(h, height)
    meta["format"] = 3
    meta["base"] = 0
    db.put(META, codec.encode(meta), sync=True)
    progress(height, height)


MIGRATIONS: dict[int, Callable[[LevelDB, Genesis, Progress], None]] = {2: _migrate_2_to_3}
"""Format version -> the step that upgrades a store of it to the next version, in place.
Each step ends by writing the new version with one synced put, so a crash during a step
leaves the store of the old version (the node runs the step again)."""


def stored_format(path: str | Path) -> int | None:
    """The format version of the store at `path` (None: no store there yet); Corruption if
    the store has no readable version."""
    path = Path(path)
    if not (path / "CURRENT").exists():
        return None
    db = Store._open(path)
    try:
        raw = db.get(META)
        if raw is None:
            return None
        try:
            version = codec.decode_map(raw).get("format")
        except Malformed as exc:
            raise Corruption(f"store {path} has unreadable metadata: {exc}") from exc
        if type(version) is not int:
            raise UnsupportedFormat(f"store {path} has no format version: it cannot be read")
        return version
    finally:
        db.close()


def migrate_store(path: str | Path, genesis: Genesis, progress: Progress) -> list[int]:
    """Upgrade the store at `path` in place to FORMAT_VERSION, step by step; the versions it
    went through (empty: it was current). The caller backs the store up first."""
    done: list[int] = []
    while True:
        version = stored_format(path)
        if version is None or version == FORMAT_VERSION:
            return done
        step = MIGRATIONS.get(version)
        if step is None:
            raise UnsupportedFormat(
                f"store {path} has format version {version}: no migration to "
                f"{FORMAT_VERSION} exists"
            )
        db = Store._open(Path(path))
        try:
            raw = db.get(META)
            assert raw is not None, "stored_format read it"
            if codec.decode_map(raw).get("genesis") != genesis.hash():
                raise Corruption(f"store {path} belongs to another genesis")
            step(db, genesis, progress)
        finally:
            db.close()
        done.append(version)


# --- snapshots -----------------------------------------------------------------------------

SNAPSHOT_MAP_CHUNK = 20_000
"""Authenticated records a snapshot install puts into the state map per update (bounds the
changed tiles it holds at once)."""


def edge_tiles(size: int) -> list[TileId]:
    """The Merkle tiles at the right edge of a log of `size` leaves that hold at least one
    node: one per stratum. They hold every node of the log's right border (what appending
    and the root need), and appending only ever extends them or starts new tiles."""
    tiles = []
    stratum = 0
    while size >> (stratum * 5):
        tile = (stratum, (size >> (stratum * 5)) >> 5)
        if tile_width(tile, size):
            tiles.append(tile)
        stratum += 1
    return tiles


def snapshot_frontier(reader: ChainReader) -> list[bytes]:
    """The hashes of the right border of the reader's log (`merkle.range_nodes(0, size)`,
    left to right): all that appending and the root need."""
    border = []
    for level, index in merkle.range_nodes(0, reader.tree_size):
        digest = reader._read_node(level, index)
        if digest is None:
            raise Corruption(f"store {reader.path}: merkle node ({level}, {index}) is missing")
        border.append(digest)
    return border


class SnapshotInstaller:
    """Builds a new store at `path` from a snapshot's parts, verifying as it goes: the commit
    first (before anything is written), then every record's key (rules state only, strictly
    ascending), and at `finish` the state map rebuilt from the authenticated records against
    the header's `state_root` and the frontier (the log's right border) against its
    `tree_root`. The frontier goes into the right-edge tiles, whose other slots (nodes under
    the border, never read: they are of pruned leaves) are zero. On any
    error the caller calls `abort` and removes `path`: a failed install leaves no usable store."""

    def __init__(
        self,
        path: str | Path,
        genesis: Genesis,
        header: Header,
        commit: Commit,
        signers: ValidatorSet | None = None,
        history: Sequence[tuple[bytes, Commit]] = (),
    ) -> None:
        """`signers`: the validator set that signs `header`'s height (default: genesis's;
        the caller proves another one from genesis, ledger.transitions). `history`: older
        headers (bytes) with their commits that the store keeps besides (the validator-set
        transitions the caller checked on the way)."""
        self.path = Path(path)
        self.genesis = genesis
        self.header = header
        self.commit = commit
        if header.height < 1:
            raise VerificationFailed("snapshot invalid", "a snapshot is of a committed height")
        verify_checkpoint(header, commit, genesis.chain_id, signers or genesis.validators)
        self._history = [(Header.decode(raw), raw, c) for raw, c in history]
        if any(
            h.height >= header.height or c.block_hash != h.block_hash for h, _, c in self._history
        ):
            raise VerificationFailed("snapshot invalid", "its older headers do not fit")
        if self.path.exists() and any(self.path.iterdir()):
            raise Corruption(f"{self.path} is not empty: a snapshot installs only a new store")
        self.db: LevelDB = Store._open(self.path)
        self._root_entry: bytes | None = None
        self._map_cache: dict[smt.TileId, smt.Tile] = {}
        self._pending: dict[bytes, bytes] = {}
        self._last_key = b""
        self._frontier: list[bytes] | None = None
        self.records = 0

    def set_frontier(self, border: list[bytes]) -> None:
        nodes = merkle.range_nodes(0, self.header.tree_size)
        if len(border) != len(nodes) or any(
            not isinstance(h, bytes) or len(h) != merkle.HASH_SIZE for h in border
        ):
            raise VerificationFailed(
                "snapshot invalid", f"the frontier must be {len(nodes)} hashes"
            )
        self._frontier = list(border)

    def add_records(self, records: Iterable[tuple[bytes, bytes]]) -> None:
        with self.db.write_batch() as batch:
            for key, value in records:
                if not key.startswith(STATE_PREFIX) or key <= self._last_key:
                    raise VerificationFailed(
                        "snapshot invalid", "records must be rules state in ascending key order"
                    )
                self._last_key = key
                batch.put(key, value)
                self.records += 1
                if is_authenticated(key):
                    self._pending[key] = value
                    if len(self._pending) >= SNAPSHOT_MAP_CHUNK:
                        self._flush_map()

    def _read_map_tile(self, tile: smt.TileId) -> smt.Tile | None:
        found = self._map_cache.get(tile)
        if found is not None:
            return found
        raw = self.db.get(smt.tile_key(tile))
        return None if raw is None else smt.decode_tile(raw)

    def _flush_map(self) -> None:
        if not self._pending:
            return
        update = smt.update(self._read_map_tile, self._root_entry, self._pending)
        with self.db.write_batch() as batch:
            for tile, value in update.tiles.items():
                batch.put(smt.tile_key(tile), smt.encode_tile(value))
        self._map_cache = update.tiles
        self._root_entry = update.root_entry
        self._pending = {}

    def finish(self) -> None:
        """Verify the roots and write the header, commit, frontier and metadata (synced)."""
        header = self.header
        self._flush_map()
        if smt.root_of(self._root_entry) != header.state_root:
            raise VerificationFailed(
                "snapshot invalid", "its state records do not hash to the header's state_root"
            )
        size = header.tree_size
        border = self._frontier
        if border is None:
            raise VerificationFailed("snapshot invalid", "it has no Merkle frontier")
        root = merkle.fold_right(border) if border else merkle.EMPTY_ROOT
        if root != header.tree_root:
            raise VerificationFailed(
                "snapshot invalid", "its Merkle frontier does not hash to the header's tree_root"
            )
        tiles = {
            tile: bytearray(tile_width(tile, size) * merkle.HASH_SIZE) for tile in edge_tiles(size)
        }
        for (level, index), digest in zip(merkle.range_nodes(0, size), border, strict=True):
            tile, slot = tile_slot(level, index)
            tiles[tile][slot * merkle.HASH_SIZE : (slot + 1) * merkle.HASH_SIZE] = digest
        height_key = _u64(header.height)
        with self.db.write_batch(transaction=True, sync=True) as batch:
            for tile, value in tiles.items():
                batch.put(tile_key(tile), bytes(value))
            if self._root_entry is not None:
                batch.put(smt.ROOT_KEY, self._root_entry)
            batch.put(HEADER + height_key, header.encode())
            batch.put(COMMIT + height_key, codec.encode(self.commit.to_wire()))
            batch.put(BLOCK_BY_HASH + header.block_hash, height_key)
            for old, raw, old_commit in self._history:
                batch.put(HEADER + _u64(old.height), raw)
                batch.put(COMMIT + _u64(old.height), codec.encode(old_commit.to_wire()))
            batch.put(
                META,
                meta_bytes(self.genesis, header.height, size, header.state_root, header.height),
            )
        self.db.close()

    def abort(self) -> None:
        if not self.db.closed:
            self.db.close()
