"""Peer-to-peer over HTTP: bounded outbound queues per peer, each drained over its own
keep-alive connection.

Consensus messages and mempool events are batched into msgpack POSTs under `/p2p/`, each kind
drained by its own task so that votes and proposals never queue behind event gossip; a down or
slow peer only fills (and then overflows) its own queues, never blocks the others. Failed
sends back off exponentially. Consensus messages need no redelivery here: the consensus core
retransmits its own latest messages on every tick.

Every request is signed with this node's key (docs/PROTOCOL.md §15). An `https://` peer is
verified by `trust` (§18): a genesis validator's certificate must carry its node key. Every
request goes through `node.client.http11` on the link's connection for its purpose: answers to
POSTs are capped at `MAX_ANSWER_BYTES`, answers to GETs at `MAX_P2P_BODY`, and an answer
declaring more is not read at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ledger import codec
from ledger.blocks import Block, Commit, Header, Validator
from ledger.crypto import PrivateKey
from ledger.errors import LedgerError, Malformed
from node.client.http11 import (
    AnswerTooLarge,
    Connection,
    HttpError,
    ServerClosed,
    request_bytes,
)
from node.client.tls import PeerTrust, pin_check
from node.server.peer_auth import sign_request
from node.wire import MAX_P2P_BODY, MSGPACK

log = logging.getLogger("provledger.p2p")

MAX_BATCH_MESSAGES = 512
# A receiver admits a batch in one go on its event loop; 256 events keep that under ~40 ms.
MAX_BATCH_EVENTS = 256
MAX_BACKOFF_S = 2.0
GOSSIP_INTERVAL_S = 0.05
"""The least time between two events POSTs on one link, short of a full batch. A client's
single submissions reach the events queue one by one: an event on a link that has been
quiet that long leaves at once (light load waits for nothing), and under load the events
queued meanwhile leave together, so each POST, with its signature and its HTTP exchange at
both ends, carries many events instead of one or two (issue 16)."""
CONNECT_TIMEOUT_S = 1.0
CHANNELS = ("consensus", "events", "sync")
"""A peer link's connections: one per outbound queue, one for block sync's GETs."""
POST_PATHS = {"consensus": "/p2p/consensus", "events": "/p2p/events"}
"""Where each outbound queue's batches go, each over the link's connection of that name."""
FETCH_TIMEOUT_S = 30.0
"""The longest a GET may take, whole (a block of up to MAX_P2P_BODY bytes)."""
MAX_ANSWER_BYTES = 64 * 1024
"""What a peer may answer a POST with (204 or a problem document): more is a failure."""


@dataclass
class PeerState:
    url: str
    reachable: bool = False
    height: int | None = None
    failures: int = 0


def _drain_queue(queue: deque[bytes], limit: int) -> list[bytes]:
    return [queue.popleft() for _ in range(min(len(queue), limit))]


class PeerChannel:
    """Requests to one peer over one keep-alive HTTP/1.1 connection of its own
    (`node.client.http11`, a tenth of httpx's CPU per request), one at a time, opened when
    first needed and again once lost. `security` is `PeerTrust.security(url)`: for an
    `https://` peer the TLS context and the pinned node key, checked before anything is
    written."""

    def __init__(
        self, url: str, security: tuple[ssl.SSLContext, bytes | None] | None, timeout_s: float
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        parts = urlsplit(self.url)
        self._host = parts.netloc
        # A peer behind a path prefix (a reverse proxy) gets it before every path; the
        # signature covers the path alone, as the peer sees it once the prefix is stripped.
        self._prefix = parts.path.rstrip("/")
        context, pin = security or (None, None)
        self._context = context
        self._check = pin_check(pin, self.url) if pin is not None else None
        self._connection: Connection | None = None
        self._turn = asyncio.Lock()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        """POST `body` to `path`; raise HttpError unless the peer answers 2xx."""
        headers = {"content-type": MSGPACK, **headers}
        request = request_bytes("POST", self._prefix + path, self._host, headers, body)
        status, _ = await self._exchange(request, MAX_ANSWER_BYTES)
        if not 200 <= status < 300:
            raise HttpError(f"{self.url}{path} answered {status}")

    async def get(self, path: str, headers: dict[str, str], max_body: int) -> bytes | None:
        """The body of a 200 answer to GET `path`; None for another status or a body over
        `max_body` (which is not read). Raises HttpError if the exchange fails."""
        request = request_bytes("GET", self._prefix + path, self._host, headers)
        try:
            status, body = await self._exchange(request, max_body)
        except AnswerTooLarge:
            return None
        return body if status == 200 else None

    async def _exchange(self, request: bytes, max_body: int) -> tuple[int, bytes]:
        async with self._turn:
            connection = self._connection
            if connection is None or connection.closed or connection.server_closed():
                return await self._exchange_fresh(request, max_body)
            try:
                return await connection.exchange(request, max_body, self.timeout_s)
            except ServerClosed:
                # The peer closed the kept-alive connection as the request went: nothing
                # was answered, so the request goes once more on a fresh connection.
                return await self._exchange_fresh(request, max_body)

    async def _exchange_fresh(self, request: bytes, max_body: int) -> tuple[int, bytes]:
        self._connection = connection = await Connection.open(
            self.url, context=self._context, check=self._check, timeout_s=CONNECT_TIMEOUT_S
        )
        return await connection.exchange(request, max_body, self.timeout_s)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.aclose()


class PeerLink:
    """Outbound channel to one peer: a consensus queue and an events queue."""

    def __init__(
        self,
        url: str,
        sender: str,
        queue_limit: int,
        timeout_s: float = 5.0,
        *,
        key: PrivateKey | None = None,
        chain_id: str = "",
        clock: Callable[[], int] | None = None,
        trust: PeerTrust | None = None,
        gossip_interval_s: float = GOSSIP_INTERVAL_S,
    ) -> None:
        self.state = PeerState(url.rstrip("/"))
        self.gossip_interval_s = gossip_interval_s
        self._events_sent_at = -math.inf
        self.sender = sender
        self.key = key
        self.chain_id = chain_id
        self.clock = clock
        # Each outbound queue and block sync have a connection of their own, so votes never
        # wait behind event gossip or a block being fetched. Without `trust`, an https://
        # peer is verified against the default trust store.
        security = (trust or PeerTrust()).security(self.state.url)
        self._channels = {
            purpose: PeerChannel(
                self.state.url, security, FETCH_TIMEOUT_S if purpose == "sync" else timeout_s
            )
            for purpose in CHANNELS
        }
        self._messages: deque[bytes] = deque(maxlen=queue_limit)
        self._events: deque[bytes] = deque(maxlen=queue_limit)
        self._messages_queued = asyncio.Event()
        self._events_queued = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def send_message(self, message: bytes) -> None:
        self._messages.append(message)
        self._messages_queued.set()

    def send_events(self, envelopes: list[bytes]) -> None:
        self._events.extend(envelopes)
        self._events_queued.set()

    def start(self) -> None:
        """Two drains on their own connections, so consensus never waits behind events."""
        self._tasks = [
            asyncio.create_task(
                self._send_while_queued(self._messages_queued, self._flush_messages),
                name=f"consensus to {self.state.url}",
            ),
            asyncio.create_task(
                self._send_while_queued(self._events_queued, self._flush_events),
                name=f"events to {self.state.url}",
            ),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for channel in self._channels.values():
            await channel.close()

    async def _send_while_queued(
        self, queued: asyncio.Event, flush: Callable[[], Awaitable[bool | None]]
    ) -> None:
        """Whenever `queued` is set, call `flush` until it reports an empty queue (None)."""
        while True:
            await queued.wait()
            queued.clear()
            while await flush() is not None:
                pass

    async def _flush_messages(self) -> bool | None:
        """Send up to a batch of queued consensus messages; None when there were none.
        A failed batch is dropped: the core retransmits its latest messages on every tick."""
        messages = _drain_queue(self._messages, MAX_BATCH_MESSAGES)
        if not messages:
            return None
        return await self._send("consensus", {"from": self.sender, "messages": messages})

    async def _flush_events(self) -> bool | None:
        """Send up to a batch of queued events; None when there were none. A failed batch
        goes back to the front of the queue. Short of a full batch, it first waits until
        `gossip_interval_s` has passed since the previous events POST began."""
        if 0 < len(self._events) < MAX_BATCH_EVENTS:
            wait = self._events_sent_at + self.gossip_interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        envelopes = _drain_queue(self._events, MAX_BATCH_EVENTS)
        if not envelopes:
            return None
        self._events_sent_at = time.monotonic()
        sent = await self._send("events", {"from": self.sender, "events": envelopes})
        if not sent:
            self._events.extendleft(reversed(envelopes))
        return sent

    async def _send(self, queue: str, doc: dict[str, object]) -> bool:
        """POST one batch of `queue` ("consensus" or "events") on its own connection; after a
        failure, back off before saying so."""
        path = POST_PATHS[queue]
        body = codec.encode(doc)
        try:
            await self._channels[queue].post(path, body, self._auth("POST", path, body))
        except OSError as exc:
            self._failed(exc)
            await asyncio.sleep(min(MAX_BACKOFF_S, 0.05 * 2**self.state.failures))
            return False
        self.state.reachable = True
        self.state.failures = 0
        return True

    def _failed(self, exc: Exception) -> None:
        if self.state.reachable or self.state.failures == 0:
            log.info("peer %s unreachable: %s", self.state.url, exc)
        self.state.reachable = False
        self.state.failures = min(self.state.failures + 1, 8)

    def _auth(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The headers proving this node sent the request (none without a key: tests)."""
        if self.key is None or self.clock is None:
            return {}
        return sign_request(self.key, self.chain_id, method, path, body, self.clock())

    async def _get(self, path: str) -> object | None:
        """GET a peer document of at most MAX_P2P_BODY bytes (a larger one is not read)."""
        try:
            content = await self._channels["sync"].get(
                path, self._auth("GET", path, b""), MAX_P2P_BODY
            )
        except OSError as exc:
            self._failed(exc)
            return None
        if content is None:
            return None
        self.state.reachable = True
        try:
            return codec.decode(content, MAX_P2P_BODY)
        except Malformed:
            return None

    async def fetch_height(self) -> int | None:
        """The height the peer claims (a claim: block sync believes only verified commits)."""
        doc = await self._get("/p2p/status")
        height = doc.get("height") if isinstance(doc, dict) else None
        if isinstance(height, int) and not isinstance(height, bool) and height >= 0:
            self.state.height = height
            return height
        return None

    async def fetch_head(self) -> tuple[int, Header, Commit] | None:
        """The height the peer claims, with its head header and commit (NOT verified)."""
        doc = await self._get("/p2p/status")
        if not isinstance(doc, dict):
            return None
        height = doc.get("height")
        if not isinstance(height, int) or isinstance(height, bool) or height < 0:
            return None
        self.state.height = height
        try:
            header_bytes = doc.get("header")
            if not isinstance(header_bytes, bytes):
                raise Malformed("no head header")
            return height, Header.decode(header_bytes), Commit.from_wire(doc.get("commit"))
        except LedgerError:
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
    """The peers from configuration, plus the validators of the sets in force and next
    (`follow`); every request signed with `key`."""

    def __init__(
        self,
        peer_urls: tuple[str, ...],
        sender: str,
        queue_limit: int,
        key: PrivateKey | None = None,
        chain_id: str = "",
        clock: Callable[[], int] | None = None,
        trust: PeerTrust | None = None,
    ) -> None:
        self._trust = trust

        def link(url: str) -> PeerLink:
            return PeerLink(
                url, sender, queue_limit, key=key, chain_id=chain_id, clock=clock, trust=self._trust
            )

        self._link = link
        self._configured = tuple(dict.fromkeys(url.rstrip("/") for url in peer_urls))
        self.links = [link(url) for url in self._configured]
        self._started = False

    def start(self) -> None:
        self._started = True
        for link in self.links:
            link.start()

    def follow(self, validators: Iterable[Validator]) -> list[PeerLink]:
        """Peer with the configured URLs and those of `validators` (the validator sets in force
        and next, without this node), an `https://` one pinned to its key; returns the links
        dropped, for the caller to close. `links` is replaced, never changed in place, so a
        loop iterating it is safe."""
        members = [v for v in validators if v.url]
        if self._trust is not None:
            self._trust = self._trust.with_validators(members)
        wanted = dict.fromkeys((*self._configured, *(v.url.rstrip("/") for v in members)))
        current = {link.state.url: link for link in self.links}
        kept = [current[url] if url in current else self._link(url) for url in wanted]
        for link in kept:
            if link.state.url not in current and self._started:
                link.start()
        self.links = kept
        return [link for url, link in current.items() if url not in wanted]

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
