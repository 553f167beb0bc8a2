"""PeerLink against a real peer server on loopback: consensus messages never wait behind
event gossip; failed event batches are sent again, failed consensus batches are not (the core
retransmits)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ledger import codec
from node.server.p2p import MAX_BATCH_EVENTS, PeerLink
from tests.node.fake_http import serving_asgi


class FakePeer:
    """An ASGI peer whose /p2p/events can be held open, and can fail its first requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.release_events = asyncio.Event()
        self.messages: list[bytes] = []
        self.events: list[bytes] = []
        self.event_batches: list[int] = []
        self.fail_first = fail_first

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            chunk = await receive()
            body += chunk.get("body", b"")
            if not chunk.get("more_body"):
                break
        status = 204
        if self.fail_first > 0:
            self.fail_first -= 1
            status = 500
        else:
            doc = codec.decode(body, 1 << 24)
            if scope["path"] == "/p2p/events":
                await self.release_events.wait()
                self.events.extend(doc["events"])
                self.event_batches.append(len(doc["events"]))
            else:
                self.messages.extend(doc["messages"])
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def link_to(
    peer: FakePeer, queue_limit: int = 10_000, **options: Any
) -> AsyncIterator[PeerLink]:
    """A link to `peer`, served by uvicorn on loopback for the length of the block."""
    async with serving_asgi(peer) as url:
        link = PeerLink(url, "me", queue_limit, **options)
        try:
            yield link
        finally:
            await link.close()
            peer.release_events.set()  # requests held open finish, so the server can stop


async def wait_until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_consensus_messages_pass_event_gossip_that_is_held_up() -> None:
    async def scenario() -> None:
        peer = FakePeer()
        async with link_to(peer) as link:
            link.start()
            link.send_events([b"e%d" % i for i in range(10)])
            await asyncio.sleep(0.05)
            link.send_message(b"vote")
            await wait_until(lambda: peer.messages == [b"vote"])
            assert peer.events == []
            peer.release_events.set()
            await wait_until(lambda: len(peer.events) == 10)

    asyncio.run(scenario())


def test_event_batches_are_bounded_and_keep_their_order() -> None:
    async def scenario() -> None:
        peer = FakePeer()
        peer.release_events.set()
        async with link_to(peer) as link:
            envelopes = [b"e%d" % i for i in range(MAX_BATCH_EVENTS * 2 + 5)]
            link.send_events(envelopes)
            link.start()
            await wait_until(lambda: len(peer.events) == len(envelopes))
            assert peer.events == envelopes
            assert max(peer.event_batches) == MAX_BATCH_EVENTS

    asyncio.run(scenario())


def test_a_failed_event_batch_is_sent_again_but_a_failed_vote_batch_is_not() -> None:
    async def scenario() -> None:
        peer = FakePeer(fail_first=1)
        peer.release_events.set()
        async with link_to(peer) as link:
            link.send_message(b"lost vote")
            link.start()
            await wait_until(lambda: link.state.failures == 1)
            link.send_message(b"next vote")
            await wait_until(lambda: peer.messages == [b"next vote"])
            assert link.state.failures == 0 and link.state.reachable

            peer.fail_first = 1
            link.send_events([b"a", b"b"])
            await wait_until(lambda: peer.events == [b"a", b"b"])

    asyncio.run(scenario())
