"""The consensus task's input queue: bounded per peer (count and bytes), control inputs
before peers' messages before event wake-ups, peers served round-robin, ticks coalesced."""

from __future__ import annotations

from consensus import core as cc
from consensus.core import MESSAGE_OVERHEAD
from node.server.inbox import ConsensusInbox
from tests.consensus.helpers import make_block, sign_proposal, sign_vote

A, B = b"peer-a", b"peer-b"


def vote(round_: int) -> cc.VoteReceived:
    return cc.VoteReceived(sign_vote(1, "prevote", 1, round_, None), 0)


def drain(inbox: ConsensusInbox) -> list[cc.Input]:
    out = []
    while (item := inbox.get_nowait()) is not None:
        out.append(item)
    return out


def test_a_flooding_peer_is_bounded_by_count_and_only_delays_itself() -> None:
    inbox = ConsensusInbox(per_peer_messages=10)
    for round_ in range(1_000):
        inbox.put(vote(round_), A)
    inbox.put(vote(5_000), B)
    assert len(inbox) == 11 and inbox.dropped == 990
    first, second = inbox.get_nowait(), inbox.get_nowait()
    assert isinstance(first, cc.VoteReceived) and isinstance(second, cc.VoteReceived)
    # round-robin: B's only message comes second, not after A's ten
    assert {first.vote.round, second.vote.round} == {990, 5_000}
    # the newest of A's messages are the ones kept
    assert [i.vote.round for i in drain(inbox)] == list(range(991, 1_000))  # type: ignore[attr-defined]


def test_a_peer_lane_is_bounded_by_bytes() -> None:
    size = MESSAGE_OVERHEAD + 1_003  # the block's one event is b"tx-" + 1,000 bytes
    inbox = ConsensusInbox(per_peer_bytes=3 * size)
    for round_ in range(10):
        block = make_block(1, "x" * 1_000)
        proposal = sign_proposal(1, 1, round_, block, -1)
        inbox.put(cc.ProposalReceived(proposal, 0), A)
    assert inbox.queued_bytes == 3 * size
    assert len(inbox) == 3


def test_control_before_messages_before_event_wakeups() -> None:
    inbox = ConsensusInbox()
    inbox.put(cc.EventsAvailable(0))
    inbox.put(vote(0), A)
    inbox.put(cc.TimeoutFired(cc.TimeoutKind.PROPOSE, 1, 0, 0))
    kinds = [type(item).__name__ for item in drain(inbox)]
    assert kinds == ["TimeoutFired", "VoteReceived", "EventsAvailable"]


def test_ticks_and_event_wakeups_are_coalesced() -> None:
    inbox = ConsensusInbox()
    for _ in range(100):
        inbox.put(cc.Tick(0))
        inbox.put(cc.EventsAvailable(0))
    assert len(inbox) == 2
    drain(inbox)
    inbox.put(cc.Tick(0))
    assert len(inbox) == 1


def test_the_control_lane_is_bounded() -> None:
    inbox = ConsensusInbox(control_limit=4)
    for round_ in range(10):
        inbox.put(cc.TimeoutFired(cc.TimeoutKind.PROPOSE, 1, round_, 0))
    assert len(inbox) == 4 and inbox.dropped == 6
