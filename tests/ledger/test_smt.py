"""The authenticated state map (ledger/smt.py, docs/PROTOCOL.md §17): the batch update and
the proofs against a naive reference map, the hashing and proof format pinned by numbers,
and the known-answer vectors in tests/vectors/state_map.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import rules, smt, store
from ledger.errors import Corruption, Malformed, VerificationFailed
from ledger.events import Register
from ledger.rules import next_history
from ledger.store import ChainReader, Store
from tests.ledger.helpers import ChainBuilder, make_genesis

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "state_map.json"


class MemoryMap:
    """The map over a dict of tiles, updated block by block as a store does."""

    def __init__(self) -> None:
        self.tiles: dict[smt.TileId, smt.Tile] = {}
        self.root_entry: bytes | None = None

    def read(self, tile: smt.TileId) -> smt.Tile | None:
        return self.tiles.get(tile)

    def apply(self, writes: dict[bytes, bytes]) -> bytes:
        update = smt.update(self.read, self.root_entry, writes)
        # a stored tile goes through its storage encoding
        for tile, value in update.tiles.items():
            self.tiles[tile] = smt.decode_tile(smt.encode_tile(value))
        self.root_entry = update.root_entry
        return update.root

    def prove(self, key: bytes) -> smt.StateProof:
        return smt.prove(self.read, self.root_entry, key)


keys = st.binary(min_size=1, max_size=6)
values = st.binary(min_size=0, max_size=8)
blocks = st.lists(st.dictionaries(keys, values, max_size=12), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks, st.lists(keys, max_size=6))
def test_updates_match_the_reference_and_every_proof_verifies(
    history: list[dict[bytes, bytes]], probes: list[bytes]
) -> None:
    tree = MemoryMap()
    reference: dict[bytes, bytes] = {}
    for writes in history:
        root = tree.apply(writes)
        reference.update(writes)
        assert root == smt.reference_root(reference.items())
    for key, value in reference.items():
        smt.verify(root, key, value, tree.prove(key))
    for key in probes:
        if key not in reference:
            smt.verify(root, key, None, tree.prove(key))


def _flip(data: bytes, bit: int) -> bytes:
    raw = bytearray(data)
    raw[bit // 8] ^= 1 << (bit % 8)
    return bytes(raw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, min_size=2, max_size=40), st.data())
def test_any_one_bit_change_fails(entries: dict[bytes, bytes], data: st.DataObject) -> None:
    tree = MemoryMap()
    root = tree.apply(entries)
    key = data.draw(st.sampled_from(sorted(entries)))
    value = entries[key]
    proof = tree.prove(key)
    absent = data.draw(keys.filter(lambda k: k not in entries))
    absence = tree.prove(absent)
    claims: list[tuple[bytes, bytes | None, smt.StateProof]] = []
    for i, sibling in enumerate(proof.siblings):
        bit = data.draw(st.integers(0, 255))
        siblings = (*proof.siblings[:i], _flip(sibling, bit), *proof.siblings[i + 1 :])
        claims.append((key, value, smt.StateProof(siblings, proof.leaf)))
    claims.append((key, _flip(value, 0) if value else b"\x00", proof))
    claims.append((_flip(key, data.draw(st.integers(0, 8 * len(key) - 1))), value, proof))
    claims.append((key, None, proof))  # a member claimed absent
    claims.append((absent, value, absence))  # an absent key claimed present
    if absence.leaf is not None:
        path, digest = absence.leaf
        claims.append((absent, None, smt.StateProof(absence.siblings, (path, _flip(digest, 3)))))
    if absence.siblings:
        cut = smt.StateProof(absence.siblings[:-1], absence.leaf)
        claims.append((absent, None, cut))
    for claim_key, claim_value, claim_proof in claims:
        with pytest.raises(VerificationFailed):
            smt.verify(root, claim_key, claim_value, claim_proof)
    smt.verify(root, key, value, proof)
    smt.verify(root, absent, None, absence)


def test_empty_map_and_one_leaf() -> None:
    tree = MemoryMap()
    assert tree.apply({}) == smt.EMPTY == bytes(32)
    proof = tree.prove(b"k")
    assert proof == smt.StateProof((), None)
    smt.verify(smt.EMPTY, b"k", None, proof)
    root = tree.apply({b"k": b"v"})
    path = hashlib.sha256(b"k").digest()
    value_hash = hashlib.sha256(b"v").digest()
    assert root == hashlib.sha256(b"\x02" + path + value_hash).digest()
    assert tree.prove(b"k") == smt.StateProof((), (path, value_hash))
    # an absent key ends at the one leaf, with no siblings
    smt.verify(root, b"other", None, tree.prove(b"other"))


def test_history_step_is_pinned() -> None:
    """docs/PROTOCOL.md §17.4: H(0x04 || head || leaf_index (8 bytes) || leaf hash)."""
    head, leaf = bytes(range(32)), bytes(range(32, 64))
    step = next_history(head, 7, leaf)
    assert step == hashlib.sha256(b"\x04" + head + (7).to_bytes(8, "big") + leaf).digest()
    assert bytes(32) == rules.EMPTY_HISTORY


def test_hashing_is_domain_separated_from_the_log() -> None:
    """docs/PROTOCOL.md §17.2: 0x02 leaf, 0x03 node (the RFC 9162 log uses 0x00 / 0x01)."""
    assert smt.LEAF_PREFIX == b"\x02" and smt.NODE_PREFIX == b"\x03"
    a, b = bytes(range(32)), bytes(range(32, 64))
    assert smt.node_hash(a, b) == hashlib.sha256(b"\x03" + a + b).digest()
    assert smt.leaf_hash(a, b) == hashlib.sha256(b"\x02" + a + b).digest()
    assert smt.node_hash(a, b) != hashlib.sha256(b"\x01" + a + b).digest()


def test_a_leaf_moves_down_when_a_neighbour_arrives() -> None:
    # two keys whose paths share their first bit: the tree splits below it
    tree = MemoryMap()
    tree.apply({b"a": b"1"})
    first = int.from_bytes(smt.key_path(b"a"), "big") >> 255
    other = next(
        k
        for k in (bytes([i]) for i in range(256))
        if int.from_bytes(smt.key_path(k), "big") >> 255 == first and k != b"a"
    )
    root = tree.apply({other: b"2"})
    assert root == smt.reference_root([(b"a", b"1"), (other, b"2")])
    proof = tree.prove(b"a")
    assert len(proof.siblings) >= 2 and proof.siblings[0] == smt.EMPTY


def test_proof_json_round_trip_and_malformed_proofs() -> None:
    tree = MemoryMap()
    tree.apply({bytes([i]): bytes([i]) for i in range(50)})
    proof = tree.prove(b"\x07")
    assert smt.StateProof.from_json(json.loads(json.dumps(proof.to_json()))) == proof
    absent = tree.prove(b"absent")
    assert smt.StateProof.from_json(absent.to_json()) == absent
    for bad in (
        None,
        [],
        {"siblings": []},
        {"siblings": "x", "leaf": None},
        {"siblings": ["00"], "leaf": None},
        {"siblings": [], "leaf": {"path": "00" * 32}},
        {"siblings": [], "leaf": None, "extra": 1},
        {"siblings": ["zz" * 32], "leaf": None},
        {"siblings": ["00" * 32] * 257, "leaf": None},
    ):
        with pytest.raises(Malformed):
            smt.StateProof.from_json(bad)


def test_proof_size_is_about_log2_n_hashes() -> None:
    """At 10^4 keys a proof holds about log2(10^4) + 1 ~ 14 siblings (bench: 10^6)."""
    tree = MemoryMap()
    for start in range(0, 10_000, 2_000):
        tree.apply({i.to_bytes(4, "big"): b"v" for i in range(start, start + 2_000)})
    depths = [len(tree.prove(i.to_bytes(4, "big")).siblings) for i in range(0, 10_000, 97)]
    assert 12 <= sum(depths) / len(depths) <= 17
    assert max(depths) < 40


def test_a_missing_tile_is_corruption() -> None:
    tree = MemoryMap()
    tree.apply({bytes([i]): b"v" for i in range(20)})
    tree.tiles.clear()
    with pytest.raises(Exception, match="missing"):
        tree.prove(b"\x01")


# --- known-answer vectors --------------------------------------------------------------------


def vector_entries() -> list[tuple[bytes, bytes]]:
    """The vectors' map: 16 keys "k0".."k15" with values "v0".."v15"."""
    return [(f"k{i}".encode(), f"v{i}".encode()) for i in range(16)]


