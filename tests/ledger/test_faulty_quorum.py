"""What `verify_bundle` checks beyond the history commitment (ledger/provenance.py,
docs/PROTOCOL.md §9.3): bundles that a quorum of validators signed over a log and a state
map that the rules would never produce (a faulty quorum) are refused, each for its reason.

Each test builds the log, the dataset record (its history commitment matching the bundle's
events, so completeness holds) and the grant records itself, and signs a checkpoint over them.
"""

from __future__ import annotations

from typing import Any

import pytest

from ledger import codec, merkle, provenance, rules, smt
from ledger.crypto import PrivateKey
from ledger.errors import VerificationFailed
from ledger.events import Grant, Register, Revoke, SignedEvent, Use
from ledger.genesis import Genesis
from tests.ledger import rfc_reference as rfc
from tests.ledger.helpers import ev, make_genesis, make_header, make_key, sign_commit

SEED = 6_300
T0 = 1_700_000_000_000
D = bytes(range(32))
OTHER = bytes(range(1, 33))
Keys = tuple[list[PrivateKey], Genesis, PrivateKey, PrivateKey]


@pytest.fixture(scope="module")
def keys() -> Keys:
    validators, _, genesis = make_genesis(seed=SEED)
    return validators, genesis, make_key(seed=SEED + 20), make_key(seed=SEED + 21)


def forged(
    keys: Keys,
    log: list[SignedEvent],
    story: list[int],
    *,
    record: dict[str, Any] | None = None,
    grants: dict[bytes, dict[str, Any] | None] | None = None,
    absent: bool = False,
) -> dict[str, Any]:
    """A bundle of `story` (leaf indexes into `log`) signed by the whole validator set, whose
    dataset record commits to exactly that story (fields overridden by `record`) and whose
    state holds `grants` (grant id -> record; None: proven absent)."""
    validators, genesis, _, _ = keys
    envelopes = [e.envelope for e in log]
    head = rules.EMPTY_HISTORY
    for i in story:
        head = rules.next_history(head, i, merkle.leaf_hash(envelopes[i]))
    origin = log[story[0]] if story else log[0]
    doc: dict[str, Any] = {
        "owner": origin.actor,
        "origin": origin.event_id,
        "open": False,
        "status": "active",
        "height": 1,
        "meta": {},
        "counts": {},
        "events": len(story),
        "head": head,
    }
    doc.update(record or {})
    records = {} if absent else {rules.dataset_key(D): codec.encode(doc)}
    records[b"sp" + bytes(33)] = b"\x80"  # a map is never empty here
    for grant_id, grant in (grants or {}).items():
        if grant is not None:
            records[rules.grant_key(grant_id)] = codec.encode(grant)
    update = smt.update(lambda _tile: None, None, records)
    header = make_header(
        genesis.validators,
        chain=genesis.chain_id,
        time=T0,
        state_root=update.root,
        tree_size=len(log),
        tree_root=rfc.mth(envelopes),
    )
    commit = sign_commit(validators, genesis.chain_id, 1, 0, header.block_hash)

    def entry(key: bytes) -> dict[str, Any]:
        value = records.get(key)
        proof = smt.prove(update.tiles.get, update.root_entry, key)
        return {
            "key": key.hex(),
            "value": None if value is None else value.hex(),
            "proof": proof.to_json(),
        }

    return {
        "version": 2,
        "dataset": D.hex(),
        "checkpoint": {"header_bytes": header.encode().hex(), "commit": commit.to_json()},
        "state": {
            "dataset": entry(rules.dataset_key(D)),
            "grants": [entry(rules.grant_key(g)) for g in (grants or {})],
        },
        "events": [
            {
                "envelope": envelopes[i].hex(),
                "leaf_index": i,
                "audit_path": [h.hex() for h in rfc.path(i, envelopes)],
            }
            for i in story
        ],
    }


def refused(bundle: Any, genesis: Genesis, reason: str, match: str) -> None:
    with pytest.raises(VerificationFailed, match=match) as info:
        provenance.verify_bundle(bundle, genesis)
    assert info.value.reason == reason, f"{info.value.reason!r}: {info.value.detail}"


def register(key: PrivateKey, dataset: bytes = D) -> SignedEvent:
    return ev(key, Register, time=T0, dataset=dataset, meta={}, open=False)


def use(key: PrivateKey, dataset: bytes = D) -> SignedEvent:
    return ev(key, Use, time=T0, dataset=dataset, purpose="p")


def grant(key: PrivateKey, to: PrivateKey, expires: int | None = None) -> SignedEvent:
    return ev(
        key,
        Grant,
        time=T0,
        dataset=D,
        to=to.public_key,
        purposes=("p",),
        reshare=False,
        expires=expires,
    )


