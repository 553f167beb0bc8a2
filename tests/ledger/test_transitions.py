"""Validator-set transitions (docs/PROTOCOL.md §19.4): a header names the next height's set
when it changes, and a verifier holding only genesis walks the transitions to the set that
signed a checkpoint. Known-answer and negative cases, over a real store."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ledger import codec, provenance, transitions
from ledger.blocks import HEADER_FIELDS, NEXT_VALIDATORS, Header
from ledger.errors import Malformed, VerificationFailed
from ledger.events import Admit, Approve, Propose, Register, Rotate
from ledger.governance import ADD_VALIDATOR, Change, rotation_message
from ledger.rules import participant_key
from ledger.store import Store
from tests.ledger.helpers import ChainBuilder, make_genesis, make_key

DATASET = bytes(range(32))


@pytest.fixture
def chain(tmp_path: Path) -> dict[str, Any]:
    """Four validators add a fifth (decided in block 2, in force from 4); block 5 registers a
    dataset under the new set."""
    keys, registrar, genesis = make_genesis(4, seed=900)
    joiner = make_key(seed=950)
    store = Store(tmp_path / "store", genesis)
    builder = ChainBuilder(store, [*keys, joiner])
    change = Change(
        ADD_VALIDATOR, public_key=joiner.public_key, name="v4", url="http://v4", power=1
    ).to_map()
    propose = builder.ev(keys[0], Propose, change=change)
    builder.append([propose])
    approvals = [builder.ev(k, Approve, proposal=propose.event_id) for k in keys[1:3]]
    builder.append(approvals)
    builder.append([])  # block 3: the last of the old set, naming the new one
    builder.append([])  # block 4: the first of the new set
    builder.append([builder.ev(registrar, Register, dataset=DATASET, meta={}, open=True)])
    yield {"store": store, "genesis": genesis, "keys": keys, "joiner": joiner}
    store.close()


def test_the_header_before_a_change_names_the_next_set(chain: dict[str, Any]) -> None:
    store: Store = chain["store"]
    genesis = chain["genesis"]
    new_set = store.rules.validators_at(store.state(), 5)
    assert len(new_set.validators) == 5
    headers = {h: store.header(h) for h in range(1, 6)}
    assert all(headers[h].next_validators is None for h in (1, 2, 4, 5))  # type: ignore[union-attr]
    three = headers[3]
    assert three is not None
    assert three.validators == genesis.validators.hash()
    assert three.next_validators == new_set.hash()
    assert headers[4].validators == new_set.hash()  # type: ignore[union-attr]
    assert set(codec.decode(store.header_bytes(3) or b"")) == {*HEADER_FIELDS, NEXT_VALIDATORS}
    assert set(codec.decode(store.header_bytes(2) or b"")) == set(HEADER_FIELDS)


def test_a_header_naming_an_unchanged_next_set_is_not_canonical(chain: dict[str, Any]) -> None:
    header = chain["store"].header(2)
    with pytest.raises(Malformed, match="next_validators"):
        Header(**{**header.__dict__, "next_validators": header.validators})


def test_the_store_serves_one_transition_and_the_walk_reaches_the_new_set(
    chain: dict[str, Any],
) -> None:
    store: Store = chain["store"]
    steps = transitions.transitions_json(store)
    assert [s["height"] for s in steps] == [4]
    assert transitions.transitions_json(store, up_to=3) == []
    signers = transitions.walk(chain["genesis"], steps, below=5)
    assert signers == store.rules.validators_at(store.state(), 5)


def test_a_bundle_signed_by_the_new_set_verifies_from_genesis_alone(
    chain: dict[str, Any],
) -> None:
    store: Store = chain["store"]
    bundle = provenance.proof_bundle(store, DATASET)
    assert bundle is not None
    assert [s["height"] for s in bundle["checkpoint"]["transitions"]] == [4]
    story = provenance.verify_bundle(bundle, chain["genesis"])
    assert story.checkpoint.height == 5


def _bundle(chain: dict[str, Any]) -> dict[str, Any]:
    bundle = provenance.proof_bundle(chain["store"], DATASET)
    assert bundle is not None
    return copy.deepcopy(bundle)


def test_a_forged_set_in_a_transition_is_refused(chain: dict[str, Any]) -> None:
    bundle = _bundle(chain)
    bundle["checkpoint"]["transitions"][0]["validators"][4]["power"] = 3
    with pytest.raises(VerificationFailed, match="bad validator-set transition"):
        provenance.verify_bundle(bundle, chain["genesis"])


def test_a_missing_transition_leaves_the_checkpoint_unverifiable(chain: dict[str, Any]) -> None:
    bundle = _bundle(chain)
    del bundle["checkpoint"]["transitions"]
    with pytest.raises(VerificationFailed, match="wrong validator set"):
        provenance.verify_bundle(bundle, chain["genesis"])


def test_a_transition_at_or_above_the_checkpoint_is_refused(chain: dict[str, Any]) -> None:
    steps = transitions.transitions_json(chain["store"])
    with pytest.raises(VerificationFailed, match="not below 3"):
        transitions.walk(chain["genesis"], steps, below=3)


def test_transitions_out_of_order_are_refused(chain: dict[str, Any]) -> None:
    steps = transitions.transitions_json(chain["store"])
    with pytest.raises(VerificationFailed, match="out of order"):
        transitions.walk(chain["genesis"], [*steps, *steps], below=10)


def test_a_transition_whose_height_is_not_its_headers_is_refused(chain: dict[str, Any]) -> None:
    steps = copy.deepcopy(transitions.transitions_json(chain["store"]))
    steps[0]["height"] = 5
    with pytest.raises(VerificationFailed, match="malformed transition"):
        transitions.walk(chain["genesis"], steps, below=10)


def test_a_transition_certified_by_a_set_not_trusted_is_refused(chain: dict[str, Any]) -> None:
    """The same transition again, now as if the new set had to certify itself: the header
    names the old set, which is no longer the one trusted."""
    store: Store = chain["store"]
    step = transitions.transitions_json(store)[0]
    doc = copy.deepcopy(step)
    doc["header_bytes"] = (store.header_bytes(4) or b"").hex()
    doc["commit"] = store.commit(4).to_json()  # type: ignore[union-attr]
    doc["height"] = 5
    with pytest.raises(VerificationFailed):
        transitions.walk(chain["genesis"], [doc], below=10)


def test_more_than_max_transitions_are_refused_before_any_is_parsed(
    chain: dict[str, Any],
) -> None:
    assert transitions.MAX_TRANSITIONS == 4_096
    junk = [{"not": "parsed"}] * (transitions.MAX_TRANSITIONS + 1)
    with pytest.raises(VerificationFailed, match="too many transitions"):
        transitions.walk(chain["genesis"], junk, below=10)
    with pytest.raises(VerificationFailed, match="malformed transition"):
        transitions.walk(chain["genesis"], junk[: transitions.MAX_TRANSITIONS], below=10)


def test_the_history_up_to_a_height_includes_a_change_effective_at_it(
    chain: dict[str, Any],
) -> None:
    store: Store = chain["store"]
    assert [s["height"] for s in transitions.transitions_json(store, up_to=4)] == [4]
    assert transitions.effective_heights(store, 4) == [4]
    assert transitions.effective_heights(store, 3) == []


def test_a_transition_that_is_not_an_object_is_malformed(chain: dict[str, Any]) -> None:
    with pytest.raises(VerificationFailed, match="malformed transition: a transition is an"):
        transitions.walk(chain["genesis"], [5], below=10)


def test_a_transition_whose_commit_lacks_a_quorum_of_the_trusted_set_is_refused(
    chain: dict[str, Any],
) -> None:
    """The header and the set are genuine; only two of the old four signed."""
    step = copy.deepcopy(transitions.transitions_json(chain["store"])[0])
    step["commit"]["signatures"] = step["commit"]["signatures"][:2]
    with pytest.raises(VerificationFailed, match="insufficient voting power"):
        transitions.walk(chain["genesis"], [step], below=10)


def test_no_header_below_height_2_can_name_a_new_set(chain: dict[str, Any]) -> None:
    """A change decided in block 1 is in force from 3: header 2 is the first that can be a
    transition. One claiming header 1 is refused before its signatures are looked at."""
    store: Store = chain["store"]
    step = copy.deepcopy(transitions.transitions_json(store)[0])
    step["header_bytes"] = (store.header_bytes(1) or b"").hex()
    step["height"] = 2
    with pytest.raises(VerificationFailed, match="out of order or not below"):
        transitions.walk(chain["genesis"], [step], below=10)


def test_a_change_decided_in_block_1_is_a_transition_at_header_2(tmp_path: Path) -> None:
    keys, _, genesis = make_genesis(4, seed=960)
    joiner = make_key(seed=990)
    with Store(tmp_path / "early", genesis) as store:
        builder = ChainBuilder(store, [*keys, joiner])
        change = Change(ADD_VALIDATOR, public_key=joiner.public_key, name="v4", url="", power=1)
        propose = builder.ev(keys[0], Propose, change=change.to_map())
        approvals = [builder.ev(k, Approve, proposal=propose.event_id) for k in keys[1:3]]
        builder.append([propose, *approvals])
        builder.append([])
        builder.append([])
        steps = transitions.transitions_json(store)
        assert [s["height"] for s in steps] == [3]
        assert transitions.walk(genesis, steps, below=4) == store.rules.validators_at(
            store.state(), 4
        )


def test_a_dataset_registered_by_a_rotated_in_key_verifies_by_its_identity(
    tmp_path: Path,
) -> None:
    """The record's owner is the identity (the first key); the bundle proves, with the
    signer's participant record, which identity the origin's signer acts for (§19.3)."""
    keys, registrar, genesis = make_genesis(4, seed=970)
    old, new = make_key(seed=980), make_key(seed=981)
    with Store(tmp_path / "rotated", genesis) as store:
        builder = ChainBuilder(store, keys)
        builder.append(
            [builder.ev(registrar, Admit, subject=old.public_key, role="participant", name="o")]
        )
        message = rotation_message(genesis.chain_id, old.public_key, new.public_key)
        builder.append(
            [
                builder.ev(
                    old,
                    Rotate,
                    subject=old.public_key,
                    to=new.public_key,
                    possession=new.sign(message),
                )
            ]
        )
        builder.append([builder.ev(new, Register, dataset=DATASET, meta={}, open=False)])
        bundle = provenance.proof_bundle(store, DATASET)
    assert bundle is not None and "origin_signer" in bundle["state"]
    story = provenance.verify_bundle(bundle, genesis)
    assert story.owner == old.public_key and story.origin.actor == new.public_key
    forged = copy.deepcopy(bundle)
    del forged["state"]["origin_signer"]
    with pytest.raises(VerificationFailed, match="no origin"):
        provenance.verify_bundle(forged, genesis)
    forged = copy.deepcopy(bundle)
    forged["state"]["origin_signer"]["proof"]["siblings"] = []
    with pytest.raises(VerificationFailed):
        provenance.verify_bundle(forged, genesis)


def test_a_checkpoint_whose_transitions_are_not_a_list_is_malformed(
    chain: dict[str, Any],
) -> None:
    bundle = _bundle(chain)
    bundle["checkpoint"]["transitions"] = {"0": bundle["checkpoint"]["transitions"][0]}
    with pytest.raises(VerificationFailed, match="malformed checkpoint"):
        provenance.verify_bundle(bundle, chain["genesis"])


def test_an_origin_signer_entry_proving_no_record_is_refused(chain: dict[str, Any]) -> None:
    """The dataset's origin is signed by the genesis registrar, which has no participant
    record: an `origin_signer` entry can then only prove that absence, which names no
    identity (§19.3), and the bundle is refused rather than trusted."""
    store: Store = chain["store"]
    bundle = _bundle(chain)
    actor = provenance.verify_bundle(bundle, chain["genesis"]).origin.actor
    bundle["state"]["origin_signer"] = provenance.state_entry(store, participant_key(actor))
    assert bundle["state"]["origin_signer"]["value"] is None
    with pytest.raises(VerificationFailed, match="names no identity"):
        provenance.verify_bundle(bundle, chain["genesis"])


def test_an_origin_signer_record_without_an_identity_is_refused(tmp_path: Path) -> None:
    """A key that was never rotated has a participant record naming no identity: offering
    it as the origin signer's proof is refused, and the honest bundle carries none."""
    keys, registrar, genesis = make_genesis(4, seed=990)
    alice = make_key(seed=991)
    with Store(tmp_path / "plain", genesis) as store:
        builder = ChainBuilder(store, keys)
        builder.append(
            [builder.ev(registrar, Admit, subject=alice.public_key, role="participant", name="a")]
        )
        builder.append([builder.ev(alice, Register, dataset=DATASET, meta={}, open=False)])
        bundle = provenance.proof_bundle(store, DATASET)
        assert bundle is not None and "origin_signer" not in bundle["state"]
        assert provenance.verify_bundle(bundle, genesis).owner == alice.public_key
        forged = copy.deepcopy(bundle)
        forged["state"]["origin_signer"] = provenance.state_entry(
            store, participant_key(alice.public_key)
        )
    assert forged["state"]["origin_signer"]["value"] is not None
    with pytest.raises(VerificationFailed, match="names no identity"):
        provenance.verify_bundle(forged, genesis)
