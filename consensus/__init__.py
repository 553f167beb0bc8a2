"""Tendermint consensus (Algorithm 1) as a pure, sans-I/O state machine.

Imports only the standard library and `ledger`; the node drives it (see `consensus.core`).
The names below are re-exported from its modules:

- `core`: `ConsensusCore`, the state machine, with its inputs, outputs and `BlockSource`.
- `messages`: signed proposals, votes and equivocation evidence, and their wire forms.
- `vote_set`: the votes of one (height, round, type), with quorum thresholds and equivocation.
- `proposer`: weighted round-robin proposer selection, identical on every node.
- `signer`: the validator's double-sign guard, persisting each signed slot before it leaves.
- `errors`: the package's exceptions (`ConsensusError` and its families).
"""

from __future__ import annotations

from consensus.core import (
    BlockApplied,
    BlockSource,
    Broadcast,
    CommitReceived,
    ConsensusConfig,
    ConsensusCore,
    Decide,
    EventsAvailable,
    EvidenceFound,
    Input,
    Output,
    ProposalReceived,
    ScheduleTimeout,
    Start,
    Tick,
    TimeoutFired,
    TimeoutKind,
    Verifier,
    VoteReceived,
)
from consensus.errors import ConsensusError, NoQuorum, SignerRefused
from consensus.messages import (
    NO_ROUND,
    Evidence,
    Message,
    Proposal,
    Step,
    decode_message,
    encode_message,
    message_from_wire,
    message_to_wire,
    proposal_sign_bytes,
)
from consensus.proposer import proposer, proposer_schedule
from consensus.signer import MemorySignerPersistence, Signer, SignerPersistence, SignerState
from consensus.vote_set import VoteSet

__all__ = [
    "NO_ROUND",
    "BlockApplied",
    "BlockSource",
    "Broadcast",
    "CommitReceived",
    "ConsensusConfig",
    "ConsensusCore",
    "ConsensusError",
    "Decide",
    "EventsAvailable",
    "Evidence",
    "EvidenceFound",
    "Input",
    "MemorySignerPersistence",
    "Message",
    "NoQuorum",
    "Output",
    "Proposal",
    "ProposalReceived",
    "ScheduleTimeout",
    "Signer",
    "SignerPersistence",
    "SignerRefused",
    "SignerState",
    "Start",
    "Step",
    "Tick",
    "TimeoutFired",
    "TimeoutKind",
    "Verifier",
    "VoteReceived",
    "VoteSet",
    "decode_message",
    "encode_message",
    "message_from_wire",
    "message_to_wire",
    "proposal_sign_bytes",
    "proposer",
    "proposer_schedule",
]
