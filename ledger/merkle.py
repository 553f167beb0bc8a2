"""RFC 9162 Merkle tree hashing, proof generation and proof verification, with no storage.

A perfect node `(level, index)` is the root of the complete subtree over leaves
`[index * 2**level, (index + 1) * 2**level)`; level 0 nodes are leaf hashes. Every proof is
built from perfect nodes: `inclusion_nodes` and `consistency_nodes` say which ones to fetch
and which consecutive run of them (the "ephemeral" node on the right border of a tree whose
size is not a power of two) folds into a single proof entry; `inclusion_proof` and
`consistency_proof` fetch them through a callback. The output is byte-identical to PATH and
PROOF of RFC 9162 §2.1.3 and §2.1.4. Verification follows §2.1.3.2 and §2.1.4.2; every
mismatch or bad proof shape raises `ProofMismatch`, and bad arguments to generation raise
`Malformed`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ledger.errors import Malformed, ProofMismatch

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]
GetNode = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """The hash of one log entry: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH (RFC 9162 §2.1.1) of a list of leaf hashes, level by level in O(n).

    Pairing neighbours on each level and carrying an odd last node up unchanged builds
    exactly the left-balanced tree of the RFC.
    """
    for position, value in enumerate(leaf_hashes):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise Malformed(f"leaf hash {position} is not a {HASH_SIZE}-byte hash")
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def range_nodes(begin: int, end: int) -> list[NodeId]:
    """The perfect nodes that exactly cover leaves [begin, end), left to right (largest first
    on a prefix of the tree)."""
    if not 0 <= begin <= end:
        raise Malformed(f"bad leaf range [{begin}, {end})")
    nodes: list[NodeId] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """MTH of consecutive perfect subtrees given left to right: H(a, H(b, ... H(y, z)))."""
    assert hashes, "nothing to fold"
    value = hashes[-1]
    for left in reversed(hashes[:-1]):
        value = node_hash(left, value)
    return value


@dataclass(frozen=True)
class ProofNodes:
    """The perfect nodes of one proof, in the order they are fetched.

    `ids[begin:end]` (empty, or at least two nodes) are the perfect nodes under the one
    ephemeral node of the proof, ordered from the lowest level (rightmost) to the highest;
    they fold into a single proof entry. Every other id is one proof entry by itself.
    """

    ids: tuple[NodeId, ...]
    begin: int = 0
    end: int = 0

    @property
    def proof_length(self) -> int:
        """How many hashes the assembled proof has."""
        return len(self.ids) - max(0, self.end - self.begin - 1)


def assemble_proof(nodes: ProofNodes, hashes: Sequence[bytes]) -> list[bytes]:
    """Turn the hashes of `nodes.ids` into the proof, folding the ephemeral run into one entry."""
    if len(hashes) != len(nodes.ids):
        raise Malformed(f"got {len(hashes)} node hashes for {len(nodes.ids)} proof nodes")
    if nodes.end - nodes.begin < 2:
        return list(hashes)
    ephemeral = fold_right(list(reversed(hashes[nodes.begin : nodes.end])))
    return [*hashes[: nodes.begin], ephemeral, *hashes[nodes.end :]]


def _path_nodes(level: int, index: int, size: int) -> ProofNodes:
    """The nodes of the audit path of perfect node (level, index) in the tree of `size`
    leaves, bottom-up, without the node itself."""
    assert (index + 1) << level <= size, "the node must be complete within the tree"
    ids: list[NodeId] = []
    begin = end = 0
    while index or (1 << level) < size:
        if index & 1:
            ids.append((level, index - 1))
        else:
            start = (index + 1) << level
            if start + (1 << level) <= size:
                ids.append((level, index + 1))
            elif start < size:
                border = range_nodes(start, size)[::-1]
                if len(border) > 1:
                    begin, end = len(ids), len(ids) + len(border)
                ids.extend(border)
        level += 1
        index >>= 1
    return ProofNodes(tuple(ids), begin, end)


def inclusion_nodes(index: int, size: int) -> ProofNodes:
    """The nodes of the inclusion proof PATH(index, D[size]) (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise Malformed(f"leaf index {index} is out of range for tree size {size}")
    return _path_nodes(0, index, size)


def consistency_nodes(first: int, second: int) -> ProofNodes:
    """The nodes of the consistency proof PROOF(first, D[second]) (RFC 9162 §2.1.4.1).

    The proof is empty when `first` is 0 or equals `second`: both are trivially consistent.
    Otherwise it is the last perfect subtree of the first tree (omitted when that subtree is
    the whole first tree, whose root the verifier already has), then its audit path in the
    second tree.
    """
    if not 0 <= first <= second:
        raise Malformed(f"consistency needs 0 <= first <= second, got {first} and {second}")
    if first == 0 or first == second:
        return ProofNodes(())
    level = (first & -first).bit_length() - 1
    index = (first >> level) - 1
    path = _path_nodes(level, index, second)
    if index == 0:
        return path
    shift = 1 if path.end > path.begin else 0
    return ProofNodes(((level, index), *path.ids), path.begin + shift, path.end + shift)


def _fetch(nodes: ProofNodes, get_node: GetNode) -> list[bytes]:
    return assemble_proof(nodes, [get_node(level, index) for level, index in nodes.ids])


def inclusion_proof(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves."""
    return _fetch(inclusion_nodes(index, size), get_node)


def consistency_proof(first: int, second: int, get_node: GetNode) -> list[bytes]:
    """The RFC 9162 consistency proof between the trees of `first` and `second` leaves."""
    return _fetch(consistency_nodes(first, second), get_node)


def _check_hash(value: object, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofMismatch(f"{what} is not a {HASH_SIZE}-byte hash")


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for position, value in enumerate(proof):
        _check_hash(value, f"proof hash {position}")


def _shift_while_even(fn: int, sn: int) -> tuple[int, int]:
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that an inclusion proof implies (RFC 9162 §2.1.3.2, steps 1-4).

    The proof length is checked first, so the RFC's "sn is 0" checks always hold here.
    """
    _check_hash(leaf_hash, "leaf hash")
    _check_proof_hashes(proof)
    if not 0 <= index < size:
        raise ProofMismatch(f"leaf index {index} is out of range for tree size {size}")
    expected = inclusion_nodes(index, size).proof_length
    if len(proof) != expected:
        raise ProofMismatch(
            f"inclusion proof has {len(proof)} hashes, expected {expected} "
            f"for leaf {index} of {size}"
        )
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        assert sn > 0, "the length check guarantees the path does not pass the root"
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _shift_while_even(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0, "the length check guarantees the path reaches the root"
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `size` leaves with `root`."""
    _check_hash(root, "root hash")
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != root:
        raise ProofMismatch(
            f"inclusion proof for leaf {index} of {size} leads to root {computed.hex()}, "
            f"not {root.hex()}"
        )


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> None:
    """Check that the tree of `second` leaves with `second_root` extends the tree of `first`
    leaves with `first_root` (RFC 9162 §2.1.4.2).

    Beyond the RFC's `0 < first < second`: `first == second` needs an empty proof and equal
    roots, and `first == 0` needs an empty proof and the empty-tree root as `first_root`.
    """
    _check_hash(first_root, "first root")
    _check_hash(second_root, "second root")
    _check_proof_hashes(proof)
    if not 0 <= first <= second:
        raise ProofMismatch(f"consistency needs 0 <= first <= second, got {first} and {second}")
    if first == 0 or first == second:
        if proof:
            raise ProofMismatch(f"consistency proof from {first} to {second} must be empty")
        if first == 0 and first_root != EMPTY_ROOT:
            raise ProofMismatch("the root of the empty tree is not SHA-256 of nothing")
        if first == second and first_root != second_root:
            raise ProofMismatch(f"two different roots for the same tree size {first}")
        return
    expected = consistency_nodes(first, second).proof_length
    if len(proof) != expected:
        raise ProofMismatch(
            f"consistency proof has {len(proof)} hashes, expected {expected} "
            f"from {first} to {second}"
        )
    path = [first_root, *proof] if first & (first - 1) == 0 else list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        assert sn > 0, "the length check guarantees the path does not pass the root"
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                fn, sn = _shift_while_even(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    assert sn == 0, "the length check guarantees the path reaches the root"
    if fr != first_root:
        raise ProofMismatch(
            f"consistency proof leads to first root {fr.hex()}, not {first_root.hex()}"
        )
    if sr != second_root:
        raise ProofMismatch(
            f"consistency proof leads to second root {sr.hex()}, not {second_root.hex()}"
        )
