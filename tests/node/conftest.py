"""Fixtures for node tests: a real single-validator node served in-process, and event builders.

`running_node` starts the FastAPI app with its lifespan (node service, real consensus, real
LevelDB) through `fastapi.testclient.TestClient`, with the `NodeService` it serves; tests use
the service to read the store or to pretend the node lags behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ledger import events
from ledger.crypto import PrivateKey
from ledger.genesis import Genesis
from node.cli.trust import TRUST_ENV
from node.clock import now_ms
from node.config import NodeSettings
from node.ops.homes import REGISTRAR_FILE, init_cluster
from node.server.http import create_app
from node.server.peer_auth import sign_request
from node.server.service import NodeService

START_TIMEOUT_S = 20.0
# The sync loop resets `best_peer_height` on every pass; a node without peers never needs it,
# and a long interval lets a test set the lag it wants without racing the loop.
NO_SYNC_MS = 3_600_000
PROBLEM_MEDIA_TYPE = "application/problem+json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """`response` is an RFC 9457 problem document with `status`; returns the document."""
    assert response.status_code == status, (response.status_code, response.text)
    media_type = response.headers["content-type"].split(";")[0].strip()
    assert media_type == PROBLEM_MEDIA_TYPE, response.headers
    doc = response.json()
    assert isinstance(doc, dict), doc
    assert isinstance(doc.get("type"), str) and doc["type"], doc
    assert isinstance(doc.get("title"), str) and doc["title"], doc
    assert doc.get("status") == status, doc
    assert isinstance(doc.get("detail"), str) and doc["detail"], doc
    return doc


class EventFactory:
    """Signed events of every type for one chain, timestamped now with a random nonce."""

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id

    def _sign(self, key: PrivateKey, cls: type[events.EventBody], **fields: Any) -> Any:
        chain = fields.pop("chain", self.chain_id)
        when = fields.pop("time", None)
        body = cls(
            chain=chain,
            actor=key.public_key,
            time=now_ms() if when is None else when,
            nonce=os.urandom(events.NONCE_SIZE),
            **fields,
        )
        return events.sign_event(key, body)

    def admit(
        self, registrar: PrivateKey, subject: bytes, name: str = "someone", **kw: Any
    ) -> events.SignedEvent:
        role = kw.pop("role", events.ROLE_PARTICIPANT)
        return self._sign(registrar, events.Admit, subject=subject, role=role, name=name, **kw)

    def register(
        self,
        key: PrivateKey,
        dataset: bytes | None = None,
        meta: dict[str, Any] | None = None,
        open: bool = False,
        **kw: Any,
    ) -> events.SignedEvent:
        return self._sign(
            key,
            events.Register,
            dataset=dataset if dataset is not None else os.urandom(32),
            meta=meta if meta is not None else {"title": "a dataset", "size": 42},
            open=open,
            **kw,
        )

    def grant(
        self,
        key: PrivateKey,
        dataset: bytes,
        to: bytes,
        purposes: tuple[str, ...] = ("analytics",),
        reshare: bool = False,
        **kw: Any,
    ) -> events.SignedEvent:
        return self._sign(
            key,
            events.Grant,
            dataset=dataset,
            to=to,
            purposes=tuple(purposes),
            reshare=reshare,
            **kw,
        )

    def revoke(self, key: PrivateKey, grant: bytes, **kw: Any) -> events.SignedEvent:
        return self._sign(key, events.Revoke, grant=grant, **kw)

    def transfer(self, key: PrivateKey, dataset: bytes, to: bytes, **kw: Any) -> events.SignedEvent:
        return self._sign(key, events.Transfer, dataset=dataset, to=to, **kw)

    def use(self, key: PrivateKey, dataset: bytes, purpose: str, **kw: Any) -> events.SignedEvent:
        return self._sign(key, events.Use, dataset=dataset, purpose=purpose, **kw)

    def derive(
        self,
        key: PrivateKey,
        inputs: tuple[bytes, ...],
        dataset: bytes | None = None,
        meta: dict[str, Any] | None = None,
        **kw: Any,
    ) -> events.SignedEvent:
        return self._sign(
            key,
            events.Derive,
            dataset=dataset if dataset is not None else os.urandom(32),
            inputs=tuple(inputs),
            meta=meta if meta is not None else {"title": "derived"},
            **kw,
        )

    def destroy(self, key: PrivateKey, dataset: bytes, **kw: Any) -> events.SignedEvent:
        return self._sign(key, events.Destroy, dataset=dataset, **kw)

    def attest(
        self,
        key: PrivateKey,
        dataset: bytes,
        claim: str = "quality-checked",
        meta: dict[str, Any] | None = None,
        **kw: Any,
    ) -> events.SignedEvent:
        return self._sign(
            key, events.Attest, dataset=dataset, claim=claim, meta=meta or {"score": 9}, **kw
        )


@dataclass
class RunningNode:
    """One in-process node: its HTTP client, service, chain and registrar."""

    client: TestClient
    service: NodeService
    settings: NodeSettings
    genesis: Genesis
    registrar: PrivateKey
    cluster_dir: Path
    make: EventFactory
    peer_key: PrivateKey

    def peer_url(self, path: str) -> str:
        """`path` on the node's peer listener (the guard tells listeners apart by port)."""
        return f"http://testserver:{self.settings.p2p_address[1]}{path}"

    def peer_headers(
        self, method: str, path: str, body: bytes, key: PrivateKey | None = None
    ) -> dict[str, str]:
        """Authentication headers of a configured peer (docs/PROTOCOL.md §15)."""
        signer = key or self.peer_key
        headers = sign_request(signer, self.genesis.chain_id, method, path, body, now_ms())
        return {"content-type": "application/msgpack", **headers}

    def peer_post(self, path: str, body: bytes, key: PrivateKey | None = None) -> httpx.Response:
        """POST to the peer protocol as an authenticated peer."""
        headers = self.peer_headers("POST", path, body, key)
        return self.client.post(self.peer_url(path), content=body, headers=headers)

    def peer_get(self, path: str) -> httpx.Response:
        return self.client.get(self.peer_url(path), headers=self.peer_headers("GET", path, b""))

    def requests_counted(self, route: str, method: str) -> float:
        """`provledger_http_requests_total` for `route` and `method`, from /metrics."""
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith("provledger_http_requests_total{") and (
                f'route="{route}"' in line and f'method="{method}"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def submit(self, event: events.SignedEvent | bytes, wait: bool = False) -> httpx.Response:
        envelope = event if isinstance(event, bytes) else event.envelope
        path = "/v1/events?wait=commit" if wait else "/v1/events"
        return self.client.post(path, json={"envelope": envelope.hex()})

    def commit(self, event: events.SignedEvent) -> dict[str, Any]:
        """Submit with `?wait=commit` and insist that it committed."""
        response = self.submit(event, wait=True)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def height(self) -> int:
        return int(self.client.get("/v1/status").json()["height"])

    def wait_height(self, height: int, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while self.height() < height:
            assert time.monotonic() < deadline, f"node did not reach height {height}"
            time.sleep(0.02)

    def admit_participant(self, name: str = "participant") -> PrivateKey:
        key = PrivateKey.generate()
        self.commit(self.make.admit(self.registrar, key.public_key, name))
        return key


@contextlib.contextmanager
def running_node(
    cluster_dir: Path, *, wait_first_block: bool = True, **overrides: Any
) -> Iterator[RunningNode]:
    """Create a one-validator chain in `cluster_dir` and run its node until the block exits."""
    genesis = init_cluster(cluster_dir, 1, base_port=free_port())
    settings = NodeSettings.load(cluster_dir / "node-0")
    peer_key = PrivateKey.generate()
    overrides.setdefault("peer_keys", (peer_key.public_key.hex(),))
    settings = dataclasses.replace(settings, **{"sync_interval_ms": NO_SYNC_MS, **overrides})
    with serving(settings) as (client, service):
        node = RunningNode(
            client=client,
            service=service,
            settings=settings,
            genesis=genesis,
            registrar=PrivateKey.load(cluster_dir / REGISTRAR_FILE),
            cluster_dir=cluster_dir,
            make=EventFactory(genesis.chain_id),
            peer_key=peer_key,
        )
        if wait_first_block:
            node.wait_height(1)
        yield node


@contextlib.contextmanager
def serving(settings: NodeSettings) -> Iterator[tuple[TestClient, NodeService]]:
    """Run the app of `settings` (lifespan included); yield its client and node service."""
    service = NodeService(settings)
    client = TestClient(create_app(service), raise_server_exceptions=False)
    client.__enter__()
    try:
        yield client, service
    finally:
        client.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def private_trust_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI pins geneses under a directory of this test, never under the user's home."""
    monkeypatch.setenv(TRUST_ENV, str(tmp_path_factory.mktemp("trust")))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """A running single-validator node, shared by the tests of one module."""
    with running_node(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def participant(node: RunningNode) -> PrivateKey:
    """A key the registrar admitted (committed) on the module's node."""
    return node.admit_participant("alice")
