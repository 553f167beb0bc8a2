"""A Replica that cannot be assembled releases the store it opened (its LevelDB lock); the
store's memtable size is the node's own (spread by its key)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from consensus import ConsensusConfig, MemorySignerPersistence
from ledger.store import WRITE_BUFFER_BYTES, Store
from node.config import NodeSettings
from node.ops.homes import init_cluster, node_home
from node.server.replica import Replica, ReplicaLimits, spread_write_buffer
from node.server.service import NodeService
from tests.ledger.helpers import make_genesis


class BrokenPersistence(MemorySignerPersistence):
    def load(self) -> None:
        raise OSError("corrupt signer state")


def test_a_failed_assembly_closes_the_store(tmp_path: Path) -> None:
    keys, _, genesis = make_genesis(1)
    with pytest.raises(OSError, match="corrupt signer state"):
        Replica(
            genesis,
            tmp_path / "data",
            ReplicaLimits(),
            ConsensusConfig(),
            keys[0],
            BrokenPersistence(),
            lambda: 0,
            effects=None,  # type: ignore[arg-type]  # never reached
        )
    with Store(tmp_path / "data", genesis) as store:  # the lock was released
        assert store.height == 0


def test_a_nodes_memtable_size_is_fixed_by_its_key_within_the_spread() -> None:
    """docs/PROTOCOL.md §12.2: 12 MiB + SHA-256(key)[0:4] mod (8 MiB + 1)."""
    keys, _, _ = make_genesis(4)
    sizes = [spread_write_buffer(k.public_key) for k in keys]
    for key, size in zip(keys, sizes, strict=True):
        digest = hashlib.sha256(key.public_key).digest()
        assert size == (12 << 20) + int.from_bytes(digest[:4], "big") % ((8 << 20) + 1)
        assert spread_write_buffer(key.public_key) == size  # the same at every start
    assert all(12 << 20 <= size <= 20 << 20 for size in sizes)
    assert max(sizes) - min(sizes) >= 1 << 20  # four nodes do not flush in step
    assert spread_write_buffer(b"\x00" * 33) != spread_write_buffer(b"\x01" * 33)


def test_the_replica_opens_its_store_with_the_memtable_size_it_is_given(tmp_path: Path) -> None:
    keys, _, genesis = make_genesis(1)
    size = spread_write_buffer(keys[0].public_key)
    replica = Replica(
        genesis,
        tmp_path / "data",
        ReplicaLimits(),
        ConsensusConfig(),
        keys[0],
        MemorySignerPersistence(),
        lambda: 0,
        effects=None,  # type: ignore[arg-type]  # fed nothing
        write_buffer_bytes=size,
    )
    try:
        assert replica.store.write_buffer_bytes == size
    finally:
        replica.close()
    with Store(tmp_path / "data", genesis) as store:
        assert store.write_buffer_bytes == WRITE_BUFFER_BYTES == 16 << 20


def test_a_node_service_spreads_its_memtable_by_its_own_key(tmp_path: Path) -> None:
    init_cluster(tmp_path / "c", 2, base_port=9300)
    services = [NodeService(NodeSettings.load(node_home(tmp_path / "c", i))) for i in range(2)]
    try:
        for service in services:
            assert service.public_key is not None
            expected = spread_write_buffer(service.public_key)
            assert service.store.write_buffer_bytes == expected
        assert services[0].store.write_buffer_bytes != services[1].store.write_buffer_bytes
    finally:
        for service in services:
            service.close()