def grant_record(event: SignedEvent, **overrides: Any) -> dict[str, Any]:
    body = event.body
    assert isinstance(body, Grant)
    doc: dict[str, Any] = {
        "dataset": body.dataset,
        "grantor": body.actor,
        "to": body.to,
        "purposes": list(body.purposes),
        "reshare": body.reshare,
    }
    if body.expires is not None:
        doc["expires"] = body.expires
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def test_a_consistent_forgery_from_leaf_0_verifies(keys: Keys) -> None:
    """The builder itself is sound: a story starting at leaf 0 verifies."""
    _, genesis, alice, bob = keys
    log = [register(alice), use(bob), use(alice)]
    story = provenance.verify_bundle(forged(keys, log, [0, 1, 2]), genesis)
    assert [p.leaf_index for p in story.events] == [0, 1, 2]
    assert story.owner == alice.public_key


@pytest.mark.parametrize("order", [[0, 2, 1], [0, 1, 1]])
def test_events_out_of_log_order(keys: Keys, order: list[int]) -> None:
    _, genesis, alice, bob = keys
    log = [register(alice), use(bob), use(alice)]
    refused(forged(keys, log, order), genesis, "events out of log order", "event 2")


def test_an_event_about_another_dataset(keys: Keys) -> None:
    _, genesis, alice, bob = keys
    log = [register(alice), use(bob, OTHER)]
    refused(forged(keys, log, [0, 1]), genesis, "event is about another dataset", "event 1")


def test_a_revocation_of_a_grant_not_in_the_story(keys: Keys) -> None:
    _, genesis, alice, _ = keys
    foreign = ev(alice, Revoke, time=T0, grant=bytes(32))
    refused(
        forged(keys, [register(alice), foreign], [0, 1]),
        genesis,
        "event is about another dataset",
        "event 1",
    )


def test_a_story_that_does_not_start_with_its_registration(keys: Keys) -> None:
    _, genesis, alice, _ = keys
    log = [use(alice), register(alice)]
    refused(forged(keys, log, [0, 1]), genesis, "no origin", "does not register the dataset")


@pytest.mark.parametrize("field", ["origin", "owner"])
def test_a_record_naming_another_origin(keys: Keys, field: str) -> None:
    _, genesis, alice, bob = keys
    log = [register(alice), use(bob)]
    other = {"origin": log[1].event_id, "owner": bob.public_key}[field]
    bundle = forged(keys, log, [0, 1], record={field: other})
    refused(bundle, genesis, "no origin", "names another origin")


def test_a_dataset_proven_absent(keys: Keys) -> None:
    _, genesis, alice, _ = keys
    bundle = forged(keys, [register(alice)], [0], absent=True)
    refused(bundle, genesis, "no origin", "proven absent at height 1")


def test_a_grant_proven_absent_or_of_another_dataset(keys: Keys) -> None:
    _, genesis, alice, bob = keys
    g = grant(alice, bob)
    log = [register(alice), g]
    for record in (None, grant_record(g, dataset=OTHER)):
        bundle = forged(keys, log, [0, 1], grants={g.event_id: record})
        refused(bundle, genesis, "grant state mismatch", "is not a grant of the dataset")


def test_a_grant_whose_revocation_differs(keys: Keys) -> None:
    _, genesis, alice, bob = keys
    g = grant(alice, bob)
    revoke = ev(alice, Revoke, time=T0, grant=g.event_id)
    log = [register(alice), g, revoke]
    # revoked in the story, live in the state
    bundle = forged(keys, log, [0, 1, 2], grants={g.event_id: grant_record(g)})
    refused(bundle, genesis, "grant state mismatch", "revocation differs")
    # live in the story, revoked in the state
    bundle = forged(keys, log[:2], [0, 1], grants={g.event_id: grant_record(g, revoked=b"r")})
    refused(bundle, genesis, "grant state mismatch", "revocation differs")
    story = provenance.verify_bundle(
        forged(keys, log, [0, 1, 2], grants={g.event_id: grant_record(g, revoked=revoke.event_id)}),
        genesis,
    )
    assert story.grants[0].revoked_by == revoke and not story.grants[0].live


@pytest.mark.parametrize(("expires", "expired"), [(T0, True), (T0 + 1, False), (T0 - 1, True)])
def test_a_grant_expires_at_its_time(keys: Keys, expires: int, expired: bool) -> None:
    """A grant with `expires` equal to the checkpoint's time has expired (docs/PROTOCOL.md §4)."""
    _, genesis, alice, bob = keys
    g = grant(alice, bob, expires=expires)
    bundle = forged(keys, [register(alice), g], [0, 1], grants={g.event_id: grant_record(g)})
    status = provenance.verify_bundle(bundle, genesis).grants[0]
    assert status.expired is expired and status.live is not expired


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("state", "dataset", "value"), 5, "dataset record value is not hex"),
        (("state", "dataset", "value"), "zz", "dataset record value is not hex"),
        (("state", "dataset", "proof"), {"siblings": []}, "dataset record proof: "),
        (("events", 0, "audit_path"), [7], "event 0 audit path is not hex"),
    ],
)
def test_malformed_entries(keys: Keys, path: tuple[Any, ...], value: Any, match: str) -> None:
    _, genesis, alice, _ = keys
    bundle = forged(keys, [register(alice)], [0])
    target: Any = bundle
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    refused(bundle, genesis, "malformed bundle", match)
