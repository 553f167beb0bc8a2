"""Local node processes: start one in the background, find it, stop it.

Nodes run as separate processes (`python -m node.server --home HOME`) in their own
sessions, so a Ctrl-C in the terminal reaches only the command that started them.
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

from node.config import GENESIS_FILE, LOG_FILE, PID_FILE
from node.ops.homes import WILDCARD_HOSTS, ClusterError, load_settings

STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20

# The node processes this process started, by pid: their handles reap them when they exit.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _reap_children() -> None:
    """Collect the exit status of children that died; nodes left running (a detached
    cluster) go on in their own sessions, reparented, when this process exits."""
    for pid in list(_CHILDREN):
        reap(pid)
    _DETACHED.extend(_CHILDREN.values())
    _CHILDREN.clear()


# Handles of nodes that outlive this process; kept referenced so no finalizer runs for them.
_DETACHED: list[subprocess.Popen[bytes]] = []


def daemon_command(home: Path) -> list[str]:
    """The command line that runs the node daemon of `home` in the foreground."""
    return [sys.executable, "-m", "node.server", "--home", str(home)]


def node_pid(home: str | Path) -> int | None:
    """The pid recorded in `HOME/node.pid`, or None."""
    try:
        text = (Path(home) / PID_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _command_line(pid: int) -> list[bytes]:
    """The arguments of a live process; empty for a zombie or a process that is gone.

    Right after exec the kernel may briefly show an empty command line, so an empty one
    from a process that is still running is read again for up to half a second.
    """
    proc = Path(f"/proc/{pid}")
    for _ in range(50):
        try:
            args = [a for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return []
        if args or state in ("Z", "X"):
            return args
        time.sleep(0.01)
    return []


def _runs_home(pid: int, home: Path) -> bool:
    """Whether process `pid` exists and its command line names `home` (survives pid reuse)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not Path("/proc/self").exists():
        return True
    args = _command_line(pid)
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    for raw in args:
        arg = os.fsdecode(raw).removeprefix("--home=")
        if arg == str(home):
            return True
        with contextlib.suppress(OSError, ValueError):
            if (cwd / arg).resolve() == home:
                return True
    return False


def node_running(home: str | Path) -> bool:
    """Whether the node whose pid `HOME/node.pid` records is alive and serving this home."""
    home = Path(home).resolve()
    pid = node_pid(home)
    return pid is not None and _runs_home(pid, home)


def start_node(home: str | Path) -> int:
    """Start `provledger node start --home HOME` in the background; return its pid.

    Output goes to `HOME/node.log` (appended). A node already running there is left alone
    and its pid returned.
    """
    home = Path(home).resolve()
    settings = load_settings(home)
    if not settings.genesis_path.exists():
        raise ClusterError(f"{home} has no {GENESIS_FILE}")
    existing = node_pid(home)
    if existing is not None and _runs_home(existing, home):
        return existing
    command = daemon_command(home)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with open(settings.log_path, "ab") as log:
        log.write(f"--- {stamp} starting {settings.name} on {settings.url}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_path = settings.pid_path
    temporary = pid_path.with_suffix(".pid.tmp")
    temporary.write_text(f"{process.pid}\n")
    temporary.replace(pid_path)
    _CHILDREN[process.pid] = process
    return process.pid


def reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is a child of ours that has exited."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_nodes(homes: Iterable[str | Path], timeout: float = STOP_TIMEOUT_S) -> list[Path]:
    """SIGTERM every running node among `homes`, SIGKILL what is left after `timeout`.

    Pid files are removed; data stays. Returns the homes whose node was running.
    """
    resolved = [Path(h).resolve() for h in homes]
    running: dict[Path, int] = {}
    for home in resolved:
        pid = node_pid(home)
        if pid is not None and _runs_home(pid, home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            running[home] = pid

    def alive() -> dict[Path, int]:
        for pid in running.values():
            reap(pid)
        return {h: p for h, p in running.items() if _runs_home(p, h)}

    deadline = time.monotonic() + timeout
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = alive()
    for pid in leftovers.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while leftovers and alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    for home in resolved:
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
