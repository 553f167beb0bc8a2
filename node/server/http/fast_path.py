"""Plumbing shared by the routes served in front of FastAPI (issue 16).

A hot route's middleware (`fast_events`, `fast_peer`) answers the common, well-formed
request itself and hands everything else to the FastAPI route it stands in for, so each
route keeps one definition of its strict checks and of its RFC 9457 answers.
`answer_or_pass` is that flow: read the body, let the route's quick handler answer it or
decline (None), replay a declined body to the route, and answer an error raised meanwhile
with the app's own exception handler, the one FastAPI would have called.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class Answer:
    """A response a quick handler gives: status, extra headers, body."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""


QuickHandler = Callable[[Scope, bytes], Awaitable[Answer | None]]
"""Answers a request from its scope and body, or None to leave it to the route."""


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def route_of(router: Router, path: str, method: str) -> BaseRoute:
    """The FastAPI route a fast path stands in for (the metrics label requests by its
    path)."""
    for route in router.routes:
        if getattr(route, "path", None) == path and method in getattr(route, "methods", ()):
            return route
    raise LookupError(f"no {method} {path} route")


async def answer_or_pass(
    route_app: ASGIApp,
    route: BaseRoute,
    quick: QuickHandler,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Serve the request with `quick`, or hand it (body replayed) to `route_app`."""
    app = scope["app"]
    scope["route"] = route
    started = False

    async def tracked_send(message: Message) -> None:
        nonlocal started
        started = True
        await send(message)

    try:
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        answer = await quick(scope, body)
        if answer is not None:
            await _respond(tracked_send, answer)
            return
    except Exception as exc:
        handler = _handler_for(app, exc)
        if handler is None or started:
            raise
        response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)
        return
    # Not the plain form: the route parses it again and says what is wrong.
    await route_app(scope, _replay(body, receive), send)


async def _respond(send: Send, answer: Answer) -> None:
    headers = [(b"content-length", str(len(answer.body)).encode()), *answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def _handler_for(app: Any, exc: Exception) -> Any:
    """The app's handler for `exc`, as FastAPI's exception middleware would pick it; None
    for the catch-all (`Exception`), which the outer middleware applies after logging."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that first hands over the body already read."""
    replayed = False

    async def again() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
