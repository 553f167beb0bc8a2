"""The signer: persist before returning, refuse regressions and conflicts, also after restart."""

from __future__ import annotations

import pytest

from consensus import MemorySignerPersistence, SignerRefused, SignerState, Step
from consensus.signer import MAX_RECENT_VOTES, Lock, Signer
from ledger import codec, crypto
from ledger.blocks import vote_sign_bytes
from ledger.errors import Malformed
from tests.consensus.helpers import CHAIN, PRECOMMIT, PREVOTE, key, make_block, sign_vote

A, B = b"\x0a" * 32, b"\x0b" * 32


class RecordingPersistence(MemorySignerPersistence):
    """Records every save and the signatures already handed out at that moment."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def save(self, state: SignerState) -> None:
        self.log.append(f"save {state.height}/{state.round}/{state.step}")
        super().save(state)


class FailingPersistence(MemorySignerPersistence):
    def save(self, state: SignerState) -> None:
        raise OSError("disk full")


def test_state_is_saved_before_the_signature_is_returned() -> None:
    log: list[str] = []
    signer = Signer(key(0), RecordingPersistence(log))
    vote = signer.sign_vote(CHAIN, PREVOTE, 1, 0, A)
    log.append("returned")
    assert log == ["save 1/0/1", "returned"]
    crypto.verify(vote.validator, vote.sign_bytes(CHAIN), vote.signature)


def test_no_signature_escapes_when_saving_fails() -> None:
    signer = Signer(key(0), FailingPersistence())
    with pytest.raises(OSError):
        signer.sign_vote(CHAIN, PREVOTE, 1, 0, A)
    assert signer.state is None
    signer2 = Signer(key(0), MemorySignerPersistence())
    signer2.sign_vote(CHAIN, PREVOTE, 1, 0, A)
    signer2._persistence = FailingPersistence()  # type: ignore[attr-defined]
    with pytest.raises(OSError):
        signer2.sign_vote(CHAIN, PRECOMMIT, 1, 0, A)
    assert signer2.state is not None and signer2.state.step == Step.PREVOTE


def test_identical_bytes_return_the_identical_signature() -> None:
    persistence = MemorySignerPersistence()
    signer = Signer(key(0), persistence)
    first = signer.sign_vote(CHAIN, PREVOTE, 1, 0, A)
    saves = persistence.saves
    assert signer.sign_vote(CHAIN, PREVOTE, 1, 0, A) == first
    assert persistence.saves == saves
    assert Signer(key(0), persistence).sign_vote(CHAIN, PREVOTE, 1, 0, A) == first


@pytest.mark.parametrize("restart", [False, True])
def test_conflicts_and_regressions_are_refused(restart: bool) -> None:
    persistence = MemorySignerPersistence()
    signer = Signer(key(0), persistence)
    signer.sign_vote(CHAIN, PREVOTE, 2, 1, A)
    if restart:
        signer = Signer(key(0), persistence)
    with pytest.raises(SignerRefused):
        signer.sign_vote(CHAIN, PREVOTE, 2, 1, B)  # same slot, other bytes
    with pytest.raises(SignerRefused):
        signer.sign_vote(CHAIN, PREVOTE, 2, 1, None)
    with pytest.raises(SignerRefused):
        signer.sign_vote(CHAIN, PREVOTE, 2, 0, A)  # lower round
    with pytest.raises(SignerRefused):
        signer.sign_vote(CHAIN, PRECOMMIT, 1, 5, A)  # lower height
    with pytest.raises(SignerRefused):
        signer.sign_proposal(CHAIN, 2, 1, make_block(2), -1)  # lower step
    signer.sign_vote(CHAIN, PRECOMMIT, 2, 1, A)  # higher step is fine
    signer.sign_proposal(CHAIN, 2, 2, make_block(2), 1)
    assert signer.state is not None and signer.state.slot == (2, 2, Step.PROPOSE)


def test_lock_and_recent_votes_survive_restart() -> None:
    persistence = MemorySignerPersistence()
    signer = Signer(key(0), persistence)
    block = make_block(3)
    proof = [sign_vote(i, PREVOTE, 3, 0, block.block_hash) for i in (1, 2, 3)]
    signer.sign_vote(CHAIN, PRECOMMIT, 3, 0, block.block_hash, block=block, proof=proof)
    signer.sign_vote(CHAIN, PRECOMMIT, 3, 1, None)
    for r in range(2, 6):
        signer.sign_vote(CHAIN, PREVOTE, 3, r, B)
    restarted = Signer(key(0), persistence)
    assert restarted.lock(3) == Lock(0, block.block_hash, block, tuple(proof))
    assert restarted.lock(4) is None
    recent = restarted.recent_votes(3)
    assert len(recent) == MAX_RECENT_VOTES and recent[-1].round == 5
    for vote in recent:
        crypto.verify(vote.validator, vote.sign_bytes(CHAIN), vote.signature)
    assert restarted.last_round(3) == 5 and restarted.last_round(4) is None
    restarted.sign_vote(CHAIN, PRECOMMIT, 3, 6, A)  # no block given: the lock keeps the hash
    assert Signer(key(0), persistence).lock(3) == Lock(6, A)
    restarted.sign_vote(CHAIN, PREVOTE, 4, 0, None)
    assert restarted.lock(4) is None and len(restarted.recent_votes(4)) == 1


def test_state_round_trip_and_malformed() -> None:
    block = make_block(1)
    signer = Signer(key(1), MemorySignerPersistence())
    signer.sign_proposal(CHAIN, 1, 0, block, -1)
    proof = [sign_vote(2, PREVOTE, 1, 0, block.block_hash)]
    signer.sign_vote(CHAIN, PRECOMMIT, 1, 0, block.block_hash, block=block, proof=proof)
    state = signer.state
    assert state is not None
    assert SignerState.from_bytes(state.to_bytes()) == state
    assert state.lock is not None and state.lock.block == block
    message = vote_sign_bytes(CHAIN, 1, 0, PRECOMMIT, block.block_hash)
    assert state.sign_bytes == message
    for junk in (b"", b"\xc1", b"\x90", state.to_bytes()[:-1], b"\x81\xa1a\x01"):
        with pytest.raises(Malformed):
            SignerState.from_bytes(junk)


# --- each check of a saved state by its own error --------------------------------------------


def _lock_doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {"round": 0, "hash": A, "proof": []}
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "a lock is a map with a proof list"),
        (_lock_doc(proof=()), "a lock is a map with a proof list"),
        (_lock_doc(round=-1), "a lock round is a non-negative integer"),
        (_lock_doc(round=True), "a lock round is a non-negative integer"),
        (_lock_doc(round="0"), "a lock round is a non-negative integer"),
        (_lock_doc(hash="aa"), "a lock hash is bytes"),
        (_lock_doc(block=make_block(1).to_wire()), "the locked block does not match its hash"),
    ],
)
def test_lock_decoding_checks_by_name(doc: object, message: str) -> None:
    with pytest.raises(Malformed, match=message):
        Lock.from_wire(doc)


def test_a_lock_of_round_0_decodes() -> None:
    block = make_block(1)
    lock = Lock.from_wire(_lock_doc(hash=block.block_hash, block=block.to_wire()))
    assert lock == Lock(0, block.block_hash, block, ())


def _state_doc(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "height": 1,
        "round": 0,
        "step": 1,
        "sign_bytes": b"m",
        "signature": b"s",
        "recent_votes": [],
    }
    doc.update(changes)
    return codec.encode(doc)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"recent_votes": {}}, "recent_votes is a list"),
        ({"height": -1}, "height, round and step are non-negative integers"),
        ({"round": True}, "height, round and step are non-negative integers"),
        ({"step": "1"}, "height, round and step are non-negative integers"),
        ({"sign_bytes": "m"}, "sign_bytes and signature are bytes"),
        ({"signature": 5}, "sign_bytes and signature are bytes"),
        ({"step": 3}, "signer state step out of range"),
    ],
)
def test_signer_state_checks_by_name(changes: dict[str, object], message: str) -> None:
    with pytest.raises(Malformed, match=message):
        SignerState.from_bytes(_state_doc(**changes))


def test_signer_state_of_height_round_and_step_0_decodes() -> None:
    state = SignerState.from_bytes(_state_doc(height=0, round=0, step=0))
    assert state.slot == (0, 0, 0)


def test_memory_persistence_counts_saves() -> None:
    persistence = MemorySignerPersistence()
    assert persistence.saves == 0 and persistence.load() is None
    signer = Signer(key(0), persistence)
    signer.sign_vote(CHAIN, PREVOTE, 1, 0, A)
    assert persistence.saves == 1
    signer.sign_vote(CHAIN, PRECOMMIT, 1, 0, A)
    assert persistence.saves == 2


def test_signer_views_and_proposals() -> None:
    signer = Signer(key(3), MemorySignerPersistence())
    assert signer.public_key == key(3).public_key
    assert signer.recent_votes(1) == () and signer.lock(1) is None
    block = make_block(2)
    proposal = signer.sign_proposal(CHAIN, 2, 1, block, -1)
    assert (proposal.height, proposal.round, proposal.block, proposal.valid_round) == (
        2,
        1,
        block,
        -1,
    )
    assert proposal.proposer == key(3).public_key
    crypto.verify(proposal.proposer, proposal.sign_bytes(CHAIN), proposal.signature)
    vote = signer.sign_vote(CHAIN, PREVOTE, 2, 1, A)
    assert signer.recent_votes(2) == (vote,)
    assert signer.recent_votes(1) == () and signer.recent_votes(3) == ()
