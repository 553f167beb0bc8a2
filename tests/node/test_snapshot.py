"""Snapshots (docs/PROTOCOL.md §20): round trip on real LevelDB stores, a node following on
from one, pruned reads, and refusal of any damaged or forged snapshot with nothing left."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger import codec, merkle, provenance, smt
from ledger import store as store_module
from ledger.crypto import PrivateKey
from ledger.errors import LedgerError, Pruned, VerificationFailed
from ledger.events import Admit, Approve, Derive, Grant, Propose, Register, SignedEvent, Use
from ledger.genesis import Genesis
from ledger.governance import ADD_VALIDATOR, Change
from ledger.rules import is_authenticated
from ledger.store import STATE_PREFIX, Store
from node.server.errors import Busy
from node.server.snapshot import (
    FRAME_LIMIT,
    SNAPSHOT_MAGIC,
    TMP_SUFFIX,
    FrameWriter,
    SnapshotRefused,
    bounded_stream,
    install_snapshot,
    snapshot_chunks,
    write_snapshot_of_store,
)
from tests.ledger.helpers import ChainBuilder, make_genesis, make_key


@dataclass
class Chain:
    genesis: Genesis
    keys: list[PrivateKey]
    registrar: PrivateKey
    path: Path
    old_datasets: list[bytes]


def dataset() -> bytes:
    return hashlib.sha256(os.urandom(32)).digest()


def build_chain(path: Path, blocks: int = 6) -> Chain:
    """A store whose blocks admit participants, register, grant, use and derive (every kind
    of rules record, indexes included), 34 events in all."""
    keys, registrar, genesis = make_genesis(seed=500)
    datasets: list[bytes] = []
    with Store(path, genesis) as store:
        chain = ChainBuilder(store, keys)
        analyst = make_key(900)
        chain.append(
            [chain.ev(registrar, Admit, subject=analyst.public_key, role="participant", name="a")]
        )
        for b in range(blocks):
            batch: list[SignedEvent] = []
            for _ in range(5):
                d = dataset()
                datasets.append(d)
                batch.append(chain.ev(registrar, Register, dataset=d, meta={"b": b}, open=False))
            chain.append(batch)
        first, second = datasets[0], datasets[1]
        grant = chain.ev(
            registrar,
            Grant,
            dataset=first,
            to=analyst.public_key,
            purposes=("analytics", "derive"),
            reshare=False,
        )
        chain.append([grant])
        chain.append(
            [
                chain.ev(analyst, Use, dataset=first, purpose="analytics"),
                chain.ev(registrar, Derive, dataset=dataset(), inputs=(first, second), meta={}),
            ]
        )
    return Chain(genesis, keys, registrar, path, datasets)


def snapshot_bytes(chain: Chain) -> bytes:
    with Store(chain.path, chain.genesis) as store, store.view() as view:
        return b"".join(snapshot_chunks(view))


def state_records(store: Store) -> dict[bytes, bytes]:
    return dict(store.items(STATE_PREFIX))


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return build_chain(tmp_path / "old")


def test_round_trip_and_the_new_node_follows_on(chain: Chain, tmp_path: Path) -> None:
    out = tmp_path / "snap.bin"
    info = write_snapshot_of_store(chain.path, chain.genesis, out)
    assert out.stat().st_size == info.size and info.height == 9 and info.tree_size == 34
    new_path = tmp_path / "new" / "data"
    with open(out, "rb") as handle:
        header = install_snapshot(handle, new_path, chain.genesis)
    assert header.height == 9
    with Store(chain.path, chain.genesis) as old, Store(new_path, chain.genesis) as new:
        assert (new.height, new.tree_size, new.base, new.base_leaf) == (9, 34, 9, 34)
        assert new.root() == old.root() and new.state_root == old.state_root
        assert new.head_hash == old.head_hash and new.head_time == old.head_time
        assert new.header(9) == old.header(9) and new.commit(9) == old.commit(9)
        records = state_records(old)
        assert records == state_records(new)
        assert any(not is_authenticated(k) for k in records), "indexes are carried too"
        for key in list(records)[::3]:
            if is_authenticated(key):
                assert new.state_proof(key) == old.state_proof(key)
        absent = b"sd" + dataset()
        assert new.state_proof(absent) == old.state_proof(absent)
        # Both follow on with the same blocks and reach the same roots.
        registered = dataset()
        chain_old = ChainBuilder(old, chain.keys)
        chain_new = ChainBuilder(new, chain.keys)
        for events in (
            [chain_old.ev(chain.registrar, Register, dataset=registered, meta={}, open=True)],
            [
                chain_old.ev(chain.registrar, Register, dataset=dataset(), meta={}, open=False)
                for _ in range(40)
            ],
            [chain_old.ev(chain.registrar, Use, dataset=chain.old_datasets[3], purpose="x")],
        ):
            a = chain_old.append(events)
            b = chain_new.append(events)
            assert (b.tree_root, b.state_root, len(b.accepted)) == (
                a.tree_root,
                a.state_root,
                len(a.accepted),
            )
        assert new.head_hash == old.head_hash
        # New history is served in full: proofs against any size since the base.
        for leaf in (34, 35, 70, new.tree_size - 1):
            assert new.inclusion_proof(leaf, new.tree_size) == old.inclusion_proof(
                leaf, old.tree_size
            )
            assert new.envelope(leaf) == old.envelope(leaf)
        assert new.consistency_proof(34, new.tree_size) == old.consistency_proof(34, 76)
        assert new.block(10) == old.block(10)
        assert new.dataset_leaves(registered) == old.dataset_leaves(registered)
        # A duplicate of an event from before the snapshot is still refused.
        again = chain_new.execute([old.event_at(5)])
        assert not again.accepted and len(again.rejected) == 1


def test_older_history_is_pruned_with_a_clear_error(chain: Chain, tmp_path: Path) -> None:
    new_path = tmp_path / "new"
    install_snapshot(io.BytesIO(snapshot_bytes(chain)), new_path, chain.genesis)
    with Store(new_path, chain.genesis) as new:
        for read in (
            lambda: new.envelope(0),
            lambda: new.block(3),
            lambda: new.block(9),
            lambda: new.inclusion_proof(10, new.tree_size),
            lambda: new.consistency_proof(5, new.tree_size),
            lambda: new.root(20),
            lambda: new.dataset_leaves(chain.old_datasets[0]),
            lambda: new.children(chain.old_datasets[0]),
            lambda: new.actor_leaves(chain.registrar.public_key),
        ):
            with pytest.raises(Pruned, match="started from a snapshot at height 9; older events"):
                read()
        assert new.header(3) is None and new.commit(3) is None
        assert new.locate(new.genesis.hash()) is None
        # reads after the base are not pruned
        assert new.actor_leaves(chain.registrar.public_key, after=33) == []
        assert new.root(34) == new.root()


def test_a_snapshot_of_a_snapshot_node_is_the_same(chain: Chain, tmp_path: Path) -> None:
    data = snapshot_bytes(chain)
    install_snapshot(io.BytesIO(data), tmp_path / "b", chain.genesis)
    with Store(tmp_path / "b", chain.genesis) as b, b.view() as view:
        assert b"".join(snapshot_chunks(view)) == data


def assert_refused(data: bytes, chain: Chain, target: Path) -> LedgerError:
    with pytest.raises(LedgerError) as info:
        install_snapshot(io.BytesIO(data), target, chain.genesis)
    assert not target.exists(), "a refused snapshot writes nothing"
    assert not target.with_name(target.name + TMP_SUFFIX).exists()
    return info.value


def test_any_flipped_byte_is_refused_and_nothing_written(chain: Chain, tmp_path: Path) -> None:
    data = snapshot_bytes(chain)
    target = tmp_path / "new" / "data"
    positions = sorted({*range(0, len(data), max(1, len(data) // 97)), len(data) - 1, 9, 40})
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        assert_refused(bytes(flipped), chain, target)
    assert_refused(data[:-1], chain, target)
    assert_refused(data + b"\x00", chain, target)
    install_snapshot(io.BytesIO(data), target, chain.genesis)


def reframe(data: bytes, change: dict[int, dict]) -> bytes:
    """The same snapshot with frames replaced and a valid checksum (a forger's file)."""
    frames, at = [], len(SNAPSHOT_MAGIC)
    while at < len(data) - 32:
        length = int.from_bytes(data[at : at + 4], "big")
        frames.append(codec.decode_map(data[at + 4 : at + 4 + length]))
        at += 4 + length
    writer = FrameWriter(SNAPSHOT_MAGIC)
    out = b""
    records = 0
    for n, frame in enumerate(frames[:-1]):
        frame = change.get(n, frame)
        records += len(frame.get("records", []))
        out += writer.frame(frame)
    return out + writer.end({**frames[-1]["end"], "records": records})


def test_forged_contents_with_a_valid_checksum_are_refused(chain: Chain, tmp_path: Path) -> None:
    data = snapshot_bytes(chain)
    assert reframe(data, {}) == data
    frames = []
    at = len(SNAPSHOT_MAGIC)
    while at < len(data) - 32:
        length = int.from_bytes(data[at : at + 4], "big")
        frames.append(codec.decode_map(data[at + 4 : at + 4 + length]))
        at += 4 + length
    records = frames[2]["records"]
    target = tmp_path / "t"

    def with_records(new: list) -> bytes:
        return reframe(data, {2: {"records": new}})

    authenticated = next(i for i, (k, _) in enumerate(records) if is_authenticated(k))
    changed = [list(r) for r in records]
    changed[authenticated][1] = changed[authenticated][1] + b"\x00"
    assert "state_root" in str(assert_refused(with_records(changed), chain, target))
    dropped = records[:authenticated] + records[authenticated + 1 :]
    assert "state_root" in str(assert_refused(with_records(dropped), chain, target))
    foreign = [[b"H" + bytes(8), b"x"], *records]
    assert "rules state" in str(assert_refused(with_records(foreign), chain, target))
    unsorted = [records[1], records[0], *records[2:]]
    assert "ascending" in str(assert_refused(with_records(unsorted), chain, target))
    frontier = list(frames[1]["frontier"])
    assert len(frontier) == 2  # 34 leaves: the subtrees of 32 and of 2
    for wrong in ([bytes(32), frontier[1]], frontier[:1], [*frontier, bytes(32)], []):
        forged_log = reframe(data, {1: {"frontier": wrong}})
        assert "frontier" in str(assert_refused(forged_log, chain, target))
    manifest = dict(frames[0])
    commit = dict(manifest["commit"])
    commit["signatures"] = commit["signatures"][:2]  # 2 of 4: not more than 2/3
    forged_commit = reframe(data, {0: {**manifest, "commit": commit}})
    assert isinstance(assert_refused(forged_commit, chain, target), VerificationFailed)
    bogus = [{"height": 3, "header_bytes": "00", "commit": {}, "validators": []}]
    forged_steps = reframe(data, {0: {**manifest, "transitions": bogus}})
    assert "transition" in str(assert_refused(forged_steps, chain, target))
    _, _, other = make_genesis(seed=77, chain_id="other")
    with pytest.raises(SnapshotRefused, match="another chain"):
        install_snapshot(io.BytesIO(data), target, other)


def test_an_oversized_frame_is_refused_before_it_is_read(chain: Chain, tmp_path: Path) -> None:
    data = SNAPSHOT_MAGIC + (FRAME_LIMIT + 1).to_bytes(4, "big")
    with pytest.raises(SnapshotRefused, match="over"):
        install_snapshot(io.BytesIO(data), tmp_path / "t", chain.genesis)


def test_a_store_is_never_overwritten(chain: Chain) -> None:
    with pytest.raises(LedgerError, match="already holds a store"):
        install_snapshot(io.BytesIO(snapshot_bytes(chain)), chain.path, chain.genesis)
    with Store(chain.path, chain.genesis) as store:
        assert store.base == 0 and store.height == 9


def test_streams_are_bounded() -> None:
    closed: list[int] = []
    first = bounded_stream("snapshot", iter([b"a", b"b"]), lambda: closed.append(1))
    with pytest.raises(Busy):
        bounded_stream("snapshot", iter([b"c"]), lambda: closed.append(2))
    assert closed == [2]
    other = bounded_stream("backup", iter([b"d"]), lambda: closed.append(3))
    assert list(other) == [b"d"]
    assert list(first) == [b"a", b"b"]
    assert closed == [2, 3, 1]
    assert list(bounded_stream("snapshot", iter([b"e"]), lambda: None)) == [b"e"]


def test_empty_log_snapshot(tmp_path: Path) -> None:
    keys, _, genesis = make_genesis(seed=600)
    with Store(tmp_path / "a", genesis) as store:
        ChainBuilder(store, keys).append([])
        assert store.tree_size == 0
        data = b"".join(snapshot_chunks(store))
    install_snapshot(io.BytesIO(data), tmp_path / "b", genesis)
    with Store(tmp_path / "b", genesis) as new:
        assert new.root() == merkle.EMPTY_ROOT and new.state_root == smt.EMPTY
        assert new.height == 1


def test_the_map_is_rebuilt_in_bounded_chunks(
    chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real_update = smt.update

    def recording(read: Any, root: Any, writes: Any) -> smt.MapUpdate:
        sizes.append(len(writes))
        return real_update(read, root, writes)

    monkeypatch.setattr(store_module, "SNAPSHOT_MAP_CHUNK", 4)
    monkeypatch.setattr(smt, "update", recording)
    install_snapshot(io.BytesIO(snapshot_bytes(chain)), tmp_path / "new", chain.genesis)
    assert len(sizes) > 5 and max(sizes) <= 4
    with Store(tmp_path / "new", chain.genesis) as new, Store(chain.path, chain.genesis) as old:
        assert new.state_root == old.state_root
        for key in (b"sd" + d for d in chain.old_datasets[:5]):
            assert new.state_proof(key) == old.state_proof(key)


def test_a_snapshot_after_a_validator_set_change_installs_and_follows_on(
    tmp_path: Path,
) -> None:
    """The snapshot's commit is signed by the new set: installing walks the transitions from
    genesis (docs/PROTOCOL.md §19.4), and the node then checks new blocks against that set,
    proves its own checkpoints to a verifier holding only genesis, and follows on."""
    keys, registrar, genesis = make_genesis(4, seed=7_700)
    joiner = make_key(seed=7_790)
    old_path = tmp_path / "old"
    with Store(old_path, genesis) as store:
        chain = ChainBuilder(store, [*keys, joiner])
        change = Change(ADD_VALIDATOR, public_key=joiner.public_key, name="e", url="", power=1)
        propose = chain.ev(keys[0], Propose, change=change.to_map())
        chain.append([propose])
        chain.append([chain.ev(k, Approve, proposal=propose.event_id) for k in keys[1:3]])
        chain.append([])
        registered = dataset()
        chain.append([chain.ev(registrar, Register, dataset=registered, meta={}, open=True)])
    out = tmp_path / "snap.bin"
    info = write_snapshot_of_store(old_path, genesis, out)
    assert info.height == 4
    new_path = tmp_path / "new"
    with open(out, "rb") as handle:
        install_snapshot(handle, new_path, genesis)
    with Store(old_path, genesis) as old, Store(new_path, genesis) as new:
        five = new.rules.validators_at(new.state(), 5)
        assert joiner.public_key in {v.public_key for v in five.validators}
        fresh = dataset()
        events = [
            ChainBuilder(old, keys).ev(registrar, Register, dataset=fresh, meta={}, open=True),
            ChainBuilder(old, keys).ev(registrar, Use, dataset=registered, purpose="x"),
        ]
        a = ChainBuilder(old, [*keys, joiner]).append(events)
        b = ChainBuilder(new, [*keys, joiner]).append(events)
        assert (a.state_root, a.tree_root) == (b.state_root, b.tree_root)
        assert new.header(5) == old.header(5)
        bundle = provenance.proof_bundle(new, fresh)
        assert bundle is not None
        assert [t["height"] for t in bundle["checkpoint"]["transitions"]] == [4]
        assert provenance.verify_bundle(bundle, genesis).checkpoint.height == 5
