"""Block sync trusts only what peers prove: a peer lying about its height changes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ledger import codec
from ledger.crypto import PrivateKey
from tests.node.conftest import running_node


class LyingPeer(BaseHTTPRequestHandler):
    """Claims to be a million blocks ahead, and can prove none of it."""

    requests: list[str] = []

    def do_GET(self) -> None:
        LyingPeer.requests.append(self.path)
        if self.path == "/p2p/status":
            body = codec.encode({"height": 1_000_000})
            self.send_response(200)
            self.send_header("content-type", "application/msgpack")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def lying_peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LyingPeer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_peer_claiming_a_higher_height_without_blocks_does_not_stall_clients(
    tmp_path: Path, lying_peer: str
) -> None:
    LyingPeer.requests.clear()
    with running_node(tmp_path / "cluster", peers=(lying_peer,), sync_interval_ms=50) as node:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            path.startswith("/p2p/blocks/") for path in LyingPeer.requests
        ):
            time.sleep(0.05)
        assert any(path.startswith("/p2p/blocks/") for path in LyingPeer.requests)
        event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "client")
        response = node.submit(event, wait=True)
        assert response.status_code == 200, response.text
        assert node.client.get("/v1/status").json()["catching_up"] is False
