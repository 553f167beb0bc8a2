"""The append-only RFC 9162 Merkle log over perfect-node hashes kept in someone else's store.

The log stores nothing itself. Its owner persists every perfect node `(level, index)` that
`append` (or an adopted `Extension`) creates, and hands the log a `read_node` callback that
returns a stored hash or None. The log keeps only the right border of the tree (the compact
range of `[0, size)`, at most one node per level) in memory, so appending never reads
storage; roots at past sizes and proofs read O(log n) nodes.

Appending in two steps: `extension(leaf_hashes)` computes, without changing the log, every
node the leaves create, the new border and the new root; `adopt(extension)` then makes the
log that size, provided it is still exactly the log the extension was computed from. So a
block's nodes are hashed once, when it is executed, and adopted when it is stored.
`append(leaf_hashes)` does both at once.

Persistence protocol: adopted nodes go to an in-memory overlay that every read consults
first, so the log answers for its new size at once. After the owner has written the pending
nodes (see `pending`) it calls `persisted()`, which empties the overlay; if the write failed
it calls `discard_pending()`, which returns the log to its state at the last `persisted()`
(or construction). One owner drives a log; it is not thread-safe.

On-disk layout (tiles). The owner stores nodes in tiles, one value per tile, with the pure
functions below. Levels are grouped into strata of T = 5 levels: stratum s holds levels
5s .. 5s+4. A tile is what lies within one stratum of one subtree rooted at level 5s+5:
32 nodes on level 5s ("the tile's leaves"), 16 above them, ... 2 on level 5s+4, 62 in all.
The tile's value is the concatenation of the 32-byte hashes of its nodes in the order the
log creates them (post-order: each tile leaf, then every node it completes, lowest first).
A node exists once its whole subtree is filled, so at any tree size the nodes of a tile that
exist are exactly a prefix of that order: a tile at the right edge holds a prefix, appending
only extends it, and a node's byte offset `32 * slot` never changes. The siblings on an
audit path within one stratum all lie in one tile, so a path in a tree of height h reads
ceil(h / 5) tile values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ledger import merkle
from ledger.errors import Corruption, Malformed
from ledger.merkle import HASH_SIZE, NodeId

ReadNode = Callable[[int, int], bytes | None]
Border = tuple[tuple[NodeId, bytes], ...]
TileId = tuple[int, int]
"""(stratum, tile number): the tile of levels 5 * stratum .. 5 * stratum + 4 whose leaves
are the nodes tile * 32 .. tile * 32 + 31 of level 5 * stratum."""

TILE_HEIGHT = 5  # tile_slot spells out a sum over the 5 rows
TILE_LEAVES = 1 << TILE_HEIGHT
TILE_NODES = 2 * TILE_LEAVES - 2
_TILE_KEY_PREFIX = b"t"
_TILE_KEY_SIZE = 1 + 1 + 8
_MAX_LEVEL = 256


def perfect_node_count(size: int) -> int:
    """How many perfect nodes (leaves included) the tree of `size` leaves has."""
    if size < 0:
        raise ValueError(f"a log cannot have {size} leaves")
    return 2 * size - size.bit_count()


def created_nodes(old_size: int, new_size: int) -> Iterator[NodeId]:
    """The perfect nodes that growing a log from `old_size` to `new_size` leaves completes, in
    the order the log creates them: each leaf, then the nodes it completes, lowest first."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"a log cannot grow from {old_size} to {new_size} leaves")
    for leaf in range(old_size, new_size):
        yield 0, leaf
        level, end = 1, leaf + 1
        while not end & ((1 << level) - 1):
            yield level, (end >> level) - 1
            level += 1


def tile_slot(level: int, index: int) -> tuple[TileId, int]:
    """The tile of perfect node (level, index) and its slot there: its hash is bytes
    `32 * slot .. 32 * slot + 32` of the tile's value.

    The node is node p of row r = level - 5s of tile t (p = index mod 2**(5 - r)) and is
    completed by tile leaf c = (p + 1) * 2**r - 1. Before it the tile creates every node
    completed by an earlier tile leaf, c >> r' of them on each row r', and the r nodes below
    it that the same tile leaf completes.
    """
    if not 0 <= level < _MAX_LEVEL or not 0 <= index < 1 << 64:
        raise ValueError(f"merkle node ({level}, {index}) cannot be placed in a tile")
    stratum, row = divmod(level, TILE_HEIGHT)
    width = TILE_HEIGHT - row
    c = ((index & ((1 << width) - 1)) + 1 << row) - 1
    # the sum of c >> r' over the TILE_HEIGHT = 5 rows, spelled out: this is on every read
    return (stratum, index >> width), row + c + (c >> 1) + (c >> 2) + (c >> 3) + (c >> 4)


