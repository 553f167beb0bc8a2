"""The peer protocol under /p2p/ (docs/PROTOCOL.md §10): msgpack bodies between nodes.

Consensus messages and gossiped events in, block sync out. Not part of the public API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from ledger import codec
from ledger.errors import Malformed
from node.server.errors import NotFound
from node.server.http.public import MAX_INDEX, node_of
from node.wire import MAX_P2P_BODY, MSGPACK

router = APIRouter(prefix="/p2p", include_in_schema=False)


async def peer_doc(request: Request) -> dict[str, Any]:
    doc = codec.decode(await request.body(), MAX_P2P_BODY)
    if not isinstance(doc, dict):
        raise Malformed("a peer message is a map")
    return doc


def bytes_list(doc: dict[str, Any], name: str) -> list[bytes]:
    items = doc.get(name)
    if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
        raise Malformed(f"{name} must be a list of byte strings")
    return items


@router.post("/consensus", status_code=204)
async def p2p_consensus(request: Request) -> Response:
    node_of(request).receive_consensus(bytes_list(await peer_doc(request), "messages"))
    return Response(status_code=204)


@router.post("/events", status_code=204)
async def p2p_events(request: Request) -> Response:
    doc = await peer_doc(request)
    sender = doc.get("from")
    await node_of(request).receive_events(
        bytes_list(doc, "events"), sender if isinstance(sender, str) else ""
    )
    return Response(status_code=204)


@router.get("/status")
async def p2p_status(request: Request) -> Response:
    height = node_of(request).store.height
    return Response(codec.encode({"height": height}), media_type=MSGPACK)


@router.get("/blocks/{height}")
async def p2p_block(request: Request, height: int) -> Response:
    store = node_of(request).store
    block = store.block(height) if 1 <= height <= MAX_INDEX else None
    commit = store.commit(height) if block is not None else None
    if block is None or commit is None:
        raise NotFound(f"no block at height {height}")
    return Response(
        codec.encode({"block": block.to_wire(), "commit": commit.to_wire()}),
        media_type=MSGPACK,
    )
