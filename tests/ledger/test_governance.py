"""Consortium governance at the rules level (docs/PROTOCOL.md §19.1-19.2): who may propose and
approve, when a proposal is decided (> 2/3 of the power of the set in force), the height a
decided change takes effect (h + 2), expiry, the one-step limits, registrar and parameter
changes.

Every test drives `ledger.rules.Rules` over a real `StateOverlay`, block by block, with real
signatures; each guard has a test that shows it refusing the violation and writing nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgpack
import pytest

from ledger import codec, crypto, events, governance, rules
from ledger.blocks import MAX_VALIDATORS, Validator, ValidatorSet
from ledger.crypto import PrivateKey
from ledger.errors import Conflict, Forbidden, LedgerError, Malformed, RuleViolation
from ledger.events import Admit, Approve, EventBody, Propose, Register, SignedEvent, Suspend
from ledger.genesis import PERMISSIONED, ChainParams, Genesis
from ledger.governance import (
    ADD_REGISTRAR,
    ADD_VALIDATOR,
    REMOVE_REGISTRAR,
    REMOVE_VALIDATOR,
    SET_PARAM,
    SET_POWER,
    Change,
)
from ledger.rules import BlockContext, Rules
from ledger.state import StateOverlay
from tests.ledger.helpers import CHAIN_ID, ev, make_key, make_validators

T0 = 1_700_000_000_000
BLOCK_MS = 1_000
SEED = 7_000


def add(key: PrivateKey | bytes, power: int = 1, name: str = "new") -> Change:
    public = key if isinstance(key, bytes) else key.public_key
    return Change(ADD_VALIDATOR, public_key=public, name=name, url="http://new:8800", power=power)


def remove(key: PrivateKey) -> Change:
    return Change(REMOVE_VALIDATOR, public_key=key.public_key)


def set_power(key: PrivateKey, power: int) -> Change:
    return Change(SET_POWER, public_key=key.public_key, power=power)


class Gov:
    """A chain's rules state advanced block by block: validators v0.. with `powers`, one
    genesis registrar, and three admitted participants (alice, bob, carol)."""

    def __init__(
        self,
        powers: tuple[int, ...] = (1, 1, 1, 1),
        *,
        operators: dict[int, PrivateKey] | None = None,
        params: ChainParams | None = None,
        admission: str = PERMISSIONED,
    ) -> None:
        self.keys, validators = make_validators(len(powers), list(powers), seed=SEED)
        members = list(validators.validators)
        for index, operator in (operators or {}).items():
            members[index] = replace(members[index], operator=operator.public_key)
        self.registrar = make_key(seed=SEED + 500)
        self.genesis = Genesis(
            chain_id=CHAIN_ID,
            genesis_time=T0,
            validators=ValidatorSet(tuple(members)),
            registrars=(self.registrar.public_key,),
            admission=admission,
            params=params,
        )
        self.rules = Rules(self.genesis, self.genesis.chain_params.time_window_ms)
        self.base: dict[bytes, bytes] = {}
        self.state = StateOverlay(self.base.get)
        self.height = 1
        self.leaf = 0
        self.alice = make_key(seed=SEED + 601)
        self.bob = make_key(seed=SEED + 602)
        self.carol = make_key(seed=SEED + 603)
        for key, name in ((self.alice, "A"), (self.bob, "B"), (self.carol, "C")):
            self.do(self.registrar, Admit, subject=key.public_key, role="participant", name=name)

    # --- blocks and events ----------------------------------------------------------------

    @property
    def now(self) -> int:
        return T0 + self.height * BLOCK_MS

    def next_block(self, blocks: int = 1) -> None:
        self.height += blocks

    def at(self, height: int) -> None:
        assert height >= self.height, "blocks only move forward"
        self.height = height

    def ctx(self, time: int | None = None) -> BlockContext:
        return BlockContext(self.height, self.now if time is None else time, self.leaf)

    def event(
        self, key: PrivateKey, cls: type[EventBody], *, time: int | None = None, **fields: Any
    ) -> SignedEvent:
        return ev(key, cls, time=self.now if time is None else time, **fields)

    def apply(self, event: SignedEvent, *, at: int | None = None) -> SignedEvent:
        self.rules.apply(self.state, event, self.ctx(at))
        self.leaf += 1
        return event

    def do(self, key: PrivateKey, cls: type[EventBody], **fields: Any) -> SignedEvent:
        return self.apply(self.event(key, cls, **fields))

    def reject(
        self,
        error: type[LedgerError],
        key: PrivateKey,
        cls: type[EventBody],
        *,
        at: int | None = None,
        **fields: Any,
    ) -> str:
        """Apply an event that must raise exactly `error` and write nothing; its message."""
        event = self.event(key, cls, time=at, **fields)
        before = dict(self.state.writes)
        with pytest.raises(LedgerError) as info:
            self.rules.apply(self.state, event, self.ctx(at))
        assert type(info.value) is error, f"expected {error.__name__}, got {info.value!r}"
        assert self.state.writes == before, "a refused event wrote to the state"
        with pytest.raises(error):
            self.rules.check(self.state, event, self.ctx(at))
        assert self.state.writes == before
        return str(info.value)

    # --- governance shortcuts ---------------------------------------------------------------

    def propose(self, key: PrivateKey, change: Change) -> bytes:
        return self.do(key, Propose, change=change.to_map()).event_id

    def approve(self, key: PrivateKey, proposal: bytes) -> None:
        self.do(key, Approve, proposal=proposal)

    def proposal(self, proposal: bytes) -> dict[str, Any]:
        doc = self.state.get_doc(rules.proposal_key(proposal))
        assert doc is not None
        return dict(doc)

    def decide(self, change: Change, approvers: list[PrivateKey] | None = None) -> bytes:
        """Propose `change` and approve it in this block by the first three validators."""
        approvers = approvers if approvers is not None else self.keys[:3]
        proposal = self.propose(approvers[0], change)
        for key in approvers[1:]:
            self.approve(key, proposal)
        assert self.proposal(proposal)["status"] == rules.PROPOSAL_DECIDED
        return proposal

    def validators(self, height: int) -> ValidatorSet:
        return self.rules.validators_at(self.state, height)

    def keys_at(self, height: int) -> set[bytes]:
        return {v.public_key for v in self.validators(height).validators}


# --- deciding a proposal ----------------------------------------------------------------------


def test_three_of_four_decide_and_two_of_four_do_not() -> None:
    gov = Gov()
    newcomer = make_key(seed=SEED + 900)
    proposal = gov.propose(gov.keys[0], add(newcomer))
    doc = gov.proposal(proposal)
    assert doc["status"] == rules.PROPOSAL_OPEN
    assert doc["approvals"] == [gov.keys[0].public_key]  # proposing counts as approving
    assert doc["proposer"] == gov.keys[0].public_key
    assert doc["height"] == gov.height
    gov.approve(gov.keys[1], proposal)  # 2 of 4: 6 > 8 is false
    assert gov.proposal(proposal)["status"] == rules.PROPOSAL_OPEN
    assert "effective" not in gov.proposal(proposal)
    assert gov.state.get(rules.VALIDATOR_SCHEDULE) is None
    gov.next_block()
    decided_at = gov.height
    gov.approve(gov.keys[2], proposal)  # 3 of 4: 9 > 8
    doc = gov.proposal(proposal)
    assert doc["status"] == rules.PROPOSAL_DECIDED
    assert doc["decided"] == decided_at
    assert doc["effective"] == decided_at + 2
    assert doc["approvals"] == [k.public_key for k in gov.keys[:3]]


def test_the_quorum_is_of_power_not_of_heads() -> None:
    """40+10+10+10: v0 with one other holds 50 of 70 (150 > 140) and decides; the three
    small validators together (30 of 70) do not."""
    gov = Gov((40, 10, 10, 10))
    small = gov.propose(gov.keys[1], add(make_key(seed=SEED + 901), power=5))
    gov.approve(gov.keys[2], small)
    gov.approve(gov.keys[3], small)
    assert gov.proposal(small)["status"] == rules.PROPOSAL_OPEN
    gov.approve(gov.keys[0], small)
    assert gov.proposal(small)["status"] == rules.PROPOSAL_DECIDED

    gov.next_block()
    big = gov.propose(gov.keys[0], set_power(gov.keys[3], 9))
    assert gov.proposal(big)["status"] == rules.PROPOSAL_OPEN
    gov.approve(gov.keys[1], big)
    assert gov.proposal(big)["status"] == rules.PROPOSAL_DECIDED


def test_a_lone_validator_decides_by_proposing() -> None:
    gov = Gov((10,))
    proposal = gov.propose(gov.keys[0], add(make_key(seed=SEED + 902), power=4))
    doc = gov.proposal(proposal)
    assert doc["status"] == rules.PROPOSAL_DECIDED
    assert doc["effective"] == gov.height + 2


def test_a_decided_change_is_in_force_from_h_plus_2() -> None:
    gov = Gov()
    gov.at(10)
    newcomer = make_key(seed=SEED + 903)
    before = gov.validators(10)
    gov.decide(add(newcomer, name="exchange"))
    assert governance.ACTIVATION_DELAY == 2
    for height in (10, 11):
        assert gov.validators(height) == before
        assert newcomer.public_key not in gov.keys_at(height)
    after = gov.validators(12)
    assert after.get(newcomer.public_key) == Validator(
        "exchange", newcomer.public_key, 1, "http://new:8800"
    )
    assert gov.validators(13) == after
    # the transition record names the set in force from that height
    record = gov.state.get_doc(rules.transition_key(12))
    assert governance.set_from_doc(record) == after
    assert gov.state.get(rules.transition_key(11)) is None


def test_approvals_count_against_the_set_in_force() -> None:
    """After a fifth validator joins, 3 of the original 4 hold 3 of 5 (9 > 10 false): the
    same three no longer decide; the newcomer's approval does. Before its effective height
    the newcomer may not approve at all."""
    gov = Gov()
    fifth = make_key(seed=SEED + 904)
    gov.decide(add(fifth))
    effective = gov.height + 2
    pending = gov.propose(gov.keys[0], add(make_key(seed=SEED + 905)))
    gov.next_block()  # h + 1: the old set still rules
    gov.reject(Forbidden, fifth, Approve, proposal=pending)
    gov.approve(gov.keys[1], pending)
    gov.at(effective)
    gov.approve(gov.keys[2], pending)  # 3 of 5 now
    assert gov.proposal(pending)["status"] == rules.PROPOSAL_OPEN
    gov.approve(fifth, pending)  # 4 of 5
    assert gov.proposal(pending)["status"] == rules.PROPOSAL_DECIDED


def test_approvals_of_a_removed_validator_stop_counting() -> None:
    gov = Gov()
    leaving = gov.keys[3]
    later = gov.propose(leaving, set_power(gov.keys[0], 2))
    gov.decide(remove(leaving))
    gov.at(gov.height + 2)
    assert leaving.public_key not in gov.keys_at(gov.height)
    # the set is now 3x1; the leaver's earlier approval is worth nothing, one more is 1 of 3
    gov.approve(gov.keys[1], later)
    assert gov.proposal(later)["status"] == rules.PROPOSAL_OPEN
    gov.approve(gov.keys[2], later)
    assert gov.proposal(later)["status"] == rules.PROPOSAL_OPEN  # 2 of 3: 6 > 6 false
    # and the removed validator may no longer take part
    message = gov.reject(Forbidden, leaving, Approve, proposal=later)
    assert "validator of the current set" in message
    gov.reject(Forbidden, leaving, Propose, change=add(make_key(seed=SEED + 906)).to_map())
    gov.approve(gov.keys[0], later)
    assert gov.proposal(later)["status"] == rules.PROPOSAL_DECIDED


def test_a_proposal_expires_seven_days_after_its_block() -> None:
    gov = Gov()
    proposed_at = gov.now
    proposal = gov.propose(gov.keys[0], add(make_key(seed=SEED + 907)))
    assert gov.proposal(proposal)["expires"] == proposed_at + 604_800_000
    last = proposed_at + governance.PROPOSAL_TTL_MS - 1
    gov.next_block()
    gov.apply(gov.event(gov.keys[1], Approve, time=last, proposal=proposal), at=last)
    gov.next_block()
    expired = proposed_at + governance.PROPOSAL_TTL_MS
    message = gov.reject(RuleViolation, gov.keys[2], Approve, at=expired, proposal=proposal)
    assert "expired" in message
    assert gov.proposal(proposal)["status"] == rules.PROPOSAL_OPEN


def test_duplicate_late_and_unknown_approvals_are_refused() -> None:
    gov = Gov()
    proposal = gov.propose(gov.keys[0], add(make_key(seed=SEED + 908)))
    message = gov.reject(Conflict, gov.keys[0], Approve, proposal=proposal)
    assert "already approved" in message
    gov.approve(gov.keys[1], proposal)
    gov.reject(Conflict, gov.keys[1], Approve, proposal=proposal)
    gov.approve(gov.keys[2], proposal)
    message = gov.reject(Conflict, gov.keys[3], Approve, proposal=proposal)
    assert "already decided" in message
    message = gov.reject(RuleViolation, gov.keys[3], Approve, proposal=crypto.sha256(b"none"))
    assert "does not exist" in message


def test_only_validators_propose_or_approve() -> None:
    gov = Gov()
    change = add(make_key(seed=SEED + 909)).to_map()
    for outsider in (gov.alice, gov.registrar, make_key(seed=SEED + 910)):
        message = gov.reject(Forbidden, outsider, Propose, change=change)
        assert "only a validator" in message
    proposal = gov.propose(gov.keys[0], Change.parse(change))
    for outsider in (gov.alice, gov.registrar, make_key(seed=SEED + 910)):
        gov.reject(Forbidden, outsider, Approve, proposal=proposal)
    assert gov.proposal(proposal)["approvals"] == [gov.keys[0].public_key]


def test_an_operator_key_approves_instead_of_the_node_key() -> None:
    operator = make_key(seed=SEED + 911)
    gov = Gov(operators={0: operator})
    change = add(make_key(seed=SEED + 912))
    message = gov.reject(Forbidden, gov.keys[0], Propose, change=change.to_map())
    assert "operator key" in message
    proposal = gov.propose(operator, change)
    # the approval is recorded for the validator (its node key), worth its power
    assert gov.proposal(proposal)["approvals"] == [gov.keys[0].public_key]
    gov.reject(Forbidden, gov.keys[0], Approve, proposal=proposal)
    gov.reject(Conflict, operator, Approve, proposal=proposal)
    gov.approve(gov.keys[1], proposal)
    gov.approve(gov.keys[2], proposal)
    assert gov.proposal(proposal)["status"] == rules.PROPOSAL_DECIDED


def test_governance_events_need_no_admission_but_a_suspended_operator_is_refused() -> None:
    """An operator key that is also an admitted participant signs nothing once suspended."""
    gov = Gov(operators={1: make_key(seed=SEED + 601)})  # alice's key operates v1
    proposal = gov.propose(gov.keys[0], add(make_key(seed=SEED + 913)))
    gov.do(gov.registrar, events.Suspend, subject=gov.alice.public_key)
    message = gov.reject(Forbidden, gov.alice, Approve, proposal=proposal)
    assert "suspended" in message


# --- the one-step limits ------------------------------------------------------------------------


def validator_set(*powers: int) -> tuple[list[PrivateKey], ValidatorSet]:
    return make_validators(len(powers), list(powers), seed=SEED + 100)


@pytest.mark.parametrize(
    ("powers", "change_of", "allowed"),
    [
        # 4x10 + 10: the old members keep 40 of 50 (120 > 100)
        ((10, 10, 10, 10), lambda k: add(make_key(seed=1), 10), True),
        # 4x10 + 20: 40 of 60 (120 > 120 is false)
        ((10, 10, 10, 10), lambda k: add(make_key(seed=1), 20), False),
        # 1x10 + 4: 10 of 14 (30 > 28); + 5: 10 of 15 (30 > 30 false); + 10 far beyond
        ((10,), lambda k: add(make_key(seed=1), 4), True),
        ((10,), lambda k: add(make_key(seed=1), 5), False),
        ((10,), lambda k: add(make_key(seed=1), 10), False),
        # raising a member's power keeps it among the members that stay: always allowed, and
        # the way a set of one or two power-1 validators grows (1 → 3, then + 1: 3 of 4)
        ((10, 10, 10, 10), lambda k: set_power(k[0], 1000), True),
        ((1,), lambda k: set_power(k[0], 3), True),
        ((3,), lambda k: add(make_key(seed=1), 1), True),
        ((1,), lambda k: add(make_key(seed=1), 1), False),
        ((1, 1), lambda k: add(make_key(seed=1), 1), False),
        ((2, 1), lambda k: add(make_key(seed=1), 1), True),
        # lowering power and removing keep everything that stays
        ((10, 10, 10, 10), lambda k: set_power(k[0], 1), True),
        ((10, 10, 10, 10), lambda k: remove(k[3]), True),
        ((10, 1000), lambda k: remove(k[1]), True),
    ],
)
def test_one_step_limits_are_pinned(powers: tuple[int, ...], change_of: Any, allowed: bool) -> None:
    keys, old = validator_set(*powers)
    change = change_of(keys)
    if allowed:
        new = governance.apply_to_set(old, change)
        governance.check_step(old, new)
    else:
        with pytest.raises(RuleViolation, match="too much power in one step"):
            governance.apply_to_set(old, change)


def test_a_too_large_step_is_refused_when_proposed() -> None:
    gov = Gov((10, 10, 10, 10))
    message = gov.reject(
        RuleViolation, gov.keys[0], Propose, change=add(make_key(seed=SEED + 914), 20).to_map()
    )
    assert "the members kept hold 40 of 60" in message
    gov.propose(gov.keys[0], add(make_key(seed=SEED + 914), 10))


def test_the_last_validator_cannot_be_removed() -> None:
    keys, lone = validator_set(10)
    with pytest.raises(RuleViolation, match="last validator"):
        governance.apply_to_set(lone, remove(keys[0]))
    gov = Gov((10,))
    message = gov.reject(RuleViolation, gov.keys[0], Propose, change=remove(gov.keys[0]).to_map())
    assert "last validator" in message


def test_changes_that_do_not_apply_are_refused() -> None:
    keys, old = validator_set(10, 10, 10, 10)
    with pytest.raises(RuleViolation, match="already a validator"):
        governance.apply_to_set(old, add(keys[1].public_key))
    stranger = make_key(seed=SEED + 915)
    with pytest.raises(RuleViolation, match="not a validator"):
        governance.apply_to_set(old, remove(stranger))
    with pytest.raises(RuleViolation, match="not a validator"):
        governance.apply_to_set(old, set_power(stranger, 3))
    with pytest.raises(RuleViolation, match="already has that power"):
        governance.apply_to_set(old, set_power(keys[0], 10))


def test_a_set_holds_at_most_128_validators() -> None:
    assert MAX_VALIDATORS == 128
    keys, full = make_validators(MAX_VALIDATORS, seed=SEED + 2_000)
    with pytest.raises(RuleViolation, match="at most 128"):
        governance.apply_to_set(full, add(make_key(seed=SEED + 916)))
    smaller = ValidatorSet(full.validators[:-1])
    assert len(governance.apply_to_set(smaller, add(keys[-1])).validators) == MAX_VALIDATORS


def test_two_changes_decided_in_one_block_are_one_step() -> None:
    """Both take effect at h + 2, so together they must pass the limit against the set at
    h + 1: 4x10 + 10 + 10 keeps 40 of 60, refused; the same change decided one block later
    is its own step (50 of 60) and passes."""
    gov = Gov((10, 10, 10, 10))
    first, second = make_key(seed=SEED + 917), make_key(seed=SEED + 918)
    p1 = gov.propose(gov.keys[0], add(first, 10))
    p2 = gov.propose(gov.keys[0], add(second, 10))  # checked on its own: 40 of 50
    gov.next_block()
    gov.approve(gov.keys[1], p1)
    gov.approve(gov.keys[2], p1)
    gov.approve(gov.keys[1], p2)
    message = gov.reject(RuleViolation, gov.keys[2], Approve, proposal=p2)
    assert "too much power" in message and "later block" in message
    effective = gov.height + 2
    gov.next_block()
    gov.approve(gov.keys[2], p2)
    assert gov.proposal(p2)["effective"] == effective + 1
    assert len(gov.validators(effective).validators) == 5
    assert len(gov.validators(effective + 1).validators) == 6
    for height in (effective, effective + 1):
        governance.check_step(gov.validators(height - 1), gov.validators(height))


def test_pending_changes_stack_in_order() -> None:
    """A proposal is checked on top of the changes already decided but not yet in force."""
    gov = Gov()
    newcomer = make_key(seed=SEED + 919)
    gov.decide(add(newcomer))
    # not a validator yet at this height, but removing it is valid on top of the pending add
    gov.next_block()
    gov.decide(remove(newcomer))
    assert newcomer.public_key not in gov.keys_at(gov.height)
    assert newcomer.public_key in gov.keys_at(gov.height + 1)
    assert newcomer.public_key not in gov.keys_at(gov.height + 2)


@pytest.mark.parametrize(
    ("change_of", "refusal"),
    [
        (lambda gov: remove(gov.keys[3]), "not a validator"),
        (lambda gov: Change(ADD_REGISTRAR, public_key=gov.alice.public_key), "already a registrar"),
    ],
    ids=["remove-validator", "add-registrar"],
)
def test_a_change_that_no_longer_applies_cannot_be_decided(
    change_of: Callable[[Gov], Change], refusal: str
) -> None:
    """Two open proposals of the same change: once the first is decided, the second's
    deciding approval is refused (the change is checked again when enacted)."""
    gov = Gov()
    twice = [gov.propose(gov.keys[0], change_of(gov)) for _ in range(2)]
    for proposal in twice:
        gov.approve(gov.keys[1], proposal)
    gov.approve(gov.keys[2], twice[0])
    message = gov.reject(RuleViolation, gov.keys[2], Approve, proposal=twice[1])
    assert refusal in message
    assert gov.proposal(twice[1])["status"] == rules.PROPOSAL_OPEN


# --- registrars and chain parameters ------------------------------------------------------------


def test_adding_a_registrar_takes_effect_at_h_plus_2() -> None:
    gov = Gov()
    newcomer = make_key(seed=SEED + 920)
    gov.decide(Change(ADD_REGISTRAR, public_key=gov.alice.public_key))
    assert not gov.rules.is_registrar(gov.state, gov.alice.public_key, gov.height + 1)
    assert gov.rules.is_registrar(gov.state, gov.alice.public_key, gov.height + 2)
    gov.next_block()
    message = gov.reject(
        Forbidden, gov.alice, Admit, subject=newcomer.public_key, role="participant", name="N"
    )
    assert "only a registrar" in message
    gov.next_block()
    gov.do(gov.alice, Admit, subject=newcomer.public_key, role="participant", name="N")
    # a proposal to add it again is refused
    message = gov.reject(
        RuleViolation,
        gov.keys[0],
        Propose,
        change=Change(ADD_REGISTRAR, public_key=gov.alice.public_key).to_map(),
    )
    assert "already a registrar" in message


def test_a_registrar_not_admitted_may_act_once_added() -> None:
    gov = Gov()
    regulator = make_key(seed=SEED + 921)
    gov.decide(Change(ADD_REGISTRAR, public_key=regulator.public_key))
    gov.next_block(2)
    gov.do(
        regulator, Admit, subject=make_key(seed=SEED + 922).public_key, role="participant", name="X"
    )


def test_removing_the_genesis_registrar_takes_effect_at_h_plus_2() -> None:
    gov = Gov()
    gov.decide(Change(REMOVE_REGISTRAR, public_key=gov.registrar.public_key))
    gov.next_block()
    gov.do(
        gov.registrar,
        Admit,
        subject=make_key(seed=SEED + 923).public_key,
        role="participant",
        name="Y",
    )
    gov.next_block()
    gov.reject(
        Forbidden,
        gov.registrar,
        Admit,
        subject=make_key(seed=SEED + 924).public_key,
        role="participant",
        name="Z",
    )
    message = gov.reject(
        RuleViolation,
        gov.keys[0],
        Propose,
        change=Change(REMOVE_REGISTRAR, public_key=gov.registrar.public_key).to_map(),
    )
    assert "not a registrar" in message
    message = gov.reject(
        RuleViolation,
        gov.keys[0],
        Propose,
        change=Change(REMOVE_REGISTRAR, public_key=gov.bob.public_key).to_map(),
    )
    assert "not a registrar" in message


def test_a_registrar_admitted_as_one_can_be_removed() -> None:
    gov = Gov()
    deputy = make_key(seed=SEED + 925)
    gov.do(gov.registrar, Admit, subject=deputy.public_key, role="registrar", name="D")
    gov.do(
        deputy, Admit, subject=make_key(seed=SEED + 926).public_key, role="participant", name="E"
    )
    gov.decide(Change(REMOVE_REGISTRAR, public_key=deputy.public_key))
    gov.next_block(2)
    gov.reject(
        Forbidden,
        deputy,
        Admit,
        subject=make_key(seed=SEED + 927).public_key,
        role="participant",
        name="F",
    )


def test_a_suspended_registrar_is_no_registrar_to_remove() -> None:
    """docs/PROTOCOL.md §19.3: a suspended registrar is no registrar, so a proposal to
    remove its role is refused like one for any key that holds none."""
    gov = Gov()
    deputy = make_key(seed=SEED + 928)
    gov.do(gov.registrar, Admit, subject=deputy.public_key, role="registrar", name="D")
    gov.do(gov.registrar, Suspend, subject=deputy.public_key)
    assert gov.rules.is_registrar(gov.state, deputy.public_key, gov.height) is False
    message = gov.reject(
        RuleViolation,
        gov.keys[0],
        Propose,
        change=Change(REMOVE_REGISTRAR, public_key=deputy.public_key).to_map(),
    )
    assert "not a registrar" in message


def test_set_param_changes_the_time_window_from_h_plus_2() -> None:
    gov = Gov()
    assert gov.rules.params_at(gov.state, gov.height).time_window_ms == 600_000
    gov.decide(Change(SET_PARAM, name="time_window_ms", value=1_000))
    effective = gov.height + 2
    assert gov.rules.params_at(gov.state, effective - 1).time_window_ms == 600_000
    assert gov.rules.params_at(gov.state, effective) == replace(ChainParams(), time_window_ms=1_000)
    gov.next_block()
    skewed = gov.now + 5_000  # 5 s off the block time: inside 10 minutes, outside 1 s
    gov.apply(
        gov.event(
            gov.alice, Register, time=skewed, dataset=crypto.sha256(b"a"), meta={}, open=False
        )
    )
    gov.at(effective)
    skewed = gov.now + 5_000
    event = gov.event(
        gov.alice, Register, time=skewed, dataset=crypto.sha256(b"b"), meta={}, open=False
    )
    with pytest.raises(RuleViolation, match="outside ±1000 ms"):
        gov.rules.apply(gov.state, event, gov.ctx())
    gov.apply(
        gov.event(
            gov.alice,
            Register,
            time=gov.now + 1_000,
            dataset=crypto.sha256(b"c"),
            meta={},
            open=False,
        )
    )


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("no_such_param", 5, "unknown chain parameter"),
        ("time_window_ms", 600_000, "already 600000"),
        ("time_window_ms", 0, "must be an integer in 1.."),
        ("block_max_events", 10**9, "must be an integer in 1.."),
    ],
)
def test_bad_parameter_changes_are_refused(name: str, value: int, reason: str) -> None:
    gov = Gov()
    message = gov.reject(
        RuleViolation,
        gov.keys[0],
        Propose,
        change=Change(SET_PARAM, name=name, value=value).to_map(),
    )
    assert reason in message


# --- records and encodings ----------------------------------------------------------------------


def test_governance_records_are_authenticated_state() -> None:
    gov = Gov()
    gov.decide(add(make_key(seed=SEED + 928)))
    gov.decide(Change(ADD_REGISTRAR, public_key=gov.bob.public_key))
    gov.decide(Change(SET_PARAM, name="timeout_vote_ms", value=700))
    written = set(gov.state.writes)
    prefixes = {key[:2] for key in written}
    for prefix in (b"sP", b"sV", b"sC", b"sR", b"sT"):
        assert prefix in prefixes, prefix
        assert prefix in rules.AUTHENTICATED
    assert all(
        rules.is_authenticated(key)
        for key in written
        if key[:2] in {b"sP", b"sV", b"sC", b"sR", b"sT"}
    )
    assert rules.registrar_schedule_key(gov.bob.public_key) in written


def test_change_maps_are_parsed_strictly() -> None:
    key = make_key(seed=SEED + 929).public_key
    good = add(key).to_map()
    assert list(codec.decode(codec.encode(good))) == sorted(good)  # canonical: keys sorted
    assert Change.parse(good) == add(key)
    bad_maps: list[Any] = [
        [good],
        {**good, "op": "add-everything"},
        {k: v for k, v in good.items() if k != "url"},
        {**good, "extra": 1},
        {**good, "power": 0},
        {**good, "power": True},
        {**good, "power": (1 << 16) + 1},
        {**good, "public_key": bytes(33)},
        {**good, "public_key": key[:32]},
        {**good, "public_key": key.hex()},
        {**good, "name": ""},
        {**good, "url": "u" * 257},
        {"op": SET_PARAM, "name": "time_window_ms", "value": -1},
        {"op": REMOVE_VALIDATOR, "public_key": key, "power": 1},
    ]
    for doc in bad_maps:
        with pytest.raises(Malformed):
            Change.parse(doc)


def test_a_propose_envelope_with_an_unsorted_change_map_is_refused() -> None:
    gov = Gov()
    signed = gov.event(gov.keys[0], Propose, change=add(make_key(seed=SEED + 930)).to_map())
    body = codec.decode(signed.body_bytes)
    body["change"] = dict(reversed(list(body["change"].items())))
    body_bytes = msgpack.packb(body, use_bin_type=True)
    envelope = codec.encode({"body": body_bytes, "sig": gov.keys[0].sign(body_bytes)})
    with pytest.raises(Malformed, match="canonical"):
        events.decode_envelope(envelope, chain_id=CHAIN_ID)
    # the canonical one decodes back to the same change
    decoded = events.decode_envelope(signed.envelope, chain_id=CHAIN_ID)
    assert isinstance(decoded.body, Propose)
    assert Change.parse(decoded.body.change) == add(make_key(seed=SEED + 930))


def test_an_approve_names_a_32_byte_proposal() -> None:
    gov = Gov()
    signed = gov.event(gov.keys[0], Approve, proposal=bytes(31))
    with pytest.raises(Malformed):
        events.decode_envelope(signed.envelope, chain_id=CHAIN_ID)
