"""Provenance queries and offline-verifiable proof bundles (PROTOCOL §9)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger import merkle, provenance
from ledger.blocks import Header
from ledger.crypto import PrivateKey
from ledger.errors import ProofMismatch, VerificationFailed
from ledger.events import Admit, Attest, Derive, Grant, Register, Revoke, SignedEvent, Transfer, Use
from ledger.genesis import Genesis
from ledger.store import Store
from tests.ledger.helpers import ChainBuilder, make_genesis, make_key

SEED = 2_000


def new_dataset() -> bytes:
    return hashlib.sha256(os.urandom(32)).digest()


@dataclass
class Story:
    """A chain with one richly used dataset `d` and its neighbours."""

    genesis: Genesis
    store: Store
    keys: list[PrivateKey]
    alice: PrivateKey
    bob: PrivateKey
    carol: PrivateKey
    dave: PrivateKey
    d: bytes
    other: bytes
    child: bytes
    child2: bytes
    grandchild: bytes
    ev: dict[str, SignedEvent]


def build_story(path: Path) -> Story:
    keys, registrar, genesis = make_genesis(seed=SEED)
    store = Store(path, genesis)
    chain = ChainBuilder(store, keys)
    alice, bob, carol, dave = (make_key(seed=SEED + 10 + i) for i in range(4))
    e: dict[str, SignedEvent] = {}
    chain.append(
        [
            chain.ev(registrar, Admit, subject=k.public_key, role="participant", name=n)
            for k, n in ((alice, "Alice"), (bob, "Bob"), (carol, "Carol"), (dave, "Dave"))
        ]
    )
    d, other, child, child2, grandchild = (new_dataset() for _ in range(5))
    e["register"] = chain.ev(
        alice, Register, dataset=d, meta={"title": "sales", "size": 10}, open=False
    )
    e["register_other"] = chain.ev(alice, Register, dataset=other, meta={}, open=False)
    chain.append([e["register"], e["register_other"]])
    now = chain.now
    e["g_live"] = chain.ev(
        alice,
        Grant,
        dataset=d,
        to=bob.public_key,
        purposes=("analytics", "derive"),
        reshare=False,
    )
    e["g_rev"] = chain.ev(
        alice, Grant, dataset=d, to=carol.public_key, purposes=("analytics",), reshare=True
    )
    e["g_exp"] = chain.ev(
        alice,
        Grant,
        dataset=d,
        to=dave.public_key,
        purposes=("analytics",),
        reshare=False,
        expires=now + 1_500,
    )
    chain.append([e["g_live"], e["g_rev"], e["g_exp"]])
    e["use_bob"] = chain.ev(bob, Use, dataset=d, purpose="analytics")
    e["transfer"] = chain.ev(carol, Transfer, dataset=d, to=dave.public_key)
    e["revoke"] = chain.ev(alice, Revoke, grant=e["g_rev"].event_id)
    e["use_dave"] = chain.ev(dave, Use, dataset=d, purpose="analytics", grant=e["g_exp"].event_id)
    e["use_other"] = chain.ev(alice, Use, dataset=other, purpose="x")
    execution = chain.append(
        [e["use_bob"], e["transfer"], e["revoke"], e["use_other"], e["use_dave"]]
    )
    assert execution.rejected == ()
    e["derive"] = chain.ev(bob, Derive, dataset=child, inputs=(d,), meta={"how": "agg"})
    e["derive2"] = chain.ev(alice, Derive, dataset=child2, inputs=(d, other), meta={})
    chain.append([e["derive"], e["derive2"]])
    e["attest"] = chain.ev(carol, Attest, dataset=d, claim="quality:good", meta={"score": 9})
    e["derive3"] = chain.ev(bob, Derive, dataset=grandchild, inputs=(child,), meta={})
    e["attest_other"] = chain.ev(carol, Attest, dataset=other, claim="x", meta={})
    chain.append([e["attest"], e["derive3"], e["attest_other"]])
    chain.append([chain.ev(alice, Use, dataset=other, purpose="late")])
    assert store.height == 7
    return Story(
        genesis, store, keys, alice, bob, carol, dave, d, other, child, child2, grandchild, e
    )


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    s = build_story(tmp_path_factory.mktemp("prov") / "chain")
    yield s
    s.store.close()


@pytest.fixture(scope="module")
def bundle(story: Story) -> dict[str, Any]:
    b = provenance.proof_bundle(story.store, story.d)
    assert b is not None
    return b


D_ORDER = [
    "register",
    "g_live",
    "g_rev",
    "g_exp",
    "use_bob",
    "transfer",
    "revoke",
    "use_dave",
    "derive",
    "derive2",
    "attest",
]


def ids(story: Story, *names: str) -> list[str]:
    return [story.ev[n].event_id.hex() for n in names]


def fails(bundle: Any, genesis: Genesis, reason: str) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as info:
        provenance.verify_bundle(bundle, genesis)
    assert info.value.reason == reason, f"{info.value.reason!r}: {info.value.detail}"
    return info.value


# --- queries ------------------------------------------------------------------------------


def test_dataset_summary(story: Story) -> None:
    s = provenance.dataset_summary(story.store, story.d)
    assert s is not None
    assert s["dataset"] == story.d.hex()
    assert s["owner"] == story.alice.public_key.hex()
    assert s["origin"] == story.ev["register"].event_id.hex()
    assert s["open"] is False
    assert s["status"] == "active"
    assert s["registered_height"] == 2
    assert s["meta"] == {"title": "sales", "size": 10}
    assert s["parents"] == []
    assert sorted(s["children"]) == sorted([story.child.hex(), story.child2.hex()])
    assert s["counts"] == {
        "register": 1,
        "grant": 3,
        "use": 2,
        "transfer": 1,
        "revoke": 1,
        "derive": 2,
        "attest": 1,
    }
    assert s["events"] == 11
    c = provenance.dataset_summary(story.store, story.child2)
    assert c is not None
    assert c["owner"] == story.alice.public_key.hex()
    assert sorted(c["parents"]) == sorted([story.d.hex(), story.other.hex()])
    assert c["children"] == []
    assert c["registered_height"] == 5
    assert provenance.dataset_summary(story.store, new_dataset()) is None


def test_history(story: Story) -> None:
    docs = provenance.history(story.store, story.d)
    assert [doc["id"] for doc in docs] == ids(story, *D_ORDER)
    assert [doc["type"] for doc in docs] == [story.ev[n].type for n in D_ORDER]
    indexes = [doc["leaf_index"] for doc in docs]
    assert indexes == sorted(indexes)
    for doc, name in zip(docs, D_ORDER, strict=True):
        event = story.ev[name]
        assert doc["envelope"] == event.envelope.hex()
        assert doc["actor"] == event.actor.hex()
        location = story.store.locate(event.event_id)
        assert location is not None
        assert (doc["height"], doc["leaf_index"]) == (location.height, location.leaf_index)
    assert docs[0]["dataset"] == story.d.hex()
    assert docs[0]["meta"] == {"title": "sales", "size": 10}
    assert docs[6]["grant"] == story.ev["g_rev"].event_id.hex()
    assert docs[3]["expires"] == story.ev["g_exp"].body.expires  # type: ignore[attr-defined]
    assert provenance.history(story.store, new_dataset()) == []


def test_lineage(story: Story) -> None:
    store, d, c, c2, g, o = (
        story.store,
        story.d,
        story.child,
        story.child2,
        story.grandchild,
        story.other,
    )
    assert provenance.lineage(store, d, up=False, depth=0) == []
    assert sorted(provenance.lineage(store, d, up=False, depth=1)) == sorted([(d, c), (d, c2)])
    assert sorted(provenance.lineage(store, d, up=False, depth=2)) == sorted(
        [(d, c), (d, c2), (c, g)]
    )
    assert sorted(provenance.lineage(store, d, up=False, depth=99)) == sorted(
        [(d, c), (d, c2), (c, g)]
    )
    assert provenance.lineage(store, g, up=True, depth=1) == [(c, g)]
    assert provenance.lineage(store, g, up=True, depth=2) == [(c, g), (d, c)]
    assert sorted(provenance.lineage(store, c2, up=True, depth=1)) == sorted([(d, c2), (o, c2)])
    assert provenance.lineage(store, d, up=True, depth=5) == []
    assert provenance.lineage(store, g, up=False, depth=5) == []
    assert provenance.lineage(store, g, up=True, depth=-3) == []


def test_participant_events_pagination(story: Story) -> None:
    store, alice = story.store, story.alice.public_key
    everything = provenance.participant_events(store, alice)
    assert all(doc["actor"] == alice.hex() for doc in everything)
    expected = ids(
        story,
        "register",
        "register_other",
        "g_live",
        "g_rev",
        "g_exp",
        "revoke",
        "use_other",
        "derive2",
    )
    assert [doc["id"] for doc in everything][: len(expected)] == expected
    assert len(everything) == len(expected) + 1  # and the late use
    first = provenance.participant_events(store, alice, limit=3)
    assert [doc["id"] for doc in first] == expected[:3]
    paged: list[dict[str, Any]] = []
    after = -1
    while True:
        page = provenance.participant_events(store, alice, after=after, limit=3)
        if not page:
            break
        assert len(page) <= 3
        paged.extend(page)
        after = page[-1]["leaf_index"]
    assert [doc["id"] for doc in paged] == [doc["id"] for doc in everything]
    assert provenance.participant_events(store, make_key(seed=SEED + 99).public_key) == []


def test_checkpoint_and_inclusion(story: Story) -> None:
    store = story.store
    point = provenance.checkpoint(store)
    assert point is not None
    header = store.header(store.height)
    assert header is not None
    assert point["header"] == header.to_json()
    assert bytes.fromhex(point["header_bytes"]) == header.encode()
    assert point["block_hash"] == header.block_hash.hex()
    assert point["tree_size"] == store.tree_size
    assert point["root_hash"] == store.root().hex()
    assert point["commit"]["block_hash"] == header.block_hash.hex()
    assert provenance.checkpoint(store, store.height + 1) is None
    old = provenance.checkpoint(store, 3)
    assert old is not None and old["tree_size"] == store.header(3).tree_size  # type: ignore[union-attr]
    proof = provenance.inclusion(store, 5)
    assert proof["leaf_index"] == 5
    merkle.verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        5,
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["audit_path"]],
        bytes.fromhex(proof["root_hash"]),
    )
    proof3 = provenance.inclusion(store, 5, height=3)
    assert proof3["tree_size"] == old["tree_size"]
    merkle.verify_inclusion(
        bytes.fromhex(proof3["leaf_hash"]),
        5,
        proof3["tree_size"],
        [bytes.fromhex(h) for h in proof3["audit_path"]],
        bytes.fromhex(old["root_hash"]),
    )


# --- bundles ------------------------------------------------------------------------------


def test_bundle_verifies_and_tells_the_story(story: Story, bundle: dict[str, Any]) -> None:
    assert provenance.proof_bundle(story.store, new_dataset()) is None
    assert bundle["dataset"] == story.d.hex()
    assert [entry["id"] for entry in bundle["events"]] == ids(story, *D_ORDER)
    verified = provenance.verify_bundle(bundle, story.genesis)
    assert verified.dataset == story.d
    assert verified.checkpoint == story.store.header(story.store.height)
    assert verified.origin.event_id == story.ev["register"].event_id
    assert verified.owner == story.alice.public_key
    assert [p.event.event_id for p in verified.events] == [story.ev[n].event_id for n in D_ORDER]
    assert [p.leaf_index for p in verified.events] == [
        story.store.locate(story.ev[n].event_id).leaf_index  # type: ignore[union-attr]
        for n in D_ORDER
    ]
    statuses = {g.event.event_id: g for g in verified.grants}
    assert set(statuses) == {story.ev[n].event_id for n in ("g_live", "g_rev", "g_exp")}
    live, revoked, expired = (statuses[story.ev[n].event_id] for n in ("g_live", "g_rev", "g_exp"))
    assert live.live and live.revoked_by is None and not live.expired
    assert not revoked.live
    assert revoked.revoked_by is not None
    assert revoked.revoked_by.event_id == story.ev["revoke"].event_id
    assert not revoked.expired
    assert not expired.live and expired.expired and expired.revoked_by is None
    assert verified.parents == ()
    assert verified.children == (story.child, story.child2)
    assert [e.event_id for e in verified.of_type("use")] == [
        story.ev["use_bob"].event_id,
        story.ev["use_dave"].event_id,
    ]
    assert {lst for lst in bundle["lineage"]} == {"parents", "children"}
    assert sorted(bundle["lineage"]["children"]) == sorted([story.child.hex(), story.child2.hex()])


def test_bundle_of_derived_datasets(story: Story) -> None:
    for dataset, parents in (
        (story.child, (story.d,)),
        (story.child2, (story.d, story.other)),
        (story.grandchild, (story.child,)),
    ):
        b = provenance.proof_bundle(story.store, dataset)
        assert b is not None
        verified = provenance.verify_bundle(b, story.genesis)
        assert verified.parents == parents
        assert isinstance(verified.origin.body, Derive)
    verified = provenance.verify_bundle(
        provenance.proof_bundle(story.store, story.child), story.genesis
    )
    assert verified.children == (story.grandchild,)
    assert verified.owner == story.bob.public_key


def test_bundle_survives_json_round_trip(story: Story, bundle: dict[str, Any]) -> None:
    text = json.dumps(bundle)
    again = json.loads(text)
    assert again == bundle
    verified = provenance.verify_bundle(again, story.genesis)
    assert verified.origin.event_id == story.ev["register"].event_id
    # and against a genesis that went through its JSON file form
    genesis = Genesis.from_json(json.loads(json.dumps(story.genesis.to_json())))
    assert provenance.verify_bundle(again, genesis).dataset == story.d


def test_bundle_against_an_older_checkpoint_still_verifies(story: Story) -> None:
    # a bundle is self-contained: adding blocks later does not invalidate it
    b = provenance.proof_bundle(story.store, story.other)
    assert b is not None
    assert provenance.verify_bundle(b, story.genesis).dataset == story.other


# --- tampered bundles ---------------------------------------------------------------------


def tampered(bundle: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(bundle)


def _flip_hex_byte(text: str, position: int, mask: int = 0x01) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[position] ^= mask
    return raw.hex()


def test_event_body_byte_changed_is_signature_invalid(story: Story, bundle: dict) -> None:
    for index in (0, 4, len(bundle["events"]) - 1):
        b = tampered(bundle)
        entry = b["events"][index]
        envelope = bytes.fromhex(entry["envelope"])
        nonce = story.ev[D_ORDER[index]].body.nonce
        entry["envelope"] = _flip_hex_byte(entry["envelope"], envelope.index(nonce) + 7)
        fails(b, story.genesis, "event signature invalid")


def test_event_signature_byte_changed_is_signature_invalid(story: Story, bundle: dict) -> None:
    b = tampered(bundle)
    entry = b["events"][2]
    envelope = bytes.fromhex(entry["envelope"])
    sig = story.ev[D_ORDER[2]].signature
    entry["envelope"] = _flip_hex_byte(entry["envelope"], envelope.index(sig) + 10)
    fails(b, story.genesis, "event signature invalid")


def test_event_structure_byte_changed_is_malformed(story: Story, bundle: dict) -> None:
    b = tampered(bundle)
    b["events"][1]["envelope"] = _flip_hex_byte(b["events"][1]["envelope"], 0)
    fails(b, story.genesis, "event malformed")
    b = tampered(bundle)
    b["events"][1]["envelope"] = b["events"][1]["envelope"][:-2]
    fails(b, story.genesis, "event malformed")


def test_commit_below_quorum(story: Story, bundle: dict) -> None:
    b = tampered(bundle)
    signatures = b["checkpoint"]["commit"]["signatures"]
    assert len(signatures) == 4
    del signatures[2:]
    fails(b, story.genesis, "insufficient voting power")
    b["checkpoint"]["commit"]["signatures"] = []
    fails(b, story.genesis, "insufficient voting power")
    # three of four equal powers is more than 2/3: still verifies
    b = tampered(bundle)
    del b["checkpoint"]["commit"]["signatures"][0]
    provenance.verify_bundle(b, story.genesis)


def test_commit_signature_garbage(story: Story, bundle: dict) -> None:
    for garbage in ("00" * 64, hashlib.sha512(b"garbage").hexdigest(), "ab" * 10):
        b = tampered(bundle)
        b["checkpoint"]["commit"]["signatures"][1]["signature"] = garbage
        fails(b, story.genesis, "commit invalid")
    # a valid signature by a validator, but over another message
    b = tampered(bundle)
    b["checkpoint"]["commit"]["signatures"][1]["signature"] = story.keys[1].sign(b"x").hex()
    fails(b, story.genesis, "commit invalid")
    # one validator counted twice
    b = tampered(bundle)
    sigs = b["checkpoint"]["commit"]["signatures"]
    sigs[3] = dict(sigs[0])
    fails(b, story.genesis, "commit invalid")
    # a signature by a key outside the validator set
    b = tampered(bundle)
    stranger = make_key(seed=SEED + 77)
    b["checkpoint"]["commit"]["signatures"][0] = {
        "validator": stranger.public_key.hex(),
        "signature": stranger.sign(b"y").hex(),
    }
    fails(b, story.genesis, "commit invalid")


def test_audit_path_tampering(story: Story, bundle: dict) -> None:
    entry_index = 5
    path = bundle["events"][entry_index]["audit_path"]
    assert len(path) >= 2
    # two proof hashes swapped
    b = tampered(bundle)
    p = b["events"][entry_index]["audit_path"]
    p[0], p[1] = p[1], p[0]
    fails(b, story.genesis, "inclusion proof invalid")
    # one bit flipped
    for position in range(len(path)):
        b = tampered(bundle)
        p = b["events"][entry_index]["audit_path"]
        p[position] = _flip_hex_byte(p[position], 31, 0x80)
        fails(b, story.genesis, "inclusion proof invalid")
    # one hash dropped, one added
    b = tampered(bundle)
    b["events"][entry_index]["audit_path"].pop()
    fails(b, story.genesis, "inclusion proof invalid")
    b = tampered(bundle)
    b["events"][entry_index]["audit_path"].append("00" * 32)
    fails(b, story.genesis, "inclusion proof invalid")
    # a hash of the wrong size
    b = tampered(bundle)
    b["events"][entry_index]["audit_path"][0] = "00" * 31
    fails(b, story.genesis, "inclusion proof invalid")
    # the right path for a wrong leaf index (still in order)
    b = tampered(bundle)
    b["events"][-1]["leaf_index"] += 1
    fails(b, story.genesis, "inclusion proof invalid")


def test_checkpoint_header_byte_changed(story: Story, bundle: dict) -> None:
    header_bytes = bytes.fromhex(bundle["checkpoint"]["header_bytes"])
    header = Header.decode(header_bytes)
    for value in (header.tree_root, header.state_root, header.events_root, header.prev):
        b = tampered(bundle)
        position = header_bytes.index(value) + 3
        b["checkpoint"]["header_bytes"] = _flip_hex_byte(b["checkpoint"]["header_bytes"], position)
        fails(b, story.genesis, "commit mismatch")
    # a byte that breaks the encoding
    b = tampered(bundle)
    b["checkpoint"]["header_bytes"] = _flip_hex_byte(b["checkpoint"]["header_bytes"], 0, 0x0F)
    fails(b, story.genesis, "malformed checkpoint")
    # a commit for another height
    b = tampered(bundle)
    b["checkpoint"]["commit"]["height"] -= 1
    fails(b, story.genesis, "commit mismatch")
    # an older, genuinely signed checkpoint whose tree is too small for the proofs
    b = tampered(bundle)
    old = provenance.checkpoint(story.store, 3)
    assert old is not None
    b["checkpoint"] = old
    fails(b, story.genesis, "state proof invalid")


def test_wrong_genesis(story: Story, bundle: dict) -> None:
    _, _, other = make_genesis(seed=SEED + 500)
    assert other.chain_id == story.genesis.chain_id
    fails(bundle, other, "wrong validator set")
    _, _, renamed = make_genesis(seed=SEED, chain_id="another-chain")
    fails(bundle, renamed, "wrong chain")


def test_event_about_another_dataset(story: Story, bundle: dict) -> None:
    other = provenance.proof_bundle(story.store, story.other)
    assert other is not None
    assert other["checkpoint"] == bundle["checkpoint"]
    for name in ("register_other", "use_other", "attest_other"):
        foreign = next(e for e in other["events"] if e["id"] == story.ev[name].event_id.hex())
        b = tampered(bundle)
        position = sum(1 for e in b["events"] if e["leaf_index"] < foreign["leaf_index"])
        b["events"].insert(position, foreign)
        fails(b, story.genesis, provenance.INCOMPLETE)
    # a revoke of a grant the bundle does not contain
    b = tampered(bundle)
    g_rev = story.ev["g_rev"].event_id.hex()
    b["events"] = [e for e in b["events"] if e["id"] != g_rev]
    fails(b, story.genesis, provenance.INCOMPLETE)


def test_events_reordered(story: Story, bundle: dict) -> None:
    b = tampered(bundle)
    b["events"][3], b["events"][4] = b["events"][4], b["events"][3]
    fails(b, story.genesis, provenance.INCOMPLETE)
    b = tampered(bundle)
    b["events"].reverse()
    fails(b, story.genesis, provenance.INCOMPLETE)
    b = tampered(bundle)
    b["events"].insert(2, copy.deepcopy(b["events"][1]))  # the same event twice
    fails(b, story.genesis, provenance.INCOMPLETE)


def test_no_origin(story: Story, bundle: dict) -> None:
    b = tampered(bundle)
    b["events"] = []
    fails(b, story.genesis, provenance.INCOMPLETE)
    b = tampered(bundle)
    del b["events"][0]
    fails(b, story.genesis, provenance.INCOMPLETE)
    # the child's bundle without its own derive starts with the grandchild's derive
    child = provenance.proof_bundle(story.store, story.child)
    assert child is not None
    child["events"] = child["events"][1:]
    fails(child, story.genesis, provenance.INCOMPLETE)
    # the other dataset's proven record in place of this one's is a proof of another key
    other = provenance.proof_bundle(story.store, story.other)
    assert other is not None
    b = tampered(bundle)
    b["state"]["dataset"] = other["state"]["dataset"]
    fails(b, story.genesis, "malformed bundle")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: "garbage",
        lambda b: None,
        lambda b: [b],
        lambda b: {},
        lambda b: {k: v for k, v in b.items() if k != "events"},
        lambda b: {k: v for k, v in b.items() if k != "checkpoint"},
        lambda b: {k: v for k, v in b.items() if k != "dataset"},
        lambda b: {k: v for k, v in b.items() if k != "version"},
        lambda b: {**b, "version": 1},
        lambda b: {**b, "version": "1"},
        lambda b: {**b, "dataset": "not hex"},
        lambda b: {**b, "dataset": 5},
        lambda b: {**b, "events": "x"},
        lambda b: {**b, "events": [1, 2]},
        lambda b: {**b, "events": [{k: v for k, v in b["events"][0].items() if k != "envelope"}]},
        lambda b: {**b, "events": [{**b["events"][0], "envelope": "zz"}]},
        lambda b: {**b, "events": [{**b["events"][0], "leaf_index": "0"}]},
        lambda b: {**b, "events": [{k: v for k, v in b["events"][0].items() if k != "audit_path"}]},
        lambda b: {**b, "events": [{**b["events"][0], "audit_path": ["xyz"]}]},
        lambda b: {**b, "events": [{**b["events"][0], "audit_path": "00"}]},
        lambda b: {**b, "checkpoint": "x"},
        lambda b: {**b, "checkpoint": {**b["checkpoint"], "header_bytes": 7}},
        lambda b: {**b, "checkpoint": {k: v for k, v in b["checkpoint"].items() if k != "commit"}},
    ],
)
def test_malformed_bundle(story: Story, bundle: dict, mutate: Any) -> None:
    fails(mutate(tampered(bundle)), story.genesis, "malformed bundle")


def test_malformed_checkpoint_commit(story: Story, bundle: dict) -> None:
    b = tampered(bundle)
    b["checkpoint"]["commit"] = {"height": 1}
    fails(b, story.genesis, "malformed checkpoint")
    b = tampered(bundle)
    b["checkpoint"]["commit"]["signatures"][0]["validator"] = "not hex"
    fails(b, story.genesis, "malformed checkpoint")


def test_verification_errors_are_typed() -> None:
    assert issubclass(ProofMismatch, VerificationFailed)
    exc = VerificationFailed("no origin", "detail")
    assert exc.reason == "no origin" and exc.detail == "detail"


# --- query helpers against a stand-in store ---------------------------------------------------


class _Graph:
    """Just enough of a ChainReader for `lineage`, `participant_events` and `checkpoint`."""

    def __init__(self, edges: list[tuple[bytes, bytes]]) -> None:
        self.edges = edges
        self.calls: list[tuple[bytes, int, int]] = []
        self.height = 3

    def parents(self, node: bytes) -> list[bytes]:
        return [p for p, c in self.edges if c == node]

    def children(self, node: bytes) -> list[bytes]:
        return [c for p, c in self.edges if p == node]

    def actor_leaves(self, actor: bytes, after: int, limit: int) -> list[int]:
        self.calls.append((actor, after, limit))
        return []

    def header_bytes(self, height: int) -> bytes | None:
        return b"h" if height == 1 else None

    def commit(self, height: int) -> object:
        return object() if height == 2 else None


def test_lineage_visits_a_node_reached_twice_once() -> None:
    """a -> b -> d, a -> c -> d, d -> e: e is one edge away from d, listed once."""
    graph = _Graph([(b"a", b"b"), (b"a", b"c"), (b"b", b"d"), (b"c", b"d"), (b"d", b"e")])
    edges = provenance.lineage(graph, b"a", up=False, depth=3)  # type: ignore[arg-type]
    assert sorted(edges) == sorted(graph.edges)
    up = provenance.lineage(graph, b"e", up=True, depth=3)  # type: ignore[arg-type]
    assert sorted(up) == sorted(graph.edges)
    assert provenance.lineage(graph, b"a", up=False, depth=-1) == []  # type: ignore[arg-type]


def test_participant_events_default_page() -> None:
    graph = _Graph([])
    assert provenance.participant_events(graph, b"k") == []  # type: ignore[arg-type]
    assert graph.calls == [(b"k", -1, 100)]


def test_no_checkpoint_without_both_header_and_commit() -> None:
    graph = _Graph([])
    for height in (1, 2, 3):
        assert provenance.checkpoint(graph, height) is None  # type: ignore[arg-type]


def test_json_value_renders_bytes_as_hex_recursively() -> None:
    value = {"a": [b"\x01", {"b": b"\x02"}], 3: (4,), "n": None, "t": True}
    assert provenance.json_value(value) == {
        "a": ["01", {"b": "02"}],
        "3": (4,),
        "n": None,
        "t": True,
    }
    assert provenance.json_value([b"\xff"]) == ["ff"]
    assert provenance.json_value(b"") == ""
