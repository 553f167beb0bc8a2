"""The mempool against a real LevelDB store: bounds, deduplication, dependent events, and the
re-check after each block."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import events
from ledger.crypto import PrivateKey
from ledger.errors import Conflict, Forbidden, NotAdmitted, RuleViolation
from ledger.store import Store
from node.server.errors import MempoolFull
from node.server.http.problems import problem_document, problem_for
from node.server.mempool import Mempool
from tests.ledger.helpers import ChainBuilder, make_genesis


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[ChainBuilder, PrivateKey]]:
    keys, registrar, genesis = make_genesis(1)
    with Store(tmp_path / "data", genesis) as store:
        yield ChainBuilder(store, keys), registrar


ANY_SIZE = 1 << 30


def admit(builder: ChainBuilder, registrar: PrivateKey, subject: PrivateKey) -> events.SignedEvent:
    return builder.ev(
        registrar, events.Admit, subject=subject.public_key, role="participant", name="p"
    )


def register(
    builder: ChainBuilder, owner: PrivateKey, dataset: bytes | None = None
) -> events.SignedEvent:
    return builder.ev(
        owner,
        events.Register,
        dataset=dataset if dataset is not None else os.urandom(32),
        meta={"title": "t"},
        open=False,
    )


def ids(items: list[events.SignedEvent]) -> list[bytes]:
    return [e.event_id for e in items]


def test_take_returns_the_oldest_first_and_leaves_them_in_place(
    chain: tuple[ChainBuilder, PrivateKey],
) -> None:
    builder, registrar = chain
    pool = Mempool(builder.store, 100, 1 << 20)
    admitted = [admit(builder, registrar, PrivateKey.generate()) for _ in range(5)]
    for event in admitted:
        pool.admit(event, builder.now)
    assert len(pool) == 5
    assert ids(pool.take(3, ANY_SIZE)) == ids(admitted[:3])
    assert ids(pool.take(10, ANY_SIZE)) == ids(admitted)
    assert pool.take(0, ANY_SIZE) == []
    assert len(pool) == 5 and all(e.event_id in pool for e in admitted)
    assert pool.size_bytes == sum(len(e.envelope) for e in admitted)


def test_bounded_in_events(chain: tuple[ChainBuilder, PrivateKey]) -> None:
    builder, registrar = chain
    pool = Mempool(builder.store, 2, 1 << 20)
    first, second, third = (admit(builder, registrar, PrivateKey.generate()) for _ in range(3))
    pool.admit(first, builder.now)
    pool.admit(second, builder.now)
    with pytest.raises(MempoolFull) as refused:
        pool.admit(third, builder.now)
    problem = problem_for(refused.value)
    assert problem.status == 429
    doc = problem_document(problem, "/v1/events")
    assert doc["status"] == 429 and doc["type"].endswith("mempool-full") and doc["title"]
    assert ids(pool.take(10, ANY_SIZE)) == ids([first, second])
    # Once a block takes the first two, there is room again.
    execution = builder.append([first, second])
    committed = [first.event_id, second.event_id]
    assert pool.after_block(committed, execution.state_writes, builder.now) == []
    pool.admit(third, builder.now)
    assert ids(pool.take(10, ANY_SIZE)) == [third.event_id]


def test_bounded_in_bytes(chain: tuple[ChainBuilder, PrivateKey]) -> None:
    builder, registrar = chain
    first, second = (admit(builder, registrar, PrivateKey.generate()) for _ in range(2))
    exact = Mempool(builder.store, 100, len(first.envelope) + len(second.envelope))
    exact.admit(first, builder.now)
    exact.admit(second, builder.now)
    assert len(exact) == 2

    tight = Mempool(builder.store, 100, len(first.envelope) + len(second.envelope) - 1)
    tight.admit(first, builder.now)
    with pytest.raises(MempoolFull) as refused:
        tight.admit(second, builder.now)
    assert problem_for(refused.value).status == 429
    assert len(tight) == 1 and tight.size_bytes == len(first.envelope)


def test_a_refused_event_leaves_no_trace(chain: tuple[ChainBuilder, PrivateKey]) -> None:
    builder, registrar = chain
    alice = PrivateKey.generate()
    pool = Mempool(builder.store, 1, 1 << 20)
    filler = admit(builder, registrar, PrivateKey.generate())
    pool.admit(filler, builder.now)
    admit_alice = admit(builder, registrar, alice)
    with pytest.raises(MempoolFull):
        pool.admit(admit_alice, builder.now)
    # alice was not admitted, not even in the pending state the next event is judged by.
    bigger = Mempool(builder.store, 10, 1 << 20)
    bigger.admit(filler, builder.now)
    with pytest.raises(NotAdmitted):
        bigger.admit(register(builder, alice), builder.now)
    assert len(bigger) == 1


def test_duplicates_are_conflicts(chain: tuple[ChainBuilder, PrivateKey]) -> None:
    builder, registrar = chain
    pool = Mempool(builder.store, 100, 1 << 20)
    event = admit(builder, registrar, PrivateKey.generate())
    pool.admit(event, builder.now)
    with pytest.raises(Conflict, match="pending"):
        pool.admit(event, builder.now)
    assert len(pool) == 1 and pool.size_bytes == len(event.envelope)
    # And once committed, it is a conflict with the chain.
    execution = builder.append([event])
    assert pool.after_block([event.event_id], execution.state_writes, builder.now) == []
    assert len(pool) == 0 and pool.size_bytes == 0
    with pytest.raises(Conflict):
        pool.admit(event, builder.now)


def test_dependent_events_are_admitted_in_order(chain: tuple[ChainBuilder, PrivateKey]) -> None:
    builder, registrar = chain
    pool = Mempool(builder.store, 100, 1 << 20)
    alice, bob = PrivateKey.generate(), PrivateKey.generate()
    dataset = os.urandom(32)
    # Before any block: admit alice and bob, alice registers and grants to bob, bob uses it.
    admit_alice = admit(builder, registrar, alice)
    admit_bob = admit(builder, registrar, bob)
    reg = register(builder, alice, dataset)
    grant = builder.ev(
        alice, events.Grant, dataset=dataset, to=bob.public_key, purposes=["x"], reshare=False
    )
    use = builder.ev(bob, events.Use, dataset=dataset, purpose="x", grant=grant.event_id)
    for event in (admit_alice, admit_bob, reg, grant, use):
        pool.admit(event, builder.now)
    taken = pool.take(100, ANY_SIZE)
    assert ids(taken) == ids([admit_alice, admit_bob, reg, grant, use])
    # The same order executes cleanly as one block.
    execution = builder.append(taken)
    assert execution.rejected == ()
    assert ids(list(execution.accepted)) == ids(taken)
    # Out of order, the dependent event is refused.
    carol = PrivateKey.generate()
    fresh = Mempool(builder.store, 100, 1 << 20)
    with pytest.raises(NotAdmitted):
        fresh.admit(register(builder, carol), builder.now)
    fresh.admit(admit(builder, registrar, carol), builder.now)
    fresh.admit(register(builder, carol), builder.now)
    assert len(fresh) == 2


def test_rule_violations_and_time_window_are_refused(
    chain: tuple[ChainBuilder, PrivateKey],
) -> None:
    builder, registrar = chain
    alice = PrivateKey.generate()
    builder.append([admit(builder, registrar, alice)])
    pool = Mempool(builder.store, 100, 1 << 20)
    unknown = os.urandom(32)
    grant = builder.ev(
        alice, events.Grant, dataset=unknown, to=registrar.public_key, purposes=["x"], reshare=False
    )
    with pytest.raises(RuleViolation):
        pool.admit(grant, builder.now)
    stale = register(builder, alice)
    with pytest.raises(RuleViolation):
        pool.admit(stale, builder.now + 11 * 60 * 1000)
    assert len(pool) == 0 and pool.size_bytes == 0
    pool.admit(register(builder, alice, unknown), builder.now)
    pool.admit(grant, builder.now)
    assert len(pool) == 2


def test_after_block_drops_what_became_invalid_and_keeps_order(
    chain: tuple[ChainBuilder, PrivateKey],
) -> None:
    builder, registrar = chain
    alice, bob, carol = (PrivateKey.generate() for _ in range(3))
    builder.append([admit(builder, registrar, k) for k in (alice, bob)])
    dataset = os.urandom(32)
    pool = Mempool(builder.store, 100, 1 << 20)
    admit_carol = admit(builder, registrar, carol)
    alice_registers = register(builder, alice, dataset)
    alice_grants = builder.ev(
        alice, events.Grant, dataset=dataset, to=bob.public_key, purposes=["x"], reshare=False
    )
    alice_other = register(builder, alice)
    carol_registers = register(builder, carol)
    pending = [admit_carol, alice_registers, alice_grants, alice_other, carol_registers]
    for event in pending:
        pool.admit(event, builder.now)

    # Another node's block wins the race: bob registers the same dataset, plus carol's admit.
    bob_registers = register(builder, bob, dataset)
    with pytest.raises(Conflict):
        pool.admit(bob_registers, builder.now)  # this node would not even take it
    execution = builder.append([admit_carol, bob_registers])
    assert execution.rejected == ()
    committed = [admit_carol.event_id, bob_registers.event_id]
    dropped = pool.after_block(committed, execution.state_writes, builder.now)

    reasons = {event.event_id: error for event, error in dropped}
    assert set(reasons) == {alice_registers.event_id, alice_grants.event_id}
    assert isinstance(reasons[alice_registers.event_id], Conflict)
    assert isinstance(reasons[alice_grants.event_id], Forbidden)  # bob owns it now
    assert ids(pool.take(100, ANY_SIZE)) == ids([alice_other, carol_registers])
    assert pool.size_bytes == len(alice_other.envelope) + len(carol_registers.envelope)
    assert admit_carol.event_id not in pool and alice_registers.event_id not in pool
    # The survivors still execute as the next block, in order.
    execution = builder.append(pool.take(100, ANY_SIZE))
    assert execution.rejected == ()
    committed = [e.event_id for e in execution.accepted]
    assert pool.after_block(committed, execution.state_writes, builder.now) == []
    assert len(pool) == 0 and pool.overlay_keys == 0


def test_after_block_drops_events_whose_time_has_passed(
    chain: tuple[ChainBuilder, PrivateKey],
) -> None:
    builder, registrar = chain
    pool = Mempool(builder.store, 100, 1 << 20)
    old = admit(builder, registrar, PrivateKey.generate())
    pool.admit(old, builder.now)
    later = builder.now + 20 * 60 * 1000
    execution = builder.append([], time=later)
    dropped = pool.after_block([], execution.state_writes, later)
    assert [(e.event_id, type(err)) for e, err in dropped] == [(old.event_id, RuleViolation)]
    assert len(pool) == 0 and pool.size_bytes == 0


def test_the_pending_overlay_shrinks_as_blocks_commit(
    chain: tuple[ChainBuilder, PrivateKey],
) -> None:
    """Under steady load the mempool never empties; its overlay must not keep what committed."""
    builder, registrar = chain
    pool = Mempool(builder.store, 1_000, 1 << 22)
    waiting = [admit(builder, registrar, PrivateKey.generate()) for _ in range(30)]
    for event in waiting[:10]:
        pool.admit(event, builder.now)
    per_event = pool.overlay_keys / 10
    for start in range(0, 20, 10):
        block = waiting[start : start + 10]
        for event in waiting[start + 10 : start + 20]:
            pool.admit(event, builder.now)
        execution = builder.append(block)
        committed = [e.event_id for e in execution.accepted]
        assert pool.after_block(committed, execution.state_writes, builder.now) == []
        assert len(pool) == 10
        assert pool.overlay_keys == per_event * 10
    assert ids(pool.take(100, ANY_SIZE)) == ids(waiting[20:30])


def test_a_block_of_events_never_seen_here_keeps_unrelated_pending_events(
    chain: tuple[ChainBuilder, PrivateKey],
) -> None:
    builder, registrar = chain
    pool = Mempool(builder.store, 100, 1 << 20)
    mine = admit(builder, registrar, PrivateKey.generate())
    pool.admit(mine, builder.now)
    theirs = admit(builder, registrar, PrivateKey.generate())
    execution = builder.append([theirs])
    assert pool.after_block([theirs.event_id], execution.state_writes, builder.now) == []
    assert ids(pool.take(10, ANY_SIZE)) == [mine.event_id]
    execution = builder.append(pool.take(10, ANY_SIZE))
    assert execution.rejected == ()


def test_take_respects_the_block_byte_budget(chain: tuple[ChainBuilder, PrivateKey]) -> None:
    builder, registrar = chain
    pool = Mempool(builder.store, 100, 1 << 20)
    admitted = [admit(builder, registrar, PrivateKey.generate()) for _ in range(5)]
    for event in admitted:
        pool.admit(event, builder.now)
    two = len(admitted[0].envelope) + len(admitted[1].envelope)
    assert ids(pool.take(100, two)) == ids(admitted[:2])
    assert ids(pool.take(100, two - 1)) == ids(admitted[:1])
    assert pool.take(100, 0) == []


def test_a_key_stays_pending_while_another_pending_event_wrote_it(
    chain: tuple[ChainBuilder, PrivateKey],
) -> None:
    """Two pending grants on one (dataset, grantee) pair write its grant count. Dropping one
    keeps the other's writes in the overlay; dropping both empties it."""
    builder, registrar = chain
    alice, bob = PrivateKey.generate(), PrivateKey.generate()
    dataset = os.urandom(32)
    setup = builder.append([admit(builder, registrar, alice), admit(builder, registrar, bob)])
    assert setup.rejected == ()
    assert builder.append([register(builder, alice, dataset)]).rejected == ()
    pool = Mempool(builder.store, 100, 1 << 20)

    def grant(purpose: str) -> events.SignedEvent:
        return builder.ev(
            alice,
            events.Grant,
            dataset=dataset,
            to=bob.public_key,
            purposes=[purpose],
            reshare=False,
        )

    first, second = grant("x"), grant("y")
    pool.admit(first, builder.now)
    pool.admit(second, builder.now)
    shared = set(pool._keys_of[first.event_id]) & set(pool._keys_of[second.event_id])
    assert shared
    pool.drop([(first, RuleViolation("dropped by a block's execution"))])
    assert ids(pool.take(10, ANY_SIZE)) == [second.event_id]
    assert pool.overlay_keys == len(pool._keys_of[second.event_id])
    pool.drop([(second, RuleViolation("dropped by a block's execution"))])
    assert len(pool) == 0 and pool.overlay_keys == 0
