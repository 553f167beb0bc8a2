"""Tests of ledger.merkle: known answers, negative vectors, and properties against the RFC."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import Malformed, ProofMismatch, VerificationFailed
from ledger.merkle import NodeId, ProofNodes
from tests.ledger import rfc_reference as ref

# ---------------------------------------------------------------------------------------------
# Known-answer vectors copied from github.com/transparency-dev/merkle (Apache-2.0).
#
# LEAVES, NODE_HASHES and ROOTS: testonly/constants.go (LeafInputs, NodeHashes, RootHashes),
#   commit 582a6ad190b6848f1d26f8bf08ddef29955d9db1.
# EMPTY_LEAF_HASH, the "L123456" leaf and the "N123"/"N456" node: rfc6962/rfc6962_test.go
#   (TestRFC6962Hasher), commit 78493b07ef9b552e3379abf9e23d4da26fbe797c.
# INCLUSION_VECTORS and CONSISTENCY_VECTORS: proof/verify_test.go (inclusionProofs,
#   consistencyProofs), commit 02194e9afb6c1d95b5381350007963aa70fff472. That file numbers
#   leaves from 1 (it hashes leaves[p.leaf-1]); the indexes below are 0-based.
# INCLUSION_NODE_VECTORS and CONSISTENCY_NODE_VECTORS: proof/proof_test.go (TestInclusion,
#   TestConsistency), commit 02a3e2029520f515596d5238c54fb0ac9e19bff4. Its rehash(begin, end)
#   is our ProofNodes(ids, begin, end); a lone node under an ephemeral node is a plain entry.
# ---------------------------------------------------------------------------------------------

LEAVES = [
    bytes.fromhex(""),
    bytes.fromhex("00"),
    bytes.fromhex("10"),
    bytes.fromhex("2021"),
    bytes.fromhex("3031"),
    bytes.fromhex("40414243"),
    bytes.fromhex("5051525354555657"),
    bytes.fromhex("606162636465666768696a6b6c6d6e6f"),
]

NODE_HASHES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]

ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

EMPTY_ROOT_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_LEAF_HASH_HEX = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
L123456_LEAF_HASH_HEX = "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
N123_N456_NODE_HASH_HEX = "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"

# (leaf index, tree size, proof)
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# (first size, second size, proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# (leaf index, tree size, expected ProofNodes)
INCLUSION_NODE_VECTORS = [
    (0, 1, ProofNodes(())),
    (0, 2, ProofNodes(((0, 1),))),
    (1, 2, ProofNodes(((0, 0),))),
    (1, 3, ProofNodes(((0, 0), (0, 2)))),
    (0, 7, ProofNodes(((0, 1), (1, 1), (0, 6), (1, 2)), 2, 4)),
    (1, 7, ProofNodes(((0, 0), (1, 1), (0, 6), (1, 2)), 2, 4)),
    (2, 7, ProofNodes(((0, 3), (1, 0), (0, 6), (1, 2)), 2, 4)),
    (3, 7, ProofNodes(((0, 2), (1, 0), (0, 6), (1, 2)), 2, 4)),
    (4, 7, ProofNodes(((0, 5), (0, 6), (2, 0)))),
    (5, 7, ProofNodes(((0, 4), (0, 6), (2, 0)))),
    (6, 7, ProofNodes(((1, 2), (2, 0)))),
    (2, 4, ProofNodes(((0, 3), (1, 0)))),
    (3, 5, ProofNodes(((0, 2), (1, 0), (0, 4)))),
    (3, 6, ProofNodes(((0, 2), (1, 0), (1, 2)))),
    (4, 6, ProofNodes(((0, 5), (2, 0)))),
    (10, 15, ProofNodes(((0, 11), (1, 4), (0, 14), (1, 6), (3, 0)), 2, 4)),
    (24, 31, ProofNodes(((0, 25), (1, 13), (0, 30), (1, 14), (3, 2), (4, 0)), 2, 4)),
    (
        81,
        95,
        ProofNodes(((0, 80), (1, 41), (2, 21), (0, 94), (1, 46), (2, 22), (4, 4), (6, 0)), 3, 6),
    ),
]

# (first size, second size, expected ProofNodes)
CONSISTENCY_NODE_VECTORS = [
    (1, 2, ProofNodes(((0, 1),))),
    (1, 4, ProofNodes(((0, 1), (1, 1)))),
    (1, 6, ProofNodes(((0, 1), (1, 1), (1, 2)))),
    (2, 3, ProofNodes(((0, 2),))),
    (2, 8, ProofNodes(((1, 1), (2, 1)))),
    (3, 7, ProofNodes(((0, 2), (0, 3), (1, 0), (0, 6), (1, 2)), 3, 5)),
    (4, 7, ProofNodes(((0, 6), (1, 2)), 0, 2)),
    (5, 7, ProofNodes(((0, 4), (0, 5), (0, 6), (2, 0)))),
    (6, 7, ProofNodes(((1, 2), (0, 6), (2, 0)))),
    (7, 8, ProofNodes(((0, 6), (0, 7), (1, 2), (2, 0)))),
    (1, 1, ProofNodes(())),
    (2, 2, ProofNodes(())),
    (3, 3, ProofNodes(())),
    (4, 4, ProofNodes(())),
    (5, 5, ProofNodes(())),
    (7, 7, ProofNodes(())),
    (8, 8, ProofNodes(())),
    (2, 4, ProofNodes(((1, 1),))),
    (3, 5, ProofNodes(((0, 2), (0, 3), (1, 0), (0, 4)))),
    (3, 6, ProofNodes(((0, 2), (0, 3), (1, 0), (1, 2)))),
    (4, 6, ProofNodes(((1, 2),))),
    (1, 7, ProofNodes(((0, 1), (1, 1), (0, 6), (1, 2)), 2, 4)),
    (10, 15, ProofNodes(((1, 4), (1, 5), (0, 14), (1, 6), (3, 0)), 2, 4)),
    (24, 31, ProofNodes(((3, 2), (0, 30), (1, 14), (2, 6), (4, 0)), 1, 4)),
    (
        81,
        95,
        ProofNodes(
            ((0, 80), (0, 81), (1, 41), (2, 21), (0, 94), (1, 46), (2, 22), (4, 4), (6, 0)), 4, 7
        ),
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def h(hex_digest: str) -> bytes:
    return bytes.fromhex(hex_digest)


def hs(hex_digests: Sequence[str]) -> list[bytes]:
    return [h(x) for x in hex_digests]


def kat_node(level: int, index: int) -> bytes:
    return h(NODE_HASHES[level][index])


def perfect_nodes(leaf_hashes: Sequence[bytes]) -> dict[NodeId, bytes]:
    """Every perfect node over `leaf_hashes`, computed level by level."""
    nodes: dict[NodeId, bytes] = {}
    level, row = 0, list(leaf_hashes)
    while row:
        nodes.update(((level, i), value) for i, value in enumerate(row))
        row = [merkle.node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
    return nodes


def getter(nodes: dict[NodeId, bytes]) -> merkle.GetNode:
    return lambda level, index: nodes[(level, index)]


def flip(value: bytes, bit: int = 3) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


def entries_for(salt: bytes, n: int) -> list[bytes]:
    return [salt + i.to_bytes(2, "big") for i in range(n)]


# --- hashing -------------------------------------------------------------------------------


def test_hasher_known_answers() -> None:
    assert merkle.EMPTY_ROOT == h(EMPTY_ROOT_HEX) == hashlib.sha256(b"").digest()
    assert merkle.leaf_hash(b"") == h(EMPTY_LEAF_HASH_HEX)
    assert merkle.leaf_hash(b"L123456") == h(L123456_LEAF_HASH_HEX)
    assert merkle.node_hash(b"N123", b"N456") == h(N123_N456_NODE_HASH_HEX)
    assert merkle.leaf_hash(b"") != merkle.EMPTY_ROOT


def test_known_leaf_and_node_hashes() -> None:
    leaf_hashes = [merkle.leaf_hash(x) for x in LEAVES]
    assert perfect_nodes(leaf_hashes) == {
        (level, i): h(x) for level, row in enumerate(NODE_HASHES) for i, x in enumerate(row)
    }


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_known_roots(size: int) -> None:
    leaf_hashes = [merkle.leaf_hash(x) for x in LEAVES[:size]]
    assert merkle.root_from_leaf_hashes(leaf_hashes) == h(ROOTS[size])
    assert ref.mth(LEAVES[:size]) == h(ROOTS[size])


def test_root_rejects_bad_leaf_hashes() -> None:
    with pytest.raises(Malformed):
        merkle.root_from_leaf_hashes([merkle.EMPTY_ROOT, b"short"])


# --- node selection --------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "want"), INCLUSION_NODE_VECTORS)
def test_inclusion_nodes_known_answers(index: int, size: int, want: ProofNodes) -> None:
    assert merkle.inclusion_nodes(index, size) == want


@pytest.mark.parametrize(("first", "second", "want"), CONSISTENCY_NODE_VECTORS)
def test_consistency_nodes_known_answers(first: int, second: int, want: ProofNodes) -> None:
    assert merkle.consistency_nodes(first, second) == want


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (3, 0), (8, 7), (-1, 5)])
def test_inclusion_generation_rejects_bad_arguments(index: int, size: int) -> None:
    with pytest.raises(Malformed):
        merkle.inclusion_nodes(index, size)
    with pytest.raises(Malformed):
        merkle.inclusion_proof(index, size, kat_node)


@pytest.mark.parametrize(("first", "second"), [(5, 0), (9, 8), (-1, 3)])
def test_consistency_generation_rejects_bad_arguments(first: int, second: int) -> None:
    with pytest.raises(Malformed):
        merkle.consistency_nodes(first, second)


def test_consistency_from_empty_tree_is_empty() -> None:
    assert merkle.consistency_proof(0, 8, kat_node) == []
    merkle.verify_consistency(0, 8, [], merkle.EMPTY_ROOT, h(ROOTS[8]))


@pytest.mark.parametrize(
    ("begin", "end", "want"),
    [
        (0, 0, []),
        (0, 7, [(2, 0), (1, 2), (0, 6)]),
        (3, 3, []),
        (3, 8, [(0, 3), (2, 1)]),
        (5, 13, [(0, 5), (1, 3), (2, 2), (0, 12)]),
        (0, 16, [(4, 0)]),
    ],
)
def test_range_nodes(begin: int, end: int, want: list[NodeId]) -> None:
    assert merkle.range_nodes(begin, end) == want


@pytest.mark.parametrize(("begin", "end"), [(3, 2), (1, 0), (-1, 2), (-2, -1), (8, 5)])
def test_range_nodes_rejects_a_reversed_or_negative_range(begin: int, end: int) -> None:
    with pytest.raises(Malformed, match="bad leaf range"):
        merkle.range_nodes(begin, end)


def test_assemble_proof_rejects_wrong_hash_count() -> None:
    with pytest.raises(Malformed):
        merkle.assemble_proof(merkle.inclusion_nodes(0, 7), [SOME_HASH])


# --- known proofs ----------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_known_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    want = hs(proof)
    assert merkle.inclusion_proof(index, size, kat_node) == want
    assert ref.path(index, LEAVES[:size]) == want
    leaf = merkle.leaf_hash(LEAVES[index])
    assert merkle.root_from_inclusion_proof(leaf, index, size, want) == h(ROOTS[size])
    merkle.verify_inclusion(leaf, index, size, want, h(ROOTS[size]))


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_VECTORS)
def test_known_consistency_proofs(first: int, second: int, proof: list[str]) -> None:
    want = hs(proof)
    assert merkle.consistency_proof(first, second, kat_node) == want
    assert ref.proof(first, LEAVES[:second]) == want
    merkle.verify_consistency(first, second, want, h(ROOTS[first]), h(ROOTS[second]))


def test_every_small_proof_matches_the_reference() -> None:
    entries = entries_for(b"x", 33)
    nodes = perfect_nodes([merkle.leaf_hash(x) for x in entries])
    for size in range(34):
        assert merkle.root_from_leaf_hashes([nodes[(0, i)] for i in range(size)]) == ref.mth(
            entries[:size]
        )
        for index in range(size):
            assert merkle.inclusion_proof(index, size, getter(nodes)) == ref.path(
                index, entries[:size]
            )
        for first in range(1, size + 1):
            assert merkle.consistency_proof(first, size, getter(nodes)) == ref.proof(
                first, entries[:size]
            )


# --- negative vectors ------------------------------------------------------------------------


def corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    """Probes in the manner of corruptInclusionProof in transparency-dev/merkle."""
    probes = [
        ("index - 1", index - 1, size, proof, root, leaf),
        ("index + 1", index + 1, size, proof, root, leaf),
        ("index ^ 2", index ^ 2, size, proof, root, leaf),
        ("size * 2", index, size * 2, proof, root, leaf),
        ("size // 2", index, size // 2, proof, root, leaf),
        ("index beyond size", size, size, proof, root, leaf),
        ("wrong leaf", index, size, proof, root, SOME_HASH),
        ("short leaf", index, size, proof, root, b"WrongLeaf"),
        ("long leaf", index, size, proof, root, leaf + b"\x00"),
        ("empty root", index, size, proof, merkle.EMPTY_ROOT, leaf),
        ("random root", index, size, proof, SOME_HASH, leaf),
        ("short root", index, size, proof, root[:31], leaf),
        ("trailing garbage", index, size, [*proof, b""], root, leaf),
        ("trailing root", index, size, [*proof, root], root, leaf),
        ("preceding garbage", index, size, [b"", *proof], root, leaf),
        ("preceding root", index, size, [root, *proof], root, leaf),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = flip(wrong[i])
        probes.append((f"flipped bit in proof[{i}]", index, size, wrong, root, leaf))
        probes.append((f"short proof[{i}]", index, size, [*proof[:i], proof[i][1:]], root, leaf))
    if proof:
        probes.append(("truncated", index, size, proof[:-1], root, leaf))
    if len(proof) > 1:
        probes.append(("inserted", index, size, [proof[0], SOME_HASH, *proof[1:]], root, leaf))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_corrupted_inclusion_proofs_fail(index: int, size: int, proof: list[str]) -> None:
    root, leaf = h(ROOTS[size]), merkle.leaf_hash(LEAVES[index])
    for desc, i, n, p, r, lf in corrupt_inclusion(index, size, hs(proof), root, leaf):
        try:
            merkle.verify_inclusion(lf, i, n, p, r)
        except ProofMismatch:
            continue
        pytest.fail(f"verified despite {desc}")


def test_inclusion_single_entry() -> None:
    digest = merkle.leaf_hash(b"data")
    merkle.verify_inclusion(digest, 0, 1, [], digest)
    for leaf, root in [(digest, b""), (b"", digest), (b"", b"")]:
        with pytest.raises(ProofMismatch):
            merkle.verify_inclusion(leaf, 0, 1, [], root)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (-1, 1)])
def test_inclusion_out_of_range_fails(index: int, size: int) -> None:
    with pytest.raises(ProofMismatch, match="out of range"):
        merkle.verify_inclusion(SOME_HASH, index, size, [], merkle.EMPTY_ROOT)
    with pytest.raises(ProofMismatch):
        merkle.root_from_inclusion_proof(SOME_HASH, index, size, [])


def test_proof_mismatch_is_a_verification_failure() -> None:
    with pytest.raises(VerificationFailed) as info:
        merkle.verify_inclusion(SOME_HASH, 0, 8, [SOME_HASH], h(ROOTS[8]))
    assert "expected 3" in str(info.value)


def corrupt_consistency(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """Probes in the manner of corruptConsistencyProof in transparency-dev/merkle."""
    probes = [
        ("first - 1", first - 1, second, root1, root2, proof),
        ("first + 1", first + 1, second, root1, root2, proof),
        ("first ^ 2", first ^ 2, second, root1, root2, proof),
        ("second * 2", first, second * 2, root1, root2, proof),
        ("second // 2", first, second // 2, root1, root2, proof),
        ("first > second", second + 1, second, root1, root2, proof),
        ("short root1", first, second, b"WrongRoot", root2, proof),
        ("short root2", first, second, root1, b"WrongRoot", proof),
        ("wrong root1", first, second, SOME_HASH, root2, proof),
        ("wrong root2", first, second, root1, SOME_HASH, proof),
        ("swapped roots", first, second, root2, root1, proof),
        ("empty proof", first, second, root1, root2, []),
        ("trailing garbage", first, second, root1, root2, [*proof, b""]),
        ("trailing root1", first, second, root1, root2, [*proof, root1]),
        ("trailing root2", first, second, root1, root2, [*proof, root2]),
        ("preceding garbage", first, second, root1, root2, [b"", *proof]),
        ("preceding root1", first, second, root1, root2, [root1, *proof]),
        ("preceding root2", first, second, root1, root2, [root2, *proof]),
        ("preceding proof[0]", first, second, root1, root2, [proof[0], *proof]),
        ("truncated", first, second, root1, root2, proof[:-1]),
        ("same size", second, second, root1, root2, proof),
        ("from empty", 0, second, merkle.EMPTY_ROOT, root2, proof),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = flip(wrong[i], 4)
        probes.append((f"flipped bit in proof[{i}]", first, second, root1, root2, wrong))
        probes.append((f"short proof[{i}]", first, second, root1, root2, [*proof[:i], b"x"]))
    return probes


@pytest.mark.parametrize(("first", "second", "proof"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_corrupted_consistency_proofs_fail(first: int, second: int, proof: list[str]) -> None:
    root1, root2 = h(ROOTS[first]), h(ROOTS[second])
    for desc, m, n, r1, r2, p in corrupt_consistency(first, second, root1, root2, hs(proof)):
        try:
            merkle.verify_consistency(m, n, p, r1, r2)
        except ProofMismatch:
            continue
        pytest.fail(f"verified despite {desc}")


ROOT_1 = hashlib.sha256(b"don't care 1").digest()
ROOT_2 = hashlib.sha256(b"don't care 2").digest()
EMPTY = merkle.EMPTY_ROOT


@pytest.mark.parametrize(
    ("first", "second", "root1", "root2", "proof", "ok"),
    [
        # Adapted from TestVerifyConsistency in transparency-dev/merkle proof/verify_test.go.
        (0, 0, EMPTY, ROOT_2, [], False),
        (1, 1, ROOT_1, ROOT_2, [], False),
        (0, 0, EMPTY, EMPTY, [], True),
        (0, 1, EMPTY, ROOT_2, [], True),
        (1, 1, ROOT_2, ROOT_2, [], True),
        (1, 0, ROOT_1, ROOT_2, [], False),
        (2, 1, ROOT_1, ROOT_2, [], False),
        (1, 2, ROOT_1, ROOT_2, [], False),
        (1, 1, EMPTY, ROOT_2, [], False),
        (0, 0, EMPTY, EMPTY, [EMPTY], False),
        (0, 1, EMPTY, EMPTY, [EMPTY], False),
        (1, 1, EMPTY, EMPTY, [EMPTY], False),
        # Ours: the root of a size-0 tree must be the empty-tree hash.
        (0, 1, ROOT_1, ROOT_2, [], False),
        (0, 0, ROOT_1, ROOT_1, [], False),
        # Ours: hashes of the wrong size, even when nothing needs combining.
        (1, 1, b"", b"", [], False),
        (0, 3, EMPTY, ROOT_2[:16], [], False),
    ],
)
def test_trivial_consistency_cases(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool
) -> None:
    if ok:
        merkle.verify_consistency(first, second, proof, root1, root2)
    else:
        with pytest.raises(ProofMismatch):
            merkle.verify_consistency(first, second, proof, root1, root2)


# --- properties against the RFC reference ----------------------------------------------------

PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(st.lists(st.binary(max_size=12), max_size=300))
def test_root_equals_mth(entries: list[bytes]) -> None:
    assert merkle.root_from_leaf_hashes([merkle.leaf_hash(x) for x in entries]) == ref.mth(entries)


@st.composite
def inclusion_case(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(1, 300))
    salt = draw(st.binary(max_size=4))
    return entries_for(salt, size), draw(st.integers(0, size - 1))


@PROPERTY
@given(inclusion_case(), st.integers(0, 320), st.integers(1, 320))
def test_inclusion_proofs_match_the_rfc_and_bind_the_index(
    case: tuple[list[bytes], int], other_index: int, other_size: int
) -> None:
    entries, index = case
    size = len(entries)
    leaf_hashes = [merkle.leaf_hash(x) for x in entries]
    proof = merkle.inclusion_proof(index, size, getter(perfect_nodes(leaf_hashes)))
    assert proof == ref.path(index, entries)
    root = ref.mth(entries)
    merkle.verify_inclusion(leaf_hashes[index], index, size, proof, root)

    other_index %= size
    if other_index != index:
        with pytest.raises(ProofMismatch):
            merkle.verify_inclusion(leaf_hashes[index], other_index, size, proof, root)
    # The hashes do not encode the tree size (the signed checkpoint does): a proof verifies
    # for another size exactly when that size gives the leaf a path of the same shape.
    if other_size != size and index < other_size:
        same_shape = ref.path_shape(index, other_size) == ref.path_shape(index, size)
        if same_shape:
            merkle.verify_inclusion(leaf_hashes[index], index, other_size, proof, root)
        else:
            with pytest.raises(ProofMismatch):
                merkle.verify_inclusion(leaf_hashes[index], index, other_size, proof, root)
    for position in range(len(proof)):
        wrong = list(proof)
        wrong[position] = flip(wrong[position], position % 8)
        with pytest.raises(ProofMismatch):
            merkle.verify_inclusion(leaf_hashes[index], index, size, wrong, root)


@st.composite
def consistency_case(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(1, 300))
    salt = draw(st.binary(max_size=4))
    return entries_for(salt, size), draw(st.integers(1, size))


@PROPERTY
@given(consistency_case(), st.integers(1, 320), st.integers(1, 320))
def test_consistency_proofs_match_the_rfc_and_bind_the_first_size(
    case: tuple[list[bytes], int], other_first: int, other_second: int
) -> None:
    entries, first = case
    second = len(entries)
    leaf_hashes = [merkle.leaf_hash(x) for x in entries]
    proof = merkle.consistency_proof(first, second, getter(perfect_nodes(leaf_hashes)))
    assert proof == ref.proof(first, entries)
    root1, root2 = ref.mth(entries[:first]), ref.mth(entries)
    merkle.verify_consistency(first, second, proof, root1, root2)
    if first == second:
        return

    other_first %= second
    if other_first not in (0, first):
        with pytest.raises(ProofMismatch):
            merkle.verify_consistency(other_first, second, proof, root1, root2)
    with pytest.raises(ProofMismatch):
        merkle.verify_consistency(first, second, proof, root2, root1)
    # As for inclusion, another second size verifies exactly when the proof has its shape.
    if other_second not in (first, second) and first < other_second:
        if ref.proof_shape(first, other_second) == ref.proof_shape(first, second):
            merkle.verify_consistency(first, other_second, proof, root1, root2)
        else:
            with pytest.raises(ProofMismatch):
                merkle.verify_consistency(first, other_second, proof, root1, root2)
    for position in range(len(proof)):
        wrong = list(proof)
        wrong[position] = flip(wrong[position], position % 8)
        with pytest.raises(ProofMismatch):
            merkle.verify_consistency(first, second, wrong, root1, root2)
    with pytest.raises(ProofMismatch):
        merkle.verify_consistency(first, second, proof[:-1], root1, root2)
    with pytest.raises(ProofMismatch):
        merkle.verify_consistency(first, second, [*proof, root2], root1, root2)


# --- exhaustive small trees, and each argument check by its own error ------------------------


def _small_tree(size: int) -> tuple[list[bytes], merkle.GetNode]:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(size)]

    def get_node(level: int, index: int) -> bytes:
        return merkle.root_from_leaf_hashes(leaves[index << level : (index + 1) << level])

    return leaves, get_node


def test_every_inclusion_proof_of_small_trees_verifies() -> None:
    for size in range(1, 34):
        leaves, get_node = _small_tree(size)
        root = merkle.root_from_leaf_hashes(leaves)
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, get_node)
            merkle.verify_inclusion(leaves[index], index, size, proof, root)
            if len(proof) > 1:
                with pytest.raises(ProofMismatch):
                    merkle.verify_inclusion(leaves[index], index, size, proof[::-1], root)


def test_every_consistency_proof_of_small_trees_verifies() -> None:
    for second in range(1, 34):
        leaves, get_node = _small_tree(second)
        second_root = merkle.root_from_leaf_hashes(leaves)
        for first in range(1, second + 1):
            first_root = merkle.root_from_leaf_hashes(leaves[:first])
            proof = merkle.consistency_proof(first, second, get_node)
            merkle.verify_consistency(first, second, proof, first_root, second_root)
            if first < second:
                with pytest.raises(ProofMismatch):
                    merkle.verify_consistency(first, second, proof, second_root, second_root)


def test_an_empty_ephemeral_run_is_no_run() -> None:
    a, b, c = (bytes([n]) * 32 for n in (1, 2, 3))
    nodes = ProofNodes(((0, 0), (0, 1), (0, 2)), 2, 2)
    assert merkle.assemble_proof(nodes, [a, b, c]) == [a, b, c]


def test_hash_arguments_are_checked_by_name() -> None:
    leaves, get_node = _small_tree(4)
    root = merkle.root_from_leaf_hashes(leaves)
    proof = merkle.inclusion_proof(1, 4, get_node)
    with pytest.raises(ProofMismatch, match="leaf hash is not a 32-byte hash"):
        merkle.verify_inclusion(b"short", 1, 4, proof, root)
    with pytest.raises(ProofMismatch, match="proof hash 1 is not a 32-byte hash"):
        merkle.verify_inclusion(leaves[1], 1, 4, [proof[0], b"short"], root)
    with pytest.raises(ProofMismatch, match="root hash is not a 32-byte hash"):
        merkle.verify_inclusion(leaves[1], 1, 4, proof, b"short")
    first_root = merkle.root_from_leaf_hashes(leaves[:3])
    consistency = merkle.consistency_proof(3, 4, get_node)
    with pytest.raises(ProofMismatch, match="first root is not a 32-byte hash"):
        merkle.verify_consistency(3, 4, consistency, b"short", root)
    with pytest.raises(ProofMismatch, match="second root is not a 32-byte hash"):
        merkle.verify_consistency(3, 4, consistency, first_root, b"short")
    with pytest.raises(ProofMismatch, match="proof hash 0 is not a 32-byte hash"):
        merkle.verify_consistency(3, 4, [b"short", *consistency[1:]], first_root, root)


@pytest.mark.parametrize(("first", "second"), [(-1, 0), (-1, 3), (4, 3)])
def test_consistency_verification_rejects_bad_sizes_by_name(first: int, second: int) -> None:
    with pytest.raises(ProofMismatch, match="consistency needs 0 <= first <= second"):
        merkle.verify_consistency(first, second, [], merkle.EMPTY_ROOT, merkle.EMPTY_ROOT)
