"""Complete stories and proven absence (docs/PROTOCOL.md §9, §17): every way a node (or
anyone in between) could hide part of a dataset's story makes verification fail with
"incomplete", and an unknown dataset is proven absent, not just reported unknown."""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger import codec, provenance, rules, smt
from ledger.crypto import PrivateKey
from ledger.errors import Malformed, VerificationFailed
from ledger.events import (
    Admit,
    Attest,
    Destroy,
    Grant,
    Register,
    Revoke,
    SignedEvent,
    Transfer,
    Use,
)
from ledger.genesis import Genesis
from ledger.store import Store
from tests.ledger.helpers import ChainBuilder, make_genesis, make_key

SEED = 4_000


def new_dataset() -> bytes:
    return hashlib.sha256(os.urandom(32)).digest()


@dataclass
class World:
    genesis: Genesis
    store: Store
    chain: ChainBuilder
    alice: PrivateKey
    bob: PrivateKey
    carol: PrivateKey
    dave: PrivateKey
    d: bytes
    ev: dict[str, SignedEvent]


def build(path: Path) -> World:
    keys, registrar, genesis = make_genesis(seed=SEED)
    store = Store(path, genesis)
    chain = ChainBuilder(store, keys)
    alice, bob, carol, dave = (make_key(seed=SEED + 10 + i) for i in range(4))
    chain.append(
        [
            chain.ev(registrar, Admit, subject=k.public_key, role="participant", name=n)
            for k, n in ((alice, "Alice"), (bob, "Bob"), (carol, "Carol"), (dave, "Dave"))
        ]
    )
    d = new_dataset()
    e: dict[str, SignedEvent] = {}
    e["register"] = chain.ev(alice, Register, dataset=d, meta={"title": "t"}, open=False)
    chain.append([e["register"]])
    e["g_bob"] = chain.ev(
        alice, Grant, dataset=d, to=bob.public_key, purposes=("a",), reshare=False
    )
    e["g_carol"] = chain.ev(
        alice, Grant, dataset=d, to=carol.public_key, purposes=("a",), reshare=True
    )
    chain.append([e["g_bob"], e["g_carol"]])
    e["use"] = chain.ev(bob, Use, dataset=d, purpose="a")
    e["transfer"] = chain.ev(carol, Transfer, dataset=d, to=dave.public_key)
    chain.append([e["use"], e["transfer"]])
    e["revoke"] = chain.ev(alice, Revoke, grant=e["g_carol"].event_id)
    e["attest"] = chain.ev(carol, Attest, dataset=d, claim="checked", meta={})
    e["destroy"] = chain.ev(dave, Destroy, dataset=d)
    e["use2"] = chain.ev(bob, Use, dataset=d, purpose="a")
    execution = chain.append([e["revoke"], e["attest"], e["destroy"], e["use2"]])
    assert execution.rejected == ()
    return World(genesis, store, chain, alice, bob, carol, dave, d, e)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build(tmp_path_factory.mktemp("complete") / "chain")
    yield w
    w.store.close()


@pytest.fixture(scope="module")
def bundle(world: World) -> dict[str, Any]:
    b = provenance.proof_bundle(world.store, world.d)
    assert b is not None
    return b


def fails(bundle: Any, genesis: Genesis, reason: str) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as info:
        provenance.verify_bundle(bundle, genesis)
    assert info.value.reason == reason, f"{info.value.reason!r}: {info.value.detail}"
    return info.value


def without(bundle: dict[str, Any], event: SignedEvent) -> dict[str, Any]:
    b = copy.deepcopy(bundle)
    b["events"] = [e for e in b["events"] if e["id"] != event.event_id.hex()]
    assert len(b["events"]) == len(bundle["events"]) - 1
    return b


