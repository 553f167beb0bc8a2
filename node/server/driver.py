"""The consensus driver: carries the consensus core's outputs into effects, sans I/O.

`ConsensusDriver.feed(input)` hands the core one input and carries out every output in
order — broadcast, arm a timer, keep evidence, store a decided block — feeding back the
follow-up input (`BlockApplied` once a decided block is stored) until the core is quiet.
Whatever is I/O goes through the `Effects` the shell supplies: the service's are asyncio
timers and HTTP peer links, the simulator's a priority queue and a simulated network. Both
shells run this code, so the simulator exercises the real path from decision to commit.

`CommitWaiters` tells whoever waits for an event how it ended: committed at (height, leaf
index), or dropped with the rule it broke. It is bounded: a node refuses new waiters rather
than grow without limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from consensus.core import (
    BlockApplied,
    Broadcast,
    ConsensusCore,
    Decide,
    EvidenceFound,
    Input,
    Output,
    ScheduleTimeout,
)
from consensus.messages import Evidence, Message
from ledger.blocks import Block
from ledger.errors import LedgerError
from ledger.events import SignedEvent
from ledger.store import Execution
from node.server.errors import TooManyWaiters
from node.server.executor import BlockExecutor


@dataclass(frozen=True)
class Committed:
    """The event is in the block at `height`, at `leaf_index` of the log."""

    height: int
    leaf_index: int


@dataclass(frozen=True)
class Dropped:
    """The event left the mempool without committing: a block made it invalid."""

    error: LedgerError


Outcome = Committed | Dropped
OutcomeCallback = Callable[[Outcome], None]


class CommitWaiters:
    """Callbacks waiting for the outcome of pending events, at most `limit` at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: dict[bytes, list[OutcomeCallback]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, event_id: bytes, callback: OutcomeCallback) -> None:
        """Call `callback` once with the event's outcome; TooManyWaiters when full."""
        if self._count >= self.limit:
            raise TooManyWaiters(f"{self._count} clients already wait for commits")
        self._waiting.setdefault(event_id, []).append(callback)
        self._count += 1

    def discard(self, event_id: bytes, callback: OutcomeCallback) -> None:
        """Stop waiting (the client gave up); a no-op once the outcome was delivered."""
        callbacks = self._waiting.get(event_id)
        if callbacks is None or callback not in callbacks:
            return
        callbacks.remove(callback)
        self._count -= 1
        if not callbacks:
            del self._waiting[event_id]

    def resolve(self, event_id: bytes, outcome: Outcome) -> None:
        callbacks = self._waiting.pop(event_id, ())
        self._count -= len(callbacks)
        for callback in callbacks:
            callback(outcome)

    def committed(self, block: Block, execution: Execution) -> None:
        """Report every event of a stored block."""
        first_leaf = block.header.tree_size - len(block.events)
        for offset, event in enumerate(execution.accepted):
            self.resolve(event.event_id, Committed(block.header.height, first_leaf + offset))

    def dropped(self, event: SignedEvent, error: LedgerError) -> None:
        self.resolve(event.event_id, Dropped(error))


class Effects(Protocol):
    """What the shell does for the driver; everything that touches time or the network."""

    def now(self) -> int:
        """The current time in ms (the input timestamps)."""
        ...

    def broadcast(self, message: Message) -> None:
        """Send a signed consensus message to every peer."""
        ...

    def schedule(self, timeout: ScheduleTimeout) -> None:
        """Feed `TimeoutFired(kind, height, round, now)` back after `timeout.delay_ms`."""
        ...

    def evidence(self, evidence: Evidence) -> None:
        """Keep proof that a validator equivocated."""
        ...

    def committed(self, block: Block, execution: Execution) -> None:
        """A decided block is stored; its waiters have been told."""
        ...


class ConsensusDriver:
    """The one owner of a node's consensus core: inputs in, effects out, in order."""

    def __init__(
        self,
        core: ConsensusCore,
        executor: BlockExecutor,
        waiters: CommitWaiters,
        effects: Effects,
    ) -> None:
        self.core = core
        self.executor = executor
        self.waiters = waiters
        self.effects = effects

    def feed(self, first: Input) -> None:
        """Handle `first` and every input its outputs lead to."""
        pending: deque[Input] = deque([first])
        while pending:
            for output in self.core.handle(pending.popleft()):
                follow_up = self._carry_out(output)
                if follow_up is not None:
                    pending.append(follow_up)

    def _carry_out(self, output: Output) -> Input | None:
        match output:
            case Broadcast(message=message):
                self.effects.broadcast(message)
            case ScheduleTimeout():
                self.effects.schedule(output)
            case EvidenceFound(evidence=evidence):
                self.effects.evidence(evidence)
            case Decide(block=block, commit=commit):
                execution = self.executor.commit(block, commit)
                self.waiters.committed(block, execution)
                self.effects.committed(block, execution)
                return BlockApplied(height=block.header.height, now=self.effects.now())
        return None
