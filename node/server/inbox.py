"""The consensus task's input queue: bounded, with consensus before events.

Three lanes, served in this order: control inputs (start, timeouts, ticks, block sync's
commits), then consensus messages round-robin over the peers that sent them, then the
"events are pending" wake-up. Each peer's lane is bounded by count and by bytes, and drops its
oldest messages when full, so one flooding peer only delays itself; ticks and event wake-ups
are coalesced (one of each pending at most). Bounds: docs/PROTOCOL.md §12.6.
"""

from __future__ import annotations

import asyncio
from collections import deque

from consensus import core as cc
from consensus.core import message_size

CONTROL_LIMIT = 4_096
PEER_MESSAGES_LIMIT = 4_096
PEER_BYTES_LIMIT = 32 << 20
LOCAL = b""


class ConsensusInbox:
    """A bounded, prioritised queue of consensus inputs."""

    def __init__(
        self,
        per_peer_messages: int = PEER_MESSAGES_LIMIT,
        per_peer_bytes: int = PEER_BYTES_LIMIT,
        control_limit: int = CONTROL_LIMIT,
    ) -> None:
        self.per_peer_messages = per_peer_messages
        self.per_peer_bytes = per_peer_bytes
        self._control: deque[cc.Input] = deque()
        self._control_limit = control_limit
        self._lanes: dict[bytes, deque[tuple[cc.Input, int]]] = {}
        self._lane_bytes: dict[bytes, int] = {}
        self._ready: deque[bytes] = deque()
        self._events: cc.EventsAvailable | None = None
        self._tick_pending = False
        self._wake = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        lanes = sum(len(lane) for lane in self._lanes.values())
        return len(self._control) + lanes + (self._events is not None)

    @property
    def queued_bytes(self) -> int:
        return sum(self._lane_bytes.values())

    def put(self, item: cc.Input, peer: bytes = LOCAL) -> None:
        """Queue one input; a message goes to the lane of the peer that sent it."""
        if isinstance(item, cc.ProposalReceived | cc.VoteReceived):
            self._put_message(item, peer)
        elif isinstance(item, cc.EventsAvailable):
            if self._events is None:
                self._events = item
        else:
            self._put_control(item)
        self._wake.set()

    def _put_control(self, item: cc.Input) -> None:
        if isinstance(item, cc.Tick):
            if self._tick_pending:
                return
            self._tick_pending = True
        if len(self._control) >= self._control_limit:
            # Never expected (control inputs are this node's own, a few per round); bounded
            # all the same: the oldest goes, timeouts are re-armed by the next round.
            self._control.popleft()
            self.dropped += 1
        self._control.append(item)

    def _put_message(self, item: cc.ProposalReceived | cc.VoteReceived, peer: bytes) -> None:
        message = item.proposal if isinstance(item, cc.ProposalReceived) else item.vote
        size = message_size(message)
        lane = self._lanes.get(peer)
        if lane is None:
            lane = self._lanes[peer] = deque()
            self._lane_bytes[peer] = 0
        if not lane:
            self._ready.append(peer)
        lane.append((item, size))
        self._lane_bytes[peer] += size
        while len(lane) > self.per_peer_messages or self._lane_bytes[peer] > self.per_peer_bytes:
            _, dropped_size = lane.popleft()
            self._lane_bytes[peer] -= dropped_size
            self.dropped += 1
        if not lane:
            self._ready.remove(peer)

    def get_nowait(self) -> cc.Input | None:
        """The next input by priority, or None when empty."""
        if self._control:
            item = self._control.popleft()
            if isinstance(item, cc.Tick):
                self._tick_pending = False
            return item
        while self._ready:
            peer = self._ready.popleft()
            lane = self._lanes[peer]
            if not lane:
                continue
            message, size = lane.popleft()
            self._lane_bytes[peer] -= size
            if lane:
                self._ready.append(peer)
            return message
        if self._events is not None:
            events, self._events = self._events, None
            return events
        return None

    async def get(self) -> cc.Input:
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            self._wake.clear()
            await self._wake.wait()


__all__ = ["ConsensusInbox"]
