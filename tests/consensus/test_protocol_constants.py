"""Consensus protocol constants, each stated as a number (docs/PROTOCOL.md, "Protocol
constants").

The message formats, round bounds, the proposer schedule and the vote-buffering bounds are
what validators must agree on; the timeout defaults are what a node runs with unless
configured otherwise. Each test names the value literally, never through the constant.
"""

from __future__ import annotations

import pytest

from consensus import messages, signer, vote_set
from consensus.core import ConsensusConfig, TimeoutKind
from consensus.messages import Step, proposal_sign_bytes
from consensus.proposer import proposer, proposer_schedule
from consensus.signer import MemorySignerPersistence, Signer, SignerState
from consensus.vote_set import VoteSet
from ledger import codec
from ledger.errors import Malformed, TooLarge
from tests.consensus.helpers import CHAIN, PREVOTE, key, sign_vote, validator_set

A, B, C, D = (bytes([n]) * 32 for n in (0x0A, 0x0B, 0x0C, 0x0D))


def test_message_constants_are_pinned() -> None:
    """docs/PROTOCOL.md: message type names, "no round" is -1, rounds are below 2**31."""
    assert messages.PROPOSAL == "proposal"
    assert messages.EVIDENCE == "evidence"
    assert messages.NO_ROUND == -1
    assert messages.MAX_ROUND == 2_147_483_647
    assert [int(s) for s in (Step.PROPOSE, Step.PREVOTE, Step.PRECOMMIT)] == [0, 1, 2]
    assert messages.VOTE_STEP == {"prevote": 1, "precommit": 2}


def test_proposal_sign_bytes_are_pinned() -> None:
    """docs/PROTOCOL.md: the exact bytes a proposer signs (valid_round -1 as pol_round)."""
    assert proposal_sign_bytes("c", 1, 2, b"\xaa" * 32, -1) == bytes.fromhex(
        "86a5626c6f636bc420" + "aa" * 32 + "a5636861696ea163a668656967687401a9706f6c5f726f756e64ff"
        "a5726f756e6402a474797065a870726f706f73616c"
    )


def test_round_bound_is_2_to_the_31_minus_1() -> None:
    """docs/PROTOCOL.md: a proposal's round is at most 2147483647."""
    doc = {"type": "proposal", "height": 1, "valid_round": -1, "proposer": b"", "signature": b""}
    with pytest.raises(Malformed):
        messages.Proposal.from_wire({**doc, "round": 2_147_483_648})


def test_proposer_schedule_is_pinned() -> None:
    """docs/PROTOCOL.md: smooth weighted round-robin in set order, period = total power."""
    validators = validator_set(3, [1, 2, 3])
    index = {v.public_key: i for i, v in enumerate(validators.validators)}
    assert [index[k] for k in proposer_schedule(validators)] == [2, 1, 0, 2, 1, 2]
    # proposer(height, round) = schedule[(height + round) mod 6]
    assert index[proposer(validators, 1, 0)] == 1
    assert index[proposer(validators, 1, 5)] == 2
    assert index[proposer(validators, 4, 3)] == 1
    equal = validator_set(4)
    order = {v.public_key: i for i, v in enumerate(equal.validators)}
    assert [order[k] for k in proposer_schedule(equal)] == [0, 1, 2, 3]


def test_vote_set_parks_at_most_2_conflicting_votes_per_validator() -> None:
    """docs/PROTOCOL.md: 2 parked (not yet relevant) conflicting votes per validator."""
    assert vote_set.MAX_PARKED_PER_VALIDATOR == 2
    votes = VoteSet(validator_set(4), 1, 0, PREVOTE, lambda value: value is None)
    votes.add(sign_vote(0, PREVOTE, 1, 0, None))
    for value in (A, B, C):
        votes.add(sign_vote(0, PREVOTE, 1, 0, value))
    validator = key(0).public_key
    # the oldest (A) was dropped; B and C are parked
    assert [votes.seen(validator, v) for v in (A, B, C)] == [False, True, True]


