"""The circulation rules (PROTOCOL §4): every event type's acceptance and rejection reasons."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from ledger import codec, events, rules, smt
from ledger.blocks import Block
from ledger.crypto import PrivateKey
from ledger.errors import Conflict, Forbidden, LedgerError, NotAdmitted, RuleViolation
from ledger.events import (
    Admit,
    Attest,
    Derive,
    Destroy,
    EventBody,
    Grant,
    Register,
    Revoke,
    SignedEvent,
    Transfer,
    Use,
)
from ledger.genesis import OPEN, PERMISSIONED, Genesis
from ledger.rules import DEFAULT_TIME_WINDOW_MS, BlockContext, Rules
from ledger.state import StateOverlay
from ledger.store import Store
from tests.ledger.helpers import CHAIN_ID, ChainBuilder, ev, make_genesis, make_key

T0 = 1_700_000_000_000
WINDOW = DEFAULT_TIME_WINDOW_MS


def new_dataset() -> bytes:
    return hashlib.sha256(os.urandom(32)).digest()


class World:
    """A Rules instance over an in-memory overlay, with a registrar and three participants."""

    def __init__(self, admission: str = PERMISSIONED) -> None:
        self.validator_keys, self.registrar, self.genesis = make_genesis(
            admission=admission, seed=500
        )
        self.rules = Rules(self.genesis)
        self.base: dict[bytes, bytes] = {}
        self.state = StateOverlay(self.base.get)
        self.leaf = 0
        self.alice = make_key(seed=601)
        self.bob = make_key(seed=602)
        self.carol = make_key(seed=603)
        self.outsider = make_key(seed=604)
        if admission == PERMISSIONED:
            for key, name in ((self.alice, "A"), (self.bob, "B"), (self.carol, "C")):
                self.admit(key, name=name)

    def ctx(self, time: int = T0) -> BlockContext:
        return BlockContext(height=1 + self.leaf // 10, time=time, leaf_index=self.leaf)

    def ev(self, key: PrivateKey, cls: type[EventBody], *, time: int = T0, **fields: Any):
        return ev(key, cls, time=time, **fields)

    def apply(self, event: SignedEvent, *, at: int | None = None) -> tuple[bytes, ...]:
        at = event.body.time if at is None else at
        touched = self.rules.apply(self.state, event, self.ctx(at))
        self.leaf += 1
        return touched

    def do(
        self, key: PrivateKey, cls: type[EventBody], *, at: int = T0, **fields: Any
    ) -> SignedEvent:
        event = self.ev(key, cls, time=at, **fields)
        self.apply(event, at=at)
        return event

    def reject(
        self,
        error: type[LedgerError],
        key: PrivateKey,
        cls: type[EventBody],
        *,
        at: int = T0,
        event_time: int | None = None,
        **fields: Any,
    ) -> LedgerError:
        event = self.ev(key, cls, time=at if event_time is None else event_time, **fields)
        return self.reject_event(error, event, at=at)

    def reject_event(
        self, error: type[LedgerError], event: SignedEvent, *, at: int = T0
    ) -> LedgerError:
        before = dict(self.state.writes)
        base_before = dict(self.base)
        with pytest.raises(LedgerError) as info:
            self.rules.apply(self.state, event, self.ctx(at))
        assert type(info.value) is error, f"expected {error.__name__}, got {info.value!r}"
        # nothing written: the overlay is exactly as before
        assert self.state.writes == before
        assert self.base == base_before
        # check() raises the same without writing
        with pytest.raises(error):
            self.rules.check(self.state, event, self.ctx(at))
        assert self.state.writes == before
        return info.value

    # shortcuts
    def admit(
        self,
        subject: PrivateKey,
        *,
        by: PrivateKey | None = None,
        role: str = "participant",
        name: str = "org",
    ) -> SignedEvent:
        return self.do(
            by or self.registrar, Admit, subject=subject.public_key, role=role, name=name
        )

    def register(
        self, owner: PrivateKey, *, is_open: bool = False, dataset: bytes | None = None
    ) -> bytes:
        dataset = dataset or new_dataset()
        self.do(owner, Register, dataset=dataset, meta={"title": "t"}, open=is_open)
        return dataset

    def grant(
        self,
        owner: PrivateKey,
        dataset: bytes,
        to: PrivateKey,
        purposes: tuple[str, ...] = ("analytics",),
        *,
        reshare: bool = False,
        expires: int | None = None,
        at: int = T0,
    ) -> bytes:
        fields: dict[str, Any] = {}
        if expires is not None:
            fields["expires"] = expires
        event = self.do(
            owner,
            Grant,
            at=at,
            dataset=dataset,
            to=to.public_key,
            purposes=purposes,
            reshare=reshare,
            **fields,
        )
        return event.event_id

    def dataset_doc(self, dataset: bytes) -> dict[str, Any]:
        return self.state.get_doc(rules.dataset_key(dataset))

    def grant_doc(self, grant_id: bytes) -> dict[str, Any]:
        return self.state.get_doc(rules.grant_key(grant_id))


@pytest.fixture
def w() -> World:
    return World()


@pytest.fixture
def wo() -> World:
    return World(OPEN)


# --- admit --------------------------------------------------------------------------------


def test_admit_by_genesis_registrar(w: World) -> None:
    dave = make_key(seed=700)
    assert not w.rules.is_admitted(w.state, dave.public_key)
    event = w.admit(dave, name="Dave Ltd")
    assert w.rules.is_admitted(w.state, dave.public_key)
    assert not w.rules.is_registrar(w.state, dave.public_key, 1)
    doc = w.state.get_doc(rules.participant_key(dave.public_key))
    assert doc == {
        "name": "Dave Ltd",
        "role": "participant",
        "event": event.event_id,
        "status": "active",
    }
    assert rules.lookup_event(w.state, event.event_id) is not None


def test_admit_by_non_registrar_is_forbidden(w: World) -> None:
    dave = make_key(seed=700)
    w.reject(Forbidden, w.alice, Admit, subject=dave.public_key, role="participant", name="d")
    # un-admitted signers get Forbidden for admit too (only registrars may admit)
    w.reject(Forbidden, w.outsider, Admit, subject=dave.public_key, role="participant", name="d")
    w.reject(
        Forbidden, w.outsider, Admit, subject=w.outsider.public_key, role="registrar", name="self"
    )


def test_admit_twice_is_conflict(w: World) -> None:
    w.reject(
        Conflict, w.registrar, Admit, subject=w.alice.public_key, role="participant", name="again"
    )
    w.reject(
        Conflict, w.registrar, Admit, subject=w.alice.public_key, role="registrar", name="promote"
    )


def test_admitting_a_genesis_registrar_is_conflict(w: World) -> None:
    # the genesis registrar is already admitted (is_admitted says so); admitting it again is
    # a duplicate admission like any other
    assert w.rules.is_admitted(w.state, w.registrar.public_key)
    w.reject(
        Conflict, w.registrar, Admit, subject=w.registrar.public_key, role="participant", name="me"
    )


def test_admitted_registrar_can_admit(w: World) -> None:
    second = make_key(seed=701)
    dave = make_key(seed=702)
    w.admit(second, role="registrar", name="Reg 2")
    assert w.rules.is_registrar(w.state, second.public_key, 1)
    w.admit(dave, by=second)
    assert w.rules.is_admitted(w.state, dave.public_key)
    # a participant admitted by the second registrar cannot admit
    w.reject(
        Forbidden, dave, Admit, subject=make_key(seed=703).public_key, role="participant", name="x"
    )


# --- admission ----------------------------------------------------------------------------


def _fields_for(w: World, cls: type[EventBody], dataset: bytes, grant_id: bytes) -> dict:
    return {
        Register: {"dataset": new_dataset(), "meta": {}, "open": False},
        Grant: {"dataset": dataset, "to": w.bob.public_key, "purposes": ("a",), "reshare": False},
        Revoke: {"grant": grant_id},
        Transfer: {"dataset": dataset, "to": w.bob.public_key},
        Use: {"dataset": dataset, "purpose": "a"},
        Derive: {"dataset": new_dataset(), "inputs": (dataset,), "meta": {}},
        Destroy: {"dataset": dataset},
        Attest: {"dataset": dataset, "claim": "ok", "meta": {}},
    }[cls]


NON_ADMIT = [Register, Grant, Revoke, Transfer, Use, Derive, Destroy, Attest]


@pytest.mark.parametrize("cls", NON_ADMIT, ids=lambda c: c.TYPE)
def test_unadmitted_signer_is_not_admitted(w: World, cls: type[EventBody]) -> None:
    dataset = w.register(w.alice, is_open=True)
    grant_id = w.grant(w.alice, dataset, w.bob)
    w.reject(NotAdmitted, w.outsider, cls, **_fields_for(w, cls, dataset, grant_id))


def test_open_chain_lets_anyone_sign(wo: World) -> None:
    w = wo
    stranger = make_key(seed=710)
    other = make_key(seed=711)
    assert not w.rules.is_admitted(w.state, stranger.public_key)
    dataset = w.register(stranger)
    grant_id = w.grant(stranger, dataset, other, ("analytics", "derive"), reshare=True)
    w.do(other, Use, dataset=dataset, purpose="analytics")
    w.do(other, Transfer, dataset=dataset, to=make_key(seed=712).public_key)
    w.do(other, Derive, dataset=new_dataset(), inputs=(dataset,), meta={})
    w.do(w.outsider, Attest, dataset=dataset, claim="seen", meta={})
    w.do(stranger, Revoke, grant=grant_id)
    w.do(stranger, Destroy, dataset=dataset)
    # but admit still needs a registrar
    w.reject(Forbidden, stranger, Admit, subject=other.public_key, role="participant", name="o")
    w.admit(other)


# --- register -----------------------------------------------------------------------------


def test_register(w: World) -> None:
    dataset = new_dataset()
    event = w.ev(w.alice, Register, dataset=dataset, meta={"title": "x", "size": 3}, open=False)
    assert w.apply(event) == (dataset,)
    doc = w.dataset_doc(dataset)
    assert doc["owner"] == w.alice.public_key
    assert doc["origin"] == event.event_id
    assert doc["status"] == rules.STATUS_ACTIVE
    assert doc["open"] is False
    assert doc["meta"] == {"title": "x", "size": 3}
    assert doc["counts"] == {"register": 1}


def test_register_twice_is_conflict(w: World) -> None:
    dataset = w.register(w.alice)
    w.reject(Conflict, w.alice, Register, dataset=dataset, meta={}, open=False)
    w.reject(Conflict, w.bob, Register, dataset=dataset, meta={}, open=True)


# --- grant --------------------------------------------------------------------------------


def test_grant(w: World) -> None:
    dataset = w.register(w.alice)
    grant_id = w.grant(w.alice, dataset, w.bob, ("analytics", "ml"), reshare=True, expires=T0 + 1)
    doc = w.grant_doc(grant_id)
    assert doc["dataset"] == dataset
    assert doc["grantor"] == w.alice.public_key
    assert doc["to"] == w.bob.public_key
    assert doc["purposes"] == ["analytics", "ml"]
    assert doc["reshare"] is True
    assert doc["expires"] == T0 + 1
    assert w.state.get_doc(rules.grants_of_key(dataset, w.bob.public_key)) == 1
    assert w.state.get(rules.grant_slot_key(dataset, w.bob.public_key, 0)) == grant_id
    assert w.dataset_doc(dataset)["counts"] == {"register": 1, "grant": 1}


def test_grant_by_non_owner_is_forbidden(w: World) -> None:
    dataset = w.register(w.alice)
    w.reject(
        Forbidden,
        w.bob,
        Grant,
        dataset=dataset,
        to=w.carol.public_key,
        purposes=("a",),
        reshare=False,
    )
    # even a holder of a reshare grant cannot grant
    w.grant(w.alice, dataset, w.bob, reshare=True)
    w.reject(
        Forbidden,
        w.bob,
        Grant,
        dataset=dataset,
        to=w.carol.public_key,
        purposes=("a",),
        reshare=False,
    )


def test_grant_on_unregistered_dataset(w: World) -> None:
    w.reject(
        RuleViolation,
        w.alice,
        Grant,
        dataset=new_dataset(),
        to=w.bob.public_key,
        purposes=("a",),
        reshare=False,
    )


def test_grant_to_unadmitted_grantee(w: World) -> None:
    dataset = w.register(w.alice)
    w.reject(
        RuleViolation,
        w.alice,
        Grant,
        dataset=dataset,
        to=w.outsider.public_key,
        purposes=("a",),
        reshare=False,
    )


def test_grant_expiring_in_the_past(w: World) -> None:
    dataset = w.register(w.alice)
    for expires in (T0 - 1, T0):
        w.reject(
            RuleViolation,
            w.alice,
            Grant,
            dataset=dataset,
            to=w.bob.public_key,
            purposes=("a",),
            reshare=False,
            expires=expires,
        )
    # judged against the block context time, not the event's own time
    w.reject(
        RuleViolation,
        w.alice,
        Grant,
        at=T0 + 5_000,
        event_time=T0,
        dataset=dataset,
        to=w.bob.public_key,
        purposes=("a",),
        reshare=False,
        expires=T0 + 4_000,
    )
    w.grant(w.alice, dataset, w.bob, expires=T0 + 1)


def test_grant_on_destroyed_dataset(w: World) -> None:
    dataset = w.register(w.alice)
    w.do(w.alice, Destroy, dataset=dataset)
    w.reject(
        RuleViolation,
        w.alice,
        Grant,
        dataset=dataset,
        to=w.bob.public_key,
        purposes=("a",),
        reshare=False,
    )


# --- revoke -------------------------------------------------------------------------------


def test_revoke_then_use_is_refused(w: World) -> None:
    dataset = w.register(w.alice)
    grant_id = w.grant(w.alice, dataset, w.bob, ("analytics",))
    w.do(w.bob, Use, dataset=dataset, purpose="analytics")
    event = w.ev(w.alice, Revoke, grant=grant_id)
    assert w.apply(event) == (dataset,)
    assert w.grant_doc(grant_id)["revoked"] == event.event_id
    w.reject(Forbidden, w.bob, Use, dataset=dataset, purpose="analytics")
    w.reject(RuleViolation, w.bob, Use, dataset=dataset, purpose="analytics", grant=grant_id)


def test_revoke_unknown_grant(w: World) -> None:
    w.reject(RuleViolation, w.alice, Revoke, grant=new_dataset())


def test_revoke_by_non_grantor_is_forbidden(w: World) -> None:
    dataset = w.register(w.alice)
    grant_id = w.grant(w.alice, dataset, w.bob)
    w.reject(Forbidden, w.bob, Revoke, grant=grant_id)
    w.reject(Forbidden, w.carol, Revoke, grant=grant_id)
    w.reject(Forbidden, w.registrar, Revoke, grant=grant_id)


def test_revoke_twice_is_conflict(w: World) -> None:
    dataset = w.register(w.alice)
    grant_id = w.grant(w.alice, dataset, w.bob)
    w.do(w.alice, Revoke, grant=grant_id)
    w.reject(Conflict, w.alice, Revoke, grant=grant_id)


def test_revoke_expired_grant(w: World) -> None:
    dataset = w.register(w.alice)
    grant_id = w.grant(w.alice, dataset, w.bob, expires=T0 + 1_000)
    w.reject(RuleViolation, w.alice, Revoke, at=T0 + 1_000, grant=grant_id)
    w.do(w.alice, Revoke, at=T0 + 999, grant=grant_id)


# --- transfer -----------------------------------------------------------------------------


def test_transfer_by_owner(w: World) -> None:
    dataset = w.register(w.alice)
    event = w.ev(w.alice, Transfer, dataset=dataset, to=w.bob.public_key)
    assert w.apply(event) == (dataset,)
    assert w.state.get(rules.holder_key(dataset, w.bob.public_key)) == b""


def test_transfer_by_reshare_holder(w: World) -> None:
    dataset = w.register(w.alice)
    grant_id = w.grant(w.alice, dataset, w.bob, reshare=True)
    w.do(w.bob, Transfer, dataset=dataset, to=w.carol.public_key)
    w.do(w.bob, Transfer, dataset=dataset, to=w.carol.public_key, grant=grant_id)
    assert w.state.get(rules.holder_key(dataset, w.carol.public_key)) == b""


def test_transfer_without_reshare_is_forbidden(w: World) -> None:
    dataset = w.register(w.alice)
    grant_id = w.grant(w.alice, dataset, w.bob, reshare=False)
    w.reject(Forbidden, w.bob, Transfer, dataset=dataset, to=w.carol.public_key)
    w.reject(Forbidden, w.bob, Transfer, dataset=dataset, to=w.carol.public_key, grant=grant_id)
    # no grant at all
    w.reject(Forbidden, w.carol, Transfer, dataset=dataset, to=w.bob.public_key)
    # a revoked reshare grant no longer allows it
    reshare = w.grant(w.alice, dataset, w.carol, reshare=True)
    w.do(w.alice, Revoke, grant=reshare)
    w.reject(Forbidden, w.carol, Transfer, dataset=dataset, to=w.bob.public_key)


def test_transfer_to_unadmitted_recipient(w: World) -> None:
    dataset = w.register(w.alice)
    w.reject(RuleViolation, w.alice, Transfer, dataset=dataset, to=w.outsider.public_key)


def test_transfer_of_unregistered_or_destroyed_dataset(w: World) -> None:
    w.reject(RuleViolation, w.alice, Transfer, dataset=new_dataset(), to=w.bob.public_key)
    dataset = w.register(w.alice)
    w.do(w.alice, Destroy, dataset=dataset)
    w.reject(RuleViolation, w.alice, Transfer, dataset=dataset, to=w.bob.public_key)


# --- use ----------------------------------------------------------------------------------


def test_use_by_owner(w: World) -> None:
    dataset = w.register(w.alice)
    w.do(w.alice, Use, dataset=dataset, purpose="anything")
    assert w.dataset_doc(dataset)["counts"] == {"register": 1, "use": 1}


def test_use_with_grant(w: World) -> None:
    dataset = w.register(w.alice)
    grant_id = w.grant(w.alice, dataset, w.bob, ("analytics", "billing"))
    w.do(w.bob, Use, dataset=dataset, purpose="analytics")
    w.do(w.bob, Use, dataset=dataset, purpose="billing", grant=grant_id)
    w.reject(Forbidden, w.bob, Use, dataset=dataset, purpose="marketing")
    w.reject(Forbidden, w.bob, Use, dataset=dataset, purpose="marketing", grant=grant_id)
    # someone else's grant
    w.reject(Forbidden, w.carol, Use, dataset=dataset, purpose="analytics")
    w.reject(Forbidden, w.carol, Use, dataset=dataset, purpose="analytics", grant=grant_id)
    # a grant for another dataset
    other = w.register(w.alice)
    w.reject(RuleViolation, w.bob, Use, dataset=other, purpose="analytics", grant=grant_id)
    # an unknown grant
    w.reject(RuleViolation, w.bob, Use, dataset=dataset, purpose="analytics", grant=new_dataset())


def test_use_with_expired_grant_judged_against_block_time(w: World) -> None:
    dataset = w.register(w.alice)
    expires = T0 + 60_000
    grant_id = w.grant(w.alice, dataset, w.bob, expires=expires)
    w.do(w.bob, Use, at=expires - 1, dataset=dataset, purpose="analytics")
    w.do(w.bob, Use, at=expires - 1, dataset=dataset, purpose="analytics", grant=grant_id)
    w.reject(Forbidden, w.bob, Use, at=expires, dataset=dataset, purpose="analytics")
    w.reject(
        RuleViolation, w.bob, Use, at=expires, dataset=dataset, purpose="analytics", grant=grant_id
    )
    # an event signed before expiry but executed in a block after it is refused
    w.reject(
        Forbidden,
        w.bob,
        Use,
        at=expires + 1,
        event_time=expires - 1_000,
        dataset=dataset,
        purpose="analytics",
    )


def test_open_dataset_usable_by_anyone_admitted(w: World) -> None:
    dataset = w.register(w.alice, is_open=True)
    w.do(w.carol, Use, dataset=dataset, purpose="whatever")
    w.do(w.bob, Use, dataset=dataset, purpose="other")
    w.reject(NotAdmitted, w.outsider, Use, dataset=dataset, purpose="whatever")
    closed = w.register(w.alice, is_open=False)
    w.reject(Forbidden, w.carol, Use, dataset=closed, purpose="whatever")


def test_use_of_unregistered_dataset(w: World) -> None:
    w.reject(RuleViolation, w.alice, Use, dataset=new_dataset(), purpose="a")


# --- derive -------------------------------------------------------------------------------


def test_derive_by_owner_of_all_inputs(w: World) -> None:
    d1, d2 = w.register(w.alice), w.register(w.alice)
    out = new_dataset()
    event = w.ev(w.alice, Derive, dataset=out, inputs=(d1, d2), meta={"how": "join"})
    assert w.apply(event) == (out, d1, d2)
    doc = w.dataset_doc(out)
    assert doc["owner"] == w.alice.public_key
    assert doc["origin"] == event.event_id
    assert doc["parents"] == [d1, d2]
    assert doc["open"] is False
    assert w.dataset_doc(d1)["counts"] == {"register": 1, "derive": 1}
    assert doc["counts"] == {"derive": 1}


def test_derive_by_grantee_with_derive_purpose(w: World) -> None:
    d1 = w.register(w.alice)
    d2 = w.register(w.carol)
    w.grant(w.alice, d1, w.bob, ("derive",))
    w.grant(w.carol, d2, w.bob, ("analytics", "derive"))
    out = new_dataset()
    w.do(w.bob, Derive, dataset=out, inputs=(d1, d2), meta={})
    assert w.dataset_doc(out)["owner"] == w.bob.public_key


def test_derive_missing_grant_on_one_input_is_forbidden(w: World) -> None:
    d1 = w.register(w.alice)
    d2 = w.register(w.alice)
    own = w.register(w.bob)
    w.grant(w.alice, d1, w.bob, ("derive",))
    w.grant(w.alice, d2, w.bob, ("analytics",))  # wrong purpose
    w.reject(Forbidden, w.bob, Derive, dataset=new_dataset(), inputs=(d1, d2), meta={})
    w.reject(Forbidden, w.bob, Derive, dataset=new_dataset(), inputs=(own, d2), meta={})
    w.reject(Forbidden, w.carol, Derive, dataset=new_dataset(), inputs=(d1,), meta={})
    w.do(w.bob, Derive, dataset=new_dataset(), inputs=(own, d1), meta={})


def test_derive_output_already_registered_is_conflict(w: World) -> None:
    d1 = w.register(w.alice)
    existing = w.register(w.bob)
    w.reject(Conflict, w.alice, Derive, dataset=existing, inputs=(d1,), meta={})
    out = new_dataset()
    w.do(w.alice, Derive, dataset=out, inputs=(d1,), meta={})
    w.reject(Conflict, w.alice, Derive, dataset=out, inputs=(d1,), meta={})


def test_derive_from_unregistered_input(w: World) -> None:
    d1 = w.register(w.alice)
    w.reject(
        RuleViolation, w.alice, Derive, dataset=new_dataset(), inputs=(d1, new_dataset()), meta={}
    )


# --- destroy ------------------------------------------------------------------------------


def test_destroy_by_owner_then_conflict(w: World) -> None:
    dataset = w.register(w.alice)
    w.do(w.alice, Destroy, dataset=dataset)
    assert w.dataset_doc(dataset)["status"] == rules.STATUS_DESTROYED
    w.reject(Conflict, w.alice, Destroy, dataset=dataset)


def test_destroy_by_transfer_recipient(w: World) -> None:
    dataset = w.register(w.alice)
    w.do(w.alice, Transfer, dataset=dataset, to=w.bob.public_key)
    w.do(w.bob, Destroy, dataset=dataset)
    assert w.state.get(rules.holder_key(dataset, w.bob.public_key)) == b"destroyed"
    assert w.dataset_doc(dataset)["status"] == rules.STATUS_ACTIVE
    w.reject(Conflict, w.bob, Destroy, dataset=dataset)


def test_destroy_by_stranger_is_forbidden(w: World) -> None:
    dataset = w.register(w.alice)
    w.reject(Forbidden, w.carol, Destroy, dataset=dataset)
    # a grantee who never received a copy is not a holder
    w.grant(w.alice, dataset, w.bob)
    w.reject(Forbidden, w.bob, Destroy, dataset=dataset)
    w.reject(RuleViolation, w.alice, Destroy, dataset=new_dataset())


# --- attest -------------------------------------------------------------------------------


def test_attest(w: World) -> None:
    dataset = w.register(w.alice)
    event = w.ev(w.carol, Attest, dataset=dataset, claim="audited", meta={"score": 9})
    assert w.apply(event) == (dataset,)
    assert w.dataset_doc(dataset)["counts"] == {"register": 1, "attest": 1}


def test_attest_unregistered_dataset(w: World) -> None:
    w.reject(RuleViolation, w.carol, Attest, dataset=new_dataset(), claim="x", meta={})


# --- time, chain, duplicates --------------------------------------------------------------


def test_time_window(w: World) -> None:
    dataset = w.register(w.alice)
    for delta in (WINDOW + 1, -WINDOW - 1, 10 * WINDOW):
        w.reject(
            RuleViolation, w.alice, Use, at=T0, event_time=T0 + delta, dataset=dataset, purpose="a"
        )
    for delta in (WINDOW, -WINDOW, 0):
        w.do(w.alice, Use, at=T0 + delta, dataset=dataset, purpose="a")
        event = w.ev(w.alice, Use, time=T0 + delta, dataset=dataset, purpose="a")
        w.apply(event, at=T0)
    # a custom window
    narrow = Rules(w.genesis, time_window_ms=5)
    event = w.ev(w.alice, Use, time=T0 + 6, dataset=dataset, purpose="a")
    with pytest.raises(RuleViolation):
        narrow.apply(w.state.child(), event, w.ctx(T0))


def test_event_for_another_chain(w: World) -> None:
    dataset = w.register(w.alice)
    event = ev(w.alice, Use, time=T0, chain="other-chain", dataset=dataset, purpose="a")
    w.reject_event(RuleViolation, event)


def test_duplicate_event_is_conflict(w: World) -> None:
    dataset = w.register(w.alice)
    event = w.ev(w.alice, Use, dataset=dataset, purpose="a")
    w.apply(event)
    w.reject_event(Conflict, event)
    # the same body with a fresh (randomised) signature is the same event id: still a duplicate
    again = events.decode_envelope(
        codec.encode({"body": event.body_bytes, "sig": w.alice.sign(event.body_bytes)})
    )
    assert again.envelope != event.envelope and again.event_id == event.event_id
    w.reject_event(Conflict, again)
    # so is an admit or register replayed
    admit = w.admit(make_key(seed=720))
    w.reject_event(Conflict, admit)


def test_rejected_event_after_partial_checks_leaves_no_trace(w: World) -> None:
    # derive authorises input 1, then fails on input 2: nothing of it may remain
    d1 = w.register(w.alice)
    d2 = w.register(w.carol)
    w.grant(w.alice, d1, w.bob, ("derive",))
    before = dict(w.state.writes)
    out = new_dataset()
    w.reject(Forbidden, w.bob, Derive, dataset=out, inputs=(d1, d2), meta={})
    assert w.state.writes == before
    assert w.state.get(rules.dataset_key(out)) is None
    assert w.dataset_doc(d1)["counts"] == {"register": 1, "grant": 1}


def test_rules_read_through_to_base() -> None:
    # the committed state lives in the base reader; a fresh overlay over it sees everything
    w = World()
    dataset = w.register(w.alice)
    w.base.update(w.state.writes)
    fresh = StateOverlay(w.base.get)
    event = w.ev(w.alice, Register, dataset=dataset, meta={}, open=False)
    with pytest.raises(Conflict):
        w.rules.apply(fresh, event, w.ctx())
    assert fresh.writes == {}


# --- with a Store: duplicates in one block, and replay ------------------------------------


def _store_world(path: Path) -> tuple[Store, ChainBuilder, Any]:
    keys, registrar, genesis = make_genesis(seed=800)
    store = Store(path, genesis)
    return store, ChainBuilder(store, keys), registrar


def test_duplicate_within_one_execute(tmp_path: Path) -> None:
    store, chain, registrar = _store_world(tmp_path / "db")
    with store:
        dataset = new_dataset()
        event = chain.ev(registrar, Register, dataset=dataset, meta={}, open=False)
        use = chain.ev(registrar, Use, dataset=dataset, purpose="a")
        execution = chain.execute([event, use, event, use])
        assert [e.event_id for e in execution.accepted] == [event.event_id, use.event_id]
        assert [type(exc) for _, exc in execution.rejected] == [Conflict, Conflict]
        chain.append([event, use, event, use])
        assert store.tree_size == 2
        # and again in a later block
        later = chain.execute([use, event])
        assert later.accepted == ()
        assert [type(exc) for _, exc in later.rejected] == [Conflict, Conflict]


def _refused(execution: Any) -> list[type]:
    return [type(exc) for _, exc in execution.rejected]


def _scenario(chain: ChainBuilder, registrar: PrivateKey) -> None:
    alice, bob, carol, outsider = (make_key(seed=s) for s in (811, 812, 813, 814))
    admits = [
        chain.ev(registrar, Admit, subject=k.public_key, role="participant", name=n)
        for k, n in ((alice, "A"), (bob, "B"), (carol, "C"))
    ]
    assert _refused(chain.append(admits)) == []
    d1, d2, d3 = new_dataset(), new_dataset(), new_dataset()
    g1 = chain.ev(
        alice, Grant, dataset=d1, to=bob.public_key, purposes=("derive", "x"), reshare=True
    )
    ex = chain.append(
        [
            chain.ev(alice, Register, dataset=d1, meta={"t": 1}, open=False),
            chain.ev(carol, Register, dataset=d2, meta={}, open=True),
            g1,
            chain.ev(outsider, Register, dataset=new_dataset(), meta={}, open=False),  # refused
        ]
    )
    assert _refused(ex) == [NotAdmitted]
    now = chain.now
    g2 = chain.ev(
        alice,
        Grant,
        dataset=d1,
        to=carol.public_key,
        purposes=("x",),
        reshare=False,
        expires=now + 1_500,
    )
    ex = chain.append(
        [
            chain.ev(bob, Use, dataset=d1, purpose="x"),
            chain.ev(bob, Use, dataset=d2, purpose="y"),
            chain.ev(bob, Transfer, dataset=d1, to=carol.public_key),
            g2,
            chain.ev(carol, Use, dataset=d1, purpose="nope"),  # refused
        ]
    )
    assert _refused(ex) == [Forbidden]
    ex = chain.append(
        [
            chain.ev(carol, Use, dataset=d1, purpose="x", grant=g2.event_id),
            chain.ev(alice, Revoke, grant=g1.event_id),
            chain.ev(bob, Derive, dataset=d3, inputs=(d1,), meta={}),  # refused: revoked
            chain.ev(carol, Destroy, dataset=d1),
            chain.ev(alice, Derive, dataset=d3, inputs=(d1, d2), meta={}),  # refused: d2 grant
        ]
    )
    assert _refused(ex) == [Forbidden, Forbidden]
    assert chain.append([]).accepted == ()  # an empty block
    ex = chain.append(
        [
            chain.ev(carol, Use, dataset=d1, purpose="x"),  # refused: g2 expired
            chain.ev(alice, Derive, dataset=d3, inputs=(d1,), meta={"v": 2}),
            chain.ev(bob, Attest, dataset=d3, claim="ok", meta={}),
            chain.ev(alice, Destroy, dataset=d1),
        ]
    )
    assert _refused(ex) == [Forbidden]


def authenticated_root(store: Store) -> bytes:
    """The state map's root recomputed from scratch from the stored authenticated records."""
    records = [(k, v) for k, v in store.db.iterator(prefix=b"s") if rules.is_authenticated(k)]
    return smt.reference_root(records)


