"""Local clusters: `cluster_up` creates a cluster if needed and starts its nodes until each
has committed a block; `cluster_down` stops them all. A TLS cluster's nodes are polled over
HTTPS, trusting the cluster's CA (`ca.pem`).
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ledger.errors import Malformed
from ledger.genesis import Genesis
from node.client import ClientError, NodeClient
from node.config import CONFIG_FILE, GENESIS_FILE, LOG_FILE, NodeSettings
from node.ops.homes import (
    DEFAULT_BASE_PORT,
    DEFAULT_NODES,
    ClusterError,
    cluster_ca,
    cluster_homes,
    init_cluster,
    load_settings,
    local_url,
    node_home,
)
from node.ops.processes import (
    STOP_TIMEOUT_S,
    child,
    child_exited,
    log_tail,
    node_pid,
    node_running,
    port_in_use,
    reap,
    start_node,
    stop_nodes,
)

POLL_INTERVAL_S = 0.25

Echo = Callable[[str], None]


@dataclass(frozen=True)
class ClusterNode:
    """One validator of a local cluster: its home, the URL to reach it, its pid if running,
    and the CA bundle its certificate chains to (TLS clusters)."""

    name: str
    home: Path
    url: str
    pid: int | None
    ca: Path | None = None


@dataclass(frozen=True)
class ClusterInfo:
    """What `cluster_up` did: the chain, its nodes, whether it was created, who it started."""

    dir: Path
    genesis: Genesis
    nodes: tuple[ClusterNode, ...]
    created: bool
    started: tuple[str, ...]


def _height(node: ClusterNode, chain_id: str | None) -> int | None:
    """The node's committed height, None if it does not answer yet.

    Raises ClusterError if something else answers at its URL (another chain or node).
    """
    try:
        with NodeClient(node.url, timeout=2.0, ca=node.ca) as client:
            status = client.status()
    except ClientError as exc:
        if exc.title in ("untrusted certificate", "bad CA bundle"):
            raise ClusterError(f"{node.name} at {node.url}: {exc.describe()}") from exc
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
            if _exited(node.home):
                log = node.home / LOG_FILE
                status = child_exited(node.home)
                how = "" if status is None else f" (exit status {status})"
                raise ClusterError(
                    f"{node.name} exited{how}; the end of {log}:\n{log_tail(node.home)}"
                )
        pending = [n for n in pending if (_height(n, chain_id) or 0) < 1]
        if not pending:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(n.name for n in pending)
            last = pending[0]
            raise ClusterError(
                f"no committed block from {names} after {timeout:.0f} s; "
                f"the end of {last.home / LOG_FILE}:\n{log_tail(last.home)}"
            )
        time.sleep(POLL_INTERVAL_S)


def _exited(home: Path) -> bool:
    """Whether the node of `home` has exited: by its handle if this process started it
    (exact, even before it takes its home's lock), else by its home's lock."""
    if child(home) is not None:
        return child_exited(home) is not None
    return not node_running(home)


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
        settings = load_settings(home)
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
    tls: bool | None = None,
) -> ClusterInfo:
    """Create the cluster if `DIR/genesis.json` is missing, start every node not running.

    A new cluster serves TLS with `tls` (its own CA, `node.ops.tls`). With `detach`, return
    once every node has committed block 1. Otherwise stay in the foreground until Ctrl-C (or
    SIGTERM), then stop the nodes this call started.
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
            tls=bool(tls),
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
        if tls is not None and tls != (cluster_ca(cluster_dir) is not None):
            kind = "TLS" if cluster_ca(cluster_dir) is not None else "plain HTTP"
            echo(f"note: --tls ignored: the existing cluster is {kind}")
    ca = cluster_ca(cluster_dir)

    started: list[str] = []
    started_homes: list[Path] = []
    members: list[ClusterNode] = []
    try:
        for name, home, settings in _cluster_nodes(cluster_dir, genesis):
            url = local_url(settings)
            if node_running(home):
                pid = node_pid(home)
                echo(f"{name} already running at {url} (pid {pid})")
            else:
                _check_ports(name, settings)
                pid = start_node(home)
                started.append(name)
                started_homes.append(home)
                echo(f"started {name} at {url} (pid {pid}, log {home / LOG_FILE})")
            members.append(ClusterNode(name, home, url, pid, ca if settings.tls else None))
    except BaseException:
        # Whatever went wrong (a busy port, Ctrl-C), nothing started here is left running.
        stop_nodes(started_homes)
        raise
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
        fingerprint = hashlib.sha256(genesis_path.read_bytes()).hexdigest()
        echo(f"genesis fingerprint {fingerprint} (SHA-256 of {genesis_path})")
        echo(f"explorer: {members[0].url}/explorer?genesis={fingerprint}")
        if ca is not None:
            echo(f"TLS: clients trust the cluster CA {ca} (--ca {ca}, or SSL_CERT_FILE)")
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


def _check_ports(name: str, settings: NodeSettings) -> None:
    """Both ports of a node must be free before it starts."""
    p2p_host, p2p_port = settings.p2p_address
    for host, port in ((settings.host, settings.port), (p2p_host, p2p_port)):
        if port_in_use(host, port):
            raise ClusterError(f"port {port} of {name} is already in use on {host}")


def _watch(members: Sequence[ClusterNode], echo: Echo) -> None:
    """Sleep until interrupted, reporting nodes that exit; return if all of them did."""
    reported: set[str] = set()
    while True:
        time.sleep(0.5)
        for member in members:
            if member.pid is not None:
                reap(member.pid)
            if member.name not in reported and _exited(member.home):
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