def test_a_complete_bundle_verifies(world: World, bundle: dict[str, Any]) -> None:
    story = provenance.verify_bundle(bundle, world.genesis)
    assert len(story.events) == 9
    assert story.status == "active"
    assert story.record["events"] == 9
    by_id = {g.event.event_id: g for g in story.grants}
    assert by_id[world.ev["g_bob"].event_id].live
    assert by_id[world.ev["g_carol"].event_id].revoked_by == world.ev["revoke"]
    assert len(bundle["state"]["grants"]) == 2
    assert bundle["page"] == {"after": -1, "next": None}


@pytest.mark.parametrize("name", ["use", "use2", "revoke", "destroy", "attest", "transfer"])
def test_dropping_any_event_is_incomplete(world: World, bundle: dict[str, Any], name: str) -> None:
    error = fails(without(bundle, world.ev[name]), world.genesis, provenance.INCOMPLETE)
    assert "9" in error.detail and "8" in error.detail
    assert error.reason == "incomplete: the node omitted events"


def test_dropping_a_grant_and_its_proof_is_incomplete(world: World, bundle: dict[str, Any]) -> None:
    b = without(bundle, world.ev["g_bob"])
    b["state"]["grants"] = [
        g
        for g in b["state"]["grants"]
        if g["key"] != rules.grant_key(world.ev["g_bob"].event_id).hex()
    ]
    fails(b, world.genesis, provenance.INCOMPLETE)


def test_reordering_is_incomplete(world: World, bundle: dict[str, Any]) -> None:
    b = copy.deepcopy(bundle)
    b["events"][5], b["events"][6] = b["events"][6], b["events"][5]
    fails(b, world.genesis, provenance.INCOMPLETE)


def test_an_event_of_another_dataset_is_incomplete(world: World, bundle: dict[str, Any]) -> None:
    other = new_dataset()
    world.chain.append([world.chain.ev(world.alice, Register, dataset=other, meta={}, open=True)])
    foreign = provenance.proof_bundle(world.store, other)
    assert foreign is not None
    # against the same (new) checkpoint, the foreign event would be a fine inclusion proof
    b = provenance.proof_bundle(world.store, world.d)
    assert b is not None
    assert provenance.verify_bundle(b, world.genesis)
    b["events"].append(foreign["events"][0])
    fails(b, world.genesis, provenance.INCOMPLETE)


def test_a_grant_proof_is_optional_but_a_forged_one_fails(
    world: World, bundle: dict[str, Any]
) -> None:
    """A grant's status follows from the complete story, so its proof may be left out (a
    later page carries none); the status is the same either way. A proof given must hold."""
    b = copy.deepcopy(bundle)
    b["state"]["grants"] = []
    without_proofs = provenance.verify_bundle(b, world.genesis).grants
    assert without_proofs == provenance.verify_bundle(bundle, world.genesis).grants
    assert sorted(g.live for g in without_proofs) == [False, True]  # carol's was revoked
    # the revoked grant's record presented as live: it no longer matches the state root
    b = copy.deepcopy(bundle)
    carol_key = rules.grant_key(world.ev["g_carol"].event_id).hex()
    entry = next(g for g in b["state"]["grants"] if g["key"] == carol_key)
    record = codec.decode(bytes.fromhex(entry["value"]))
    del record["revoked"]
    entry["value"] = codec.encode(record).hex()
    fails(b, world.genesis, "state proof invalid")
    # a grant proof that is not about a grant of the story
    b = copy.deepcopy(bundle)
    b["state"]["grants"].append(copy.deepcopy(b["state"]["dataset"]))
    fails(b, world.genesis, "malformed bundle")


def test_a_forged_history_in_the_record_fails(world: World, bundle: dict[str, Any]) -> None:
    """Shortening the committed history to match a shortened story breaks the state proof."""
    b = without(bundle, world.ev["revoke"])
    record = codec.decode(bytes.fromhex(b["state"]["dataset"]["value"]))
    record["events"] -= 1
    b["state"]["dataset"]["value"] = codec.encode(record).hex()
    fails(b, world.genesis, "state proof invalid")


