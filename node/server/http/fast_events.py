"""The hot route, `POST /v1/events` (docs/PROTOCOL.md §10), served in front of FastAPI.

A gateway submits one event per request, so this route's per-request cost is most of what
a client pays (issue 16). `FastSubmit` is ASGI middleware, placed just inside the body
guard (listener dispatch, caps and timeouts still apply): it answers the common request —
no query or `?wait=commit`, a JSON body that is exactly `{"envelope": "<hex>"}` — itself,
with orjson and without FastAPI's routing, dependency solving and per-request middleware.

Everything else goes to the FastAPI route unchanged, so the route keeps one definition of
its strict checks and of its RFC 9457 answers: a msgpack body, any other query, and any
body the quick check does not accept (which is replayed to the route, whose parser then
reports exactly what is wrong). Errors raised while submitting are answered by the app's
own exception handlers (`problems.install_handlers`), the ones FastAPI would call, and an
unexpected error goes up to the outer middleware as from the route.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger import codec
from node.server.http.encoding import MAX_ENVELOPE_HEX
from node.server.http.public import outcome_json, router
from node.wire import JSON, MSGPACK

PATH = "/v1/events"
_NO_WAIT = b""
_WAIT_COMMIT = b"wait=commit"
_JSON_HEADER = (b"content-type", JSON.encode())
_MSGPACK = MSGPACK.encode()


def quick_envelope(body: bytes) -> bytes | None:
    """The envelope of `{"envelope": "<even-length hex>"}`, or None for anything else (the
    route's own parser then says what is wrong). Hex as the route accepts it (either case),
    but never with the whitespace `bytes.fromhex` would skip."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or len(doc) != 1:
        return None
    text = doc.get("envelope")
    if not isinstance(text, str) or not 0 < len(text) <= MAX_ENVELOPE_HEX or len(text) % 2:
        return None
    try:
        envelope = bytes.fromhex(text)
    except ValueError:
        return None
    return envelope if 2 * len(envelope) == len(text) else None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class FastSubmit:
    """Answers the common `POST /v1/events` itself; passes every other request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = _route()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope["query_string"] not in (_NO_WAIT, _WAIT_COMMIT)
        ):
            await self.app(scope, receive, send)
            return
        content_type = _header(scope, b"content-type")
        if content_type is not None and content_type.split(b";")[0].strip() == _MSGPACK:
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        scope["route"] = self.route
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            body = await _read_body(receive)
            if body is None:  # the client went away
                return
            envelope = quick_envelope(body)
            if envelope is not None:
                wait = scope["query_string"] == _WAIT_COMMIT
                outcome = await app.state.service.submit(envelope, wait)
                await _reply(scope, tracked_send, outcome_json(outcome), 200 if wait else 202)
                return
        except Exception as exc:
            handler = _handler_for(app, exc)
            if handler is None or started:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        # Not the plain form: the route parses it again and says what is wrong.
        await self.app(scope, _replay(body, receive), send)


def _route() -> BaseRoute:
    """The FastAPI route this stands in for (the metrics label requests by its path)."""
    for route in router.routes:
        if getattr(route, "path", None) == PATH and "POST" in getattr(route, "methods", ()):
            return route
    raise LookupError(f"no POST {PATH} route in node.server.http.public")


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


async def _reply(scope: Scope, send: Send, doc: dict[str, Any], status: int) -> None:
    """JSON, or msgpack when the client asked for it (as `encoding.reply`)."""
    accept = _header(scope, b"accept")
    if accept is not None and _MSGPACK in accept:
        body = codec.encode(doc)
        content_type = (b"content-type", _MSGPACK)
    else:
        body = orjson.dumps(doc)
        content_type = _JSON_HEADER
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), content_type],
        }
    )
    await send({"type": "http.response.body", "body": body})
