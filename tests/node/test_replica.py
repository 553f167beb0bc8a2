"""A Replica that cannot be assembled releases the store it opened (its LevelDB lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus import ConsensusConfig, MemorySignerPersistence
from ledger.store import Store
from node.server.replica import Replica, ReplicaLimits
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