# --- pages -----------------------------------------------------------------------------------


def pages_of(store: Store, dataset: bytes, max_bytes: int) -> list[dict[str, Any]]:
    first = provenance.proof_bundle(store, dataset, max_bytes=max_bytes)
    assert first is not None
    pages = [first]
    height = first["checkpoint"]["header"]["height"]
    while pages[-1]["page"]["next"] is not None:
        page = provenance.proof_bundle(
            store, dataset, after=pages[-1]["page"]["next"], height=height, max_bytes=max_bytes
        )
        assert page is not None
        pages.append(page)
    return pages


def test_pages_join_into_the_whole_story(world: World) -> None:
    whole = provenance.proof_bundle(world.store, world.d)
    assert whole is not None
    pages = pages_of(world.store, world.d, max_bytes=1)  # one event per page
    assert len(pages) == len(whole["events"]) == 9
    assert all(len(p["events"]) == 1 for p in pages)
    assert "state" in pages[0] and all("state" not in p for p in pages[1:])
    joined = provenance.join_pages(pages)
    assert joined["events"] == whole["events"]
    provenance.verify_bundle(joined, world.genesis)
    # pages by event count too
    page = provenance.proof_bundle(world.store, world.d, limit=4)
    assert page is not None and len(page["events"]) == 4
    assert page["page"]["next"] == page["events"][-1]["leaf_index"]


def test_pages_hold_at_most_max_bytes(world: World) -> None:
    pages = pages_of(world.store, world.d, max_bytes=6_000)
    assert len(pages) > 1
    for page in pages[1:]:
        size = sum(provenance._entry_bytes(e) for e in page["events"])
        assert size <= 6_000 or len(page["events"]) == 1


def test_a_dropped_page_is_incomplete(world: World) -> None:
    pages = pages_of(world.store, world.d, max_bytes=1)
    for dropped in (1, 4, len(pages) - 1):
        joined = provenance.join_pages(pages[:dropped] + pages[dropped + 1 :])
        fails(joined, world.genesis, provenance.INCOMPLETE)


def test_a_page_against_another_checkpoint_is_refused(world: World) -> None:
    pages = pages_of(world.store, world.d, max_bytes=1)
    older = provenance.proof_bundle(
        world.store, world.d, after=pages[1]["page"]["after"], height=3, max_bytes=1
    )
    assert older is not None
    with pytest.raises(VerificationFailed, match="another checkpoint"):
        provenance.join_pages([pages[0], older, *pages[2:]])


def test_page_parameters_are_checked(world: World) -> None:
    with pytest.raises(Malformed):
        provenance.proof_bundle(world.store, world.d, height=1)  # first page not at the head
    with pytest.raises(Malformed):
        provenance.proof_bundle(world.store, world.d, after=3)  # later page without height
    with pytest.raises(Malformed):
        provenance.proof_bundle(world.store, world.d, after=3, height=world.store.height + 1)


def test_a_later_page_is_against_its_checkpoint_whatever_was_appended(world: World) -> None:
    first = provenance.proof_bundle(world.store, world.d, max_bytes=1)
    assert first is not None
    height = first["checkpoint"]["header"]["height"]
    # the story goes on after the first page was served
    late = world.chain.ev(world.bob, Use, dataset=world.d, purpose="a")
    world.chain.append([late])
    pages = [first]
    while pages[-1]["page"]["next"] is not None:
        page = provenance.proof_bundle(
            world.store, world.d, after=pages[-1]["page"]["next"], height=height, max_bytes=1
        )
        assert page is not None
        pages.append(page)
    story = provenance.verify_bundle(provenance.join_pages(pages), world.genesis)
    assert late.event_id not in {p.event.event_id for p in story.events}