def _snapshot(store: Store, prefix: bytes | None = None) -> dict[bytes, bytes]:
    if prefix is None:
        return dict(store.db.iterator())
    return dict(store.db.iterator(prefix=prefix))


def test_replay_rebuilds_the_same_state(tmp_path: Path) -> None:
    store, chain, registrar = _store_world(tmp_path / "a")
    with store:
        _scenario(chain, registrar)
        assert store.height == 6
        replica = Store(tmp_path / "b", store.genesis)
        with replica:
            for height in range(1, store.height + 1):
                block = store.block(height)
                assert block is not None
                candidates = [events.decode_envelope(e, chain_id=CHAIN_ID) for e in block.events]
                execution = replica.execute(candidates, height, block.header.time)
                assert execution.rejected == ()
                assert execution.matches(block.header)
                assert execution.state_root == block.header.state_root
                commit = store.commit(height)
                assert commit is not None
                replica.append_block(Block(block.header, block.events), commit, execution)
            stored_state = _snapshot(store, b"s")
            assert stored_state  # the rules state is non-trivial
            assert _snapshot(replica, b"s") == stored_state
            assert replica.state_root == store.state_root == authenticated_root(store)
            assert replica.root() == store.root()
            assert replica.tree_size == store.tree_size
            assert replica.head_hash == store.head_hash
            # everything else (indexes, Merkle nodes, meta) is identical as well
            assert _snapshot(replica) == _snapshot(store)


