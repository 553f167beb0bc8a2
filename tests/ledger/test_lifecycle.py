"""The participant lifecycle at the rules level (docs/PROTOCOL.md §19.3): registrars suspend
and reinstate keys; a key rotates to a new one (by itself, or by a registrar when it is lost)
and the identity's ownership, grants and copies follow; a suspended or rotated-away key is
refused with `Forbidden` (HTTP 403) and a reason that says which.
"""

from __future__ import annotations

from ledger import crypto, governance, rules
from ledger.crypto import PrivateKey
from ledger.errors import Conflict, Forbidden, NotAdmitted, RuleViolation
from ledger.events import (
    DERIVE_PURPOSE,
    Admit,
    Derive,
    Destroy,
    Grant,
    Register,
    Reinstate,
    Revoke,
    Rotate,
    Suspend,
    Transfer,
    Use,
)
from ledger.genesis import OPEN
from ledger.governance import ADD_REGISTRAR, Change
from tests.ledger.helpers import CHAIN_ID, make_key
from tests.ledger.test_governance import SEED, Gov

_datasets = iter(range(1 << 30))


def new_dataset() -> bytes:
    return crypto.sha256(b"dataset %d" % next(_datasets))


def register(gov: Gov, owner: PrivateKey) -> bytes:
    dataset = new_dataset()
    gov.do(owner, Register, dataset=dataset, meta={"title": "t"}, open=False)
    return dataset


def grant(
    gov: Gov,
    owner: PrivateKey,
    dataset: bytes,
    to: PrivateKey,
    *,
    reshare: bool = False,
    purposes: tuple[str, ...] = ("analytics",),
) -> bytes:
    return gov.do(
        owner,
        Grant,
        dataset=dataset,
        to=to.public_key,
        purposes=purposes,
        reshare=reshare,
        expires=None,
    ).event_id


def possession(new: PrivateKey, old: PrivateKey | bytes, chain: str = CHAIN_ID) -> bytes:
    old_key = old if isinstance(old, bytes) else old.public_key
    return new.sign(governance.rotation_message(chain, old_key, new.public_key))


def rotate(gov: Gov, old: PrivateKey, new: PrivateKey, *, by: PrivateKey | None = None) -> None:
    gov.do(
        by or old,
        Rotate,
        subject=old.public_key,
        to=new.public_key,
        possession=possession(new, old),
    )


def participant(gov: Gov, key: PrivateKey) -> dict[str, object]:
    doc = gov.state.get_doc(rules.participant_key(key.public_key))
    assert doc is not None
    return dict(doc)


# --- suspend and reinstate ------------------------------------------------------------------------


def test_a_suspended_key_signs_nothing_new_and_keeps_its_history() -> None:
    gov = Gov()
    dataset = register(gov, gov.alice)
    suspension = gov.do(gov.registrar, Suspend, subject=gov.alice.public_key)
    assert participant(gov, gov.alice)["status"] == rules.PARTICIPANT_SUSPENDED
    assert participant(gov, gov.alice)["suspended_by"] == suspension.event_id
    message = gov.reject(Forbidden, gov.alice, Register, dataset=new_dataset(), meta={}, open=False)
    assert "suspended by a registrar" in message
    gov.reject(Forbidden, gov.alice, Use, dataset=dataset, purpose="analytics", grant=None)
    # its history stays: the dataset is still its own, and still in the state
    doc = gov.state.get_doc(rules.dataset_key(dataset))
    assert doc["owner"] == gov.alice.public_key
    # nothing may be granted to it while it is suspended
    other = register(gov, gov.bob)
    message = gov.reject(
        RuleViolation,
        gov.bob,
        Grant,
        dataset=other,
        to=gov.alice.public_key,
        purposes=("analytics",),
        reshare=False,
        expires=None,
    )
    assert "the recipient's key is suspended" in message
    gov.next_block()
    gov.do(gov.registrar, Reinstate, subject=gov.alice.public_key)
    assert participant(gov, gov.alice)["status"] == rules.PARTICIPANT_ACTIVE
    assert "suspended_by" not in participant(gov, gov.alice)
    register(gov, gov.alice)
    grant(gov, gov.bob, other, gov.alice)


