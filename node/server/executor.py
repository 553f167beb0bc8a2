"""Block execution: builds, validates and commits blocks for the consensus core.

`BlockExecutor` implements consensus's `BlockSource` over the ledger store and the mempool,
verifies each event signature once per node (through the admission's `SignatureCache`), and
keeps the execution of every block it built or validated so a decided block is not executed
twice. An optional `CommitObserver` (the node's metrics) is told how long each synced block
write took and how long after its proposal the block committed; without one, no clock is read.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from ledger.blocks import Block, Commit
from ledger.errors import Corruption, LedgerError, RuleViolation
from ledger.genesis import Genesis
from ledger.store import Execution, Store
from node.server.admission import SignatureCache
from node.server.mempool import Mempool

# No longer a validity rule (block validity is judged by the chain and the block alone, and
# block times are bounded by proposer-based timestamps, docs/PROTOCOL.md §14); kept as the
# slack readiness allows a head block's time.
MAX_CLOCK_DRIFT_MS = 30_000
EXECUTION_CACHE = 16


class CommitObserver(Protocol):
    """Told of every block this node stores (its metrics; absent in the simulator)."""

    def block_stored(self, append_seconds: float, latency_ms: int) -> None:
        """`append_seconds`: the store's synced batch write; `latency_ms`: from the block's
        time (its proposal) to this commit, by the node's clock."""
        ...


class BlockExecutor:
    """Block production and execution for one node (the consensus `BlockSource`)."""

    def __init__(
        self,
        store: Store,
        genesis: Genesis,
        mempool: Mempool,
        clock: Callable[[], int],
        block_max_events: int,
        block_max_bytes: int,
        signatures: SignatureCache | None = None,
    ) -> None:
        self.store = store
        self.genesis = genesis
        self.mempool = mempool
        self.clock = clock
        # What this node puts in the blocks it builds (node-local, at most the chain's
        # limits); what it accepts from others is the chain's limits (genesis params).
        params = genesis.chain_params
        self.block_max_events = min(block_max_events, params.block_max_events)
        self.block_max_bytes = min(block_max_bytes, params.block_max_bytes)
        self._params = params
        self.signatures = signatures or SignatureCache()
        self._validators_hash = genesis.validators.hash()
        self._executions: OrderedDict[bytes, Execution] = OrderedDict()
        self.observer: CommitObserver | None = None

    def _remember(self, block_hash: bytes, execution: Execution) -> None:
        self._executions[block_hash] = execution
        while len(self._executions) > EXECUTION_CACHE:
            self._executions.popitem(last=False)

    # --- BlockSource ----------------------------------------------------------------------

    def has_pending(self) -> bool:
        return len(self.mempool) > 0

    def build_block(self, height: int, round: int, time: int, proposer: bytes) -> Block:
        """Take pending events up to the block size; invalid ones are dropped by execution."""
        assert height == self.store.height + 1
        time = max(time, self.store.head_time + 1)
        execution = self.store.execute(
            self.mempool.take(self.block_max_events, self.block_max_bytes), height, time
        )
        self.mempool.drop(execution.rejected)
        header = execution.header(
            self.genesis.chain_id, self.store.head_hash, proposer, self._validators_hash
        )
        block = Block(header, tuple(e.envelope for e in execution.accepted))
        self._remember(header.block_hash, execution)
        return block

    def validate_block(self, block: Block) -> bool:
        """The paper's valid(v): re-execute and check every header field. It reads no clock:
        every validator judges the same block alike (docs/PROTOCOL.md §6.5)."""
        try:
            self._validated_execution(block)
        except LedgerError:
            return False
        return True

    def _validated_execution(self, block: Block) -> Execution:
        header = block.header
        cached = self._executions.get(header.block_hash)
        if cached is not None:
            return cached
        if (
            header.chain != self.genesis.chain_id
            or header.height != self.store.height + 1
            or header.prev != self.store.head_hash
            or header.validators != self._validators_hash
            or self.genesis.validators.get(header.proposer) is None
            or header.time <= self.store.head_time
            or len(block.events) > self._params.block_max_events
            or sum(len(e) for e in block.events) > self._params.block_max_bytes
        ):
            raise RuleViolation("block header does not extend this chain")
        decoded = [
            self.mempool.lookup(e) or self.signatures.decode(e, self.genesis.chain_id)
            for e in block.events
        ]
        execution = self.store.execute(decoded, header.height, header.time)
        if execution.rejected or not execution.matches(header):
            raise RuleViolation("block contents do not match its header")
        self._remember(header.block_hash, execution)
        return execution

    # --- commit ---------------------------------------------------------------------------

    def commit(self, block: Block, commit: Commit) -> Execution:
        """Store a decided block atomically and re-check the mempool against the new head."""
        try:
            execution = self._validated_execution(block)
        except LedgerError as exc:
            raise Corruption(
                f"a block certified by the validators does not execute here: {exc}"
            ) from exc
        observer = self.observer
        started = time.perf_counter() if observer is not None else 0.0
        self.store.append_block(block, commit, execution)
        if observer is not None:
            appended = time.perf_counter() - started
            observer.block_stored(appended, self.clock() - block.header.time)
        self._executions.clear()
        self.mempool.after_block(
            [e.event_id for e in execution.accepted], execution.state_writes, self.clock()
        )
        return execution
