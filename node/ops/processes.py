"""Local node processes: start one in the background, know whether it runs, stop it.

Nodes run as separate processes (`python -m node.server --home HOME`) in their own
sessions, so a Ctrl-C in the terminal reaches only the command that started them.

Who runs a home is never guessed from pid files or command lines. A node this process
started is known by its `Popen` handle (exact: `poll()` says whether it exited). Any node,
whoever started it, holds its home's lock while it runs (`node.homelock`), and the kernel
names the holder; the pid file is informative only. So `stop_nodes` stops exactly the
processes that run the homes — the ones it started, and the lock holders — and leaves no
orphan behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from node import homelock
from node.config import GENESIS_FILE, LOG_FILE, PID_FILE
from node.ops.homes import WILDCARD_HOSTS, ClusterError, load_settings

STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20

# The node processes this process started, by home: their handles say whether they exited.
_CHILDREN: dict[Path, subprocess.Popen[bytes]] = {}
# Handles of nodes that outlive this process; kept referenced so no finalizer runs for them.
_DETACHED: list[subprocess.Popen[bytes]] = []


@atexit.register
def _reap_children() -> None:
    """Collect the exit status of children that died; nodes left running (a detached
    cluster) go on in their own sessions, reparented, when this process exits."""
    for child in _CHILDREN.values():
        child.poll()
    _DETACHED.extend(_CHILDREN.values())
    _CHILDREN.clear()


def daemon_command(home: Path) -> list[str]:
    """The command line that runs the node daemon of `home` in the foreground."""
    return [sys.executable, "-m", "node.server", "--home", str(home)]


def child(home: str | Path) -> subprocess.Popen[bytes] | None:
    """The handle of the node this process started on `home`, if any."""
    return _CHILDREN.get(Path(home).resolve())


def child_exited(home: str | Path) -> int | None:
    """The exit status of the node this process started on `home`, None if it still runs
    (or this process did not start one)."""
    handle = child(home)
    return None if handle is None else handle.poll()


# How long a child of ours that neither holds its home's lock nor has exited may take to do
# one or the other (it is starting, or it is dying: its lock goes before its exit status).
SETTLE_TIMEOUT_S = 15.0


def node_pid(home: str | Path) -> int | None:
    """The pid of the process running `home`: the lock holder, else our child if alive."""
    holder = homelock.holder(home)
    if holder is not None:
        return holder
    handle = child(home)
    if handle is not None and _settled_alive(handle, Path(home).resolve()):
        return handle.pid
    return None


def _settled_alive(handle: subprocess.Popen[bytes], home: Path) -> bool:
    """Whether our child, which does not hold its home's lock, is alive: wait until it takes
    the lock (starting) or its exit status arrives (dying: a killed process drops its locks
    before it can be reaped, so "no lock, not reaped" is briefly also a dead node)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while handle.poll() is None:
        if homelock.holder(home) is not None or time.monotonic() >= deadline:
            return True
        time.sleep(0.02)
    return False


def node_running(home: str | Path) -> bool:
    """Whether a node runs on `home` (it holds the home's lock, or it is our live child)."""
    return node_pid(home) is not None


def start_node(home: str | Path) -> int:
    """Start the node daemon of `home` in the background; return its pid.

    Output goes to `HOME/node.log` (appended). A node already running there is left alone
    and its pid returned.
    """
    home = Path(home).resolve()
    settings = load_settings(home)
    if not settings.genesis_path.exists():
        raise ClusterError(f"{home} has no {GENESIS_FILE}")
    existing = node_pid(home)
    if existing is not None:
        return existing
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with open(settings.log_path, "ab") as log:
        log.write(f"--- {stamp} starting {settings.name} on {settings.url}\n".encode())
        log.flush()
        process = subprocess.Popen(
            daemon_command(home),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[home] = process
    temporary = settings.pid_path.with_suffix(".pid.tmp")
    temporary.write_text(f"{process.pid}\n")
    temporary.replace(settings.pid_path)
    return process.pid


def reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is a child of ours that has exited."""
    for handle in _CHILDREN.values():
        if handle.pid == pid:
            handle.poll()
            return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _running_pids(home: Path) -> set[int]:
    """Every process that runs `home`: our live child and the lock holder."""
    pids: set[int] = set()
    handle = _CHILDREN.get(home)
    if handle is not None and handle.poll() is None:
        pids.add(handle.pid)
    holder = homelock.holder(home)
    if holder is not None:
        pids.add(holder)
    return pids


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_nodes(homes: Iterable[str | Path], timeout: float = STOP_TIMEOUT_S) -> list[Path]:
    """SIGTERM every process running one of `homes`, SIGKILL what is left after `timeout`.

    Pid files are removed once nothing runs the home; data stays. Returns the homes where
    something was running.
    """
    resolved = [Path(h).resolve() for h in homes]
    running = {home: pids for home in resolved if (pids := _running_pids(home))}
    for pids in running.values():
        _signal(pids, signal.SIGTERM)

    def alive() -> dict[Path, set[int]]:
        return {home: pids for home in running if (pids := _running_pids(home))}

    deadline = time.monotonic() + timeout
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    deadline = time.monotonic() + 5.0
    while (left := alive()) and time.monotonic() < deadline:
        for pids in left.values():
            _signal(pids, signal.SIGKILL)
        time.sleep(0.05)
    for home in resolved:
        handle = _CHILDREN.get(home)
        if handle is not None and handle.poll() is not None:
            del _CHILDREN[home]
        if not _running_pids(home):
            (home / PID_FILE).unlink(missing_ok=True)
    return list(running)


def log_tail(home: Path) -> str:
    try:
        lines = (home / LOG_FILE).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def port_in_use(host: str, port: int) -> bool:
    """Whether something on this machine already listens on (host, port)."""
    bind_host = "0.0.0.0" if host in WILDCARD_HOSTS else host
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError:
            return True
    return False
