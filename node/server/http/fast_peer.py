"""The peer protocol's two POSTs, `/p2p/consensus` and `/p2p/events` (docs/PROTOCOL.md
§10.5), served in front of FastAPI.

Every vote, proposal and batch of gossiped events is one of these, so their per-request
cost is paid hundreds of times a second whatever the load (issue 16). `FastPeer` is ASGI
middleware inside the body guard, which has already authenticated the sender and left its
key in the scope: a body that is a canonical msgpack map with the route's list of byte
strings, within the route's bound, is handed to the node service here, answered 204, with
no FastAPI routing, dependency solving or request object. Anything else — a body that does
not decode, a missing or mistyped list, too many items, a query — goes to the FastAPI route
in `peer` unchanged, which answers what is wrong (`fast_path`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ledger import codec
from ledger.errors import LedgerError
from node.server.http.fast_path import Answer, answer_or_pass, route_of
from node.server.http.peer import router
from node.server.service import NodeService
from node.wire import MAX_P2P_BODY, MAX_PEER_MESSAGES, MAX_PUBLIC_BATCH

CONSENSUS = "/p2p/consensus"
EVENTS = "/p2p/events"
LISTS = {CONSENSUS: ("messages", MAX_PEER_MESSAGES), EVENTS: ("events", MAX_PUBLIC_BATCH)}
"""Each path's list of byte strings and the most items it takes."""
_NO_CONTENT = Answer(204)


def quick_items(body: bytes, name: str, limit: int) -> list[bytes] | None:
    """The list `name` of a canonical msgpack map, if it is a list of at most `limit` byte
    strings; None for anything else (the route's own checks then say what is wrong)."""
    try:
        doc = codec.decode(body, MAX_P2P_BODY)
    except LedgerError:
        return None
    items = doc.get(name) if isinstance(doc, dict) else None
    if not isinstance(items, list) or len(items) > limit:
        return None
    return items if all(isinstance(item, bytes) for item in items) else None


class FastPeer:
    """Answers well-formed `POST /p2p/consensus` and `/p2p/events` itself; passes every
    other request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = {path: route_of(router, path, "POST") for path in LISTS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] not in LISTS
            or scope["method"] != "POST"
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        route = self.routes[scope["path"]]
        await answer_or_pass(self.app, route, _hand_over, scope, receive, send)


async def _hand_over(scope: Scope, body: bytes) -> Answer | None:
    """Give a plain body's list to the node service as the route would; None otherwise."""
    path = scope["path"]
    name, limit = LISTS[path]
    items = quick_items(body, name, limit)
    if items is None:
        return None
    service: NodeService = scope["app"].state.service
    peer = scope["state"]["peer"]
    assert isinstance(peer, bytes), "the guard authenticates every /p2p/ request"
    if path == CONSENSUS:
        service.receive_consensus(items, peer)
    else:
        await service.receive_events(items, peer)
    return _NO_CONTENT
