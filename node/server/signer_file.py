"""Durable signer state: the consensus signer's last signature, on disk before it leaves.

Two files are written alternately (`signer_state.bin` and `signer_state.bin.alt`), each
holding one record `[length:4][sha256:32][state]`; every save rewrites one of them in place
and `fdatasync`s it. A crash mid-write can tear only the file being written; the other still
holds the previous state, and the signature being recorded has not been sent yet (the signer
sends only after `save` returns), so falling back to it is safe. Loading picks the valid
record with the later (height, round, step). An optional `on_fsync` hook (the node's metrics)
gets the duration of each fdatasync in seconds.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from consensus.signer import SignerState
from ledger.errors import Corruption, LedgerError

_HEADER = 4 + 32


def encode_record(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + hashlib.sha256(payload).digest() + payload


def decode_record(raw: bytes) -> SignerState | None:
    """The state in one file, or None if the file is empty, torn or damaged."""
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
    """`SignerPersistence` over two alternating files with a single fdatasync per save."""

    def __init__(self, path: Path) -> None:
        self.paths = (path, path.with_name(path.name + ".alt"))
        self._fds: list[int | None] = [None, None]
        self._next = 0
        self.on_fsync: Callable[[float], None] | None = None

    @property
    def path(self) -> Path:
        return self.paths[0]

    def _fd(self, index: int) -> int:
        fd = self._fds[index]
        if fd is None:
            created = not self.paths[index].exists()
            fd = os.open(self.paths[index], os.O_RDWR | os.O_CREAT, 0o600)
            if created:
                os.fsync(fd)
                dir_fd = os.open(self.paths[index].parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            self._fds[index] = fd
        return fd

    def load(self) -> SignerState | None:
        found = []
        damaged = False
        for index, path in enumerate(self.paths):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            state = decode_record(raw)
            if state is None:
                damaged = damaged or bool(raw)
                continue
            found.append((state.slot, index, state))
        if not found:
            if damaged:
                raise Corruption(f"signer state {self.path} is unreadable in both files")
            return None
        _, newest, state = max(found)
        self._next = 1 - newest
        return state

    def save(self, state: SignerState) -> None:
        record = encode_record(state.to_bytes())
        fd = self._fd(self._next)
        os.pwrite(fd, record, 0)
        os.ftruncate(fd, len(record))
        started = time.perf_counter()
        os.fdatasync(fd)
        if self.on_fsync is not None:
            self.on_fsync(time.perf_counter() - started)
        self._next = 1 - self._next

    def close(self) -> None:
        for index, fd in enumerate(self._fds):
            if fd is not None:
                os.close(fd)
                self._fds[index] = None
