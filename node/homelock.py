"""Which process runs a node home: a POSIX record lock on `HOME/node.lock`.

The daemon takes an exclusive lock on the file when it starts and holds it until it exits;
the kernel drops it when the process dies, however it dies. So "a node runs on this home"
is exactly "someone holds the lock", and `holder` names that process (F_GETLK) — no pid
file that may be stale or reused, no reading of command lines. A second daemon on the same
home (two writers of one store and signer state) is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "node.lock"
# struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (native alignment).
_FLOCK = "@hhqqi"


class HomeLocked(Exception):
    """Another process already runs a node on this home."""


def lock_path(home: str | Path) -> Path:
    return Path(home) / LOCK_FILE


def acquire(home: str | Path) -> int:
    """Lock the home for this process; return the descriptor (keep it open, never close it
    while running: closing any descriptor of the file would drop the lock)."""
    fd = os.open(lock_path(home), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        pid = holder(home)
        raise HomeLocked(f"a node (pid {pid}) already runs on {home}") from exc
    return fd


@contextlib.contextmanager
def held(home: str | Path) -> Iterator[None]:
    """Hold the home's lock (no node may run on it) for the duration of a `with`: the
    offline tools (restore, migrate, snapshot install) write a stopped home's store."""
    fd = acquire(home)
    try:
        yield
    finally:
        os.close(fd)


def holder(home: str | Path) -> int | None:
    """The pid of the process that holds the home's lock, or None if no node runs there."""
    try:
        fd = os.open(lock_path(home), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    finally:
        os.close(fd)
    kind, _, _, _, pid = struct.unpack(_FLOCK, answer)
    return None if kind == fcntl.F_UNLCK else int(pid)


__all__ = ["LOCK_FILE", "HomeLocked", "acquire", "held", "holder", "lock_path"]