def build_vectors() -> dict[str, Any]:
    tree = MemoryMap()
    entries = vector_entries()
    root_after_8 = tree.apply(dict(entries[:8]))
    root = tree.apply(dict(entries[8:]))
    proofs = []
    for key, value in (entries[0], entries[5], entries[15]):
        proofs.append({"key": key.hex(), "value": value.hex(), "proof": tree.prove(key).to_json()})
    # absent keys: some end at another key's leaf; the first "x<i>" ends at an empty subtree
    empty_end = next(
        k for k in (f"x{i}".encode() for i in range(1_000)) if tree.prove(k).leaf is None
    )
    for key in (b"absent", b"k16", b"zzz", empty_end):
        proofs.append({"key": key.hex(), "value": None, "proof": tree.prove(key).to_json()})
    a, b = bytes(range(32)), bytes(range(32, 64))
    return {
        "description": (
            "provledger state map (docs/PROTOCOL.md §17): path = SHA-256(key), leaf = "
            "SHA-256(0x02 || path || SHA-256(value)), node = SHA-256(0x03 || left || right), "
            "empty = 32 zero bytes, a subtree with one leaf hashes to that leaf. All hex."
        ),
        "hashes": {
            "path_of_k0": smt.key_path(b"k0").hex(),
            "leaf_of_path_0_31_value_hash_32_63": smt.leaf_hash(a, b).hex(),
            "node_of_0_31_and_32_63": smt.node_hash(a, b).hex(),
            "history_step_from_empty_leaf_7_leaf_hash_0_31": next_history(
                rules.EMPTY_HISTORY, 7, a
            ).hex(),
        },
        "maps": [
            {"entries": [[k.hex(), v.hex()] for k, v in entries[:8]], "root": root_after_8.hex()},
            {"entries": [[k.hex(), v.hex()] for k, v in entries], "root": root.hex()},
        ],
        "proofs": {"root": root.hex(), "cases": proofs},
    }