def test_only_registrars_suspend_or_reinstate() -> None:
    gov = Gov()
    message = gov.reject(Forbidden, gov.bob, Suspend, subject=gov.alice.public_key)
    assert "only a registrar may suspend" in message
    gov.reject(NotAdmitted, make_key(seed=SEED + 700), Suspend, subject=gov.alice.public_key)
    gov.reject(NotAdmitted, gov.keys[0], Suspend, subject=gov.alice.public_key)  # a validator
    gov.do(gov.registrar, Suspend, subject=gov.alice.public_key)
    message = gov.reject(Forbidden, gov.bob, Reinstate, subject=gov.alice.public_key)
    assert "only a registrar may reinstate" in message


def test_suspension_guards() -> None:
    gov = Gov()
    message = gov.reject(RuleViolation, gov.registrar, Suspend, subject=gov.registrar.public_key)
    assert "its own key" in message
    message = gov.reject(
        RuleViolation, gov.registrar, Suspend, subject=make_key(seed=SEED + 701).public_key
    )
    assert "not an admitted participant" in message
    message = gov.reject(Conflict, gov.registrar, Reinstate, subject=gov.alice.public_key)
    assert "not suspended" in message
    gov.do(gov.registrar, Suspend, subject=gov.alice.public_key)
    message = gov.reject(Conflict, gov.registrar, Suspend, subject=gov.alice.public_key)
    assert "already suspended" in message
    rotated = make_key(seed=SEED + 702)
    rotate(gov, gov.bob, rotated)
    message = gov.reject(RuleViolation, gov.registrar, Suspend, subject=gov.bob.public_key)
    assert "was rotated to" in message


def test_a_suspended_registrar_admits_no_one() -> None:
    gov = Gov()
    deputy = make_key(seed=SEED + 703)
    gov.do(gov.registrar, Admit, subject=deputy.public_key, role="registrar", name="D")
    gov.do(gov.registrar, Suspend, subject=deputy.public_key)
    assert not gov.rules.is_registrar(gov.state, deputy.public_key, gov.height)
    gov.reject(
        Forbidden,
        deputy,
        Admit,
        subject=make_key(seed=SEED + 704).public_key,
        role="participant",
        name="X",
    )
    # and a suspended registrar's key may not suspend the one that suspended it
    gov.reject(Forbidden, deputy, Suspend, subject=gov.registrar.public_key)


# --- rotation --------------------------------------------------------------------------------


def test_after_rotation_the_new_key_uses_the_old_keys_grants_and_owns_its_datasets() -> None:
    gov = Gov()
    own = register(gov, gov.alice)
    theirs = register(gov, gov.bob)
    grant(gov, gov.bob, theirs, gov.alice, reshare=True, purposes=("analytics", DERIVE_PURPOSE))
    given = grant(gov, gov.alice, own, gov.carol)
    new = make_key(seed=SEED + 710)
    gov.next_block()
    rotate(gov, gov.alice, new)
    old_doc, new_doc = participant(gov, gov.alice), participant(gov, new)
    assert old_doc["status"] == rules.PARTICIPANT_ROTATED
    assert old_doc["successor"] == new.public_key
    assert new_doc["status"] == rules.PARTICIPANT_ACTIVE
    assert new_doc["identity"] == gov.alice.public_key
    assert new_doc["previous"] == gov.alice.public_key
    assert new_doc["name"] == "A" and new_doc["role"] == "participant"
    assert gov.rules.identity(gov.state, new.public_key) == gov.alice.public_key
    gov.next_block()
    # the grant bob made to the old key covers the new key
    gov.do(new, Use, dataset=theirs, purpose="analytics", grant=None)
    gov.do(new, Derive, dataset=new_dataset(), inputs=(theirs,), meta={})
    # the old key's dataset is the new key's: it grants, revokes what the old key granted
    grant(gov, new, own, gov.bob)
    gov.do(new, Revoke, grant=given)
    # it reshares under the old key's reshare grant, and carol's copy is hers
    gov.do(new, Transfer, dataset=theirs, to=gov.carol.public_key, grant=None)
    gov.do(gov.carol, Destroy, dataset=theirs)
    gov.do(new, Destroy, dataset=own)


