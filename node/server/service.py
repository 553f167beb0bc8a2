"""The running node: one asyncio task owns the replica's consensus driver and feeds it.

Everything else — the HTTP handlers, peer links, block sync, timers — talks to consensus only
by putting inputs on one bounded queue (`ConsensusInbox`: control first, then peers' messages
round-robin, then event wake-ups). The driver carries the core's outputs out through this
service's effects: broadcasts go to the peers (our own signatures are already fsync'd by the
signer), timeouts become asyncio timers, decided blocks are stored atomically and their
waiters told, evidence is persisted (`EvidenceLog`).

Peers are authenticated (`PeerAuthenticator`, docs/PROTOCOL.md §15); the consensus parameters
(timeouts, block limits, time window, timestamp bounds) come from genesis (§8.6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from consensus import core as cc
from consensus.messages import Evidence, Message, Proposal, decode_message, encode_message
from ledger import crypto
from ledger.blocks import Block
from ledger.crypto import PrivateKey
from ledger.errors import Conflict, LedgerError
from ledger.events import SignedEvent
from ledger.genesis import Genesis
from ledger.store import Execution
from node.clock import now_ms
from node.config import NodeSettings, parse_peer_key
from node.server.driver import Committed, Dropped, Outcome
from node.server.errors import CommitTimeout, MempoolFull, NotCaughtUp
from node.server.evidence import EvidenceLog
from node.server.heap import start_periodic_trim
from node.server.inbox import ConsensusInbox
from node.server.membership import Membership
from node.server.p2p import Network
from node.server.peer_auth import PeerAuthenticator
from node.server.replica import (
    Replica,
    ReplicaLimits,
    chain_consensus_config,
    spread_write_buffer,
)
from node.server.signer_file import FileSignerPersistence
from node.server.sync import CATCH_UP_LAG, BlockSync
from node.server.tls import peer_trust
from node.wire import MAX_P2P_BODY

log = logging.getLogger("provledger.node")

COMMIT_WAIT_S = 30.0
# Envelopes admitted between two turns of the event loop: ~13 ms of work at ~130 µs each.
ADMISSION_SLICE = 100


# Inputs the consensus task handles before it lets the event loop run other tasks.
CONSENSUS_SLICE = 64


@dataclass
class NodeStats:
    events_committed: int = 0
    blocks_committed: int = 0
    peer_messages_rejected: int = 0
    evidence: int = 0


@dataclass(frozen=True)
class Accepted:
    """An admitted envelope: pending, or `committed` once its block is stored."""

    event_id: bytes
    committed: Committed | None = None


@dataclass(frozen=True)
class Refused:
    """An envelope that was not admitted, or was dropped before it could commit."""

    error: Exception
    event_id: bytes | None = None


SubmitOutcome = Accepted | Refused


def replica_limits(settings: NodeSettings, genesis: Genesis) -> ReplicaLimits:
    params = genesis.chain_params
    return ReplicaLimits(
        mempool_max_events=settings.mempool_max_events,
        mempool_max_bytes=settings.mempool_max_bytes,
        block_max_events=params.block_max_events,
        block_max_bytes=params.block_max_bytes,
    )


def peer_keys(settings: NodeSettings, genesis: Genesis) -> frozenset[bytes]:
    """Who may use the peer protocol: the genesis validators and the configured full nodes."""
    keys = {v.public_key for v in genesis.validators.validators}
    keys.update(parse_peer_key(text) for text in settings.peer_keys)
    return frozenset(keys)


class ConsensusObserver(Protocol):
    """Told of every input the consensus task takes (the node's metrics)."""

    def consensus_input(self, kind: type, waited_ms: int, work_seconds: float) -> None:
        """`kind`: the input's class; `waited_ms`: from its queueing to its taking, by
        the node's clock; `work_seconds`: the consensus task's time on it."""
        ...


class NodeService:
    """A replica, its network and block sync, driven by one consensus task."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.clock = now_ms
        # Called if the consensus task dies (a block that cannot be stored, a disk error):
        # the server shuts the process down rather than serve reads as a node that no
        # longer follows the chain.
        self.on_fatal: Callable[[BaseException], None] | None = None
        # Awaited first when the service stops (the daemon stops its peer listener there).
        self.before_stop: Callable[[], Awaitable[None]] | None = None
        # Told how long each consensus input waited and took (the metrics); None: no clock
        # is read for it.
        self.consensus_observer: ConsensusObserver | None = None
        self.genesis = Genesis.load(settings.genesis_path)
        # GET /v1/genesis serves these exact bytes; their SHA-256 is the genesis fingerprint.
        self.genesis_bytes = settings.genesis_path.read_bytes()
        self.genesis_fingerprint = crypto.sha256(self.genesis_bytes).hex()
        key = PrivateKey.load(settings.key_path) if settings.is_validator else None
        identity = key or _peer_identity(settings)
        # The home's own key too: `node snapshot|backup` on a running home ask this node.
        self.peer_auth = PeerAuthenticator(
            self.genesis.chain_id,
            peer_keys(settings, self.genesis) | {identity.public_key},
            self.clock,
        )
        self.signer_file = FileSignerPersistence(settings.signer_state_path)
        self.evidence_log = EvidenceLog(settings.evidence_path)
        self.replica = Replica(
            self.genesis,
            settings.data_path,
            replica_limits(settings, self.genesis),
            chain_consensus_config(
                self.genesis, settings.idle_block_interval_ms, settings.min_block_interval_ms
            ),
            key,
            self.signer_file,
            self.clock,
            self,
            state_map=not settings.bench_without_state_map,
            write_buffer_bytes=spread_write_buffer(identity.public_key),
        )
        self.store = self.replica.store
        self.mempool = self.replica.mempool
        self.core = self.replica.core
        self.network = Network(
            settings.peers,
            settings.name,
            settings.peer_queue_limit,
            identity,
            self.genesis.chain_id,
            self.clock,
            trust=peer_trust(settings, self.genesis),
        )
        self.membership = Membership(
            self.store,
            self.replica.executor,
            self.network,
            self.peer_auth,
            peer_keys(settings, self.genesis),
            identity.public_key,
        )
        self.sync = BlockSync(self)
        self.stats = NodeStats(evidence=len(self.evidence_log))
        self.inbox = ConsensusInbox()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self.height_changed = asyncio.Event()

    @property
    def public_key(self) -> bytes | None:
        key = self.replica.key
        return key.public_key if key is not None else None

    @property
    def consensus_alive(self) -> bool:
        return bool(self._tasks) and not self._tasks[0].done()

    @property
    def catching_up(self) -> bool:
        return self.sync.best_peer_height > self.store.height + CATCH_UP_LAG

    @property
    def events_dropped(self) -> int:
        return self.replica.events_dropped

    def put(self, item: cc.Input, peer: bytes = b"") -> None:
        """Queue one input for the consensus task (a message in the lane of its peer)."""
        self.inbox.put(item, peer)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        assert not self._tasks, "a node service starts once; make a new one to restart"
        self.network.start()
        self.membership.refresh(force=True)
        self._tasks = [
            asyncio.create_task(self._consensus_loop(), name="consensus"),
            asyncio.create_task(self._ticker(), name="ticker"),
            asyncio.create_task(self.sync.run(), name="sync"),
        ]
        trimming = start_periodic_trim()
        if trimming is not None:
            self._tasks.append(trimming)
        self.put(cc.Start(now=self.clock()))
        if self.store.height == 0:
            # The first block is produced at once so that a new chain proves itself live.
            self.put(cc.EventsAvailable(now=self.clock()))

    async def stop(self) -> None:
        if self.before_stop is not None:
            await self.before_stop()
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            # A task that died has already been logged (and reported through on_fatal).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.network.close()
        self.close()

    def close(self) -> None:
        """Release what the constructor opened: the signer state file, the evidence file
        and the store."""
        self.signer_file.close()
        self.evidence_log.close()
        self.replica.close()

    # --- the consensus task ---------------------------------------------------------------

    async def _consensus_loop(self) -> None:
        handled = 0
        while True:
            item = await self.inbox.get()
            handled += 1
            if handled % CONSENSUS_SLICE == 0:
                # Let the HTTP handlers run (and queue what peers send) now and then.
                await asyncio.sleep(0)
            try:
                self._feed(item)
            except Exception as exc:
                log.critical(
                    "consensus input %r failed; this node stops deciding",
                    type(item).__name__,
                    exc_info=True,
                )
                if self.on_fatal is not None:
                    self.on_fatal(exc)
                raise

    def _feed(self, item: cc.Input) -> None:
        """Hand the core one input; tell the observer, if any, how long the input waited
        (its `now` is when it was queued) and how long the core and driver took on it."""
        observer = self.consensus_observer
        if observer is None:
            self.replica.feed(item)
            return
        waited_ms = self.clock() - item.now
        started = time.perf_counter()
        self.replica.feed(item)
        observer.consensus_input(type(item), waited_ms, time.perf_counter() - started)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retransmit_interval_ms / 1000)
            self.put(cc.Tick(now=self.clock()))

    # --- effects of the driver ------------------------------------------------------------

    def now(self) -> int:
        return self.clock()

    def broadcast(self, message: Message) -> None:
        self.network.broadcast(encode_message(message))

    def schedule(self, timeout: cc.ScheduleTimeout) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self.put(
                cc.TimeoutFired(
                    kind=timeout.kind, height=timeout.height, round=timeout.round, now=self.clock()
                )
            )

        handle = loop.call_later(timeout.delay_ms / 1000, fire)
        self._timers.add(handle)

    def evidence(self, evidence: Evidence) -> None:
        """Persist new evidence (bounded per validator); log only what was stored."""
        if self.evidence_log.add(evidence):
            self.stats.evidence += 1
            vote = evidence.vote_a
            log.warning(
                "equivocation by %s at height %d round %d (%s); evidence stored",
                evidence.validator.hex(),
                vote.height,
                vote.round,
                vote.type,
            )

    def committed(self, block: Block, execution: Execution) -> None:
        self.stats.blocks_committed += 1
        self.stats.events_committed += len(block.events)
        self.height_changed.set()
        self.height_changed = asyncio.Event()
        self.membership.refresh(execution.state_writes)
        if len(self.mempool):
            self.put(cc.EventsAvailable(now=self.clock()))

    # --- inputs from the outside ----------------------------------------------------------

    def receive_consensus(self, messages: list[bytes], peer: bytes = b"") -> None:
        """Decode an authenticated peer's messages into its lane of the inbox; messages of a
        height already decided, or beyond the next one, go no further (cheap checks first)."""
        now = self.clock()
        lowest = self.store.height + 1
        highest = lowest + self.core.config.future_height_window
        for raw in messages:
            try:
                message = decode_message(raw, MAX_P2P_BODY)
            except (LedgerError, ValueError, TypeError):
                self.stats.peer_messages_rejected += 1
                continue
            if not lowest <= message.height <= highest:
                continue
            if isinstance(message, Proposal):
                self.put(cc.ProposalReceived(proposal=message, now=now), peer)
            else:
                self.put(cc.VoteReceived(vote=message, now=now), peer)

    async def receive_events(self, envelopes: list[bytes], peer: bytes) -> None:
        """Admit gossiped events; pass on the new ones unless a validator sent them.

        Validators gossip to every validator, so what one sends needs no relaying; a full
        node may reach only some validators, so what it sends is relayed once. A node that
        is catching up refuses them (NotCaughtUp), as it refuses clients.
        """
        self._require_caught_up()
        was_empty = len(self.mempool) == 0
        fresh = []
        for envelope, outcome in zip(envelopes, await self._admit(envelopes), strict=True):
            if isinstance(outcome, SignedEvent):
                fresh.append(envelope)
            elif not isinstance(outcome, Conflict | MempoolFull):
                self.stats.peer_messages_rejected += 1
        self._admitted(fresh, was_empty, relay=peer not in self.membership.validator_keys)

    async def _admit(self, envelopes: list[bytes]) -> list[SignedEvent | Exception]:
        """`Admission.admit` in slices, letting the event loop run between them, so a large
        batch never holds up consensus messages for long."""
        outcomes: list[SignedEvent | Exception] = []
        for start in range(0, len(envelopes), ADMISSION_SLICE):
            if start:
                await asyncio.sleep(0)
            outcomes.extend(
                self.replica.admission.admit(envelopes[start : start + ADMISSION_SLICE])
            )
        return outcomes

    def _admitted(self, envelopes: list[bytes], was_empty: bool, *, relay: bool = True) -> None:
        """Pass newly admitted envelopes to the peers; wake consensus if nothing was pending."""
        if relay:
            self.network.gossip(envelopes)
        if was_empty and envelopes:
            self.put(cc.EventsAvailable(now=self.clock()))

    def _require_caught_up(self) -> None:
        if self.catching_up:
            raise NotCaughtUp(
                f"at height {self.store.height}, peers are at {self.sync.best_peer_height}"
            )

    async def submit_batch(self, envelopes: list[bytes], wait: bool) -> list[SubmitOutcome]:
        """Admit many envelopes at once; one outcome each, in order.

        With `wait`, answer once every accepted envelope is committed (or dropped).
        """
        self._require_caught_up()
        was_empty = len(self.mempool) == 0
        outcomes: list[SubmitOutcome] = []
        accepted: list[bytes] = []
        for envelope, admitted in zip(envelopes, await self._admit(envelopes), strict=True):
            if isinstance(admitted, SignedEvent):
                accepted.append(envelope)
                outcomes.append(Accepted(admitted.event_id))
            else:
                outcomes.append(Refused(admitted))
        waits = (
            [self._waiter(o.event_id) for o in outcomes if isinstance(o, Accepted)] if wait else []
        )
        self._admitted(accepted, was_empty)
        if not wait:
            return outcomes
        ended = iter(await asyncio.gather(*(self._await_outcome(w) for w in waits)))
        return [next(ended) if isinstance(o, Accepted) else o for o in outcomes]

    async def submit(self, envelope: bytes, wait: bool) -> Accepted:
        """Admit one envelope from a client; gossip it; optionally wait for its commit.

        Raises why it was refused, or, with `wait`, why it was dropped before committing.
        """
        self._require_caught_up()
        was_empty = len(self.mempool) == 0
        event = self.replica.admission.admit_one(envelope)
        waiter = self._waiter(event.event_id) if wait else None
        self._admitted([envelope], was_empty)
        if waiter is None:
            return Accepted(event.event_id)
        outcome = await self._await_outcome(waiter)
        if isinstance(outcome, Refused):
            raise outcome.error
        return outcome

    def _waiter(self, event_id: bytes) -> tuple[bytes, asyncio.Future[Outcome]]:
        """Register for an event's outcome; must happen before the loop can run a commit."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def deliver(outcome: Outcome) -> None:
            if not future.done():
                future.set_result(outcome)

        self.replica.waiters.add(event_id, deliver)
        future.add_done_callback(lambda _: self.replica.waiters.discard(event_id, deliver))
        return event_id, future

    async def _await_outcome(self, waiter: tuple[bytes, asyncio.Future[Outcome]]) -> SubmitOutcome:
        """Wait for one pending event: its commit, or why it was dropped."""
        event_id, future = waiter
        try:
            outcome = await asyncio.wait_for(future, COMMIT_WAIT_S)
        except TimeoutError as exc:
            raise CommitTimeout(
                f"event {event_id.hex()} is pending but not committed after {COMMIT_WAIT_S:.0f} s"
            ) from exc
        if isinstance(outcome, Dropped):
            return Refused(outcome.error, event_id)
        return Accepted(event_id, outcome)

    def status(self) -> dict[str, object]:
        return {
            "name": self.settings.name,
            "chain_id": self.genesis.chain_id,
            "genesis_fingerprint": self.genesis_fingerprint,
            "height": self.store.height,
            "round": self.core.round,
            "tree_size": self.store.tree_size,
            "root_hash": self.store.root().hex(),
            "block_hash": self.store.head_hash.hex() if self.store.height else None,
            "validator": self.core.is_validator,
            "public_key": self.public_key.hex() if self.public_key else None,
            "mempool_size": len(self.mempool),
            "catching_up": self.catching_up,
            "evidence": self.stats.evidence,
            "peers": [
                {"url": p.url, "reachable": p.reachable, "height": p.height}
                for p in self.network.peers
            ],
        }


def _peer_identity(settings: NodeSettings) -> PrivateKey:
    """A full node's key on the peer protocol, made on first start if the home has none."""
    path = settings.peer_key_path
    if not path.exists():
        PrivateKey.generate().save(path)
        log.info("made a peer key %s; add its public key to the validators' peer_keys", path)
    return PrivateKey.load(path)
