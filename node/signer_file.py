"""Durable signer state: the consensus signer's last signature, on disk before it leaves.

The file holds two fixed-size slots written alternately, each `[length:4][sha256:32][state]`,
and every save is one `pwrite` plus `fdatasync`. A crash mid-write can tear only the slot
being written; the other slot still holds the previous state, and the signature being
recorded has not been sent yet (the signer sends only after `save` returns), so falling back
to it is safe. Loading picks the valid slot with the later (height, round, step).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from consensus.signer import SignerState
from ledger.errors import Corruption, LedgerError

SLOT_SIZE = 4096
_HEADER = 4 + 32


def _encode_slot(payload: bytes) -> bytes:
    assert len(payload) + _HEADER <= SLOT_SIZE, "signer state outgrew its slot"
    record = len(payload).to_bytes(4, "big") + hashlib.sha256(payload).digest() + payload
    return record.ljust(SLOT_SIZE, b"\0")


def _decode_slot(raw: bytes) -> SignerState | None:
    if len(raw) < _HEADER:
        return None
    length = int.from_bytes(raw[:4], "big")
    payload = raw[_HEADER : _HEADER + length]
    if length == 0 or len(payload) != length or hashlib.sha256(payload).digest() != raw[4:_HEADER]:
        return None
    try:
        return SignerState.from_bytes(payload)
    except LedgerError:
        return None


class FileSignerPersistence:
    """`SignerPersistence` over one two-slot file with a single fdatasync per save."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._next_slot = 0

    def _open(self) -> int:
        if self._fd is None:
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            if created:
                os.ftruncate(self._fd, 2 * SLOT_SIZE)
                os.fsync(self._fd)
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        return self._fd

    def load(self) -> SignerState | None:
        if not self.path.exists():
            return None
        data = self.path.read_bytes()
        slots = [_decode_slot(data[i * SLOT_SIZE : (i + 1) * SLOT_SIZE]) for i in (0, 1)]
        valid = [(state.slot, i, state) for i, state in enumerate(slots) if state is not None]
        if not valid:
            if any(data):
                raise Corruption(f"signer state {self.path} is unreadable in both slots")
            return None
        _, newest, state = max(valid)
        self._next_slot = 1 - newest
        return state

    def save(self, state: SignerState) -> None:
        fd = self._open()
        os.pwrite(fd, _encode_slot(state.to_bytes()), self._next_slot * SLOT_SIZE)
        os.fdatasync(fd)
        self._next_slot = 1 - self._next_slot

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
