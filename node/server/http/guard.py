"""ASGI middleware in front of every route: body caps before bodies are read, and timing.

A declared `content-length` over the cap is refused with 413 before the body is read; a body
that grows past the cap while streaming is refused as soon as it does. Peer routes (`/p2p/`)
carry blocks and get a larger cap than the public API.
"""

from __future__ import annotations

import time

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.server.http.encoding import json_bytes
from node.server.http.problems import Problem, problem_document
from node.server.metrics import Metrics
from node.wire import PROBLEM_JSON


class BodyGuard:
    """Caps request bodies (413 before reading them whole) and times requests."""

    def __init__(self, app: ASGIApp, metrics: Metrics, public_limit: int, peer_limit: int) -> None:
        self.app = app
        self.metrics = metrics
        self.public_limit = public_limit
        self.peer_limit = peer_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self._guarded(scope, receive, send)
        finally:
            route = scope.get("route")
            self.metrics.observe_request(
                getattr(route, "path", "unmatched"), scope["method"], time.perf_counter() - started
            )

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.peer_limit if scope["path"].startswith("/p2p/") else self.public_limit
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _reject_too_large(send, scope["path"], limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"bodies are limited to {limit} B")
            return message

        await self.app(scope, limited_receive, send)


async def _reject_too_large(send: Send, path: str, limit: int) -> None:
    problem = Problem(413, "too-large", "Payload too large", f"bodies are limited to {limit} B")
    body = json_bytes(problem_document(problem, path))
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
