"""Wire forms of proposals, votes and evidence: round trips, and Malformed on anything wrong."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import Evidence, Proposal, decode_message, encode_message, message_from_wire
from consensus.messages import proposal_sign_bytes
from ledger import codec
from ledger.errors import BadSignature, Malformed
from tests.consensus.helpers import (
    CHAIN,
    PRECOMMIT,
    PREVOTE,
    make_block,
    sign_proposal,
    sign_vote,
    validator_set,
)


def test_proposal_sign_bytes_are_the_canonical_map() -> None:
    data = proposal_sign_bytes(CHAIN, 3, 2, b"\x01" * 32, -1)
    assert codec.decode(data) == {
        "block": b"\x01" * 32,
        "chain": CHAIN,
        "height": 3,
        "pol_round": -1,
        "round": 2,
        "type": "proposal",
    }


@pytest.mark.parametrize("valid_round", [-1, 0, 1])
def test_proposal_round_trip_and_verify(valid_round: int) -> None:
    proposal = sign_proposal(1, 5, 2, make_block(5), valid_round)
    decoded = decode_message(encode_message(proposal))
    assert decoded == proposal and isinstance(decoded, Proposal)
    decoded.verify(CHAIN, validator_set(4))
    tampered = Proposal(5, 3, proposal.block, valid_round, proposal.proposer, proposal.signature)
    with pytest.raises(BadSignature):
        tampered.verify(CHAIN, validator_set(4))


@pytest.mark.parametrize("value", [None, b"\x07" * 32])
def test_vote_round_trip(value: bytes | None) -> None:
    vote = sign_vote(2, PRECOMMIT, 9, 4, value)
    assert decode_message(encode_message(vote)) == vote
    assert message_from_wire(vote.to_wire()) == vote


def test_evidence_round_trip_and_verify() -> None:
    nil, value = sign_vote(1, PREVOTE, 1, 0, None), sign_vote(1, PREVOTE, 1, 0, b"\x01" * 32)
    evidence = Evidence.of(value, nil)
    again = Evidence.from_wire(codec.decode(codec.encode(evidence.to_wire())))
    assert again == evidence
    again.verify(CHAIN, validator_set(4))
    assert evidence.vote_a.block_hash is None


def good_docs() -> list[dict[str, Any]]:
    return [
        sign_proposal(1, 5, 2, make_block(5), 0).to_wire(),
        sign_vote(2, PREVOTE, 9, 4, None).to_wire(),
    ]


@pytest.mark.parametrize("index", [0, 1])
def test_every_field_mutation_is_malformed(index: int) -> None:
    doc = good_docs()[index]
    for name in list(doc):
        for bad in (None, -2, "x", b"", [], {}, 1 << 40, True):
            with contextlib.suppress(Malformed):  # decodes, or Malformed; nothing else
                message_from_wire({**doc, name: bad})
        mutated = dict(doc)
        del mutated[name]
        if name != "block" or index == 0:
            with pytest.raises(Malformed):
                message_from_wire(mutated)
    with pytest.raises(Malformed):
        message_from_wire({**doc, "extra": 1})


def test_garbage_bytes_are_malformed() -> None:
    for junk in (b"", b"\xc1", b"\x01", codec.encode([1, 2]), codec.encode({"type": "vote"})):
        with pytest.raises(Malformed):
            decode_message(junk)


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), (1 << 64) - 1),
    st.text(max_size=8),
    st.binary(max_size=40),
    st.sampled_from(["proposal", "prevote", "precommit"]),
)
docs = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "height",
                    "round",
                    "valid_round",
                    "proposer",
                    "signature",
                    "block",
                    "header",
                    "events",
                    "validator",
                    "x",
                ]
            ),
            children,
            max_size=8,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(docs)
def test_random_documents_decode_or_raise_malformed(doc: Any) -> None:
    with contextlib.suppress(Malformed):
        message_from_wire(doc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_malformed(data: bytes) -> None:
    with contextlib.suppress(Malformed):
        decode_message(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_valid_documents(data: st.DataObject) -> None:
    doc = data.draw(st.sampled_from(good_docs()))
    name = data.draw(st.sampled_from(sorted(doc)))
    doc = {**doc, name: data.draw(docs)}
    with contextlib.suppress(Malformed):
        message_from_wire(doc)
