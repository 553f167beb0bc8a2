"""A local cluster of real node processes on loopback, for the multi-process tests."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ledger import crypto, events
from ledger.genesis import Genesis
from node.ops.homes import allow_peer, init_cluster, init_full_node, node_home
from node.ops.processes import port_in_use, start_node, stop_nodes

WAIT_S = 60.0


PORT_FLOOR = 10_000
"""free_port_block's blocks start at or above this port."""


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux's default when
    it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


def free_port_block(count: int) -> int:
    """A base port with `count` consecutive free ports, below the ephemeral range: a node
    may bind its port long after this check (a full node joining late), and meanwhile any
    outgoing connection on the machine (the nodes' own peer connections among them) could
    take a port of the ephemeral range, but never one below it."""
    low, _ = ephemeral_range()
    choose = random.SystemRandom()  # concurrent test workers pick apart
    for _ in range(200):
        base = choose.randrange(PORT_FLOOR, low - count)
        if not any(port_in_use("127.0.0.1", port) for port in range(base, base + count)):
            return base
    raise RuntimeError("no block of free ports")


def wait_for(predicate: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class LocalCluster:
    """N validators (and optional full nodes) as separate `provledger node start` processes."""

    def __init__(self, root: Path, nodes: int = 4) -> None:
        self.root = root
        self.nodes = nodes
        # Two ports per validator (public API, then peers), and two for a full node.
        self.base_port = free_port_block(2 * nodes + 2)
        self.genesis: Genesis = init_cluster(root, nodes, base_port=self.base_port)
        self.registrar = crypto.PrivateKey.load(root / "registrar.pem")
        self.homes = [node_home(root, i) for i in range(nodes)]
        self.urls = [f"http://127.0.0.1:{self.base_port + i}" for i in range(nodes)]
        self.peer_urls = [f"http://127.0.0.1:{self.base_port + nodes + i}" for i in range(nodes)]
        # The key a full node will use; the validators admit it to their peer protocol.
        self.full_node_key = crypto.PrivateKey.generate()
        for home in self.homes:
            allow_peer(home, self.full_node_key.public_key)
        self.pids: dict[int, int] = {}
        self.client = httpx.Client(timeout=10.0)

    # --- processes ------------------------------------------------------------------------

    def start(self, *indexes: int) -> None:
        for i in indexes or range(len(self.homes)):
            self.pids[i] = start_node(self.homes[i])

    def signal(self, index: int, sig: signal.Signals) -> None:
        os.kill(self.pids[index], sig)
        if sig == signal.SIGKILL:
            wait_for(lambda: self._reaped(index), 10, f"node {index} to die")

    def _reaped(self, index: int) -> bool:
        try:
            pid, _ = os.waitpid(self.pids[index], os.WNOHANG)
        except ChildProcessError:
            return True
        return pid != 0

    def add_full_node(self, key: crypto.PrivateKey | None = None) -> int:
        """A full node following every validator; with `key`, one the validators were not
        told of (they answer it once a proposal names it, issue 13)."""
        index = len(self.homes)
        assert index == self.nodes, "one full node per cluster (two ports are reserved)"
        home = self.root / f"full-{index}"
        port = self.base_port + 2 * self.nodes
        init_full_node(
            home,
            self.root / "genesis.json",
            self.peer_urls,
            port=port,
            p2p_port=port + 1,
            key=key or self.full_node_key,
        )
        self.homes.append(home)
        self.urls.append(f"http://127.0.0.1:{port}")
        return index

    def stop(self) -> None:
        for pid in self.pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        stop_nodes(self.homes)
        self.client.close()

    # --- HTTP -----------------------------------------------------------------------------

    def get(self, index: int, path: str) -> dict[str, Any] | None:
        try:
            response = self.client.get(self.urls[index] + path, timeout=3.0)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def height(self, index: int) -> int:
        status = self.get(index, "/v1/status")
        return status["height"] if status else -1

    def wait_height(self, index: int, height: int, timeout: float = WAIT_S) -> None:
        wait_for(lambda: self.height(index) >= height, timeout, f"node {index} at {height}")

    def wait_all_started(self, indexes: list[int] | None = None) -> None:
        for i in indexes if indexes is not None else range(len(self.homes)):
            self.wait_height(i, 1)

    def submit(self, index: int, event: events.SignedEvent, wait: bool = True) -> httpx.Response:
        suffix = "?wait=commit" if wait else ""
        return self.client.post(
            f"{self.urls[index]}/v1/events{suffix}",
            json={"envelope": event.envelope.hex()},
            timeout=40.0,
        )

    def admit_event(self, name: str) -> tuple[crypto.PrivateKey, events.SignedEvent]:
        key = crypto.PrivateKey.generate()
        body = events.Admit(
            chain=self.genesis.chain_id,
            actor=self.registrar.public_key,
            time=time.time_ns() // 1_000_000,
            nonce=os.urandom(16),
            subject=key.public_key,
            role="participant",
            name=name,
        )
        return key, events.sign_event(self.registrar, body)

    def block_hashes(self, index: int, up_to: int) -> list[str]:
        hashes = []
        for height in range(1, up_to + 1):
            block = self.get(index, f"/v1/blocks/{height}")
            assert block is not None, f"node {index} lacks block {height}"
            hashes.append(block["block_hash"])
        return hashes

    def evidence(self, index: int) -> int:
        status = self.get(index, "/v1/status")
        assert status is not None
        return status["evidence"]
