"""Node homes and local clusters on disk: create them, start and stop node processes.

A cluster directory holds `genesis.json`, `registrar.pem` and one home `node-I/` per
validator (key, config, genesis copy, data, `node.pid`, `node.log`). Nodes run as separate
processes (`python -m node.cli node start --home HOME`) in their own sessions, so a
Ctrl-C in the terminal reaches only the command that started them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from ledger.blocks import MAX_VALIDATORS, Validator, ValidatorSet
from ledger.crypto import PrivateKey
from ledger.errors import Malformed
from ledger.genesis import OPEN, PERMISSIONED, Genesis
from node.client import ClientError, NodeClient
from node.config import CONFIG_FILE, GENESIS_FILE, KEY_FILE, LOG_FILE, PID_FILE, NodeSettings

REGISTRAR_FILE = "registrar.pem"
NODE_PREFIX = "node-"
DEFAULT_NODES = 4
DEFAULT_BASE_PORT = 8800
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.25
LOG_TAIL_LINES = 20
WILDCARD_HOSTS = ("0.0.0.0", "::", "")

Echo = Callable[[str], None]


class ClusterError(Exception):
    """A cluster or node home that cannot be created, started or reached."""


class ClusterExists(ClusterError):
    """The directory already holds keys or a genesis that would be overwritten."""


@dataclass(frozen=True)
class ClusterNode:
    """One validator of a local cluster: its home, the URL to reach it, its pid if running."""

    name: str
    home: Path
    url: str
    pid: int | None


@dataclass(frozen=True)
class ClusterInfo:
    """What `cluster_up` did: the chain, its nodes, whether it was created, who it started."""

    dir: Path
    genesis: Genesis
    nodes: tuple[ClusterNode, ...]
    created: bool
    started: tuple[str, ...]


def node_home(cluster_dir: str | Path, index: int) -> Path:
    return Path(cluster_dir) / f"{NODE_PREFIX}{index}"


def local_url(settings: NodeSettings) -> str:
    """The URL this machine uses to reach a node (a wildcard bind is reached via loopback)."""
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _advertised(template: str, index: int, port: int) -> str:
    try:
        url = template.format(i=index, port=port)
    except (KeyError, IndexError, ValueError) as exc:
        raise ClusterError(
            f"bad --advertise template {template!r}: use {{i}} for the node index ({exc})"
        ) from exc
    return url.rstrip("/")


def _existing_cluster_files(cluster_dir: Path) -> list[Path]:
    found = [p for p in (cluster_dir / GENESIS_FILE, cluster_dir / REGISTRAR_FILE) if p.exists()]
    if cluster_dir.is_dir():
        for home in sorted(cluster_dir.glob(f"{NODE_PREFIX}*")):
            found += [p for p in (home / KEY_FILE, home / CONFIG_FILE) if p.exists()]
    return found


def init_cluster(
    cluster_dir: str | Path,
    nodes: int,
    base_port: int = DEFAULT_BASE_PORT,
    open_admission: bool = False,
    host: str | None = None,
    advertise: str | None = None,
) -> Genesis:
    """Write a new chain's genesis, registrar key and one validator home per node.

    Node I listens on `host` (default 127.0.0.1) port `base_port + I` and peers with every
    other validator. With `advertise` (a URL template such as "http://node-{i}:8800"), the
    validators' URLs come from the template and every node listens on `base_port` on all
    interfaces (default host 0.0.0.0), as containers on their own hosts do. Refuses to
    overwrite an existing cluster's keys or genesis.
    """
    cluster_dir = Path(cluster_dir).resolve()
    if not 1 <= nodes <= MAX_VALIDATORS:
        raise ClusterError(f"a cluster has 1..{MAX_VALIDATORS} nodes, not {nodes}")
    last_port = base_port if advertise else base_port + nodes - 1
    if base_port < 1 or last_port > 65535:
        raise ClusterError(f"ports {base_port}..{last_port} are outside 1..65535")
    existing = _existing_cluster_files(cluster_dir)
    if existing:
        raise ClusterExists(
            f"{cluster_dir} already holds a cluster ({existing[0].name} exists); "
            "refusing to overwrite its keys: choose another directory or remove it"
        )
    if host is None:
        host = "0.0.0.0" if advertise else "127.0.0.1"
    ports = [base_port if advertise else base_port + i for i in range(nodes)]
    if advertise:
        urls = [_advertised(advertise, i, ports[i]) for i in range(nodes)]
    else:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
    if len(set(urls)) != nodes:
        raise ClusterError("every node needs its own URL: put {i} in the --advertise template")

    cluster_dir.mkdir(parents=True, exist_ok=True)
    registrar = PrivateKey.generate()
    registrar.save(cluster_dir / REGISTRAR_FILE)
    keys = [PrivateKey.generate() for _ in range(nodes)]
    validators = ValidatorSet(
        tuple(
            Validator(name=f"{NODE_PREFIX}{i}", public_key=key.public_key, power=1, url=urls[i])
            for i, key in enumerate(keys)
        )
    )
    genesis = Genesis(
        chain_id=f"provledger-{secrets.token_hex(4)}",
        genesis_time=_now_ms(),
        validators=validators,
        registrars=(registrar.public_key,),
        admission=OPEN if open_admission else PERMISSIONED,
    )
    for i, key in enumerate(keys):
        home = node_home(cluster_dir, i)
        home.mkdir(parents=True, exist_ok=True)
        key.save(home / KEY_FILE)
        settings = NodeSettings(
            home=home,
            name=f"{NODE_PREFIX}{i}",
            host=host,
            port=ports[i],
            peers=tuple(url for j, url in enumerate(urls) if j != i),
        )
        settings.save()
        genesis.save(settings.genesis_path)
    genesis.save(cluster_dir / GENESIS_FILE)
    return genesis


def init_full_node(
    home: str | Path,
    genesis_path: str | Path,
    peers: Sequence[str],
    port: int = DEFAULT_BASE_PORT,
    host: str = "127.0.0.1",
    name: str | None = None,
) -> NodeSettings:
    """Write the home of a full node: it follows the chain from `peers` but does not vote."""
    home = Path(home).resolve()
    if not peers:
        raise ClusterError("a full node needs at least one peer URL to follow")
    if not 1 <= port <= 65535:
        raise ClusterError(f"port {port} is outside 1..65535")
    try:
        genesis = Genesis.load(genesis_path)
    except Malformed as exc:
        raise ClusterError(str(exc)) from exc
    existing = [p for p in (home / CONFIG_FILE, home / GENESIS_FILE, home / KEY_FILE) if p.exists()]
    if existing:
        raise ClusterExists(f"{home} is already a node home ({existing[0].name} exists)")
    settings = NodeSettings(
        home=home,
        name=name or home.name,
        host=host,
        port=port,
        peers=tuple(peer.rstrip("/") for peer in peers),
    )
    settings.save()
    genesis.save(settings.genesis_path)
    return settings


def _load_settings(home: Path) -> NodeSettings:
    try:
        return NodeSettings.load(home)
    except Malformed as exc:
        raise ClusterError(str(exc)) from exc


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
    settings = _load_settings(home)
    if not settings.genesis_path.exists():
        raise ClusterError(f"{home} has no {GENESIS_FILE}")
    existing = node_pid(home)
    if existing is not None and _runs_home(existing, home):
        return existing
    command = [sys.executable, "-m", "node.cli", "node", "start", "--home", str(home)]
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
    return process.pid


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_nodes(homes: Iterable[str | Path], timeout: float = STOP_TIMEOUT_S) -> list[Path]:
    """SIGTERM every running node among `homes`, SIGKILL what is left after `timeout`.

    Pid files are removed; data stays. Returns the homes whose node was running.
    """
    homes = [Path(h).resolve() for h in homes]
    running: dict[Path, int] = {}
    for home in homes:
        pid = node_pid(home)
        if pid is not None and _runs_home(pid, home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            running[home] = pid

    def alive() -> dict[Path, int]:
        for pid in running.values():
            _reap(pid)
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
    for home in homes:
        (home / PID_FILE).unlink(missing_ok=True)
    return list(running)


def cluster_homes(cluster_dir: str | Path) -> list[Path]:
    """The node homes of a cluster directory (`node-I/` with a config), in index order."""
    cluster_dir = Path(cluster_dir).resolve()
    homes = []
    for path in cluster_dir.glob(f"{NODE_PREFIX}*"):
        suffix = path.name.removeprefix(NODE_PREFIX)
        if suffix.isdigit() and (path / CONFIG_FILE).exists():
            homes.append((int(suffix), path))
    return [path for _, path in sorted(homes)]


def _log_tail(home: Path) -> str:
    try:
        lines = (home / LOG_FILE).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _height(node: ClusterNode, chain_id: str | None) -> int | None:
    """The node's committed height, None if it does not answer yet.

    Raises ClusterError if something else answers at its URL (another chain or node).
    """
    try:
        with NodeClient(node.url, timeout=2.0) as client:
            status = client.status()
    except ClientError:
        return None
    if chain_id is not None and status.get("chain_id") != chain_id:
        raise ClusterError(
            f"{node.url} serves chain {status.get('chain_id')!r}, not {chain_id!r}: "
            f"is another node using the port of {node.name}?"
        )
    height = status.get("height")
    return height if isinstance(height, int) else None


def wait_until_committed(
    nodes: Sequence[ClusterNode], timeout: float, chain_id: str | None = None
) -> None:
    """Poll every node's /v1/status until each has committed block 1; raise on timeout.

    With `chain_id`, a node answering for another chain is an error.
    """
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while True:
        for node in pending:
            if not node_running(node.home):
                log = node.home / LOG_FILE
                raise ClusterError(f"{node.name} exited; the end of {log}:\n{_log_tail(node.home)}")
        pending = [n for n in pending if (_height(n, chain_id) or 0) < 1]
        if not pending:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(n.name for n in pending)
            last = pending[0]
            raise ClusterError(
                f"no committed block from {names} after {timeout:.0f} s; "
                f"the end of {last.home / LOG_FILE}:\n{_log_tail(last.home)}"
            )
        time.sleep(POLL_INTERVAL_S)


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


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM interrupts like Ctrl-C (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cluster_nodes(cluster_dir: Path, genesis: Genesis) -> list[tuple[str, Path, NodeSettings]]:
    nodes = []
    for i in range(len(genesis.validators.validators)):
        home = node_home(cluster_dir, i)
        if not (home / CONFIG_FILE).exists():
            raise ClusterError(f"{home} is missing: the cluster directory is incomplete")
        settings = _load_settings(home)
        nodes.append((settings.name, home, settings))
    return nodes


def cluster_up(
    cluster_dir: str | Path,
    nodes: int | None = None,
    base_port: int | None = None,
    open_admission: bool | None = None,
    detach: bool = False,
    wait_timeout: float = 60.0,
    echo: Echo = print,
) -> ClusterInfo:
    """Create the cluster if `DIR/genesis.json` is missing, start every node not running.

    With `detach`, return once every node has committed block 1. Otherwise stay in the
    foreground until Ctrl-C (or SIGTERM), then stop the nodes this call started.
    """
    cluster_dir = Path(cluster_dir).resolve()
    genesis_path = cluster_dir / GENESIS_FILE
    created = not genesis_path.exists()
    if created:
        genesis = init_cluster(
            cluster_dir,
            DEFAULT_NODES if nodes is None else nodes,
            DEFAULT_BASE_PORT if base_port is None else base_port,
            bool(open_admission),
        )
        echo(f"created chain {genesis.chain_id} in {cluster_dir}")
    else:
        try:
            genesis = Genesis.load(genesis_path)
        except Malformed as exc:
            raise ClusterError(str(exc)) from exc
        count = len(genesis.validators.validators)
        echo(f"reusing chain {genesis.chain_id} in {cluster_dir} ({count} nodes)")
        if nodes is not None and nodes != count:
            echo(f"note: --nodes {nodes} ignored: the existing cluster has {count} nodes")
        if base_port is not None:
            echo("note: --base-port ignored: the existing nodes keep their configured ports")
        if open_admission is not None and open_admission != genesis.is_open:
            echo(f"note: --open ignored: the existing chain is {genesis.admission}")

    started: list[str] = []
    members: list[ClusterNode] = []
    for name, home, settings in _cluster_nodes(cluster_dir, genesis):
        url = local_url(settings)
        if node_running(home):
            pid = node_pid(home)
            echo(f"{name} already running at {url} (pid {pid})")
        else:
            if port_in_use(settings.host, settings.port):
                stop_nodes([m.home for m in members if m.name in started])
                raise ClusterError(
                    f"port {settings.port} of {name} is already in use on {settings.host}"
                )
            pid = start_node(home)
            started.append(name)
            echo(f"started {name} at {url} (pid {pid}, log {home / LOG_FILE})")
        members.append(ClusterNode(name, home, url, pid))
    info = ClusterInfo(cluster_dir, genesis, tuple(members), created, tuple(started))
    ours = [m.home for m in members if m.name in started]

    with _sigterm_as_interrupt():
        try:
            wait_until_committed(members, wait_timeout, genesis.chain_id)
        except ClusterError:
            stop_nodes(ours)
            raise
        except KeyboardInterrupt:
            echo("interrupted: stopping the nodes started here")
            stop_nodes(ours)
            raise
        echo(f"cluster ready: every node has committed a block (chain {genesis.chain_id})")
        if detach:
            return info
        echo("running in the foreground; press Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            _watch(members, echo)
        echo("stopping the nodes started here")
        stop_nodes(ours)
        others = [m.name for m in members if m.name not in started and node_running(m.home)]
        if others:
            echo(f"still running (started elsewhere): {', '.join(others)}")
    return info


def _watch(members: Sequence[ClusterNode], echo: Echo) -> None:
    """Sleep until interrupted, reporting nodes that exit; return if all of them did."""
    reported: set[str] = set()
    while True:
        time.sleep(0.5)
        for member in members:
            if member.pid is not None:
                _reap(member.pid)
            if member.name not in reported and not node_running(member.home):
                reported.add(member.name)
                echo(f"warning: {member.name} exited; see {member.home / LOG_FILE}")
        if len(reported) == len(members):
            echo("every node has exited")
            return


def cluster_down(cluster_dir: str | Path, timeout: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop every running node of the cluster; data and keys stay. Returns the names stopped."""
    cluster_dir = Path(cluster_dir).resolve()
    if not (cluster_dir / GENESIS_FILE).exists():
        raise ClusterError(f"{cluster_dir} holds no cluster (no {GENESIS_FILE})")
    stopped = stop_nodes(cluster_homes(cluster_dir), timeout)
    return [home.name for home in stopped]
