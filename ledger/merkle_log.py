"""The append-only RFC 9162 Merkle log over perfect-node hashes kept in someone else's store.

The log stores nothing itself. Its owner persists every perfect node `(level, index)` that
`append` returns, under `node_key(level, index)`, and hands the log a `read_node` callback
that returns a stored hash or None. The log keeps only the right border of the tree (the
compact range of `[0, size)`, at most one node per level) in memory, so appending never reads
storage; roots at past sizes and proofs read O(log n) nodes.

Persistence protocol: `append` adds the new nodes to an in-memory overlay that every read
consults first, so the log answers for its new size at once. After the owner has written the
pending nodes (see `pending`) it calls `persisted()`, which empties the overlay; if the write
failed it calls `discard_pending()`, which returns the log to its state at the last
`persisted()` (or construction). One owner drives a log; it is not thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ledger import merkle
from ledger.errors import Corruption, Malformed
from ledger.merkle import HASH_SIZE, NodeId

ReadNode = Callable[[int, int], bytes | None]

_NODE_KEY_PREFIX = b"m"
_TILE_HEIGHT = 5
_TILE_NODES = (2 << _TILE_HEIGHT) - 2
_NODE_KEY_SIZE = 1 + 1 + 8 + 1


def node_key(level: int, index: int) -> bytes:
    """The storage key of perfect node (level, index), grouped in tiles so that the ~log2(n)
    nodes of one audit path lie in a few runs of adjacent keys, hence few LevelDB blocks.

    Levels are grouped into strata of T = 5 levels: stratum s holds levels 5s .. 5s+4. A
    tile is what lies within one stratum of one subtree rooted at level 5s+5: 32 nodes on
    level 5s, 16 above them, ... 2 on level 5s+4, 62 in all. Node (level, index) on row
    r = level - 5s of its stratum belongs to tile index >> (5 - r), where it is node
    p = index mod 2**(5 - r) of its row. Its key is

        b"m" || s (1 byte) || tile (8 bytes, big-endian) || 2**(5 - r) - 2 + p (1 byte)

    Sorted, the keys of one tile are one contiguous run (ordered like a binary heap: the
    tile's top row first, its bottom row last), tiles follow each other by number, and
    strata from the leaves up. The siblings on an audit path within one stratum all lie in
    the same tile, so a path in a tree of height h touches ceil(h / 5) tiles. T = 5 is the
    largest tile whose 62 entries (~45 bytes each in LevelDB) fit a 4 KiB block.
    """
    if not 0 <= level < 256 or not 0 <= index < 1 << 64:
        raise ValueError(f"merkle node ({level}, {index}) cannot be keyed")
    stratum, row = divmod(level, _TILE_HEIGHT)
    width = _TILE_HEIGHT - row
    tile, position = index >> width, (1 << width) - 2 + (index & ((1 << width) - 1))
    return _NODE_KEY_PREFIX + (stratum << 72 | tile << 8 | position).to_bytes(10, "big")


def parse_node_key(key: bytes) -> NodeId:
    """The (level, index) that `node_key` encoded into `key`; Corruption for any other key."""
    if len(key) != _NODE_KEY_SIZE or not key.startswith(_NODE_KEY_PREFIX) or key[-1] >= _TILE_NODES:
        raise Corruption(f"not a merkle node key: {key.hex()}")
    width = (key[-1] + 2).bit_length() - 1
    level = key[1] * _TILE_HEIGHT + _TILE_HEIGHT - width
    index = int.from_bytes(key[2:-1], "big") << width | (key[-1] + 2 - (1 << width))
    if level >= 256 or index >= 1 << 64:
        raise Corruption(f"not a merkle node key: {key.hex()}")
    return level, index


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

    def append(self, leaf_hashes: Sequence[bytes]) -> dict[NodeId, bytes]:
        """Append leaves; return every new perfect node (leaves included) to persist."""
        for position, value in enumerate(leaf_hashes):
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise Malformed(f"leaf hash {position} is not a {HASH_SIZE}-byte hash")
        created: dict[NodeId, bytes] = {}
        for value in leaf_hashes:
            (level, index), digest = (0, self._size), value
            created[(level, index)] = digest
            while self._border and self._border[-1][0][0] == level:
                _, left = self._border.pop()
                level, index, digest = level + 1, index >> 1, merkle.node_hash(left, digest)
                created[(level, index)] = digest
            self._border.append(((level, index), digest))
            self._size += 1
        self._pending.update(created)
        return created

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
