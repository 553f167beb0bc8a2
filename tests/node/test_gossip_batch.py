"""Sender-side coalescing of gossiped events (issue 16): an event on a quiet link leaves at
once, the single submissions that follow within the gossip interval leave together in one
POST, a full batch never waits, and a POST never carries more than MAX_BATCH_EVENTS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from node.server.p2p import GOSSIP_INTERVAL_S, MAX_BATCH_EVENTS, PeerLink
from tests.node import test_p2p
from tests.node.test_p2p import FakePeer, wait_until

# Long enough that the events below, queued one loop iteration apart, all arrive inside it
# even on a loaded machine; the tests only wait for outcomes, never assert durations.
INTERVAL_S = 0.5
# Longer than any test waits: whatever arrives while it runs was not held for the interval.
FOREVER_S = 3_600.0


@asynccontextmanager
async def started_link(interval_s: float) -> AsyncIterator[tuple[FakePeer, PeerLink]]:
    """A started link with `interval_s` to a peer that answers every POST at once."""
    peer = FakePeer()
    peer.release_events.set()
    async with test_p2p.link_to(peer, gossip_interval_s=interval_s) as link:
        link.start()
        yield peer, link


async def post_first(peer: FakePeer, link: PeerLink) -> None:
    """One event on the quiet link, delivered: from now on the interval runs."""
    link.send_events([b"first"])
    await wait_until(lambda: peer.events == [b"first"])


def test_the_default_gossip_interval_is_50_ms() -> None:
    assert GOSSIP_INTERVAL_S == 0.05


def test_an_event_on_a_quiet_link_leaves_at_once() -> None:
    async def scenario() -> None:
        async with started_link(FOREVER_S) as (peer, link):
            await post_first(peer, link)
            assert peer.event_batches == [1]

    asyncio.run(scenario())


def test_single_events_within_the_interval_leave_together_in_one_post() -> None:
    async def scenario() -> None:
        async with started_link(INTERVAL_S) as (peer, link):
            await post_first(peer, link)
            singles = [b"s%d" % i for i in range(20)]
            for envelope in singles:
                link.send_events([envelope])
                await asyncio.sleep(0)  # each arrives in its own loop iteration, as from clients
            await wait_until(lambda: len(peer.events) == 1 + len(singles))
            assert peer.events == [b"first", *singles]
            assert peer.event_batches == [1, len(singles)]

    asyncio.run(scenario())


def test_an_event_after_a_post_waits_for_the_interval() -> None:
    async def scenario() -> None:
        async with started_link(FOREVER_S) as (peer, link):
            await post_first(peer, link)
            link.send_events([b"second"])
            for _ in range(50):
                await asyncio.sleep(0.001)
            assert peer.events == [b"first"] and list(link._events) == [b"second"]

    asyncio.run(scenario())


def test_without_an_interval_each_single_event_leaves_alone() -> None:
    """The contrast that shows the interval is what gathers them."""

    async def scenario() -> None:
        async with started_link(0.0) as (peer, link):
            await post_first(peer, link)
            link.send_events([b"second"])
            await wait_until(lambda: len(peer.events) == 2)
            assert peer.event_batches == [1, 1]

    asyncio.run(scenario())


def test_a_full_batch_never_waits_for_the_interval() -> None:
    async def scenario() -> None:
        async with started_link(FOREVER_S) as (peer, link):
            await post_first(peer, link)
            full = [b"f%d" % i for i in range(MAX_BATCH_EVENTS + 3)]
            link.send_events(full)
            await wait_until(lambda: len(peer.events) == 1 + MAX_BATCH_EVENTS)
            assert peer.event_batches == [1, MAX_BATCH_EVENTS]
            assert list(link._events) == full[MAX_BATCH_EVENTS:], "the rest waits its turn"

    asyncio.run(scenario())


def test_coalesced_posts_stay_within_the_batch_bound_and_keep_order() -> None:
    async def scenario() -> None:
        async with started_link(INTERVAL_S) as (peer, link):
            envelopes = [b"e%d" % i for i in range(MAX_BATCH_EVENTS * 2 + 7)]
            for envelope in envelopes:
                link.send_events([envelope])
            await wait_until(lambda: len(peer.events) == len(envelopes))
            assert peer.events == envelopes
            assert peer.event_batches == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 7]

    asyncio.run(scenario())


def test_the_outbound_event_queue_is_bounded() -> None:
    async def scenario() -> None:
        peer = FakePeer()  # holds every events POST open: nothing drains
        async with test_p2p.link_to(peer, queue_limit=50, gossip_interval_s=INTERVAL_S) as link:
            link.send_events([b"e%d" % i for i in range(500)])
            assert len(link._events) == 50

    asyncio.run(scenario())
