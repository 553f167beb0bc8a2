"""VoteSet: thresholds with weighted power, duplicates, equivocation evidence, commits."""

from __future__ import annotations

import pytest

from consensus import NoQuorum, VoteSet
from tests.consensus.helpers import CHAIN, PRECOMMIT, PREVOTE, sign_vote, validator_set

A, B = b"\x0a" * 32, b"\x0b" * 32


def test_weighted_thresholds() -> None:
    validators = validator_set(4, [1, 2, 3, 4])  # total 10: quorum > 6.67, one third > 3.33
    votes = VoteSet(validators, 1, 0, PREVOTE)
    votes.add(sign_vote(3, PREVOTE, 1, 0, A))  # 4
    assert votes.has_one_third_any() and not votes.has_quorum_any()
    votes.add(sign_vote(0, PREVOTE, 1, 0, None))  # 5
    votes.add(sign_vote(1, PREVOTE, 1, 0, A))  # 7
    assert votes.has_quorum_any()
    assert votes.power_for(A) == 6 and not votes.has_quorum_for(A)
    assert votes.quorum_value() == (False, None) and votes.quorum_blocks() == []
    votes.add(sign_vote(2, PREVOTE, 1, 0, A))
    assert votes.has_quorum_for(A) and votes.quorum_value() == (True, A)
    assert votes.total_power == 10


def test_nil_quorum_is_reported_as_nil() -> None:
    validators = validator_set(4)
    votes = VoteSet(validators, 1, 0, PREVOTE)
    for i in range(3):
        votes.add(sign_vote(i, PREVOTE, 1, 0, None))
    assert votes.quorum_value() == (True, None)
    assert votes.has_quorum_for(None) and votes.quorum_blocks() == []


def test_duplicates_count_once() -> None:
    votes = VoteSet(validator_set(4), 1, 0, PREVOTE)
    vote = sign_vote(1, PREVOTE, 1, 0, A)
    assert votes.add(vote) is None
    assert votes.add(sign_vote(1, PREVOTE, 1, 0, A)) is None  # same value, new signature
    assert votes.power_for(A) == 1 and votes.total_power == 1
    assert votes.seen(vote.validator, A) and not votes.seen(vote.validator, B)


def test_equivocation_yields_evidence_once_and_counts_once_per_value() -> None:
    validators = validator_set(4)
    votes = VoteSet(validators, 1, 0, PRECOMMIT)
    first = sign_vote(1, PRECOMMIT, 1, 0, A)
    votes.add(first)
    evidence = votes.add(sign_vote(1, PRECOMMIT, 1, 0, B))
    assert evidence is not None and evidence.validator == first.validator
    evidence.verify(CHAIN, validators)
    # the paper counts distinct senders per value: the equivocator counts for A and for B,
    # but only once toward "any"
    assert votes.power_for(A) == 1 and votes.power_for(B) == 1 and votes.total_power == 1
    assert votes.add(sign_vote(1, PRECOMMIT, 1, 0, B)) is None
    assert votes.power_for(B) == 1
    assert votes.add(sign_vote(1, PRECOMMIT, 1, 0, None)) is None  # one evidence per validator
    assert votes.evidence == (evidence,)
    assert votes.seen(first.validator, B) and votes.get(first.validator) == first


def test_irrelevant_conflicts_are_parked_until_promoted() -> None:
    relevant: set[bytes | None] = {None}
    votes = VoteSet(validator_set(4), 1, 0, PREVOTE, relevant.__contains__)
    votes.add(sign_vote(2, PREVOTE, 1, 0, A))
    assert votes.add(sign_vote(2, PREVOTE, 1, 0, B)) is not None
    assert votes.power_for(B) == 0 and votes.seen(sign_vote(2, PREVOTE, 1, 0, B).validator, B)
    votes.promote(B)
    assert votes.power_for(B) == 1
    votes.promote(B)
    assert votes.power_for(B) == 1


def test_equivocators_help_a_quorum_but_count_once_in_total() -> None:
    validators = validator_set(4)
    votes = VoteSet(validators, 1, 0, PREVOTE)
    for i in (0, 1):
        votes.add(sign_vote(i, PREVOTE, 1, 0, A))
    votes.add(sign_vote(3, PREVOTE, 1, 0, None))
    votes.add(sign_vote(3, PREVOTE, 1, 0, A))
    assert votes.has_quorum_for(A) and votes.quorum_blocks() == [A]
    assert votes.total_power == 3
    assert len(votes.votes()) == 4


def test_commit_certificate_verifies() -> None:
    validators = validator_set(4)
    votes = VoteSet(validators, 7, 2, PRECOMMIT)
    with pytest.raises(NoQuorum):
        votes.make_commit(A)
    for i in (3, 1, 0):
        votes.add(sign_vote(i, PRECOMMIT, 7, 2, A))
    votes.add(sign_vote(2, PRECOMMIT, 7, 2, None))
    commit = votes.make_commit(A)
    commit.verify(CHAIN, validators)
    assert votes.quorum_blocks() == [A]
    assert (commit.height, commit.round, commit.block_hash) == (7, 2, A)
    order = [v.public_key for v in validators.validators]
    assert [s.validator for s in commit.signatures] == [order[0], order[1], order[3]]


def test_prevotes_never_make_a_commit() -> None:
    votes = VoteSet(validator_set(1), 1, 0, PREVOTE)
    votes.add(sign_vote(0, PREVOTE, 1, 0, A))
    with pytest.raises(NoQuorum):
        votes.make_commit(A)


def test_remove_forgets_power() -> None:
    votes = VoteSet(validator_set(4), 1, 0, PREVOTE)
    vote = sign_vote(2, PREVOTE, 1, 0, A)
    votes.add(vote)
    votes.remove(vote.validator)
    votes.remove(vote.validator)
    assert votes.total_power == 0 and votes.get(vote.validator) is None