def test_vectors_file_is_current() -> None:
    """The JSON vectors in the repo are exactly what this implementation produces
    (regenerate with `python -m tests.ledger.test_smt` after a deliberate change)."""
    assert json.loads(VECTORS.read_text()) == build_vectors()


def test_vectors_check_with_the_reference_and_the_verifier() -> None:
    doc = json.loads(VECTORS.read_text())
    for case in doc["maps"]:
        entries = [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in case["entries"]]
        assert smt.reference_root(entries).hex() == case["root"]
    root = bytes.fromhex(doc["proofs"]["root"])
    for case in doc["proofs"]["cases"]:
        value = None if case["value"] is None else bytes.fromhex(case["value"])
        proof = smt.StateProof.from_json(case["proof"])
        smt.verify(root, bytes.fromhex(case["key"]), value, proof)
    assert doc["proofs"]["root"] == doc["maps"][1]["root"]
    ends = {case["proof"]["leaf"] is None for case in doc["proofs"]["cases"] if not case["value"]}
    assert ends == {True, False}  # both shapes of non-membership


# --- the store's tile caches (ledger/store.py): bounded, and the top stays decoded ----------


class CountingReader:
    """A LevelDB stand-in holding encoded tiles; counts the reads of each tile depth."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.tile_reads: dict[int, int] = {}

    def get(self, key: bytes) -> bytes | None:
        if key != smt.ROOT_KEY:
            self.tile_reads[key[1]] = self.tile_reads.get(key[1], 0) + 1
        return self.data.get(key)


def _cached_map(cache: int, top_depth: int) -> tuple[CountingReader, ChainReader]:
    reader = CountingReader()
    return reader, ChainReader(reader, cache, top_depth)  # type: ignore[arg-type]


def _commit(reader: CountingReader, chain: ChainReader, writes: dict[bytes, bytes]) -> bytes:
    """What Store.execute and append_block do with the map: update through the caches,
    store the tiles, hand them to the caches."""
    update = smt.update(chain._map_tile, chain._map_root, writes)
    for tile, value in update.tiles.items():
        reader.data[smt.tile_key(tile)] = smt.encode_tile(value)
    chain._remember_map_tiles(update)
    return update.root


def test_store_map_caches_stay_bounded_and_agree_with_the_reference() -> None:
    reader, chain = _cached_map(cache=8, top_depth=8)
    reference: dict[bytes, bytes] = {}
    for block in range(6):
        writes = {f"k{block}-{i}".encode(): b"v%d" % i for i in range(300)}
        writes[b"k0-1"] = b"changed %d" % block
        root = _commit(reader, chain, writes)
        reference.update(writes)
        assert root == smt.reference_root(reference.items())
        assert len(chain._map_tiles) <= 8
        assert len(chain._map_top) <= 1 + 16  # every tile above depth 8
        assert all(t < 8 for t, _ in chain._map_top)
        assert all(t >= 8 for t, _ in chain._map_tiles)
    for key in list(reference)[::37]:
        smt.verify(root, key, reference[key], smt.prove(chain._map_tile, chain._map_root, key))


def test_store_map_top_tiles_are_read_once_and_never_evicted() -> None:
    reader, chain = _cached_map(cache=1, top_depth=8)
    entries = {b"key %d" % i: b"value" for i in range(2_000)}
    root = _commit(reader, chain, entries)
    cold, cold_chain = _cached_map(cache=1, top_depth=8)
    cold.data = reader.data
    cold_chain._map_root = chain._map_root
    for _ in range(3):
        for key in list(entries)[:200]:
            proof = smt.prove(cold_chain._map_tile, cold_chain._map_root, key)
            smt.verify(root, key, entries[key], proof)
    # 200 keys x 3 rounds pass through the 17 tiles above depth 8: each is read once; the
    # one-tile LRU below makes nearly every deeper read a cold one
    assert cold.tile_reads[0] + cold.tile_reads[4] <= 1 + 16
    assert cold.tile_reads[8] > 3 * 100


def test_store_map_cache_bounds_are_pinned() -> None:
    assert store.MAP_TOP_DEPTH == 16
    assert store.MAP_TOP_TILES == sum(16**level for level in range(4)) == 4_369
    assert store.MAP_TILE_CACHE == 8_192


def test_a_store_with_the_map_refuses_to_run_without_it(tmp_path: Path) -> None:
    keys, registrar, genesis = make_genesis(seed=7)
    with Store(tmp_path / "chain", genesis) as with_map:
        builder = ChainBuilder(with_map, keys)
        builder.append([builder.ev(registrar, Register, dataset=bytes(32), meta={}, open=False)])
    with pytest.raises(Corruption, match="holds a state map"):
        Store(tmp_path / "chain", genesis, state_map=False)
    with Store(tmp_path / "plain", genesis, state_map=False) as plain:
        builder = ChainBuilder(plain, keys)
        builder.append([builder.ev(registrar, Register, dataset=bytes(32), meta={}, open=False)])
        assert plain.state_root == smt.EMPTY


if __name__ == "__main__":
    VECTORS.parent.mkdir(parents=True, exist_ok=True)
    VECTORS.write_text(json.dumps(build_vectors(), indent=2) + "\n")
    print(f"wrote {VECTORS}")
