"""Property-based fuzzing of the public OpenAPI schema with schemathesis.

The app runs in-process through schemathesis' own ASGI transport, which starts the app's
lifespan (a real single-validator node) on first use; the fixture stops it at the end. Every
response must be below 500, and every 4xx an RFC 9457 problem document.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi as schemathesis_asgi

from node.config import NodeSettings
from node.ops.homes import init_cluster
from node.server.http import create_app
from node.server.service import NodeService
from tests.node.conftest import free_port

PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_EXAMPLES = 30
BASE_URL = "http://testserver"


def _public_schema() -> dict[str, Any]:
    """The app's OpenAPI document; serving it needs no node, so no lifespan is started."""
    with tempfile.TemporaryDirectory() as home:
        init_cluster(home, 1, base_port=free_port())
        service = NodeService(NodeSettings.load(Path(home) / "node-0"))
        try:
            response = TestClient(create_app(service)).get("/openapi.json")
        finally:
            service.close()
    assert response.status_code == 200, response.text
    return dict(response.json())


# Loaded at import so that each operation is its own test. (schemathesis' lazy
# `from_fixture` loader does not work with this pytest: it sets `Function._nodeid`.)
schema = schemathesis.openapi.from_dict(_public_schema())


class NodeApp:
    """An ASGI app that serves a fresh node service for every lifespan it is given.

    schemathesis' transport may end an app's lifespan and start it again between calls;
    a `NodeService` starts once, so each lifespan gets a new one over the same home.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            self.app = create_app(NodeService(NodeSettings.load(self.home)))
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running node app; schemathesis' ASGI transport starts its lifespan, we stop it."""
    home: Path = tmp_path_factory.mktemp("fuzzed")
    init_cluster(home, 1, base_port=free_port())
    app = NodeApp(home / "node-0")
    try:
        deadline = time.monotonic() + 20
        with schemathesis_asgi.get_client(app) as client:
            while client.get(f"{BASE_URL}/v1/status").json()["height"] < 1:
                assert time.monotonic() < deadline, "the fuzzed node never committed a block"
                time.sleep(0.02)
        yield app
    finally:
        schemathesis_asgi.shutdown_lifespans()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_problem_documents(case: Any, fuzzed_app: Any) -> None:
    response = case.call(app=fuzzed_app, base_url=BASE_URL)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
    if 400 <= response.status_code < 500:
        media_type = response.headers.get("content-type", [""])
        media_type = media_type[0] if isinstance(media_type, list) else media_type
        assert media_type.split(";")[0].strip() == PROBLEM_MEDIA_TYPE, (case.path, media_type)
        doc = response.json()
        assert {"type", "title", "status", "detail"} <= set(doc), doc
        assert doc["status"] == response.status_code, doc
