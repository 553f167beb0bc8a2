"""Durable signer state: the consensus signer's last signature, fsync'd before it leaves."""

from __future__ import annotations

import os
from pathlib import Path

from consensus.signer import SignerState


class FileSignerPersistence:
    """Keeps `SignerState` in one file, replaced atomically (write, fsync, rename, fsync dir)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> SignerState | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return SignerState.from_bytes(data)

    def save(self, state: SignerState) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, state.to_bytes())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
