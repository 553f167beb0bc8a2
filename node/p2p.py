"""Peer-to-peer over HTTP: one pooled httpx client and bounded outbound queues per peer.

Consensus messages and mempool events are batched into msgpack POSTs under `/p2p/`; a down or
slow peer only fills (and then overflows) its own queue, never blocks the others. Failed
sends back off exponentially. Consensus messages need no redelivery here: the consensus core
retransmits its own latest messages on every tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

import httpx

from ledger import codec
from ledger.blocks import Block, Commit
from ledger.errors import LedgerError, Malformed

log = logging.getLogger("provledger.p2p")

MSGPACK = "application/msgpack"
MAX_P2P_BODY = 16 * 1024 * 1024
MAX_BATCH_MESSAGES = 512
MAX_BATCH_EVENTS = 2_000
MAX_BACKOFF_S = 2.0


@dataclass
class PeerState:
    url: str
    reachable: bool = False
    height: int | None = None
    failures: int = 0


def _drain(queue: deque[bytes], limit: int) -> list[bytes]:
    return [queue.popleft() for _ in range(min(len(queue), limit))]


class PeerLink:
    """Outbound channel to one peer, drained by its own task."""

    def __init__(self, url: str, sender: str, queue_limit: int, timeout_s: float = 5.0) -> None:
        self.state = PeerState(url.rstrip("/"))
        self.sender = sender
        self.client = httpx.AsyncClient(
            base_url=self.state.url,
            timeout=httpx.Timeout(timeout_s, connect=1.0),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
            headers={"content-type": MSGPACK},
        )
        self._messages: deque[bytes] = deque(maxlen=queue_limit)
        self._events: deque[bytes] = deque(maxlen=queue_limit)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def send_message(self, message: bytes) -> None:
        self._messages.append(message)
        self._wake.set()

    def send_events(self, envelopes: list[bytes]) -> None:
        self._events.extend(envelopes)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer {self.state.url}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._messages or self._events:
                ok = await self._flush()
                if not ok:
                    await asyncio.sleep(min(MAX_BACKOFF_S, 0.05 * 2**self.state.failures))

    async def _flush(self) -> bool:
        messages = [
            self._messages.popleft() for _ in range(min(len(self._messages), MAX_BATCH_MESSAGES))
        ]
        envelopes = [
            self._events.popleft() for _ in range(min(len(self._events), MAX_BATCH_EVENTS))
        ]
        try:
            if messages:
                await self._post("/p2p/consensus", {"from": self.sender, "messages": messages})
            if envelopes:
                await self._post("/p2p/events", {"from": self.sender, "events": envelopes})
        except (httpx.HTTPError, OSError) as exc:
            self._failed(exc)
            self._events.extendleft(reversed(envelopes))
            return False
        self.state.reachable = True
        self.state.failures = 0
        return True

    def _failed(self, exc: Exception) -> None:
        if self.state.reachable or self.state.failures == 0:
            log.info("peer %s unreachable: %s", self.state.url, exc)
        self.state.reachable = False
        self.state.failures = min(self.state.failures + 1, 8)

    async def _post(self, path: str, doc: dict[str, object]) -> None:
        response = await self.client.post(path, content=codec.encode(doc))
        response.raise_for_status()

    async def _get(self, path: str) -> object | None:
        try:
            response = await self.client.get(path)
        except (httpx.HTTPError, OSError) as exc:
            self._failed(exc)
            return None
        if response.status_code == 404:
            return None
        if response.status_code != 200 or len(response.content) > MAX_P2P_BODY:
            return None
        self.state.reachable = True
        try:
            return codec.decode(response.content, MAX_P2P_BODY)
        except Malformed:
            return None

    async def fetch_height(self) -> int | None:
        doc = await self._get("/p2p/status")
        if isinstance(doc, dict) and isinstance(doc.get("height"), int):
            self.state.height = doc["height"]
            return self.state.height
        return None

    async def fetch_block(self, height: int) -> tuple[Block, Commit] | None:
        """A block and its commit from this peer, decoded but NOT verified."""
        doc = await self._get(f"/p2p/blocks/{height}")
        if not isinstance(doc, dict):
            return None
        try:
            return Block.from_wire(doc.get("block")), Commit.from_wire(doc.get("commit"))
        except LedgerError:
            return None


class Network:
    """The static set of peers from configuration."""

    def __init__(self, peer_urls: tuple[str, ...], sender: str, queue_limit: int) -> None:
        self.links = [PeerLink(url, sender, queue_limit) for url in peer_urls]

    def start(self) -> None:
        for link in self.links:
            link.start()

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links))

    def broadcast(self, message: bytes) -> None:
        for link in self.links:
            link.send_message(message)

    def gossip(self, envelopes: list[bytes]) -> None:
        if envelopes:
            for link in self.links:
                link.send_events(envelopes)

    @property
    def peers(self) -> list[PeerState]:
        return [link.state for link in self.links]
