"""The authenticated state map under `state_root`: a sparse Merkle tree (docs/PROTOCOL.md §17).

Logical tree. A key `k` (a rules state key, §4.7) sits on the 256-bit path `SHA-256(k)`; its
leaf commits to `SHA-256(value)`. The tree is the binary trie over those paths with empty
subtrees compressed (Diem's sparse Merkle tree, also what Jellyfish Merkle proves):

- an empty subtree hashes to 32 zero bytes (`EMPTY`);
- a subtree holding exactly one leaf hashes to that leaf's hash,
  `SHA-256(0x02 || path || value_hash)`, wherever the leaf sits;
- any other subtree hashes to `SHA-256(0x03 || left || right)`.

Prefixes 0x02 / 0x03 keep these hashes apart from the RFC 9162 log's 0x00 / 0x01. A proof is
the sibling hashes from the root down to where the key's path ends (a leaf or an empty
subtree) plus, for a path that ends at another key's leaf, that leaf: about log2(n) + 1
hashes for n keys.

Physical layout [node-local]. Nodes are stored in tiles of four levels, one LevelDB value per
tile (`tile_key`): the tile `(t, p)` holds the entries of the nodes at depths t+1 .. t+4 under
the t-bit path prefix p, by heap position `(1 << r) | bits` (r = depth - t). An entry is the
node's hash (32 bytes, a node with two or more leaves below it) or a leaf (96 bytes:
leaf hash || path || value hash); an empty subtree has no entry. The root's entry is stored
on its own. A key's path reads about depth / 4 tiles. The tree only grows: the rules never
delete a state key, so `update` handles inserts and changed values only.

`update` computes a block's new root and the tiles it changes without writing anything;
the store writes them in the block's batch (`Store.append_block`).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import ormsgpack

from ledger.errors import Corruption, Malformed, ProofMismatch, VerificationFailed

HASH_SIZE = 32
EMPTY = bytes(HASH_SIZE)
LEAF_PREFIX = b"\x02"
NODE_PREFIX = b"\x03"
KEY_BITS = 256
TILE_HEIGHT = 4
LEAF_ENTRY_SIZE = 3 * HASH_SIZE
TILE_KEY_PREFIX = b"m"
ROOT_KEY = b"m"
"""Storage key of the root's entry (the tiles' keys are longer)."""

TileId = tuple[int, int]
"""(t, p): the tile holding depths t+1 .. t+4 under the t-bit path prefix p (t % 4 == 0)."""
Tile = dict[int, bytes]
ReadTile = Callable[[TileId], Tile | None]

_sha256 = hashlib.sha256


def key_path(key: bytes) -> bytes:
    return _sha256(key).digest()


def value_hash(value: bytes) -> bytes:
    return _sha256(value).digest()


def leaf_hash(path: bytes, value_digest: bytes) -> bytes:
    return _sha256(LEAF_PREFIX + path + value_digest).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(NODE_PREFIX + left + right).digest()


def entry_hash(entry: bytes | None) -> bytes:
    """The hash of a subtree from its stored entry (its first 32 bytes; EMPTY for none)."""
    return EMPTY if entry is None else entry[:HASH_SIZE]


def root_of(root_entry: bytes | None) -> bytes:
    return entry_hash(root_entry)


# --- storage of tiles ----------------------------------------------------------------------


def tile_key(tile: TileId) -> bytes:
    """b"m" || t (1 byte) || p (ceil(t / 8) bytes, big-endian)."""
    depth, prefix = tile
    return TILE_KEY_PREFIX + bytes([depth]) + prefix.to_bytes((depth + 7) // 8, "big")


def encode_tile(tile: Tile) -> bytes:
    """msgpack map, integer keys, bin values (ormsgpack writes the bytes msgpack-python does,
    in about half the time: a block rewrites a few thousand tiles)."""
    return ormsgpack.packb(tile, option=ormsgpack.OPT_NON_STR_KEYS)


def decode_tile(raw: bytes) -> Tile:
    try:
        tile = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise Corruption(f"unreadable state-map tile: {exc}") from exc
    if not isinstance(tile, dict):
        raise Corruption("a state-map tile is not a map")
    return tile


def _children_tile(depth: int, path: int) -> TileId:
    """The tile holding the two children of the node at `depth` on `path`."""
    t = depth & ~3
    return t, path >> (KEY_BITS - t)


def _left_child_position(depth: int, path: int) -> int:
    """Heap position, in `_children_tile(depth, path)`, of the node's left child."""
    t = depth & ~3
    relative = depth + 1 - t
    bits = (path >> (KEY_BITS - depth)) & ((1 << (relative - 1)) - 1)
    return (1 << relative) | (bits << 1)


# --- update --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapUpdate:
    """A new root and the tiles that change, computed but not stored."""

    root_entry: bytes | None
    tiles: dict[TileId, Tile]

    @property
    def root(self) -> bytes:
        return root_of(self.root_entry)


