"""Block sync trusts only what peers prove: a peer lying about its height changes nothing,
and a proven height is believed no further than its proof."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from ledger import codec
from ledger.crypto import PrivateKey
from node.ops.homes import init_full_node
from tests.node.conftest import running_node, serving
from tests.node.fake_http import send, serving_http


class LyingPeer(BaseHTTPRequestHandler):
    """Claims to be a million blocks ahead, and can prove none of it."""

    requests: list[str] = []

    def do_GET(self) -> None:
        LyingPeer.requests.append(self.path)
        if self.path == "/p2p/status":
            send(self, 200, codec.encode({"height": 1_000_000}), "application/msgpack")
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
    with serving_http(LyingPeer) as url:
        yield url


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


class ProvingLiar(BaseHTTPRequestHandler):
    """Serves real blocks of a chain and claims 2^62 blocks, with a head proof of block 1."""

    store: Any = None

    def do_GET(self) -> None:
        store = ProvingLiar.store
        if self.path == "/p2p/status":
            body = codec.encode(
                {
                    "height": 1 << 62,
                    "header": store.header_bytes(1),
                    "commit": store.commit(1).to_wire(),
                }
            )
        elif self.path.startswith("/p2p/blocks/"):
            height = int(self.path.rsplit("/", 1)[1])
            block = store.block(height) if height <= store.height else None
            if block is None:
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            body = codec.encode(
                {"block": block.to_wire(), "commit": store.commit(height).to_wire()}
            )
        else:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", "application/msgpack")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def test_a_peer_that_proves_blocks_is_believed_no_further_than_its_proofs(tmp_path: Path) -> None:
    """It serves every real block and claims 2^62: the follower syncs, then is not 503."""
    with running_node(tmp_path / "source") as source:
        for _ in range(3):
            source.commit(source.make.admit(source.registrar, PrivateKey.generate().public_key))
        ProvingLiar.store = source.service.store
        with serving_http(ProvingLiar) as url:
            home = init_full_node(tmp_path / "follower", source.cluster_dir / "genesis.json", [url])
            settings = dataclasses.replace(home, sync_interval_ms=50)
            target = source.service.store.height
            with serving(settings) as (client, service):
                deadline = time.monotonic() + 20
                while service.store.height < target and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert service.store.height >= target
                assert service.sync.best_peer_height <= service.store.height + 2
                assert client.get("/v1/status").json()["catching_up"] is False
                event = source.make.admit(source.registrar, PrivateKey.generate().public_key)
                response = client.post("/v1/events", json={"envelope": event.envelope.hex()})
                assert response.status_code == 202, response.text


def test_a_verified_head_far_ahead_makes_the_node_catch_up(tmp_path: Path) -> None:
    """The other side: a head header with a commit that verifies is proof enough."""
    with running_node(tmp_path / "source") as source:
        for _ in range(5):
            source.commit(source.make.admit(source.registrar, PrivateKey.generate().public_key))
        store = source.service.store
        height = store.height
        with running_node(tmp_path / "other") as other:
            sync = other.service.sync
            # another chain's head does not verify here
            sync.prove_head(height, store.header(height), store.commit(height))
            assert sync.best_peer_height == 0
        follower_home = init_full_node(
            tmp_path / "f", source.cluster_dir / "genesis.json", ["http://127.0.0.1:9"]
        )
        with serving(dataclasses.replace(follower_home, sync_interval_ms=3_600_000)) as (c, svc):
            svc.sync.prove_head(height + 1, store.header(height), store.commit(height))
            assert svc.sync.best_peer_height == 0  # the header is not for the claimed height
            svc.sync.prove_head(height, store.header(height), store.commit(height))
            assert svc.sync.best_peer_height == height
            assert c.get("/v1/status").json()["catching_up"] is True
