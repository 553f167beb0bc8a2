"""ASGI middleware in front of every route: which listener serves what, peer authentication,
body caps and body timeouts before bodies are read, and timing.

A node listens twice (docs/PROTOCOL.md §15): the public API, and the peer protocol on its own
port (`p2p_listen`). A request is told apart by the local port it arrived on. The peer
listener serves only `/p2p/...`, and only to requests that authenticate as a configured peer:
anything else gets 401 from here after a few header lookups, before its body is read. The
public listener does not serve `/p2p/` at all (404).

A declared `content-length` over the cap is refused with 413 before the body is read; a body
that grows past the cap while streaming is refused as soon as it does, and one that does not
arrive within `body_timeout_s` gets 408. A peer body must hash to the digest its sender signed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.server.errors import PeerUnauthorized
from node.server.http.encoding import json_bytes
from node.server.http.problems import Problem, problem_document
from node.server.metrics import Metrics
from node.server.peer_auth import PeerAuthenticator
from node.wire import PROBLEM_JSON

PEER_PREFIX = "/p2p/"
_AUTH_HEADER_PREFIX = b"x-provledger-"


class BodyGuard:
    """Listener dispatch, peer authentication, body caps and timeouts; times requests."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        public_limit: int,
        peer_limit: int,
        peer_port: int | None = None,
        authenticator: PeerAuthenticator | None = None,
        body_timeout_s: float = 30.0,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.public_limit = public_limit
        self.peer_limit = peer_limit
        self.peer_port = peer_port
        self.authenticator = authenticator
        self.body_timeout_s = body_timeout_s

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

    def _on_peer_listener(self, scope: Scope) -> bool:
        server = scope.get("server")
        if server is None or self.peer_port is None:
            return False
        return bool(server[1] == self.peer_port)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        peer_listener = self._on_peer_listener(scope)
        if peer_listener != path.startswith(PEER_PREFIX):
            where = "the peer port" if peer_listener else "the public port"
            await _reject(send, path, Problem(404, "not-found", "Not found", f"not on {where}"))
            return
        digest: bytes | None = None
        if peer_listener:
            try:
                digest = self._authenticate(scope)
            except PeerUnauthorized as exc:
                problem = Problem(401, "peer-unauthorized", "Not an authenticated peer", str(exc))
                await _reject(send, path, problem)
                return
        limit = self.peer_limit if peer_listener else self.public_limit
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            problem = Problem(
                413, "too-large", "Payload too large", f"bodies are limited to {limit} B"
            )
            await _reject(send, path, problem)
            return
        await self.app(scope, self._limited(receive, limit, digest), send)

    def _authenticate(self, scope: Scope) -> bytes:
        """The body digest a configured peer signed for this request (or PeerUnauthorized)."""
        if self.authenticator is None:
            raise PeerUnauthorized("this node accepts no peers")
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name.startswith(_AUTH_HEADER_PREFIX)
        }
        target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"")
        if query:
            target += "?" + query.decode("latin-1")
        credentials = self.authenticator.authenticate(scope["method"], target, headers)
        scope.setdefault("state", {})["peer"] = credentials.peer
        return credentials.digest

    def _limited(self, receive: Receive, limit: int, digest: bytes | None) -> Receive:
        """`receive` with the size cap, the body timeout and (peers) the digest check."""
        received = 0
        done = False
        hasher = hashlib.sha256() if digest is not None else None
        timeout = self.body_timeout_s

        async def limited_receive() -> Message:
            nonlocal received, done
            if done:
                return await receive()
            try:
                # A deadline on this await, not a task around it (as wait_for makes).
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError as exc:
                raise HTTPException(408, f"the body did not arrive within {timeout:g} s") from exc
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise HTTPException(413, f"bodies are limited to {limit} B")
            if hasher is not None:
                hasher.update(chunk)
            if not message.get("more_body", False):
                done = True
                if hasher is not None and hasher.digest() != digest:
                    raise PeerUnauthorized("the body does not match the signed digest")
            return message

        return limited_receive


async def _reject(send: Send, path: str, problem: Problem) -> None:
    """Answer a problem document without touching the request body."""
    body = json_bytes(problem_document(problem, path))
    await send(
        {
            "type": "http.response.start",
            "status": problem.status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