class _Updater:
    def __init__(self, read_tile: ReadTile, paths: list[int], leaves: list[bytes]) -> None:
        self._read = read_tile
        self._paths = paths
        self._leaves = leaves
        self.tiles: dict[TileId, Tile] = {}

    def set(self, depth: int, entry: bytes | None, lo: int, hi: int, tile: Tile | None) -> bytes:
        """The new entry of the node at `depth` holding `entry`, after setting the leaves
        `lo:hi` (sorted by path, all below this node, at least one). `tile` is the tile
        holding the node's children when the caller has it already (else None)."""
        if entry is None:
            if hi - lo == 1:
                return self._leaves[lo]
            return self._descend(depth, lo, hi, None, tile)
        if len(entry) == LEAF_ENTRY_SIZE:
            old = int.from_bytes(entry[HASH_SIZE : 2 * HASH_SIZE], "big")
            i = bisect_left(self._paths, old, lo, hi)
            if i < hi and self._paths[i] == old:
                if hi - lo == 1:
                    return self._leaves[lo]
                return self._descend(depth, lo, hi, None, tile)
            return self._descend(depth, lo, hi, (old, entry), tile)
        return self._descend(depth, lo, hi, None, tile)

    def _build(
        self, depth: int, lo: int, hi: int, extra: tuple[int, bytes] | None, tile: Tile | None
    ) -> bytes:
        """A subtree of empty positions receiving leaves `lo:hi` and `extra` (an old leaf)."""
        if extra is None:
            if hi - lo == 1:
                return self._leaves[lo]
        elif hi == lo:
            return extra[1]
        return self._descend(depth, lo, hi, extra, tile)

    def _descend(
        self, depth: int, lo: int, hi: int, extra: tuple[int, bytes] | None, tile: Tile | None
    ) -> bytes:
        # The hot loop of a block's update: `_children_tile`, `_left_child_position`,
        # `_split` and `node_hash` are written out here. The tile holding this node's
        # children is passed down to children whose own children are in it too (three of
        # every four levels), so it is looked up once per tile and path, not once per node.
        assert depth < KEY_BITS and hi > lo, "distinct paths part before the last bit"
        paths = self._paths
        anchor = paths[lo]
        bit = KEY_BITS - 1 - depth
        mid = bisect_left(paths, ((anchor >> (bit + 1) << 1) | 1) << bit, lo, hi)
        t = depth & ~3
        if tile is None:
            tile_id = (t, anchor >> (KEY_BITS - t))
            tile = self.tiles.get(tile_id)
            if tile is None:
                stored = self._read(tile_id)
                tile = self.tiles[tile_id] = {} if stored is None else dict(stored)
        relative = depth + 1 - t
        left_pos = (1 << relative) | (
            ((anchor >> (KEY_BITS - depth)) & ((1 << (relative - 1)) - 1)) << 1
        )
        below = tile if relative < TILE_HEIGHT else None
        if extra is None:
            left = tile.get(left_pos)
            right = tile.get(left_pos | 1)
            if lo < mid:
                left = tile[left_pos] = self.set(depth + 1, left, lo, mid, below)
            if mid < hi:
                right = tile[left_pos | 1] = self.set(depth + 1, right, mid, hi, below)
        else:
            goes_right = (extra[0] >> bit) & 1
            left = right = None
            if lo < mid or not goes_right:
                left = tile[left_pos] = self._build(
                    depth + 1, lo, mid, None if goes_right else extra, below
                )
            if mid < hi or goes_right:
                right = tile[left_pos | 1] = self._build(
                    depth + 1, mid, hi, extra if goes_right else None, below
                )
        return _sha256(
            NODE_PREFIX
            + (EMPTY if left is None else left[:HASH_SIZE])
            + (EMPTY if right is None else right[:HASH_SIZE])
        ).digest()


def update(
    read_tile: ReadTile, root_entry: bytes | None, writes: Mapping[bytes, bytes]
) -> MapUpdate:
    """Set every `key -> value` of `writes` in the map whose root entry is `root_entry`."""
    if not writes:
        return MapUpdate(root_entry, {})
    items = []
    sha256 = _sha256
    for key, value in writes.items():  # key_path, value_hash and leaf_hash, written out
        path = sha256(key).digest()
        digest = sha256(value).digest()
        leaf = sha256(LEAF_PREFIX + path + digest).digest()
        items.append((int.from_bytes(path, "big"), leaf + path + digest))
    items.sort()
    paths = [p for p, _ in items]
    updater = _Updater(read_tile, paths, [leaf for _, leaf in items])
    new_root = updater.set(0, root_entry, 0, len(items), None)
    return MapUpdate(new_root, updater.tiles)


