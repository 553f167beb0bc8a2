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
unexpected error goes up to the outer middleware as from the route (`fast_path`).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from ledger import codec
from node.server.http.encoding import MAX_ENVELOPE_HEX
from node.server.http.fast_path import Answer, answer_or_pass, header, route_of
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


class FastSubmit:
    """Answers the common `POST /v1/events` itself; passes every other request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = route_of(router, PATH, "POST")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope["query_string"] not in (_NO_WAIT, _WAIT_COMMIT)
        ):
            await self.app(scope, receive, send)
            return
        content_type = header(scope, b"content-type")
        if content_type is not None and content_type.split(b";")[0].strip() == _MSGPACK:
            await self.app(scope, receive, send)
            return
        await answer_or_pass(self.app, self.route, _submit, scope, receive, send)


async def _submit(scope: Scope, body: bytes) -> Answer | None:
    envelope = quick_envelope(body)
    if envelope is None:
        return None
    wait = scope["query_string"] == _WAIT_COMMIT
    outcome = await scope["app"].state.service.submit(envelope, wait)
    return _reply(scope, outcome_json(outcome), 200 if wait else 202)


def _reply(scope: Scope, doc: dict[str, Any], status: int) -> Answer:
    """JSON, or msgpack when the client asked for it (as `encoding.reply`)."""
    accept = header(scope, b"accept")
    if accept is not None and _MSGPACK in accept:
        return Answer(status, ((b"content-type", _MSGPACK),), codec.encode(doc))
    return Answer(status, (_JSON_HEADER,), orjson.dumps(doc))
