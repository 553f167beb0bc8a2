"""Batch admission (`Admission.admit`): one outcome per envelope, in order; room planned for the
whole batch before any signature is checked; later events may depend on earlier ones."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import events
from ledger.crypto import PrivateKey
from ledger.errors import BadSignature, Conflict
from ledger.store import Store
from node.server.admission import Admission, SignatureCache
from node.server.errors import MempoolFull
from node.server.mempool import Mempool
from tests.ledger.helpers import ChainBuilder, make_genesis


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[ChainBuilder, PrivateKey]]:
    keys, registrar, genesis = make_genesis(1)
    with Store(tmp_path / "data", genesis) as store:
        yield ChainBuilder(store, keys), registrar


def make_admission(builder: ChainBuilder, max_events: int) -> Admission:
    pool = Mempool(builder.store, max_events, 1 << 20)
    chain_id = builder.store.genesis.chain_id
    return Admission(pool, chain_id, lambda: builder.now, SignatureCache())


def admit(builder: ChainBuilder, registrar: PrivateKey, subject: PrivateKey) -> events.SignedEvent:
    return builder.ev(
        registrar, events.Admit, subject=subject.public_key, role="participant", name="p"
    )


def register(builder: ChainBuilder, owner: PrivateKey) -> events.SignedEvent:
    return builder.ev(
        owner, events.Register, dataset=os.urandom(32), meta={"title": "t"}, open=False
    )


def test_a_batch_may_depend_on_its_own_earlier_events(
    setup: tuple[ChainBuilder, PrivateKey],
) -> None:
    builder, registrar = setup
    chain = make_admission(builder, 10)
    alice = PrivateKey.generate()
    batch = [admit(builder, registrar, alice), register(builder, alice)]
    outcomes = chain.admit([e.envelope for e in batch])
    assert [o.event_id for o in outcomes if isinstance(o, events.SignedEvent)] == [
        e.event_id for e in batch
    ]
    assert len(chain.mempool) == 2


def test_past_the_room_nothing_is_decoded_and_each_gets_429(
    setup: tuple[ChainBuilder, PrivateKey],
) -> None:
    builder, registrar = setup
    chain = make_admission(builder, 2)
    batch = [admit(builder, registrar, PrivateKey.generate()) for _ in range(4)]
    forged = batch[0].envelope[:-1] + bytes([batch[0].envelope[-1] ^ 1])
    outcomes = chain.admit([forged, *(e.envelope for e in batch)])
    assert isinstance(outcomes[0], BadSignature)
    assert [type(o) for o in outcomes[1:3]] == [events.SignedEvent, events.SignedEvent]
    for refused, event in zip(outcomes[3:], batch[2:], strict=True):
        assert isinstance(refused, MempoolFull)
        assert event.event_id + event.signature not in chain.signatures
    assert len(chain.mempool) == 2


def test_a_duplicate_in_the_batch_is_a_conflict(setup: tuple[ChainBuilder, PrivateKey]) -> None:
    builder, registrar = setup
    chain = make_admission(builder, 10)
    event = admit(builder, registrar, PrivateKey.generate())
    first, second = chain.admit([event.envelope, event.envelope])
    assert isinstance(first, events.SignedEvent)
    assert isinstance(second, Conflict)
    assert len(chain.mempool) == 1