# --- proofs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateProof:
    """Where a key's path ends: the siblings from the root down, and the leaf found there
    (None for an empty subtree)."""

    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None
    """(path, value hash) of the leaf where the path ends, if any."""

    def to_json(self) -> dict[str, Any]:
        leaf = None
        if self.leaf is not None:
            leaf = {"path": self.leaf[0].hex(), "value_hash": self.leaf[1].hex()}
        return {"siblings": [s.hex() for s in self.siblings], "leaf": leaf}

    def to_wire(self) -> dict[str, Any]:
        return {
            "siblings": list(self.siblings),
            "leaf": None if self.leaf is None else list(self.leaf),
        }

    @classmethod
    def from_json(cls, doc: Any) -> StateProof:
        if not isinstance(doc, dict) or set(doc) != {"siblings", "leaf"}:
            raise Malformed("a state proof is {siblings, leaf}")
        siblings = doc["siblings"]
        if not isinstance(siblings, list) or len(siblings) > KEY_BITS:
            raise Malformed("siblings must be a list of at most 256 hashes")
        leaf_doc = doc["leaf"]
        leaf = None
        if leaf_doc is not None:
            if not isinstance(leaf_doc, dict) or set(leaf_doc) != {"path", "value_hash"}:
                raise Malformed("a proof leaf is {path, value_hash}")
            leaf = (_hash_hex(leaf_doc["path"]), _hash_hex(leaf_doc["value_hash"]))
        return cls(tuple(_hash_hex(s) for s in siblings), leaf)


def _hash_hex(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * HASH_SIZE:
        raise Malformed("a hash is 64 hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise Malformed("a hash is 64 hex digits") from exc


def prove(read_tile: ReadTile, root_entry: bytes | None, key: bytes) -> StateProof:
    """The proof of `key`'s leaf, or of its absence, in the map with root entry `root_entry`."""
    path = int.from_bytes(key_path(key), "big")
    entry = root_entry
    depth = 0
    siblings: list[bytes] = []
    while entry is not None and len(entry) == HASH_SIZE:
        tile = read_tile(_children_tile(depth, path))
        if tile is None:
            raise Corruption(f"state map: the tile under depth {depth} is missing")
        position = _left_child_position(depth, path)
        bit = (path >> (KEY_BITS - 1 - depth)) & 1
        entry = tile.get(position | bit)
        siblings.append(entry_hash(tile.get(position | (1 - bit))))
        depth += 1
    if entry is None:
        return StateProof(tuple(siblings), None)
    return StateProof(tuple(siblings), (entry[HASH_SIZE : 2 * HASH_SIZE], entry[2 * HASH_SIZE :]))


def proven_root(key: bytes, value: bytes | None, proof: StateProof) -> bytes:
    """The root that `proof` yields for `key` holding `value` (None: absent).

    Raises VerificationFailed if the proof cannot be of that claim at all.
    """
    path = key_path(key)
    depth = len(proof.siblings)
    if depth > KEY_BITS:
        raise VerificationFailed("state proof invalid", "more than 256 siblings")
    if value is not None:
        if proof.leaf != (path, value_hash(value)):
            raise VerificationFailed("state proof invalid", "the proof's leaf is not this value")
        node = leaf_hash(path, value_hash(value))
    elif proof.leaf is None:
        node = EMPTY
    else:
        other = proof.leaf[0]
        if other == path:
            raise VerificationFailed("state proof invalid", "the key is present, not absent")
        shared = int.from_bytes(other, "big") ^ int.from_bytes(path, "big")
        if depth and shared >> (KEY_BITS - depth):
            raise VerificationFailed("state proof invalid", "the proof's leaf is off the path")
        node = leaf_hash(*proof.leaf)
    bits = int.from_bytes(path, "big")
    for level in range(depth - 1, -1, -1):
        sibling = proof.siblings[level]
        if (bits >> (KEY_BITS - 1 - level)) & 1:
            node = node_hash(sibling, node)
        else:
            node = node_hash(node, sibling)
    return node


def verify(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> None:
    """Raise VerificationFailed unless `proof` shows `key -> value` (or its absence) under
    `root`."""
    if proven_root(key, value, proof) != root:
        what = "absence" if value is None else "value"
        raise ProofMismatch(f"the {what} of {key.hex()} does not lead to the state root")


def reference_root(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The root of the map holding `entries` (key, value), computed from scratch: the
    definition, recursively (for tests, vectors and store audits)."""
    leaves = sorted(
        (int.from_bytes(p, "big"), leaf_hash(p, value_hash(v)))
        for p, v in ((key_path(k), v) for k, v in entries)
    )
    return _reference(leaves, 0)


def _reference(leaves: list[tuple[int, bytes]], depth: int) -> bytes:
    if not leaves:
        return EMPTY
    if len(leaves) == 1:
        return leaves[0][1]
    bit = KEY_BITS - 1 - depth
    left = [leaf for leaf in leaves if not (leaf[0] >> bit) & 1]
    right = [leaf for leaf in leaves if (leaf[0] >> bit) & 1]
    return node_hash(_reference(left, depth + 1), _reference(right, depth + 1))
