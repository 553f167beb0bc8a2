"""The OpenLineage ingest server's HTTP edge, called as the ASGI app it is: routes, methods,
body limit and malformed bodies answer problem documents before any node is contacted."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ledger.crypto import PrivateKey
from node.lineage.ingest import LINEAGE_PATH, MAX_BODY_BYTES, IngestApp


def call(method: str, path: str, body: bytes = b"", declared: int | None = None) -> tuple[int, Any]:
    app = IngestApp(PrivateKey.generate(), "http://127.0.0.1:9")  # nothing listens there
    length = len(body) if declared is None else declared
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"content-length", str(length).encode())],
    }
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # Its own thread and loop: a browser test's Playwright may hold this thread's loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_health_and_unknown_routes() -> None:
    assert call("GET", "/healthz") == (200, {"status": "ok"})
    status, problem = call("GET", "/elsewhere")
    assert status == 404 and problem["status"] == 404
    assert call("GET", LINEAGE_PATH)[0] == 405


@pytest.mark.parametrize("declared", [MAX_BODY_BYTES + 1, None])
def test_bodies_over_the_limit_are_refused(declared: int | None) -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    status, problem = call("POST", LINEAGE_PATH, body if declared is None else b"{}", declared)
    assert status == 413 and problem["type"].endswith("/too-large")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"run": 1, "job": {}}', b"\xff\xfe"])
def test_malformed_bodies_are_400(body: bytes) -> None:
    status, problem = call("POST", LINEAGE_PATH, body)
    assert status == 400, problem
    assert problem["title"]


def test_a_start_event_records_nothing_without_the_node() -> None:
    body = json.dumps(
        {"eventType": "START", "run": {"runId": "r"}, "job": {"namespace": "n", "name": "j"}}
    )
    assert call("POST", LINEAGE_PATH, body.encode())[1]["recorded"] == []


def test_an_unreachable_node_is_a_502() -> None:
    digest = "ab" * 32
    run = {
        "eventType": "COMPLETE",
        "run": {"runId": "r"},
        "job": {"namespace": "n", "name": "j"},
        "inputs": [],
        "outputs": [{"namespace": "s3", "name": "x", "facets": {"provledger": {"sha256": digest}}}],
    }
    status, problem = call("POST", LINEAGE_PATH, json.dumps(run).encode())
    assert status == 502 and problem["type"].endswith("/node-unreachable")
