"""Block execution: builds, validates and commits blocks for the consensus core.

`BlockExecutor` implements consensus's `BlockSource` over the ledger store and the mempool,
verifies each event signature once per node (through the admission's `SignatureCache`), and
keeps the execution of every block it built or validated so a decided block is not executed
twice. An optional `CommitObserver` (the node's metrics) is told how long each synced block
write took, how long after its proposal the block committed, how long after the block before
it the block was proposed, and how many events it holds; without one, no clock is read.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from ledger.blocks import Block, Commit, ValidatorSet
from ledger.errors import Corruption, LedgerError, RuleViolation
from ledger.genesis import ChainParams, Genesis
from ledger.governance import ACTIVATION_DELAY
from ledger.rules import PARAMS_SCHEDULE
from ledger.store import Execution, Store
from node.server.admission import SignatureCache
from node.server.mempool import Mempool

# No longer a validity rule (block validity is judged by the chain and the block alone, and
# block times are bounded by proposer-based timestamps, docs/PROTOCOL.md §14); kept as the
# slack readiness allows a head block's time.
MAX_CLOCK_DRIFT_MS = 30_000
EXECUTION_CACHE = 16
SET_CACHE = 8


class CommitObserver(Protocol):
    """Told of every block this node stores (its metrics; absent in the simulator)."""

    def block_stored(
        self, append_seconds: float, latency_ms: int, interval_ms: int | None, events: int
    ) -> None:
        """`append_seconds`: the store's synced batch write; `latency_ms`: from the block's
        time (its proposal) to this commit, by the node's clock; `interval_ms`: from the
        previous block's time to this one's (None for a chain's first block, whose
        predecessor is genesis); `events`: the block's events."""
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
        # What this node puts in the blocks it builds (node-local, at most the chain's limits
        # in force); what it accepts from others is the chain's limits (genesis params, as
        # governance changed them).
        params = genesis.chain_params
        self.block_max_events = min(block_max_events, params.block_max_events)
        self.block_max_bytes = min(block_max_bytes, params.block_max_bytes)
        self.signatures = signatures or SignatureCache()
        self._sets: dict[int, ValidatorSet] = {}
        self._executions: OrderedDict[bytes, Execution] = OrderedDict()
        self.observer: CommitObserver | None = None

    def _remember(self, block_hash: bytes, execution: Execution) -> None:
        self._executions[block_hash] = execution
        while len(self._executions) > EXECUTION_CACHE:
            self._executions.popitem(last=False)

    # --- the set in force at each height ---------------------------------------------------

    def validators_at(self, height: int) -> ValidatorSet | None:
        """The validator set of `height`, known for heights up to the head + 2 (a change is
        in force two heights after the block that decides it); None beyond."""
        if not 0 < height <= self.store.height + ACTIVATION_DELAY:
            return None
        found = self._sets.get(height)
        if found is None:
            if len(self._sets) >= SET_CACHE:
                self._sets.clear()
            found = self._sets[height] = self.store.rules.validators_at(self.store.state(), height)
        return found

    def params_at(self, height: int) -> ChainParams:
        """The chain parameters in force at `height` (up to the head + 2)."""
        return self.store.rules.params_at(self.store.state(), height)

    def params_changed(self) -> bool:
        """Whether governance has ever changed a chain parameter on this chain."""
        return self.store.state().get(PARAMS_SCHEDULE) is not None

    def _header_sets(self, height: int) -> tuple[ValidatorSet, bytes, bytes | None]:
        """(set, its hash, the next height's set hash if it differs) for a header at `height`."""
        current = self.validators_at(height)
        following = self.validators_at(height + 1)
        assert current is not None and following is not None, "the next height's sets are known"
        current_hash = current.hash()
        following_hash = following.hash()
        return current, current_hash, None if following_hash == current_hash else following_hash

    # --- BlockSource ----------------------------------------------------------------------

    def has_pending(self) -> bool:
        return len(self.mempool) > 0

    def build_block(self, height: int, round: int, time: int, proposer: bytes) -> Block:
        """Take pending events up to the block size; invalid ones are dropped by execution."""
        assert height == self.store.height + 1
        time = max(time, self.store.head_time + 1)
        max_events, max_bytes = self.block_max_events, self.block_max_bytes
        if self.params_changed():
            params = self.params_at(height)
            max_events = min(max_events, params.block_max_events)
            max_bytes = min(max_bytes, params.block_max_bytes)
        candidates = self.mempool.take(max_events, max_bytes)
        execution = self.store.execute(candidates, height, time)
        self.mempool.drop(execution.rejected)
        _, validators, next_validators = self._header_sets(height)
        header = execution.header(
            self.genesis.chain_id, self.store.head_hash, proposer, validators, next_validators
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
        if header.height != self.store.height + 1:
            raise RuleViolation("block header does not extend this chain")
        validators, validators_hash, next_validators = self._header_sets(header.height)
        params = self.params_at(header.height)
        if (
            header.chain != self.genesis.chain_id
            or header.prev != self.store.head_hash
            or header.validators != validators_hash
            or header.next_validators != next_validators
            or validators.get(header.proposer) is None
            or header.time <= self.store.head_time
            or len(block.events) > params.block_max_events
            or sum(len(e) for e in block.events) > params.block_max_bytes
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
        previous_time = self.store.head_time if self.store.height > 0 else None
        self.store.append_block(block, commit, execution)
        if observer is not None:
            appended = time.perf_counter() - started
            header = block.header
            observer.block_stored(
                appended,
                self.clock() - header.time,
                None if previous_time is None else header.time - previous_time,
                len(block.events),
            )
        self._executions.clear()
        self._sets.clear()
        self.mempool.after_block(
            [e.event_id for e in execution.accepted], execution.state_writes, self.clock()
        )
        return execution
