"""The cluster harness reserves its ports where no outgoing connection can take them."""

from __future__ import annotations

import socket

from node.ops.processes import port_in_use
from tests.cluster.harness import PORT_FLOOR, ephemeral_range, free_port_block


def test_port_blocks_lie_below_the_ephemeral_range_and_are_free() -> None:
    low, high = ephemeral_range()
    assert PORT_FLOOR < low <= high
    for count in (1, 10, 120):
        base = free_port_block(count)
        assert base >= PORT_FLOOR and base + count <= low
        assert not any(port_in_use("127.0.0.1", port) for port in range(base, base + count))


def test_an_outgoing_connection_takes_its_port_from_the_ephemeral_range() -> None:
    """Why below: the local port of a connection is drawn from the ephemeral range."""
    low, high = ephemeral_range()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            assert low <= client.getsockname()[1] <= high