def test_state_writes_are_the_overlay_and_feed_state_root(tmp_path: Path) -> None:
    store, chain, registrar = _store_world(tmp_path / "db")
    with store:
        execution = chain.append(
            [chain.ev(registrar, Register, dataset=new_dataset(), meta={}, open=False)]
        )
        assert all(k.startswith(b"s") for k in execution.state_writes)
        assert store.state_root == execution.state_root == authenticated_root(store)
        for key, value in execution.state_writes.items():
            assert store.db.get(key) == value


def test_genesis_registrar_admitted_on_fresh_chain() -> None:
    keys, registrar, genesis = make_genesis(seed=900)
    assert isinstance(genesis, Genesis)
    r = Rules(genesis)
    state = StateOverlay({}.get)
    assert r.is_admitted(state, registrar.public_key)
    assert r.is_registrar(state, registrar.public_key, 1)
    assert not r.is_admitted(state, keys[0].public_key)


# --- bookkeeping: event locations, counts and history commitments (docs/PROTOCOL.md §4.6) ---


def test_lookup_event_gives_height_and_leaf_index(w: World) -> None:
    w.leaf = 37  # ctx: height 1 + 37 // 10 = 4, leaf index 37
    event = w.admit(make_key(seed=650))
    assert rules.lookup_event(w.state, event.event_id) == rules.EventLocation(4, 37)
    assert rules.lookup_event(w.state, b"\x00" * 32) is None


