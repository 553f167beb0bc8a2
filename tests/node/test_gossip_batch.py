"""Sender-side coalescing of gossiped events (issue 16): single submissions that reach a
peer link one by one leave in one POST, a full batch never waits, and a POST never carries
more than MAX_BATCH_EVENTS."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

from node.server.p2p import GOSSIP_LINGER_S, MAX_BATCH_EVENTS, PeerLink
from tests.node import test_p2p
from tests.node.test_p2p import FakePeer, wait_until

# Long enough that the events below, queued one loop iteration apart, all arrive inside it
# even on a loaded machine; the tests only wait for outcomes, never assert durations.
LINGER_S = 0.5


def link_to(peer: FakePeer, linger_s: float) -> AbstractAsyncContextManager[PeerLink]:
    return test_p2p.link_to(peer, gossip_linger_s=linger_s)


def test_the_default_linger_is_a_few_milliseconds() -> None:
    assert 0 < GOSSIP_LINGER_S <= 0.01


def test_single_events_queued_one_by_one_leave_in_one_post() -> None:
    async def scenario() -> None:
        peer = FakePeer()
        peer.release_events.set()
        async with link_to(peer, LINGER_S) as link:
            link.start()
            singles = [b"s%d" % i for i in range(20)]
            for envelope in singles:
                link.send_events([envelope])
                await asyncio.sleep(0)  # each arrives in its own loop iteration, as from clients
            await wait_until(lambda: len(peer.events) == len(singles))
            assert peer.events == singles
            assert peer.event_batches == [len(singles)]

    asyncio.run(scenario())


def test_without_linger_the_first_single_event_leaves_alone() -> None:
    """The contrast that shows the linger is what gathers them."""

    async def scenario() -> None:
        peer = FakePeer()
        peer.release_events.set()
        async with link_to(peer, 0.0) as link:
            link.start()
            link.send_events([b"first"])
            await wait_until(lambda: peer.events == [b"first"])
            link.send_events([b"second"])
            await wait_until(lambda: len(peer.events) == 2)
            assert peer.event_batches == [1, 1]

    asyncio.run(scenario())


def test_a_lone_event_is_sent_when_no_company_comes() -> None:
    async def scenario() -> None:
        peer = FakePeer()
        peer.release_events.set()
        async with link_to(peer, 0.02) as link:
            link.start()
            link.send_events([b"alone"])
            await wait_until(lambda: peer.events == [b"alone"])
            assert peer.event_batches == [1]

    asyncio.run(scenario())


def test_coalesced_posts_stay_within_the_batch_bound_and_keep_order() -> None:
    async def scenario() -> None:
        peer = FakePeer()
        peer.release_events.set()
        async with link_to(peer, LINGER_S) as link:
            link.start()
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
        async with test_p2p.link_to(peer, queue_limit=50, gossip_linger_s=LINGER_S) as link:
            link.send_events([b"e%d" % i for i in range(500)])
            assert len(link._events) == 50

    asyncio.run(scenario())
