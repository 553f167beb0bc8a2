"""The peer protocol under /p2p/ (docs/PROTOCOL.md §10.5, §15): msgpack bodies between nodes.

Served only on the peer listener, and only to authenticated peers (`guard.BodyGuard` checks
the request signature before any of this runs and leaves the peer's key in
`request.state.peer`). Consensus messages and gossiped events in, block sync out. Batches are
bounded like the public API's: at most `MAX_PEER_MESSAGES` messages and `MAX_PUBLIC_BATCH`
events per request.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ledger import codec
from ledger.errors import Malformed
from node.server.backup import serve_backup
from node.server.errors import NotFound, PeerTooMany
from node.server.http.public import MAX_INDEX, node_of
from node.server.snapshot import serve_snapshot
from node.wire import MAX_P2P_BODY, MAX_PEER_MESSAGES, MAX_PUBLIC_BATCH, MSGPACK

router = APIRouter(prefix="/p2p", include_in_schema=False)


async def peer_doc(request: Request) -> dict[str, Any]:
    doc = codec.decode(await request.body(), MAX_P2P_BODY)
    if not isinstance(doc, dict):
        raise Malformed("a peer message is a map")
    return doc


def bytes_list(doc: dict[str, Any], name: str, limit: int) -> list[bytes]:
    items = doc.get(name)
    if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
        raise Malformed(f"{name} must be a list of byte strings")
    if len(items) > limit:
        raise PeerTooMany(f"at most {limit} {name} per request, not {len(items)}")
    return items


def peer_of(request: Request) -> bytes:
    """The authenticated sender's key (set by the guard)."""
    peer = getattr(request.state, "peer", None)
    assert isinstance(peer, bytes), "the guard authenticates every /p2p/ request"
    return peer


@router.post("/consensus", status_code=204)
async def p2p_consensus(request: Request) -> Response:
    messages = bytes_list(await peer_doc(request), "messages", MAX_PEER_MESSAGES)
    node_of(request).receive_consensus(messages, peer_of(request))
    return Response(status_code=204)


@router.post("/events", status_code=204)
async def p2p_events(request: Request) -> Response:
    envelopes = bytes_list(await peer_doc(request), "events", MAX_PUBLIC_BATCH)
    await node_of(request).receive_events(envelopes, peer_of(request))
    return Response(status_code=204)


@router.get("/status")
async def p2p_status(request: Request) -> Response:
    """The height, with the head header and its commit that prove it (absent at 0)."""
    store = node_of(request).store
    height = store.height
    doc: dict[str, Any] = {"height": height}
    header = store.header_bytes(height) if height else None
    commit = store.commit(height) if height else None
    if header is not None and commit is not None:
        doc["header"] = header
        doc["commit"] = commit.to_wire()
    return Response(codec.encode(doc), media_type=MSGPACK)


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


@router.get("/snapshot")
async def p2p_snapshot(request: Request) -> StreamingResponse:
    """A snapshot of this node's head (docs/PROTOCOL.md §20), streamed from a LevelDB
    snapshot; one at a time (503 `busy` otherwise)."""
    chunks = serve_snapshot(node_of(request).store)
    return StreamingResponse(chunks, media_type="application/octet-stream")


@router.get("/backup")
async def p2p_backup(request: Request) -> StreamingResponse:
    """This node's whole store from one LevelDB snapshot, as a backup without the home's
    files (§20); one at a time (503 `busy` otherwise)."""
    node = node_of(request)
    chunks = serve_backup(node.store.db, node.genesis.chain_id)
    return StreamingResponse(chunks, media_type="application/octet-stream")
