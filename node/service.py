"""The running node: one asyncio task owns the consensus core and feeds it from a queue.

Everything else — the HTTP handlers, peer links, the sync loop, timers — talks to the core
only by putting inputs on that queue. Outputs are carried out in order: broadcasts go to the
peers (our own signatures are already fsync'd by the signer), timeouts become real timers,
decisions are stored atomically and then reported back as `BlockApplied`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus import core as cc
from consensus.messages import Proposal, decode_message, encode_message
from consensus.signer import Signer
from ledger.blocks import Block, Commit
from ledger.crypto import PrivateKey
from ledger.errors import Conflict, LedgerError, VerificationFailed
from ledger.events import SignedEvent
from ledger.genesis import Genesis
from ledger.rules import Rules
from ledger.store import Execution, Store
from node.chain import Chain, SignatureCache
from node.config import NodeSettings
from node.mempool import Mempool
from node.p2p import MAX_P2P_BODY, Network
from node.problems import NodeProblem, commit_timeout, not_caught_up, problem_for
from node.signer_file import FileSignerPersistence

log = logging.getLogger("provledger.node")

COMMIT_WAIT_S = 30.0
CATCH_UP_LAG = 2
# Envelopes admitted between two turns of the event loop: ~13 ms of work at ~130 µs each.
ADMISSION_SLICE = 100


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class NodeStats:
    events_committed: int = 0
    events_dropped: int = 0
    blocks_committed: int = 0
    peer_messages_rejected: int = 0
    evidence: list[Any] = field(default_factory=list)


class NodeService:
    """Store, mempool, consensus core and network of one node."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.clock = wall_clock_ms
        # Called if the consensus task dies (a block that cannot be stored, a disk error):
        # the server shuts the process down rather than serve reads as a node that no
        # longer follows the chain.
        self.on_fatal: Callable[[BaseException], None] | None = None
        self.genesis = Genesis.load(settings.genesis_path)
        self.store = Store(
            settings.data_path, self.genesis, Rules(self.genesis, settings.time_window_ms)
        )
        self.mempool = Mempool(self.store, settings.mempool_max_events, settings.mempool_max_bytes)
        self.signatures = SignatureCache()
        self.chain = Chain(
            self.store,
            self.genesis,
            self.mempool,
            self.clock,
            settings.block_max_events,
            settings.block_max_bytes,
            self.signatures,
        )
        self.key = PrivateKey.load(settings.key_path) if settings.is_validator else None
        self._signer_file = FileSignerPersistence(settings.signer_state_path)
        self.signer = Signer(self.key, self._signer_file) if self.key is not None else None
        self.core = cc.ConsensusCore(
            config=cc.ConsensusConfig(
                timeout_propose_ms=settings.timeout_propose_ms,
                timeout_propose_delta_ms=settings.timeout_propose_delta_ms,
                timeout_prevote_ms=settings.timeout_vote_ms,
                timeout_prevote_delta_ms=settings.timeout_vote_delta_ms,
                timeout_precommit_ms=settings.timeout_vote_ms,
                timeout_precommit_delta_ms=settings.timeout_vote_delta_ms,
                idle_block_interval_ms=settings.idle_block_interval_ms,
            ),
            chain_id=self.genesis.chain_id,
            validators=self.genesis.validators,
            signer=self.signer,
            app=self.chain,
            height=self.store.height + 1,
        )
        self.network = Network(settings.peers, settings.name, settings.peer_queue_limit)
        self.stats = NodeStats()
        self._validator_names = frozenset(v.name for v in self.genesis.validators.validators)
        self.best_peer_height = 0
        self._inputs: asyncio.Queue[Any] = asyncio.Queue()
        self._waiters: dict[bytes, list[asyncio.Future[tuple[int, int]]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._height_changed = asyncio.Event()

    @property
    def public_key(self) -> bytes | None:
        return self.key.public_key if self.key else None

    @property
    def consensus_alive(self) -> bool:
        return bool(self._tasks) and not self._tasks[0].done()

    @property
    def catching_up(self) -> bool:
        return self.best_peer_height > self.store.height + CATCH_UP_LAG

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.network.start()
        self._tasks = [
            asyncio.create_task(self._consensus_loop(), name="consensus"),
            asyncio.create_task(self._ticker(), name="ticker"),
            asyncio.create_task(self._sync_loop(), name="sync"),
        ]
        self._inputs.put_nowait(cc.Start(now=self.clock()))
        if self.store.height == 0:
            # The first block is produced at once so that a new chain proves itself live.
            self._inputs.put_nowait(cc.EventsAvailable(now=self.clock()))

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            # A task that died has already been logged (and reported through on_fatal).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.network.close()
        self._signer_file.close()
        self.store.close()

    # --- the consensus task ---------------------------------------------------------------

    async def _consensus_loop(self) -> None:
        while True:
            item = await self._inputs.get()
            try:
                self._drive(item)
            except Exception as exc:
                log.critical(
                    "consensus input %r failed; this node stops deciding",
                    type(item).__name__,
                    exc_info=True,
                )
                if self.on_fatal is not None:
                    self.on_fatal(exc)
                raise

    def _drive(self, first: Any) -> None:
        pending = deque([first])
        while pending:
            for output in self.core.handle(pending.popleft()):
                follow_up = self._carry_out(output)
                if follow_up is not None:
                    pending.append(follow_up)

    def _carry_out(self, output: Any) -> Any:
        if isinstance(output, cc.Broadcast):
            self.network.broadcast(encode_message(output.message))
        elif isinstance(output, cc.ScheduleTimeout):
            self._schedule(output)
        elif isinstance(output, cc.Decide):
            execution = self.chain.commit(output.block, output.commit)
            self._after_commit(output.block, execution)
            return cc.BlockApplied(height=output.block.header.height, now=self.clock())
        elif isinstance(output, cc.EvidenceFound):
            log.warning("equivocation evidence: %r", output.evidence)
            self.stats.evidence.append(output.evidence)
        return None

    def _schedule(self, output: cc.ScheduleTimeout) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self._inputs.put_nowait(
                cc.TimeoutFired(
                    kind=output.kind, height=output.height, round=output.round, now=self.clock()
                )
            )

        handle = loop.call_later(output.delay_ms / 1000, fire)
        self._timers.add(handle)

    def _after_commit(self, block: Block, execution: Execution) -> None:
        header = block.header
        self.stats.blocks_committed += 1
        self.stats.events_committed += len(block.events)
        first_leaf = header.tree_size - len(block.events)
        for offset, event in enumerate(execution.accepted):
            for waiter in self._waiters.pop(event.event_id, ()):
                if not waiter.done():
                    waiter.set_result((header.height, first_leaf + offset))
        self._height_changed.set()
        self._height_changed = asyncio.Event()
        if len(self.mempool):
            self._inputs.put_nowait(cc.EventsAvailable(now=self.clock()))

    def _on_drop(self, event: SignedEvent, error: LedgerError) -> None:
        """A pending event became invalid: tell whoever waits for its commit."""
        self.stats.events_dropped += 1
        for waiter in self._waiters.pop(event.event_id, ()):
            if not waiter.done():
                waiter.set_exception(error)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retransmit_interval_ms / 1000)
            self._inputs.put_nowait(cc.Tick(now=self.clock()))

    # --- block sync -----------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sync_interval_ms / 1000)
            try:
                await self._sync_once()
            except Exception:
                log.exception("block sync failed")

    async def _sync_once(self) -> None:
        links = self.network.links
        heights = await asyncio.gather(*(link.fetch_height() for link in links))
        known = [(h, link) for h, link in zip(heights, links, strict=True) if h is not None]
        # A claimed height counts only once the peer backs it with a verified next block:
        # a peer lying about its height must not make this node refuse clients (503).
        proven = self.store.height
        for peer_height, link in sorted(known, key=lambda item: -item[0]):
            while peer_height > self.store.height:
                target = self.store.height + 1
                fetched = await link.fetch_block(target)
                if fetched is None or not self._plausible(target, *fetched):
                    break
                proven = max(proven, peer_height)
                self.best_peer_height = max(self.best_peer_height, peer_height)
                waiter = self._height_changed
                self._inputs.put_nowait(
                    cc.CommitReceived(block=fetched[0], commit=fetched[1], now=self.clock())
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), timeout=5)
                if self.store.height < target:
                    break
        self.best_peer_height = proven

    def _plausible(self, height: int, block: Block, commit: Commit) -> bool:
        """Cheap checks before handing a peer's block to consensus; bad peers are ignored."""
        header = block.header
        if header.height != height or commit.block_hash != header.block_hash:
            return False
        if header.prev != self.store.head_hash:
            return False
        try:
            commit.verify(self.genesis.chain_id, self.genesis.validators)
        except VerificationFailed:
            self.stats.peer_messages_rejected += 1
            return False
        return True

    # --- inputs from the outside ----------------------------------------------------------

    def receive_consensus(self, messages: list[bytes]) -> None:
        now = self.clock()
        for raw in messages:
            try:
                message = decode_message(raw, MAX_P2P_BODY)
            except (LedgerError, ValueError, TypeError):
                self.stats.peer_messages_rejected += 1
                continue
            if isinstance(message, Proposal):
                self._inputs.put_nowait(cc.ProposalReceived(proposal=message, now=now))
            else:
                self._inputs.put_nowait(cc.VoteReceived(vote=message, now=now))

    async def receive_events(self, envelopes: list[bytes], sender: str) -> None:
        """Admit gossiped events; pass on the new ones unless a validator sent them.

        Validators gossip to every validator, so what one sends needs no relaying; a full
        node may reach only some validators, so what it sends is relayed once.
        """
        was_empty = len(self.mempool) == 0
        fresh = []
        for envelope, outcome in zip(envelopes, await self._admit(envelopes), strict=True):
            if isinstance(outcome, SignedEvent):
                fresh.append(envelope)
            elif not isinstance(outcome, Conflict | NodeProblem):
                self.stats.peer_messages_rejected += 1
        self._admitted(fresh, was_empty, relay=sender not in self._validator_names)

    async def _admit(self, envelopes: list[bytes]) -> list[SignedEvent | Exception]:
        """`Chain.admit` in slices, letting the event loop run between them, so a large batch
        never holds up consensus messages for long."""
        outcomes: list[SignedEvent | Exception] = []
        for start in range(0, len(envelopes), ADMISSION_SLICE):
            if start:
                await asyncio.sleep(0)
            outcomes.extend(self.chain.admit(envelopes[start : start + ADMISSION_SLICE]))
        return outcomes

    def _admitted(self, envelopes: list[bytes], was_empty: bool, *, relay: bool = True) -> None:
        """Pass newly admitted envelopes to the peers; wake consensus if nothing was pending."""
        if relay:
            self.network.gossip(envelopes)
        if was_empty and envelopes:
            self._inputs.put_nowait(cc.EventsAvailable(now=self.clock()))

    def _require_caught_up(self) -> None:
        if self.catching_up:
            raise not_caught_up(
                f"at height {self.store.height}, peers are at {self.best_peer_height}"
            )

    async def submit_batch(self, envelopes: list[bytes], wait: bool) -> list[dict[str, Any]]:
        """Admit many envelopes at once; one outcome each (pending or committed, or the problem).

        With `wait`, answer once every accepted envelope is committed (or dropped).
        """
        self._require_caught_up()
        was_empty = len(self.mempool) == 0
        results: list[dict[str, Any]] = []
        accepted: list[bytes] = []
        for envelope, outcome in zip(envelopes, await self._admit(envelopes), strict=True):
            if isinstance(outcome, SignedEvent):
                accepted.append(envelope)
                results.append({"event_id": outcome.event_id.hex(), "status": "pending"})
            else:
                results.append(_refusal(outcome))
        self._admitted(accepted, was_empty)
        if wait:
            pending = [r for r in results if r.get("status") == "pending"]
            futures = [self._waiter(bytes.fromhex(r["event_id"])) for r in pending]
            await asyncio.gather(
                *(self._await_commit(r, f) for r, f in zip(pending, futures, strict=True))
            )
        return results

    def _waiter(self, event_id: bytes) -> asyncio.Future[tuple[int, int]]:
        """Register for an event's commit; must happen before the loop can run a commit."""
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(event_id, []).append(future)
        return future

    async def _await_commit(
        self, result: dict[str, Any], future: asyncio.Future[tuple[int, int]]
    ) -> None:
        """Wait for one pending event; fill in its height and leaf index, or its refusal."""
        event_id = bytes.fromhex(result["event_id"])
        try:
            height, leaf_index = await asyncio.wait_for(future, COMMIT_WAIT_S)
        except TimeoutError as exc:
            raise commit_timeout(
                f"event {event_id.hex()} is pending but not committed after {COMMIT_WAIT_S:.0f} s"
            ) from exc
        except LedgerError as exc:
            result.update(_refusal(exc))
            return
        result.update(status="committed", height=height, leaf_index=leaf_index)

    async def submit(self, envelope: bytes, wait: bool) -> dict[str, Any]:
        """Admit one envelope from a client; gossip it; optionally wait for its commit."""
        self._require_caught_up()
        was_empty = len(self.mempool) == 0
        event = self.chain.admit_one(envelope, self.clock())
        self._admitted([envelope], was_empty)
        result: dict[str, Any] = {"event_id": event.event_id.hex(), "status": "pending"}
        if wait:
            await self._await_commit(result, self._waiter(event.event_id))
            if result["status"] != "committed":
                raise NodeProblem(result["status"], "dropped", result["title"], result["detail"])
        return result

    def status(self) -> dict[str, Any]:
        return {
            "name": self.settings.name,
            "chain_id": self.genesis.chain_id,
            "height": self.store.height,
            "round": self.core.round,
            "tree_size": self.store.tree_size,
            "root_hash": self.store.root().hex(),
            "block_hash": self.store.head_hash.hex() if self.store.height else None,
            "validator": self.key is not None,
            "public_key": self.public_key.hex() if self.public_key else None,
            "mempool_size": len(self.mempool),
            "catching_up": self.catching_up,
            "evidence": len(self.stats.evidence),
            "peers": [
                {"url": p.url, "reachable": p.reachable, "height": p.height}
                for p in self.network.peers
            ],
        }


def _refusal(exc: Exception) -> dict[str, Any]:
    """How one refused envelope is reported inside a batch answer."""
    problem = problem_for(exc)
    return {"status": problem.status, "title": problem.title, "detail": problem.detail}
