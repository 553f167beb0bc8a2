"""The mempool: events checked against the latest state and waiting for a block.

Bounded in events and bytes, deduplicated by event id, FIFO. Every admitted event has passed
encoding, signature, chain, time-window, duplicate and rules checks against the committed
state plus the events admitted before it (so an event may depend on one still pending).

The pending state is an overlay on the committed state holding what the pending events
wrote, with, for every key, how many pending events wrote it (a count, not their ids: an
event writes a key once, and a set of ids per key cost ~430 of the ~2.7 KB a pending
register event held). When a block commits, a key that no pending event still writes
leaves the overlay (the store now holds its value), so the overlay stays as small as the
mempool. The rest is re-checked only when the block wrote a key that a still-pending event
also wrote — the only way a block can invalidate a pending event — or when a pending event
may have left the time window.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable

from ledger.errors import Conflict, LedgerError
from ledger.events import SignedEvent
from ledger.rules import BlockContext
from ledger.store import Store
from node.server.errors import MempoolFull

WINDOW_SCAN_INTERVAL_MS = 1_000


class Mempool:
    """Pending events in arrival order, with the state they lead to."""

    def __init__(
        self,
        store: Store,
        max_events: int,
        max_bytes: int,
        on_drop: Callable[[SignedEvent, LedgerError], None] | None = None,
    ) -> None:
        self.store = store
        self.on_drop = on_drop
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: OrderedDict[bytes, SignedEvent] = OrderedDict()
        self._by_envelope: dict[bytes, SignedEvent] = {}
        self._keys_of: dict[bytes, tuple[bytes, ...]] = {}
        self._writer_counts: dict[bytes, int] = {}
        self._window_checked_at = 0
        self._times: list[tuple[int, bytes]] = []
        self._bytes = 0
        self._pending = store.state()

    def __len__(self) -> int:
        return len(self._events)

    def __contains__(self, event_id: bytes) -> bool:
        return event_id in self._events

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def overlay_keys(self) -> int:
        """How many state keys the pending events hold over the committed state."""
        return len(self._pending.writes)

    def _context(self, now: int) -> BlockContext:
        return BlockContext(self.store.height + 1, now, self.store.tree_size + len(self._events))

    def admit(self, event: SignedEvent, now: int) -> None:
        """Accept a signature-checked event or raise why not (LedgerError or MempoolFull)."""
        if event.event_id in self._events:
            raise Conflict("duplicate event: already pending")
        self.check_room(len(event.envelope))
        self._apply(event, now)

    def check_room(self, size: int) -> None:
        """Raise MempoolFull unless an envelope of `size` bytes fits (cheap: call first)."""
        if not self.has_room(size):
            raise self.full_error()

    def has_room(self, size: int, ahead_events: int = 0, ahead_bytes: int = 0) -> bool:
        """Whether an envelope of `size` bytes fits once `ahead_events` more events of
        `ahead_bytes` in all are admitted."""
        return (
            len(self._events) + ahead_events < self.max_events
            and self._bytes + ahead_bytes + size <= self.max_bytes
        )

    def full_error(self) -> MempoolFull:
        return MempoolFull(f"{len(self._events)} events / {self._bytes} bytes pending")

    def _apply(self, event: SignedEvent, now: int) -> None:
        draft = self._pending.child()
        self.store.rules.apply_to_draft(draft, event, self._context(now))
        keys = tuple(draft.writes)
        draft.merge_into_parent()
        self._events[event.event_id] = event
        self._by_envelope[event.envelope] = event
        self._bytes += len(event.envelope)
        self._keys_of[event.event_id] = keys
        heapq.heappush(self._times, (event.body.time, event.event_id))
        counts = self._writer_counts
        for key in keys:
            counts[key] = counts.get(key, 0) + 1

    def _remove(self, event_id: bytes) -> SignedEvent | None:
        """Forget a pending event; keys nobody pending still writes leave the overlay."""
        event = self._events.pop(event_id, None)
        if event is None:
            return None
        del self._by_envelope[event.envelope]
        self._bytes -= len(event.envelope)
        counts = self._writer_counts
        for key in self._keys_of.pop(event_id):
            left = counts[key] - 1
            if left:
                counts[key] = left
            else:
                del counts[key]
                self._pending.writes.pop(key, None)
        return event

    def lookup(self, envelope: bytes) -> SignedEvent | None:
        """The pending event with exactly these envelope bytes (already decoded and checked)."""
        return self._by_envelope.get(envelope)

    def take(self, max_events: int, max_bytes: int) -> list[SignedEvent]:
        """The oldest pending events, at most `max_events` and `max_bytes` of envelopes,
        left in place until committed."""
        taken: list[SignedEvent] = []
        size = 0
        for event in self._events.values():
            size += len(event.envelope)
            if len(taken) >= max_events or size > max_bytes:
                break
            taken.append(event)
        return taken

    def after_block(
        self, committed: Iterable[bytes], written: Collection[bytes], now: int
    ) -> list[tuple[SignedEvent, LedgerError]]:
        """Forget committed events; re-check the rest only if the block may invalidate them.

        `written` are the state keys the block wrote. Returns the dropped events.
        """
        for event_id in committed:
            self._remove(event_id)
        if not self._events:
            self._pending = self.store.state()
            return []
        overlapping = any(key in self._writer_counts for key in written)
        if overlapping or self._aged_out(now):
            return self._recheck(now)
        return []

    def _aged_out(self, now: int) -> bool:
        """Whether a pending event left the time window (scanned at most once a second)."""
        if now - self._window_checked_at < WINDOW_SCAN_INTERVAL_MS:
            return False
        self._window_checked_at = now
        times = self._times
        while times and times[0][1] not in self._events:
            heapq.heappop(times)
        if len(times) > 2 * len(self._events) + 1_000:
            self._times = times = [(e.body.time, i) for i, e in self._events.items()]
            heapq.heapify(times)
        # Admitted events were inside the window; time only moves on, so only the oldest
        # can fall out of it.
        return bool(times) and now - times[0][0] > self.store.rules.time_window_ms

    def drop(self, rejected: Iterable[tuple[SignedEvent, LedgerError]]) -> None:
        """Remove events that block execution refused, and report them."""
        for event, error in rejected:
            if self._remove(event.event_id) is not None and self.on_drop is not None:
                self.on_drop(event, error)

    def _recheck(self, now: int) -> list[tuple[SignedEvent, LedgerError]]:
        remaining = list(self._events.values())
        self._events.clear()
        self._by_envelope.clear()
        self._keys_of.clear()
        self._writer_counts.clear()
        self._times.clear()
        self._bytes = 0
        self._pending = self.store.state()
        dropped: list[tuple[SignedEvent, LedgerError]] = []
        for event in remaining:
            try:
                self._apply(event, now)
            except LedgerError as exc:
                dropped.append((event, exc))
                if self.on_drop is not None:
                    self.on_drop(event, exc)
        return dropped
