"""The validator's signer guard on disk: it survives a restart, a failed or torn save, and a
damaged slot; and a corrupt file is an error, never a silent fresh start."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.errors import SignerRefused
from consensus.signer import Signer, SignerState
from ledger import crypto
from ledger.blocks import PRECOMMIT, PREVOTE, Block, vote_sign_bytes
from ledger.crypto import PrivateKey
from ledger.errors import Corruption
from node.server.signer_file import FileSignerPersistence
from tests.ledger.helpers import make_header

CHAIN = "test-chain"
BLOCK_A = crypto.sha256(b"block a")
BLOCK_B = crypto.sha256(b"block b")


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


_opened: list[FileSignerPersistence] = []


@pytest.fixture
def path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "signer_state.bin"
    while _opened:
        _opened.pop().close()


def restart(key: PrivateKey, path: Path) -> Signer:
    """A signer as a restarted node builds it: a new persistence over the same file."""
    persistence = FileSignerPersistence(path)
    _opened.append(persistence)
    return Signer(key, persistence)


def test_a_new_file_has_no_state(key: PrivateKey, path: Path) -> None:
    assert FileSignerPersistence(path).load() is None
    assert restart(key, path).state is None
    assert not path.exists()


def test_state_survives_a_new_signer_over_the_same_file(key: PrivateKey, path: Path) -> None:
    signer = restart(key, path)
    signer.sign_vote(CHAIN, PREVOTE, 5, 1, BLOCK_A)
    signer.sign_vote(CHAIN, PRECOMMIT, 5, 1, BLOCK_A)
    state = signer.state
    assert state is not None

    again = restart(key, path)
    assert again.state == state
    lock = again.lock(5)
    assert lock is not None and (lock.round, lock.block_hash) == (1, BLOCK_A)
    assert again.last_round(5) == 1
    assert [v.type for v in again.recent_votes(5)] == [PREVOTE, PRECOMMIT]
    loaded = FileSignerPersistence(path).load()
    assert isinstance(loaded, SignerState) and loaded == state


def test_after_restart_conflicts_are_refused_and_repeats_are_identical(
    key: PrivateKey, path: Path
) -> None:
    first = restart(key, path).sign_vote(CHAIN, PREVOTE, 7, 2, BLOCK_A)

    signer = restart(key, path)
    with pytest.raises(SignerRefused):
        signer.sign_vote(CHAIN, PREVOTE, 7, 2, BLOCK_B)
    with pytest.raises(SignerRefused):
        signer.sign_vote(CHAIN, PREVOTE, 7, 2, None)
    repeat = signer.sign_vote(CHAIN, PREVOTE, 7, 2, BLOCK_A)
    assert repeat == first and repeat.signature == first.signature
    # Anything below the last signed slot is refused too.
    with pytest.raises(SignerRefused):
        signer.sign_vote(CHAIN, PREVOTE, 7, 1, BLOCK_A)
    with pytest.raises(SignerRefused):
        signer.sign_vote(CHAIN, PRECOMMIT, 6, 9, BLOCK_A)
    block = Block(make_header(height=7), ())
    with pytest.raises(SignerRefused):
        signer.sign_proposal(CHAIN, 7, 2, block, -1)
    # And the refusals did not change what is on disk.
    assert restart(key, path).state == signer.state


def test_a_conflicting_proposal_after_restart_is_refused(key: PrivateKey, path: Path) -> None:
    block_a = Block(make_header(height=3, time=1), ())
    block_b = Block(make_header(height=3, time=2), ())
    first = restart(key, path).sign_proposal(CHAIN, 3, 0, block_a, -1)
    signer = restart(key, path)
    with pytest.raises(SignerRefused):
        signer.sign_proposal(CHAIN, 3, 0, block_b, -1)
    assert signer.sign_proposal(CHAIN, 3, 0, block_a, -1).signature == first.signature


def test_the_state_file_is_private(key: PrivateKey, path: Path) -> None:
    previous = os.umask(0)
    try:
        signer = restart(key, path)
        signer.sign_vote(CHAIN, PREVOTE, 1, 0, BLOCK_A)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        signer.sign_vote(CHAIN, PRECOMMIT, 1, 0, BLOCK_A)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(previous)


def _fail(failing: str, patch: pytest.MonkeyPatch) -> None:
    real_pwrite = os.pwrite

    def torn(fd: int, data: bytes, offset: int) -> int:
        # The length, the checksum and half of the new state reach the disk, then the crash.
        length = int.from_bytes(data[:4], "big")
        real_pwrite(fd, data[: 36 + length // 2], offset)
        raise OSError("simulated crash in the middle of the write")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(f"simulated {failing} failure")

    if failing == "torn-pwrite":
        patch.setattr(os, "pwrite", torn)
    else:
        patch.setattr(os, failing, boom)


@pytest.mark.parametrize("failing", ["torn-pwrite", "pwrite", "fdatasync"])
def test_a_failed_save_keeps_the_previous_state(
    key: PrivateKey, path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    signer = restart(key, path)
    signer.sign_vote(CHAIN, PREVOTE, 4, 0, BLOCK_A)
    signer.sign_vote(CHAIN, PRECOMMIT, 4, 0, BLOCK_A)
    before_state = signer.state

    with monkeypatch.context() as patch:
        _fail(failing, patch)
        with pytest.raises(OSError, match="simulated"):
            signer.sign_vote(CHAIN, PREVOTE, 4, 1, BLOCK_B)

    assert signer.state == before_state, "no signature may count as given if it was not saved"
    restarted = restart(key, path)
    assert restarted.state is not None and before_state is not None
    if failing == "fdatasync":
        # The bytes may or may not have reached the disk: either state is safe to resume from,
        # because the unsaved prevote was never released.
        if restarted.state != before_state:
            assert restarted.state.slot == (4, 1, 1)
            assert restarted.state.sign_bytes == vote_sign_bytes(CHAIN, 4, 1, PREVOTE, BLOCK_B)
    else:
        assert restarted.state == before_state
    # The guard still holds after the failure...
    with pytest.raises(SignerRefused):
        restarted.sign_vote(CHAIN, PRECOMMIT, 4, 0, None)
    # ...and signing the next slot works and is durable.
    vote = restarted.sign_vote(CHAIN, PREVOTE, 4, 1, BLOCK_B)
    again = restart(key, path)
    assert again.state == restarted.state
    assert again.sign_vote(CHAIN, PREVOTE, 4, 1, BLOCK_B) == vote


def test_saves_after_a_torn_write_keep_alternating_safely(
    key: PrivateKey, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = restart(key, path)
    for height in range(1, 4):
        signer.sign_vote(CHAIN, PREVOTE, height, 0, BLOCK_A)
    with monkeypatch.context() as patch:
        _fail("torn-pwrite", patch)
        with pytest.raises(OSError):
            signer.sign_vote(CHAIN, PREVOTE, 4, 0, BLOCK_A)
    for height in range(4, 8):
        signer.sign_vote(CHAIN, PREVOTE, height, 0, BLOCK_A)
        assert restart(key, path).state == signer.state


def test_one_damaged_slot_falls_back_to_the_other(key: PrivateKey, path: Path) -> None:
    signer = restart(key, path)
    signer.sign_vote(CHAIN, PREVOTE, 2, 0, BLOCK_A)
    older = signer.state
    signer.sign_vote(CHAIN, PRECOMMIT, 2, 0, BLOCK_A)
    newest = signer.state
    assert restart(key, path).state == newest
    # Flip one byte in the file holding the newest state (the one not holding `older`).
    for damaged in FileSignerPersistence(path).paths:
        original = damaged.read_bytes()
        trial = bytearray(original)
        trial[40] ^= 0xFF
        damaged.write_bytes(bytes(trial))
        state = FileSignerPersistence(path).load()
        assert state in (older, newest)
        if state == older:
            break
        damaged.write_bytes(original)
    else:
        raise AssertionError("damaging either file never exposed the older state")
    # Falling back means the newest (unreleased, by construction) slot may be signed again.
    assert restart(key, path).state == older


def test_a_corrupt_state_file_is_an_error_not_a_fresh_start(key: PrivateKey, path: Path) -> None:
    signer = restart(key, path)
    signer.sign_vote(CHAIN, PREVOTE, 9, 0, BLOCK_A)
    signer.sign_vote(CHAIN, PRECOMMIT, 9, 0, BLOCK_A)
    for stored in FileSignerPersistence(path).paths:
        stored.write_bytes(os.urandom(len(stored.read_bytes())))
    with pytest.raises(Corruption):
        FileSignerPersistence(path).load()
    with pytest.raises(Corruption):
        restart(key, path)