def test_remove_takes_the_power_out_of_every_count_at_once() -> None:
    validators = validator_set(4, [1, 2, 3, 4])  # total 10
    votes = VoteSet(validators, 1, 0, PREVOTE)
    for i in (1, 2, 3):
        votes.add(sign_vote(i, PREVOTE, 1, 0, A))  # 2 + 3 + 4 = 9
    votes.add(sign_vote(0, PREVOTE, 1, 0, None))
    assert votes.has_quorum_for(A) and votes.power_for(A) == 9
    votes.remove(sign_vote(3, PREVOTE, 1, 0, A).validator)  # checked after one call
    assert votes.power_for(A) == 5 and votes.total_power == 6
    assert votes.power_for(None) == 1
    assert not votes.has_quorum_for(A) and votes.quorum_value() == (False, None)
    assert votes.quorum_blocks() == [] and not votes.has_quorum_any()


def test_remove_of_a_validator_that_did_not_vote_changes_nothing() -> None:
    votes = VoteSet(validator_set(4), 1, 0, PREVOTE)
    votes.add(sign_vote(0, PREVOTE, 1, 0, A))
    votes.remove(sign_vote(1, PREVOTE, 1, 0, A).validator)
    assert votes.total_power == 1 and votes.power_for(A) == 1


def test_remove_of_an_equivocator_leaves_the_other_voters_of_each_value() -> None:
    votes = VoteSet(validator_set(4), 1, 0, PREVOTE)
    votes.add(sign_vote(0, PREVOTE, 1, 0, A))
    votes.add(sign_vote(0, PREVOTE, 1, 0, B))
    votes.add(sign_vote(1, PREVOTE, 1, 0, B))
    votes.remove(sign_vote(0, PREVOTE, 1, 0, A).validator)
    assert votes.power_for(A) == 0 and votes.power_for(B) == 1 and votes.total_power == 1


def test_remove_forgets_parked_votes() -> None:
    votes = VoteSet(validator_set(4), 1, 0, PREVOTE, lambda value: value is None)
    voter = sign_vote(2, PREVOTE, 1, 0, None).validator
    votes.add(sign_vote(2, PREVOTE, 1, 0, None))
    votes.add(sign_vote(2, PREVOTE, 1, 0, A))  # parked: A is not relevant
    assert votes.seen(voter, A)
    votes.remove(voter)
    assert not votes.seen(voter, A) and not votes.seen(voter, None)
    votes.promote(A)
    assert votes.power_for(A) == 0 and votes.total_power == 0


def test_no_quorum_for_a_value_nobody_voted_for() -> None:
    votes = VoteSet(validator_set(1), 1, 0, PREVOTE)  # one vote of power 1 is a quorum
    assert not votes.has_quorum_for(A) and not votes.has_quorum_for(None)
    votes.add(sign_vote(0, PREVOTE, 1, 0, A))
    assert votes.has_quorum_for(A) and not votes.has_quorum_for(B)


def test_parking_keeps_the_two_latest_conflicting_votes_per_validator() -> None:
    votes = VoteSet(validator_set(4), 1, 0, PREVOTE, lambda value: value is None)
    C = b"\x0c" * 32
    voter = sign_vote(0, PREVOTE, 1, 0, None).validator
    votes.add(sign_vote(0, PREVOTE, 1, 0, None))
    votes.add(sign_vote(0, PREVOTE, 1, 0, A))
    votes.add(sign_vote(0, PREVOTE, 1, 0, B))
    assert votes.seen(voter, A) and votes.seen(voter, B)  # two fit
    votes.add(sign_vote(0, PREVOTE, 1, 0, C))
    assert not votes.seen(voter, A) and votes.seen(voter, B) and votes.seen(voter, C)
    votes.promote(A)  # dropped: nothing to count
    votes.promote(C)
    assert votes.power_for(A) == 0 and votes.power_for(C) == 1


def test_promote_with_several_parked_validators_counts_only_those_that_parked_the_value() -> None:
    votes = VoteSet(validator_set(4), 1, 0, PREVOTE, lambda value: value is None)
    for i in (0, 1, 2):
        votes.add(sign_vote(i, PREVOTE, 1, 0, None))
    votes.add(sign_vote(0, PREVOTE, 1, 0, A))
    votes.add(sign_vote(1, PREVOTE, 1, 0, A))
    votes.add(sign_vote(2, PREVOTE, 1, 0, B))
    votes.promote(A)
    assert votes.power_for(A) == 2 and votes.power_for(B) == 0
    votes.promote(B)
    assert votes.power_for(B) == 1 and votes.power_for(None) == 3
    assert len(votes.votes()) == 6


def test_remove_leaves_no_empty_value_and_forgets_evidence() -> None:
    votes = VoteSet(validator_set(4), 1, 0, PREVOTE)
    assert votes.is_empty()
    votes.add(sign_vote(0, PREVOTE, 1, 0, A))
    assert votes.add(sign_vote(0, PREVOTE, 1, 0, B)) is not None
    assert not votes.is_empty() and len(votes.evidence) == 1
    votes.remove(sign_vote(0, PREVOTE, 1, 0, A).validator)
    assert votes.is_empty() and votes.evidence == ()
    assert votes.quorum_value() == (False, None) and votes.votes() == ()
    assert votes._by_value == {} and votes._power == {}
    # the validator's next equivocation is new evidence again
    votes.add(sign_vote(0, PREVOTE, 1, 0, A))
    assert votes.add(sign_vote(0, PREVOTE, 1, 0, B)) is not None