def test_the_old_key_is_refused_after_rotation() -> None:
    gov = Gov()
    dataset = register(gov, gov.alice)
    new = make_key(seed=SEED + 711)
    rotate(gov, gov.alice, new)
    message = gov.reject(Forbidden, gov.alice, Register, dataset=new_dataset(), meta={}, open=False)
    assert f"was rotated to {new.public_key.hex()}" in message
    gov.reject(Forbidden, gov.alice, Destroy, dataset=dataset)
    # nothing is granted to the old key any more either
    message = gov.reject(
        RuleViolation,
        new,
        Grant,
        dataset=dataset,
        to=gov.alice.public_key,
        purposes=("x",),
        reshare=False,
        expires=None,
    )
    assert "the recipient's key was rotated" in message
    # a grant to the new key is recorded against the identity
    grant_id = grant(gov, gov.bob, register(gov, gov.bob), new)
    assert gov.state.get_doc(rules.grant_key(grant_id))["to"] == gov.alice.public_key
    message = gov.reject(
        Conflict,
        gov.registrar,
        Rotate,
        subject=gov.alice.public_key,
        to=make_key(seed=SEED + 712).public_key,
        possession=possession(make_key(seed=SEED + 712), gov.alice),
    )
    assert "already been rotated" in message


def test_rotations_chain_and_keep_one_identity() -> None:
    gov = Gov()
    dataset = register(gov, gov.alice)
    second, third = make_key(seed=SEED + 713), make_key(seed=SEED + 714)
    rotate(gov, gov.alice, second)
    rotate(gov, second, third)
    assert participant(gov, third)["identity"] == gov.alice.public_key
    assert participant(gov, third)["previous"] == second.public_key
    gov.reject(Forbidden, second, Destroy, dataset=dataset)
    gov.do(third, Destroy, dataset=dataset)


def test_a_registrar_rotates_a_lost_key() -> None:
    gov = Gov()
    dataset = register(gov, gov.alice)
    theirs = register(gov, gov.bob)
    grant(gov, gov.bob, theirs, gov.alice)
    # the key is lost: a registrar suspends it at once, then rotates it to the new one
    gov.do(gov.registrar, Suspend, subject=gov.alice.public_key)
    new = make_key(seed=SEED + 715)
    message = gov.reject(
        Forbidden,
        gov.bob,
        Rotate,
        subject=gov.alice.public_key,
        to=new.public_key,
        possession=possession(new, gov.alice),
    )
    assert "only a registrar may rotate another party's key" in message
    rotate(gov, gov.alice, new, by=gov.registrar)
    assert participant(gov, gov.alice)["status"] == rules.PARTICIPANT_ROTATED
    assert "suspended_by" not in participant(gov, gov.alice)
    gov.do(new, Use, dataset=theirs, purpose="analytics", grant=None)
    gov.do(new, Destroy, dataset=dataset)
    gov.reject(Forbidden, gov.alice, Use, dataset=theirs, purpose="analytics", grant=None)


def test_a_suspended_key_cannot_rotate_itself() -> None:
    gov = Gov()
    gov.do(gov.registrar, Suspend, subject=gov.alice.public_key)
    new = make_key(seed=SEED + 716)
    message = gov.reject(
        Forbidden,
        gov.alice,
        Rotate,
        subject=gov.alice.public_key,
        to=new.public_key,
        possession=possession(new, gov.alice),
    )
    assert "suspended" in message


def test_a_wrong_possession_signature_is_refused() -> None:
    gov = Gov()
    new, other = make_key(seed=SEED + 717), make_key(seed=SEED + 718)
    wrong = {
        "signed by another key": possession(other, gov.alice),
        "for another chain": new.sign(
            governance.rotation_message("other-chain", gov.alice.public_key, new.public_key)
        ),
        "for another old key": possession(new, gov.bob),
        "of other bytes": new.sign(b"provledger-rotate"),
    }
    for why, signature in wrong.items():
        message = gov.reject(
            RuleViolation,
            gov.alice,
            Rotate,
            subject=gov.alice.public_key,
            to=new.public_key,
            possession=signature,
        )
        assert "possession is not the new key's signature" in message, why
    rotate(gov, gov.alice, new)