def test_the_signer_commitment_chains_each_signed_event(w: World) -> None:
    """The signer's record counts its events and chains (leaf index, leaf hash) from 32 zero
    bytes; a first event starts it, whoever else signs leaves it alone."""
    dave = make_key(seed=651)
    key = rules.signed_key(dave.public_key)
    assert w.state.get_doc(key) is None
    w.admit(dave)
    assert w.state.get_doc(key) is None  # the registrar signed that one
    head = rules.EMPTY_HISTORY
    for n in range(1, 4):
        leaf = w.leaf
        event = w.do(dave, Register, dataset=new_dataset(), meta={}, open=False)
        head = rules.next_history(head, leaf, hashlib.sha256(b"\x00" + event.envelope).digest())
        assert w.state.get_doc(key) == {"events": n, "head": head}
    registrar = w.state.get_doc(rules.signed_key(w.registrar.public_key))
    assert registrar["events"] == 4  # three admissions in World() and dave's


def test_a_dataset_record_counts_and_chains_its_events(w: World) -> None:
    dataset = new_dataset()
    head = rules.EMPTY_HISTORY
    for n, (cls, fields) in enumerate(
        [(Register, {"meta": {}, "open": False}), (Use, {"purpose": "p"}), (Use, {"purpose": "q"})],
        start=1,
    ):
        leaf = w.leaf
        event = w.do(w.alice, cls, dataset=dataset, **fields)
        head = rules.next_history(head, leaf, hashlib.sha256(b"\x00" + event.envelope).digest())
        doc = w.dataset_doc(dataset)
        assert (doc["events"], doc["head"]) == (n, head)
    assert doc["counts"] == {"register": 1, "use": 2}


