"""Grants keyed by id with a per-(dataset, grantee) index of slots (docs/PROTOCOL.md §4.7):
a new grant writes a fixed set of small records however many the pair already has."""

from __future__ import annotations

import pytest

from ledger import rules
from ledger.crypto import PrivateKey
from ledger.errors import Forbidden
from ledger.events import Admit, Grant, Register, Revoke, SignedEvent, Use
from ledger.genesis import Genesis
from ledger.rules import BlockContext, Rules
from ledger.state import StateOverlay
from tests.ledger.helpers import ev, make_genesis, make_key

T0 = 1_700_000_000_000


def setup() -> tuple[Genesis, Rules, StateOverlay, list[PrivateKey]]:
    _, registrar, genesis = make_genesis(seed=8_100)
    r = Rules(genesis)
    state = StateOverlay({}.get).child()
    alice, bob = make_key(seed=8_110), make_key(seed=8_111)
    for key in (alice, bob):
        admit = ev(registrar, Admit, time=T0, subject=key.public_key, role="participant", name="x")
        r.apply(state, admit, BlockContext(1, T0, 0))
    return genesis, r, state, [alice, bob]


def register(r: Rules, state: StateOverlay, owner: PrivateKey, dataset: bytes) -> None:
    event = ev(owner, Register, time=T0, dataset=dataset, meta={}, open=False)
    r.apply(state, event, BlockContext(1, T0, 2))


def test_a_grant_writes_the_same_small_records_however_many_exist() -> None:
    _, r, state, (alice, bob) = setup()
    dataset = b"\x11" * 32
    register(r, state, alice, dataset)
    sizes = []
    for i in range(300):
        draft = state.child()
        grant = ev(
            alice,
            Grant,
            time=T0,
            dataset=dataset,
            to=bob.public_key,
            purposes=("a",),
            reshare=False,
        )
        r.apply(draft, grant, BlockContext(2, T0, 3 + i))
        written = {k[:2] for k in draft.writes}
        assert written == {b"sg", b"sI", b"sG", b"sd", b"sa", b"se"}
        sizes.append(max(len(v) for k, v in draft.writes.items() if k[:2] != b"sd"))
        assert draft.get(rules.grant_slot_key(dataset, bob.public_key, i)) == grant.event_id
        draft.merge_into_parent()
    assert sizes[-1] == sizes[1]  # no list that grows with the grants
    assert state.get_doc(rules.grants_of_key(dataset, bob.public_key)) == 300


def test_a_use_finds_a_live_grant_among_dead_ones() -> None:
    _, r, state, (alice, bob) = setup()
    dataset = b"\x22" * 32
    register(r, state, alice, dataset)
    grants = []
    for i in range(5):
        g = ev(
            alice,
            Grant,
            time=T0,
            dataset=dataset,
            to=bob.public_key,
            purposes=("a",),
            reshare=False,
        )
        r.apply(state, g, BlockContext(2, T0, 3 + i))
        grants.append(g)
    for i, g in enumerate(grants[1:]):
        r.apply(state, ev(alice, Revoke, time=T0, grant=g.event_id), BlockContext(3, T0, 10 + i))
    use = ev(bob, Use, time=T0, dataset=dataset, purpose="a")
    r.check(state, use, BlockContext(4, T0, 20))  # the oldest grant is still live
    r.apply(state, ev(alice, Revoke, time=T0, grant=grants[0].event_id), BlockContext(4, T0, 21))
    with pytest.raises(Forbidden):
        r.check(state, use, BlockContext(5, T0, 22))


def test_an_event_naming_no_grant_looks_at_the_64_newest_grants_only() -> None:
    """docs/PROTOCOL.md §4.4: without a named grant, only the newest 64 grants of the pair are
    scanned, so a flood of useless grants cannot make each use cost work that grows with them;
    the old grant still works when it is named."""
    assert rules.MAX_GRANT_SCAN == 64
    _, r, state, (alice, bob) = setup()
    dataset = b"\x33" * 32
    register(r, state, alice, dataset)

    def grant(purpose: str, i: int) -> SignedEvent:
        g = ev(
            alice,
            Grant,
            time=T0,
            dataset=dataset,
            to=bob.public_key,
            purposes=(purpose,),
            reshare=False,
        )
        r.apply(state, g, BlockContext(2, T0, 3 + i))
        return g

    useful = grant("analytics", 0)
    for i in range(1, 64):
        grant("other", i)
    use = ev(bob, Use, time=T0, dataset=dataset, purpose="analytics")
    r.check(state, use, BlockContext(3, T0, 100))  # 64 grants: the oldest is still scanned
    grant("other", 64)
    with pytest.raises(Forbidden, match="name the grant"):
        r.check(state, use, BlockContext(3, T0, 101))  # the 65th pushes it out of the scan
    named = ev(bob, Use, time=T0, dataset=dataset, purpose="analytics", grant=useful.event_id)
    r.check(state, named, BlockContext(3, T0, 102))