def test_a_view_keeps_its_head_while_the_store_appends(world: World) -> None:
    with world.store.view() as view:
        before = provenance.proof_bundle(view, world.d)
        world.chain.append([world.chain.ev(world.bob, Use, dataset=world.d, purpose="a")])
        after = provenance.proof_bundle(view, world.d)
        assert before == after
        assert view.height == world.store.height - 1
    provenance.verify_bundle(after, world.genesis)
    now = provenance.proof_bundle(world.store, world.d)
    assert now is not None and len(now["events"]) == len(after["events"]) + 1


# --- absence and state answers ---------------------------------------------------------------


def test_an_unknown_dataset_is_proven_absent(world: World) -> None:
    unknown = new_dataset()
    assert provenance.proof_bundle(world.store, unknown) is None
    answer = provenance.state_answer(world.store, "dataset", unknown)
    assert answer is not None and answer["value"] is None and answer["record"] is None
    state = provenance.verify_state(answer, world.genesis, "dataset", unknown)
    assert state.record is None
    assert state.checkpoint.height == world.store.height


def test_a_forged_absence_of_a_known_dataset_is_refused(world: World) -> None:
    known = provenance.state_answer(world.store, "dataset", world.d)
    assert known is not None and known["value"] is not None
    # the record's value withheld, its membership proof presented as absence
    forged = {**known, "value": None}
    with pytest.raises(VerificationFailed):
        provenance.verify_state(forged, world.genesis, "dataset", world.d)
    # a genuine absence proof of another key relabelled as this dataset's
    other = provenance.state_answer(world.store, "dataset", new_dataset())
    assert other is not None
    relabelled = {**other, "key": known["key"]}
    with pytest.raises(VerificationFailed):
        provenance.verify_state(relabelled, world.genesis, "dataset", world.d)
    # an absence proof of some other key, under its own key, is not about this dataset
    with pytest.raises(VerificationFailed, match="another key"):
        provenance.verify_state(other, world.genesis, "dataset", world.d)


def test_state_answers_for_every_kind(world: World) -> None:
    alice = world.alice.public_key
    participant = provenance.state_answer(world.store, "participant", alice)
    assert participant is not None
    state = provenance.verify_state(participant, world.genesis, "participant", alice)
    assert state.record is not None and state.record["status"] == "active"
    assert participant["record"]["name"] == "Alice"
    grant_id = world.ev["g_carol"].event_id
    grant = provenance.state_answer(world.store, "grant", grant_id)
    assert grant is not None
    state = provenance.verify_state(grant, world.genesis, "grant", grant_id)
    assert state.record is not None and state.record["revoked"] == world.ev["revoke"].event_id
    signed = provenance.state_answer(world.store, "commitment", alice)
    assert signed is not None
    state = provenance.verify_state(signed, world.genesis, "commitment", alice)
    assert state.record is not None and state.record["events"] >= 3
    with pytest.raises(Malformed):
        provenance.state_answer(world.store, "grant", alice)  # 33 bytes: not a grant id


def test_the_signer_commitment_is_the_chain_of_its_events(world: World) -> None:
    carol = world.carol.public_key
    leaves = world.store.actor_leaves(carol, limit=1_000)
    head = rules.EMPTY_HISTORY
    for leaf in leaves:
        head = rules.next_history(head, leaf, smt_leaf(world.store, leaf))
    record = world.store.state().get_doc(rules.signed_key(carol))
    assert record == {"events": len(leaves), "head": head}


def smt_leaf(store: Store, leaf_index: int) -> bytes:
    from ledger import merkle

    return merkle.leaf_hash(store.envelope(leaf_index))


def test_state_root_is_the_map_of_the_authenticated_records(world: World) -> None:
    records = [(k, v) for k, v in world.store.db.iterator(prefix=b"s") if rules.is_authenticated(k)]
    assert {k[:2] for k, _ in records} == {b"sp", b"sd", b"sg", b"sh", b"sa"}
    assert world.store.state_root == smt.reference_root(records)
    header = world.store.header(world.store.height)
    assert header is not None and header.state_root == world.store.state_root
