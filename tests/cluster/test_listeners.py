"""The daemon's two listeners, as a real process serves them (docs/PROTOCOL.md §15): the
public port has no /p2p/, the peer port answers strangers 401, and a client that never
finishes its request headers is disconnected after `header_timeout_s`."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node.config import NodeSettings
from node.ops.homes import init_cluster, node_home
from node.ops.processes import start_node, stop_nodes
from tests.cluster.harness import free_port_block, wait_for

HEADER_TIMEOUT_S = 1.0


@pytest.fixture
def single(tmp_path: Path) -> Iterator[NodeSettings]:
    base = free_port_block(2)
    init_cluster(tmp_path / "c", 1, base_port=base)
    home = node_home(tmp_path / "c", 0)
    settings = dataclasses.replace(NodeSettings.load(home), header_timeout_s=HEADER_TIMEOUT_S)
    settings.save()
    start_node(home)
    try:
        wait_for(lambda: _status(settings) is not None, what="the node to answer")
        yield settings
    finally:
        stop_nodes([home])


def _status(settings: NodeSettings) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{settings.port}/v1/status", timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_each_port_serves_its_own_protocol(single: NodeSettings) -> None:
    public = f"http://127.0.0.1:{single.port}"
    peer = f"http://127.0.0.1:{single.p2p_address[1]}"
    assert httpx.get(public + "/v1/status").status_code == 200
    assert httpx.get(public + "/p2p/status").status_code == 404
    assert httpx.get(peer + "/p2p/status").status_code == 401
    assert httpx.post(peer + "/p2p/consensus", content=b"\x80").status_code == 401
    assert httpx.get(peer + "/v1/status").status_code == 404


@pytest.mark.parametrize("port_of", ["public", "peer"])
def test_a_client_that_never_finishes_its_headers_is_disconnected(
    single: NodeSettings, port_of: str
) -> None:
    port = single.port if port_of == "public" else single.p2p_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        began = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the node, not answered
        waited = time.monotonic() - began
    assert waited < 9, waited
    assert _status(single) == 200
