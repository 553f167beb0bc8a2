"""One node's deterministic machinery, assembled the same way by the service and the simulator.

A `Replica` holds the LevelDB store, the mempool, admission, the block executor, the signer,
the consensus core and the driver that feeds it. It opens sockets nowhere and reads no clock:
time comes from the `clock` it is given and everything else that is I/O from its `Effects`.
The service wraps one in asyncio and HTTP; the simulator runs several under a seeded
network with crashes, so both exercise exactly this code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from consensus.core import ConfigSchedule, ConsensusConfig, ConsensusCore, Input, Verifier
from consensus.signer import Signer, SignerPersistence
from ledger import crypto
from ledger.crypto import PrivateKey
from ledger.errors import LedgerError
from ledger.events import SignedEvent
from ledger.genesis import ChainParams, Genesis
from ledger.rules import Rules
from ledger.store import WRITE_BUFFER_BYTES, Store
from node.server.admission import Admission, SignatureCache
from node.server.driver import CommitWaiters, ConsensusDriver, Effects
from node.server.executor import BlockExecutor
from node.server.mempool import Mempool

WRITE_BUFFER_SPREAD_BYTES = 4 << 20
"""How far a node's LevelDB memtable size may lie from the 16 MiB default, either way."""


def spread_write_buffer(public_key: bytes) -> int:
    """The LevelDB memtable size of the node with `public_key`: 16 MiB ± 4 MiB, fixed by the
    key. Every node of a chain writes the same blocks in the same order, so with one size
    their memtables would fill, flush and compact at the same moment, and a cluster sharing
    machines would stall together (docs/PROTOCOL.md §12.2); spread, they take turns."""
    span = 2 * WRITE_BUFFER_SPREAD_BYTES + 1
    offset = int.from_bytes(crypto.sha256(public_key)[:4], "big") % span
    return WRITE_BUFFER_BYTES - WRITE_BUFFER_SPREAD_BYTES + offset


@dataclass(frozen=True)
class ReplicaLimits:
    """The bounds of one replica's pending work (node-local settings).

    The block limits here bound the blocks this replica builds; the blocks it accepts are
    bounded by the chain's params in genesis (and so is the event time window).
    """

    mempool_max_events: int = 50_000
    mempool_max_bytes: int = 64 * 1024 * 1024
    block_max_events: int = 4_000
    block_max_bytes: int = 8 * 1024 * 1024
    max_waiters: int = 100_000


def chain_consensus_config(
    genesis: Genesis, idle_block_interval_ms: int, min_block_interval_ms: int = 0
) -> ConsensusConfig:
    """The consensus config every node of a chain shares: timeouts and timestamp bounds from
    the genesis params; the idle and minimum block intervals are the node's own."""
    config = ConsensusConfig(min_block_interval_ms=min_block_interval_ms)
    return with_chain_params(config, genesis.chain_params, idle_block_interval_ms)


def with_chain_params(
    config: ConsensusConfig, params: ChainParams, idle_block_interval_ms: int
) -> ConsensusConfig:
    """`config` with the timeouts and timestamp bounds of `params` (as governance set them)."""
    return replace(
        config,
        timeout_propose_ms=params.timeout_propose_ms,
        timeout_propose_delta_ms=params.timeout_propose_delta_ms,
        timeout_prevote_ms=params.timeout_vote_ms,
        timeout_prevote_delta_ms=params.timeout_vote_delta_ms,
        timeout_precommit_ms=params.timeout_vote_ms,
        timeout_precommit_delta_ms=params.timeout_vote_delta_ms,
        time_precision_ms=params.time_precision_ms,
        message_delay_ms=params.message_delay_ms,
        idle_block_interval_ms=idle_block_interval_ms,
    )


def _config_schedule(executor: BlockExecutor) -> ConfigSchedule:
    """Until governance changes a parameter, the config the replica was given stands (the
    simulator's and tests' own timeouts included)."""

    def config_at(height: int, current: ConsensusConfig) -> ConsensusConfig:
        if not executor.params_changed():
            return current
        params = executor.params_at(height)
        return with_chain_params(current, params, current.idle_block_interval_ms)

    return config_at


class Replica:
    """Store, mempool, admission, executor, signer, consensus core and driver of one node."""

    def __init__(
        self,
        genesis: Genesis,
        data_path: str | Path,
        limits: ReplicaLimits,
        consensus: ConsensusConfig,
        key: PrivateKey | None,
        signer_persistence: SignerPersistence | None,
        clock: Callable[[], int],
        effects: Effects,
        *,
        verify: Verifier = crypto.verify,
        state_map: bool = True,
        write_buffer_bytes: int = WRITE_BUFFER_BYTES,
    ) -> None:
        self.genesis = genesis
        self.clock = clock
        self.events_dropped = 0
        # state_map=False: benchmarks only (NodeSettings.bench_without_state_map).
        self.store = Store(
            data_path,
            genesis,
            Rules(genesis, genesis.chain_params.time_window_ms),
            state_map=state_map,
            write_buffer_bytes=write_buffer_bytes,
        )
        try:
            self._assemble(limits, consensus, key, signer_persistence, clock, effects, verify)
        except BaseException:
            self.store.close()  # a half-built replica must not keep the store locked
            raise

    def _assemble(
        self,
        limits: ReplicaLimits,
        consensus: ConsensusConfig,
        key: PrivateKey | None,
        signer_persistence: SignerPersistence | None,
        clock: Callable[[], int],
        effects: Effects,
        verify: Verifier,
    ) -> None:
        genesis = self.genesis
        self.waiters = CommitWaiters(limits.max_waiters)
        self.mempool = Mempool(
            self.store, limits.mempool_max_events, limits.mempool_max_bytes, self._dropped
        )
        self.signatures = SignatureCache(limits.mempool_max_events)
        self.admission = Admission(self.mempool, genesis.chain_id, clock, self.signatures)
        self.executor = BlockExecutor(
            self.store,
            genesis,
            self.mempool,
            clock,
            limits.block_max_events,
            limits.block_max_bytes,
            self.signatures,
        )
        self.key = key
        self.signer = (
            Signer(key, signer_persistence)
            if key is not None and signer_persistence is not None
            else None
        )
        self.core = ConsensusCore(
            consensus,
            genesis.chain_id,
            genesis.validators,
            self.signer,
            self.executor,
            self.store.height + 1,
            verify=verify,
            validators_at=self.executor.validators_at,
            config_at=_config_schedule(self.executor),
        )
        self.driver = ConsensusDriver(self.core, self.executor, self.waiters, effects)

    def feed(self, item: Input) -> None:
        """Hand one input to consensus and carry out all that follows from it."""
        self.driver.feed(item)

    def _dropped(self, event: SignedEvent, error: LedgerError) -> None:
        """A pending event became invalid: count it and tell whoever waits for its commit."""
        self.events_dropped += 1
        self.waiters.dropped(event, error)

    def close(self) -> None:
        self.store.close()