def tile_width(tile: TileId, size: int) -> int:
    """How many nodes of `tile` exist in the tree of `size` leaves: the length, in hashes,
    of the tile's value once the log has `size` leaves."""
    stratum, number = tile
    if size < 0 or not 0 <= stratum * TILE_HEIGHT < _MAX_LEVEL or number < 0:
        raise ValueError(f"no tile {tile} in a tree of {size} leaves")
    leaves = min(TILE_LEAVES, max(0, (size >> stratum * TILE_HEIGHT) - number * TILE_LEAVES))
    return sum(leaves >> row for row in range(TILE_HEIGHT))


def tile_key(tile: TileId) -> bytes:
    """The storage key of a tile: b"t" || stratum (1 byte) || tile number (8 bytes, big-endian).

    Sorted, tiles follow each other by number within a stratum, strata from the leaves up.
    """
    stratum, number = tile
    if not 0 <= stratum * TILE_HEIGHT < _MAX_LEVEL or not 0 <= number < 1 << 64:
        raise ValueError(f"tile {tile} cannot be keyed")
    return _TILE_KEY_PREFIX + bytes([stratum]) + number.to_bytes(8, "big")


def parse_tile_key(key: bytes) -> TileId:
    """The tile that `tile_key` encoded into `key`; Corruption for any other key."""
    if len(key) != _TILE_KEY_SIZE or not key.startswith(_TILE_KEY_PREFIX):
        raise Corruption(f"not a merkle tile key: {key.hex()}")
    tile = key[1], int.from_bytes(key[2:], "big")
    try:
        if tile_key(tile) == key:
            return tile
    except ValueError:
        pass
    raise Corruption(f"not a merkle tile key: {key.hex()}")


def tile_hash(value: bytes, slot: int) -> bytes | None:
    """The hash in `slot` of a tile's value, or None if the value does not reach that slot."""
    if not 0 <= slot < TILE_NODES:
        raise ValueError(f"no slot {slot} in a tile")
    start = slot * HASH_SIZE
    if start + HASH_SIZE > len(value):
        return None
    return value[start : start + HASH_SIZE]


def tile_additions(nodes: Iterator[tuple[NodeId, bytes]]) -> dict[TileId, tuple[int, bytes]]:
    """Group new nodes, given in creation order, by tile: for each tile the slot of its first
    new node and the new nodes' hashes concatenated, ready to be appended to its value.

    Within one tile, new nodes must fill consecutive slots (they do when they come from
    `Extension.nodes()`); anything else is a bug and raises ValueError.
    """
    firsts: dict[TileId, int] = {}
    parts: dict[TileId, list[bytes]] = {}
    for (level, index), digest in nodes:
        if len(digest) != HASH_SIZE:
            raise ValueError(f"merkle node ({level}, {index}) is not a {HASH_SIZE}-byte hash")
        tile, slot = tile_slot(level, index)
        hashes = parts.get(tile)
        if hashes is None:
            firsts[tile], parts[tile] = slot, [digest]
            continue
        if slot != firsts[tile] + len(hashes):
            raise ValueError(f"merkle node ({level}, {index}) does not extend tile {tile}")
        hashes.append(digest)
    return {tile: (firsts[tile], b"".join(hashes)) for tile, hashes in parts.items()}


@dataclass(frozen=True)
class Extension:
    """Leaves appended to the log of `base_size` leaves whose right border is `base_border`:
    the new `size` and `border`, and `digests`, the hashes of the nodes the leaves create,
    concatenated in `created_nodes(base_size, size)` order."""

    base_size: int
    base_border: Border
    size: int
    border: Border
    digests: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.base_size <= self.size:
            raise ValueError(f"a log cannot grow from {self.base_size} to {self.size} leaves")
        created = perfect_node_count(self.size) - perfect_node_count(self.base_size)
        if len(self.digests) != created * HASH_SIZE:
            raise ValueError(f"{len(self.digests)} bytes of hashes for {created} new nodes")

    @property
    def root(self) -> bytes:
        """The root of the extended log."""
        if not self.border:
            return merkle.EMPTY_ROOT
        return merkle.fold_right([digest for _, digest in self.border])

    def nodes(self) -> Iterator[tuple[NodeId, bytes]]:
        """Every new perfect node (leaves included) with its hash, in creation order."""
        digests = self.digests
        for n, node in enumerate(created_nodes(self.base_size, self.size)):
            yield node, digests[n * HASH_SIZE : (n + 1) * HASH_SIZE]