def test_record_skips_a_touched_dataset_without_a_record(w: World) -> None:
    """No handler touches an unregistered dataset; were one named, it is skipped and the
    datasets after it are still counted."""
    known = w.register(w.alice)
    event = w.ev(w.alice, Use, dataset=known, purpose="p")
    w.rules._record(w.state, event, w.ctx(), (new_dataset(), known))
    assert w.dataset_doc(known)["events"] == 2


def test_covers_is_false_for_revoked_expired_or_other_purpose() -> None:
    grant = {"purposes": ["a"], "reshare": False, "expires": T0}
    assert Rules._covers({**grant, "expires": T0 + 1}, T0, "a", False) is True
    assert Rules._covers(grant, T0, "a", False) is False  # expires at T0: expired at T0
    assert Rules._covers({**grant, "expires": T0 + 1, "revoked": b"r"}, T0, None, False) is False
    assert Rules._covers({**grant, "expires": T0 + 1}, T0, "b", False) is False
    assert Rules._covers({**grant, "expires": T0 + 1}, T0, None, True) is False


def test_find_live_grant_does_not_ask_for_reshare_by_default(w: World) -> None:
    dataset = w.register(w.alice)
    grant_id = w.grant(w.alice, dataset, w.bob, reshare=False)
    found = w.rules._find_live_grant(w.state, dataset=dataset, holder=w.bob.public_key, now=T0)
    assert found == w.grant_doc(grant_id)
