"""A process that appends blocks to a store and dies by SIGKILL (for test_crash.py).

`python -m tests.ledger.crash_child PATH BLOCKS PUTS`: append BLOCKS blocks of registers,
grants and uses; then, while writing one more block's batch, SIGKILL itself after PUTS puts
(PUTS < 0: append forever, printing each height, until killed from outside).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from typing import Any

from ledger.events import Admit, Grant, Register, Use
from ledger.store import Store
from tests.ledger.helpers import ChainBuilder, make_genesis, make_key

SEED = 7_000


def genesis_and_keys() -> tuple[Any, Any, Any]:
    keys, registrar, genesis = make_genesis(seed=SEED)
    return keys, registrar, genesis


class DyingBatch:
    """A write batch that kills the process after `puts` puts, before it is written."""

    def __init__(self, batch: Any, puts: int) -> None:
        self._batch = batch
        self._left = puts

    def __enter__(self) -> DyingBatch:
        self._batch.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._batch.__exit__(*exc)

    def put(self, key: bytes, value: bytes) -> None:
        if self._left <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
        self._left -= 1
        self._batch.put(key, value)


class DyingDB:
    def __init__(self, db: Any, puts: int) -> None:
        self._db = db
        self._puts = puts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def write_batch(self, **kw: Any) -> DyingBatch:
        return DyingBatch(self._db.write_batch(**kw), self._puts)


def block_events(chain: ChainBuilder, height: int, keys: list[Any]) -> list[Any]:
    alice, bob = keys
    datasets = [hashlib.sha256(f"{height}-{i}".encode()).digest() for i in range(4)]
    events = [chain.ev(alice, Register, dataset=d, meta={}, open=False) for d in datasets]
    events.append(
        chain.ev(
            alice, Grant, dataset=datasets[0], to=bob.public_key, purposes=("a",), reshare=False
        )
    )
    events.append(chain.ev(bob, Use, dataset=datasets[0], purpose="a"))
    return events


def main(path: str, blocks: int, puts: int) -> None:
    keys, registrar, genesis = genesis_and_keys()
    store = Store(path, genesis)
    chain = ChainBuilder(store, keys)
    people = [make_key(seed=SEED + 50), make_key(seed=SEED + 51)]
    if store.height == 0:
        chain.append(
            [
                chain.ev(registrar, Admit, subject=k.public_key, role="participant", name=f"p{i}")
                for i, k in enumerate(people)
            ]
        )
    for _ in range(blocks):
        chain.append(block_events(chain, store.height + 1, people))
        print(store.height, flush=True)
    if puts >= 0:
        store.db = DyingDB(store.db, puts)  # type: ignore[assignment]
        chain.append(block_events(chain, store.height + 1, people))
        raise SystemExit("the batch should have killed this process")
    while True:
        chain.append(block_events(chain, store.height + 1, people))
        print(store.height, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