def test_signer_constants_are_pinned() -> None:
    """docs/PROTOCOL.md: the signer keeps its 6 latest votes; its state file is at most 64 MiB."""
    assert signer.MAX_RECENT_VOTES == 6
    assert signer.MAX_STATE_BYTES == 67_108_864
    s = Signer(key(0), MemorySignerPersistence())
    for round_ in range(8):
        s.sign_vote(CHAIN, PREVOTE, 1, round_, A)
    assert [v.round for v in s.recent_votes(1)] == [2, 3, 4, 5, 6, 7]
    with pytest.raises(TooLarge, match="67108865 bytes exceeds the limit of 67108864"):
        SignerState.from_bytes(codec.encode(b"\x00" * (67_108_865 - 5)))


def test_consensus_timeout_defaults_are_pinned() -> None:
    """docs/PROTOCOL.md: the default timeouts (ms) and buffering bounds of ConsensusConfig."""
    config = ConsensusConfig()
    assert config.timeout_propose_ms == 1000
    assert config.timeout_propose_delta_ms == 500
    assert config.timeout_prevote_ms == 500
    assert config.timeout_prevote_delta_ms == 500
    assert config.timeout_precommit_ms == 500
    assert config.timeout_precommit_delta_ms == 500
    assert config.idle_block_interval_ms == 10_000
    assert config.min_block_interval_ms == 0  # off in the core; a node sets its own (100)
    assert config.future_height_window == 1
    assert config.max_buffered_messages == 1024
    assert config.max_future_rounds_per_validator == 4
    assert config.max_proposals_per_round == 4
    assert config.max_evidence == 256


@pytest.mark.parametrize(
    ("kind", "round_", "expected"),
    [
        (TimeoutKind.PROPOSE, 0, 1000),
        (TimeoutKind.PROPOSE, 3, 2500),
        (TimeoutKind.PREVOTE, 0, 500),
        (TimeoutKind.PREVOTE, 2, 1500),
        (TimeoutKind.PRECOMMIT, 0, 500),
        (TimeoutKind.PRECOMMIT, 4, 2500),
        (TimeoutKind.IDLE, 0, 10_000),
        (TimeoutKind.IDLE, 7, 10_000),
        (TimeoutKind.GATHER, 0, 0),
        (TimeoutKind.GATHER, 5, 0),
    ],
)
def test_timeouts_grow_linearly_with_the_round(
    kind: TimeoutKind, round_: int, expected: int
) -> None:
    """docs/PROTOCOL.md: timeout(kind, round) = base + round * delta; IDLE and GATHER are
    fixed."""
    assert ConsensusConfig().timeout(kind, round_) == expected


def test_timeout_formula_uses_each_kinds_own_parameters() -> None:
    """docs/PROTOCOL.md: each kind has its own base and delta."""
    config = ConsensusConfig(
        timeout_propose_ms=1,
        timeout_propose_delta_ms=2,
        timeout_prevote_ms=30,
        timeout_prevote_delta_ms=40,
        timeout_precommit_ms=500,
        timeout_precommit_delta_ms=600,
        idle_block_interval_ms=7,
        min_block_interval_ms=9,
    )
    assert config.timeout(TimeoutKind.PROPOSE, 2) == 5
    assert config.timeout(TimeoutKind.PREVOTE, 2) == 110
    assert config.timeout(TimeoutKind.PRECOMMIT, 2) == 1700
    assert config.timeout(TimeoutKind.IDLE, 2) == 7
    assert config.timeout(TimeoutKind.GATHER, 2) == 9
    assert [k.value for k in TimeoutKind] == ["propose", "prevote", "precommit", "idle", "gather"]


def test_timestamp_and_budget_defaults_are_pinned() -> None:
    """docs/PROTOCOL.md §7.12, §11.3, §14: proposer-based timestamps and the byte budgets."""
    from consensus.core import MESSAGE_OVERHEAD, MIN_SENDER_BUFFER

    config = ConsensusConfig()
    assert config.time_precision_ms == 1_000
    assert config.message_delay_ms == 5_000
    assert config.max_proposal_bytes_per_validator == 25_165_824
    assert config.max_buffered_bytes == 67_108_864
    assert config.max_rejected_signatures == 4_096
    assert MIN_SENDER_BUFFER == 2_097_152
    assert MESSAGE_OVERHEAD == 512
