"""State answers and the records a verifier reads (ledger/provenance.py, docs/PROTOCOL.md §9,
§17): id sizes of each kind, answers before the first block, and records that a quorum of
validators signed but that are not well-formed (a faulty chain) refused as such."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ledger import codec, provenance, rules, smt
from ledger.crypto import PrivateKey
from ledger.errors import Malformed, VerificationFailed
from ledger.genesis import Genesis
from ledger.store import Store
from tests.ledger.helpers import make_genesis, make_header, make_key, sign_commit

SEED = 6_100
DATASET = bytes(range(32))


def signed_state(
    keys: list[PrivateKey], genesis: Genesis, records: dict[bytes, bytes], *, height: int = 1
) -> tuple[dict[str, Any], dict[bytes, dict[str, Any]]]:
    """A checkpoint a quorum signed over a state map holding exactly `records`, and each
    record's state entry `{key, value, proof}` (as `state_entry` serves it)."""
    update = smt.update(lambda _tile: None, None, records)
    header = make_header(
        genesis.validators, height=height, chain=genesis.chain_id, state_root=update.root
    )
    commit = sign_commit(keys, genesis.chain_id, height, 0, header.block_hash)
    point = {"header_bytes": header.encode().hex(), "commit": commit.to_json()}
    entries = {}
    for key, value in records.items():
        proof = smt.prove(update.tiles.get, update.root_entry, key)
        entries[key] = {"key": key.hex(), "value": value.hex(), "proof": proof.to_json()}
    return point, entries


def dataset_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "owner": make_key(seed=SEED + 50).public_key,
        "origin": bytes(32),
        "open": False,
        "status": "active",
        "height": 1,
        "meta": {},
        "counts": {},
        "events": 0,
        "head": rules.EMPTY_HISTORY,
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not None}


def bundle_of(point: dict[str, Any], entry: dict[str, Any], events: list[Any]) -> dict[str, Any]:
    return {
        "version": 2,
        "dataset": DATASET.hex(),
        "checkpoint": point,
        "state": {"dataset": entry, "grants": []},
        "events": events,
    }


def refused(call: Any, reason: str, match: str | None = None) -> VerificationFailed:
    with pytest.raises(VerificationFailed, match=match) as info:
        call()
    assert info.value.reason == reason, f"{info.value.reason!r}: {info.value.detail}"
    return info.value


@pytest.mark.parametrize(
    ("kind", "size"), [("participant", 33), ("dataset", 32), ("grant", 32), ("commitment", 33)]
)
def test_each_kind_takes_ids_of_exactly_its_size(tmp_path: Path, kind: str, size: int) -> None:
    _, _, genesis = make_genesis(seed=SEED)
    store = Store(tmp_path / "chain", genesis)
    try:
        for wrong in (size - 1, size + 1):
            with pytest.raises(Malformed, match=f"identified by {size} bytes"):
                provenance.state_answer(store, kind, bytes(wrong))
            refused(
                lambda w=wrong: provenance.verify_state({}, genesis, kind, bytes(w)),
                "malformed state answer",
                f"a {kind} id is {size} bytes",
            )
        # the right size: no answer before the first block
        assert provenance.state_answer(store, kind, bytes(size)) is None
    finally:
        store.close()


def test_an_answer_names_its_kind_id_record_and_checkpoint(tmp_path: Path) -> None:
    keys, _, genesis = make_genesis(seed=SEED)
    ident = make_key(seed=SEED + 60).public_key
    record = {"events": 2, "head": bytes(range(32))}
    point, entries = signed_state(keys, genesis, {rules.signed_key(ident): codec.encode(record)})
    answer = {**entries[rules.signed_key(ident)], "checkpoint": point}
    state = provenance.verify_state(answer, genesis, "commitment", ident)
    assert state == provenance.VerifiedState(
        "commitment", ident, state.checkpoint, {"events": 2, "head": bytes(range(32))}
    )
    assert state.checkpoint.state_root == smt.reference_root(
        [(rules.signed_key(ident), codec.encode(record))]
    )
    # the same proof asked as another kind is about another key
    refused(
        lambda: provenance.verify_state(answer, genesis, "participant", ident),
        "malformed bundle",
        "proof of another key",
    )


@pytest.mark.parametrize(
    ("value", "match"),
    [(b"\xc1", "dataset: "), (codec.encode([1, 2]), "dataset is not a map")],
)
def test_a_signed_record_that_is_not_a_map_is_refused(value: bytes, match: str) -> None:
    keys, _, genesis = make_genesis(seed=SEED)
    point, entries = signed_state(keys, genesis, {rules.dataset_key(DATASET): value})
    answer = {**entries[rules.dataset_key(DATASET)], "checkpoint": point}
    refused(
        lambda: provenance.verify_state(answer, genesis, "dataset", DATASET),
        "malformed state record",
        match,
    )


@pytest.mark.parametrize(
    "record",
    [
        dataset_record(events=None),
        dataset_record(head=None),
        dataset_record(events=True),
        dataset_record(events="0"),
        dataset_record(head="00" * 32),
    ],
)
def test_a_signed_dataset_record_without_a_history_commitment_is_refused(
    record: dict[str, Any],
) -> None:
    """Checked before any event: a bundle cannot be complete against a record that commits to
    no history, whatever its events are."""
    keys, _, genesis = make_genesis(seed=SEED)
    point, entries = signed_state(keys, genesis, {rules.dataset_key(DATASET): codec.encode(record)})
    entry = entries[rules.dataset_key(DATASET)]
    for events in ([], [{"envelope": "zz"}]):
        refused(
            lambda e=events: provenance.verify_bundle(bundle_of(point, entry, e), genesis),
            "malformed state record",
            "the dataset record has no history commitment",
        )


def test_a_well_formed_empty_history_still_needs_an_origin() -> None:
    keys, _, genesis = make_genesis(seed=SEED)
    point, entries = signed_state(
        keys, genesis, {rules.dataset_key(DATASET): codec.encode(dataset_record())}
    )
    bundle = bundle_of(point, entries[rules.dataset_key(DATASET)], [])
    refused(lambda: provenance.verify_bundle(bundle, genesis), "no origin", "no events")
    # a record committing to one event the bundle does not hold is incomplete
    one = copy.deepcopy(dataset_record(events=1))
    point, entries = signed_state(keys, genesis, {rules.dataset_key(DATASET): codec.encode(one)})
    bundle = bundle_of(point, entries[rules.dataset_key(DATASET)], [])
    error = refused(lambda: provenance.verify_bundle(bundle, genesis), provenance.INCOMPLETE)
    assert "has 0 events" in error.detail and "has 1" in error.detail