class MerkleLog:
    """The log of `size` leaves whose perfect-node hashes `read_node` returns."""

    def __init__(self, size: int, read_node: ReadNode) -> None:
        if size < 0:
            raise ValueError(f"a log cannot have {size} leaves")
        self._read_node = read_node
        self._pending: dict[NodeId, bytes] = {}
        self._size = size
        self._border: list[tuple[NodeId, bytes]] = [
            (node, self._node(*node)) for node in merkle.range_nodes(0, size)
        ]
        self._base_size = size
        self._base_border = list(self._border)

    @property
    def size(self) -> int:
        """How many leaves the log has, pending ones included."""
        return self._size

    @property
    def pending(self) -> dict[NodeId, bytes]:
        """Every node appended since the last `persisted()`, for the owner to write."""
        return dict(self._pending)

    def extension(self, leaf_hashes: Sequence[bytes]) -> Extension:
        """What appending `leaf_hashes` would create; the log itself does not change."""
        for position, value in enumerate(leaf_hashes):
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise Malformed(f"leaf hash {position} is not a {HASH_SIZE}-byte hash")
        border = list(self._border)
        size = self._size
        created: list[bytes] = []
        for value in leaf_hashes:
            level, digest = 0, value
            created.append(digest)
            while border and border[-1][0][0] == level:
                _, left = border.pop()
                level, digest = level + 1, merkle.node_hash(left, digest)
                created.append(digest)
            border.append(((level, size >> level), digest))
            size += 1
        return Extension(self._size, tuple(self._border), size, tuple(border), b"".join(created))

    def adopt(self, extension: Extension) -> None:
        """Grow the log as `extension` says; its nodes become pending.

        The extension must have been computed from this very log at its current size (same
        size, same border), or ValueError: adopting it elsewhere would corrupt the log.
        """
        if extension.base_size != self._size or extension.base_border != tuple(self._border):
            raise ValueError(
                f"extension from {extension.base_size} leaves does not fit this log of "
                f"{self._size} leaves"
            )
        self._pending.update(extension.nodes())
        self._size = extension.size
        self._border = list(extension.border)

    def append(self, leaf_hashes: Sequence[bytes]) -> dict[NodeId, bytes]:
        """Append leaves; return every new perfect node (leaves included) to persist."""
        extension = self.extension(leaf_hashes)
        self.adopt(extension)
        return dict(extension.nodes())

    def persisted(self) -> None:
        """The owner has stored every pending node: drop the overlay, keep the new size."""
        self._pending.clear()
        self._base_size = self._size
        self._base_border = list(self._border)

    def discard_pending(self) -> None:
        """The owner failed to store the pending nodes: go back to the last persisted state."""
        self._pending.clear()
        self._size = self._base_size
        self._border = list(self._base_border)

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree of the first `size` leaves (default: all of them)."""
        if size is None:
            size = self._size
        self._check_size(size)
        if size == 0:
            return merkle.EMPTY_ROOT
        if size == self._size:
            return merkle.fold_right([digest for _, digest in self._border])
        return merkle.fold_right([self._node(*node) for node in merkle.range_nodes(0, size)])

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of leaf `index` in the tree of the first `size` leaves."""
        self._check_size(size)
        return merkle.inclusion_proof(index, size, self._node)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """The RFC 9162 consistency proof between the trees of `first` and `second` leaves."""
        self._check_size(second)
        return merkle.consistency_proof(first, second, self._node)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise Malformed(f"tree size {size} is out of range for a log of {self._size} leaves")

    def _node(self, level: int, index: int) -> bytes:
        digest = self._pending.get((level, index))
        if digest is None:
            digest = self._read_node(level, index)
        if digest is None:
            raise Corruption(f"merkle node (level {level}, index {index}) is missing")
        if not isinstance(digest, bytes) or len(digest) != HASH_SIZE:
            raise Corruption(f"merkle node (level {level}, index {index}) is not a 32-byte hash")
        return digest