def test_the_rotation_message_bytes_are_pinned() -> None:
    old, new = bytes([2]) + bytes(range(32)), bytes([3]) + bytes(range(32, 64))
    message = governance.rotation_message("c1", old, new)
    assert message == b"provledger-rotate\x00c1\x00" + old + new
    assert len(message) == 18 + 2 + 1 + 33 + 33


def test_rotating_onto_a_key_in_use_is_refused() -> None:
    gov = Gov()
    for target in (gov.bob, gov.registrar, gov.alice):
        message = gov.reject(
            Conflict,
            gov.alice,
            Rotate,
            subject=gov.alice.public_key,
            to=target.public_key,
            possession=possession(target, gov.alice),
        )
        assert "already in use" in message
    # nor onto a key an earlier rotation used up
    first = make_key(seed=SEED + 719)
    rotate(gov, gov.bob, first)
    message = gov.reject(
        Conflict,
        gov.alice,
        Rotate,
        subject=gov.alice.public_key,
        to=gov.bob.public_key,
        possession=possession(gov.bob, gov.alice),
    )
    assert "already in use" in message


def test_a_registrar_role_follows_rotation() -> None:
    gov = Gov()
    new = make_key(seed=SEED + 720)
    rotate(gov, gov.registrar, new)  # a genesis registrar, with no record until now
    assert gov.rules.is_registrar(gov.state, new.public_key, gov.height)
    assert not gov.rules.is_registrar(gov.state, gov.registrar.public_key, gov.height)
    newcomer = make_key(seed=SEED + 721)
    gov.do(new, Admit, subject=newcomer.public_key, role="participant", name="N")
    message = gov.reject(
        Forbidden,
        gov.registrar,
        Admit,
        subject=make_key(seed=SEED + 722).public_key,
        role="participant",
        name="M",
    )
    assert "rotated" in message


def test_a_governance_registrar_stays_one_after_rotation() -> None:
    gov = Gov()
    gov.decide(Change(ADD_REGISTRAR, public_key=gov.bob.public_key))
    gov.next_block(2)
    new = make_key(seed=SEED + 723)
    rotate(gov, gov.bob, new)
    assert gov.rules.is_registrar(gov.state, new.public_key, gov.height)
    gov.do(new, Suspend, subject=gov.carol.public_key)


def test_a_registrar_cannot_rotate_a_key_that_was_never_admitted() -> None:
    gov = Gov()
    stranger, new = make_key(seed=SEED + 724), make_key(seed=SEED + 725)
    message = gov.reject(
        RuleViolation,
        gov.registrar,
        Rotate,
        subject=stranger.public_key,
        to=new.public_key,
        possession=possession(new, stranger),
    )
    assert "not an admitted participant" in message
    gov.reject(RuleViolation, gov.registrar, Reinstate, subject=stranger.public_key)


def test_on_an_open_chain_any_key_can_be_suspended() -> None:
    """On an open chain a key that never had a record gets one when suspended."""
    gov = Gov(admission=OPEN)
    anyone = make_key(seed=SEED + 726)
    register(gov, anyone)
    gov.do(gov.registrar, Suspend, subject=anyone.public_key)
    assert participant(gov, anyone)["status"] == rules.PARTICIPANT_SUSPENDED
    assert participant(gov, anyone)["role"] == "participant"
    message = gov.reject(Forbidden, anyone, Register, dataset=new_dataset(), meta={}, open=False)
    assert "suspended" in message
    gov.do(gov.registrar, Reinstate, subject=anyone.public_key)
    register(gov, anyone)


def test_a_registrar_governance_added_without_admission_can_be_suspended() -> None:
    """It has no participant record until then: the suspension writes one (role registrar)."""
    gov = Gov()
    regulator = make_key(seed=SEED + 931)
    gov.decide(Change(ADD_REGISTRAR, public_key=regulator.public_key))
    gov.next_block(2)
    gov.do(gov.registrar, Suspend, subject=regulator.public_key)
    record = gov.state.get_doc(rules.participant_key(regulator.public_key))
    assert record["status"] == rules.PARTICIPANT_SUSPENDED and record["role"] == "registrar"
    message = gov.reject(
        Forbidden,
        regulator,
        Admit,
        subject=make_key(seed=SEED + 932).public_key,
        role="participant",
        name="Y",
    )
    assert "suspended" in message
