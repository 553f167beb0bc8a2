"""The HTTP face of a node: the public API of DESIGN.md §6 and the peer endpoints under /p2p/.

JSON by default, msgpack when the client sends or accepts `application/msgpack`. Every error
is an RFC 9457 problem document (see node/problems.py). Request bodies are capped before they
are read: 1 MiB for the public API, more for peers carrying blocks.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger import codec, provenance
from ledger.errors import Malformed
from ledger.rules import participant_key
from node.config import NodeSettings
from node.metrics import Metrics
from node.p2p import MAX_P2P_BODY, MSGPACK
from node.problems import NodeProblem, install_handlers, not_found, problem_document
from node.service import NodeService

HEX64 = r"^[0-9a-f]{64}$"
HEX66 = r"^[0-9a-f]{66}$"
MAX_ENVELOPE_HEX = 2 * 16 * 1024
MAX_PAGE = 500
MAX_INDEX = (1 << 63) - 1


DatasetHash = Annotated[str, Path(pattern=HEX64, description="SHA-256 of the dataset")]
EventId = Annotated[str, Path(pattern=HEX64, description="SHA-256 of the event body")]
PublicKey = Annotated[str, Path(pattern=HEX66, description="compressed P-256 key, hex")]


class BatchRequest(BaseModel):
    """Up to MAX_BATCH signed envelopes, hex-encoded."""

    model_config = ConfigDict(extra="forbid", strict=True)
    envelopes: list[
        Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2})+$", max_length=MAX_ENVELOPE_HEX)]
    ] = Field(min_length=1, max_length=1000)


class SubmitRequest(BaseModel):
    """A signed envelope, hex-encoded."""

    model_config = ConfigDict(extra="forbid", strict=True)
    envelope: str = Field(pattern=r"^([0-9a-fA-F]{2})+$", max_length=MAX_ENVELOPE_HEX)


class Guard:
    """ASGI middleware: caps request bodies (413 before reading them whole) and times requests."""

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
    body = json_bytes(
        problem_document(
            NodeProblem(413, "too-large", "Payload too large", f"bodies are limited to {limit} B"),
            path,
        )
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _wants_msgpack(request: Request) -> bool:
    return MSGPACK in request.headers.get("accept", "")


def reply(request: Request, doc: Any, status: int = 200) -> Response:
    """JSON, or msgpack when the client asked for it."""
    if _wants_msgpack(request):
        return Response(codec.encode(doc), status_code=status, media_type=MSGPACK)
    return Response(json_bytes(doc), status_code=status, media_type="application/json")


def parse_submission(body: bytes, content_type: str | None) -> bytes:
    """The envelope bytes of a submit request, from JSON or msgpack; Malformed otherwise."""
    if content_type is not None and content_type.split(";")[0].strip() == MSGPACK:
        doc = codec.decode(body)
        if (
            isinstance(doc, dict)
            and set(doc) == {"envelope"}
            and isinstance(doc["envelope"], bytes)
        ):
            return doc["envelope"]
        try:
            request = SubmitRequest.model_validate(doc)
        except ValidationError as exc:
            raise Malformed(_validation_detail(exc)) from exc
    else:
        try:
            request = SubmitRequest.model_validate_json(body)
        except ValidationError as exc:
            raise Malformed(_validation_detail(exc)) from exc
    return _hex(request.envelope, "envelope")


def _validation_detail(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
    )


def _hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise Malformed(f"{what} must be lowercase hex") from exc


def create_app(
    settings: NodeSettings, on_fatal: Callable[[BaseException], None] | None = None
) -> FastAPI:
    """The FastAPI app of one node; the node service starts and stops with it. `on_fatal`
    hears if the node's consensus task dies."""
    holder: dict[str, NodeService] = {}
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = NodeService(settings)
        service.on_fatal = on_fatal
        holder["service"] = service
        app.state.service = service
        metrics.bind(service)
        await service.start()
        try:
            yield
        finally:
            await service.stop()
            # Let the service go with its event loop, not at interpreter exit.
            holder.clear()
            del app.state.service
            metrics.bind(None)

    app = FastAPI(
        title="provledger node",
        version="1",
        description="Signed data-circulation events, agreed by BFT consensus, provable offline.",
        lifespan=lifespan,
    )
    install_handlers(app)

    def node() -> NodeService:
        return holder["service"]

    def leaf_of(event_id: str) -> int:
        location = node().store.locate(bytes.fromhex(event_id))
        if location is None:
            raise not_found(f"no committed event {event_id}")
        return location.leaf_index

    @app.post(
        "/v1/events",
        status_code=202,
        tags=["events"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": SubmitRequest.model_json_schema()},
                    MSGPACK: {"schema": SubmitRequest.model_json_schema()},
                },
            }
        },
    )
    async def submit_event(
        request: Request,
        wait: Annotated[str | None, Query(pattern="^commit$")] = None,
    ) -> Response:
        """Submit a signed envelope `{"envelope": hex}` (JSON, or msgpack with hex or bin).

        With `?wait=commit`, answer once it is committed, with its height and leaf index.
        """
        envelope = parse_submission(await request.body(), request.headers.get("content-type"))
        result = await node().submit(envelope, wait == "commit")
        return reply(request, result, 200 if wait == "commit" else 202)

    @app.post("/v1/events/batch", status_code=202, tags=["events"])
    async def submit_batch(
        request: Request,
        body: BatchRequest,
        wait: Annotated[str | None, Query(pattern="^commit$")] = None,
    ) -> Response:
        """Submit up to 1,000 envelopes; each gets its own outcome, in order.

        An accepted envelope answers `{"event_id", "status": "pending"}` (with `?wait=commit`:
        `"committed"`, `height`, `leaf_index`); a refused one answers `{"status": <code>,
        "title", "detail"}` with the code a single submit would get.
        """
        envelopes = [_hex(item, "envelope") for item in body.envelopes]
        results = await node().submit_batch(envelopes, wait == "commit")
        return reply(request, {"results": results}, 200 if wait == "commit" else 202)

    @app.get("/v1/events/{event_id}", tags=["events"])
    async def get_event(request: Request, event_id: EventId) -> Response:
        """The event, decoded, with its envelope, height and leaf index."""
        return reply(request, provenance.event_json(node().store, leaf_of(event_id)))

    @app.get("/v1/events/{event_id}/proof", tags=["proofs"])
    async def get_event_proof(request: Request, event_id: EventId) -> Response:
        """Inclusion proof of the event against the latest checkpoint."""
        return reply(request, provenance.inclusion(node().store, leaf_of(event_id)))

    @app.get("/v1/datasets/{dataset}", tags=["datasets"])
    async def get_dataset(request: Request, dataset: DatasetHash) -> Response:
        """Owner, origin, status, parents, children and counts."""
        summary = provenance.dataset_summary(node().store, bytes.fromhex(dataset))
        if summary is None:
            raise not_found(f"no registered dataset {dataset}")
        return reply(request, summary)

    @app.get("/v1/datasets/{dataset}/provenance", tags=["datasets", "proofs"])
    async def get_provenance(request: Request, dataset: DatasetHash) -> Response:
        """A self-contained proof bundle of the dataset's story."""
        bundle = provenance.proof_bundle(node().store, bytes.fromhex(dataset))
        if bundle is None:
            raise not_found(f"no registered dataset {dataset}")
        return reply(request, bundle)

    @app.get("/v1/participants/{public_key}", tags=["participants"])
    async def get_participant(request: Request, public_key: PublicKey) -> Response:
        """The admitted participant's name and role."""
        key = bytes.fromhex(public_key)
        doc = node().store.state().get_doc(participant_key(key))
        if doc is None:
            if key in node().genesis.registrars:
                return reply(
                    request, {"public_key": public_key, "name": "registrar", "role": "registrar"}
                )
            raise not_found(f"no admitted participant {public_key}")
        return reply(request, {"public_key": public_key, "name": doc["name"], "role": doc["role"]})

    @app.get("/v1/participants/{public_key}/events", tags=["participants"])
    async def get_participant_events(
        request: Request,
        public_key: PublicKey,
        after: Annotated[int, Query(ge=-1, le=MAX_INDEX)] = -1,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response:
        """What one key signed, in log order; pass `next` as `after` for the next page."""
        page = provenance.participant_events(node().store, bytes.fromhex(public_key), after, limit)
        following = page[-1]["leaf_index"] if len(page) == limit else None
        return reply(request, {"events": page, "next": following})

    @app.get("/v1/checkpoint", tags=["proofs"])
    async def get_checkpoint(request: Request) -> Response:
        """The latest header with its commit: this ledger's signed tree head."""
        point = provenance.checkpoint(node().store)
        if point is None:
            raise not_found("no block has been committed yet")
        return reply(request, point)

    @app.get("/v1/consistency", tags=["proofs"])
    async def get_consistency(
        request: Request,
        first: Annotated[int, Query(ge=0, le=MAX_INDEX)],
        second: Annotated[int, Query(ge=0, le=MAX_INDEX)],
    ) -> Response:
        """RFC 9162 consistency proof between two tree sizes."""
        store = node().store
        if first > second or second > store.tree_size:
            raise Malformed(f"need 0 <= first <= second <= {store.tree_size}")
        proof = store.consistency_proof(first, second)
        return reply(
            request,
            {
                "first": first,
                "second": second,
                "first_root": store.root(first).hex(),
                "second_root": store.root(second).hex(),
                "proof": [h.hex() for h in proof],
            },
        )

    @app.get("/v1/blocks/{height}", tags=["blocks"])
    async def get_block(
        request: Request, height: Annotated[int, Path(ge=1, le=MAX_INDEX)]
    ) -> Response:
        """A block with its commit."""
        store = node().store
        block = store.block(height)
        commit = store.commit(height)
        if block is None or commit is None:
            raise not_found(f"no block at height {height}")
        first = store.block_leaves(height).start
        return reply(
            request,
            {
                "header": block.header.to_json(),
                "header_bytes": block.header.encode().hex(),
                "block_hash": block.block_hash.hex(),
                "events": [
                    provenance.event_json(store, first + i) for i in range(len(block.events))
                ],
                "commit": commit.to_json(),
            },
        )

    @app.get("/v1/status", tags=["node"])
    async def get_status(request: Request) -> Response:
        """Height, round, mempool and peer state of this node."""
        return reply(request, node().status())

    @app.get("/v1/genesis", tags=["node"])
    async def get_genesis(request: Request) -> Response:
        """The genesis document: chain id, validators, registrars, admission."""
        return reply(request, node().genesis.to_json())

    @app.get("/v1/validators", tags=["node"])
    async def get_validators(request: Request) -> Response:
        """The validator set with each validator's reachability from this node."""
        reachable = {p.url: p for p in node().network.peers}
        validators = []
        for v in node().genesis.validators.validators:
            doc = v.to_json()
            peer = reachable.get(v.url.rstrip("/"))
            doc["reachable"] = (
                True if v.public_key == node().public_key else bool(peer and peer.reachable)
            )
            validators.append(doc)
        return reply(
            request,
            {"validators": validators, "total_power": node().genesis.validators.total_power},
        )

    @app.get("/healthz", tags=["node"])
    async def healthz(request: Request) -> Response:
        """Liveness: 200 while the consensus task runs, 503 if it has stopped."""
        if not node().consensus_alive:
            raise NodeProblem(503, "consensus-stopped", "Consensus stopped", "see the node log")
        return reply(request, {"status": "ok", "height": node().store.height})

    @app.get("/metrics", tags=["node"], include_in_schema=False)
    async def get_metrics() -> Response:
        body, media_type = metrics.render()
        return Response(body, media_type=media_type)

    # --- peer endpoints (msgpack, not part of the public API) ------------------------------

    async def _peer_doc(request: Request) -> dict[str, Any]:
        doc = codec.decode(await request.body(), MAX_P2P_BODY)
        if not isinstance(doc, dict):
            raise Malformed("a peer message is a map")
        return doc

    def _bytes_list(doc: dict[str, Any], name: str) -> list[bytes]:
        items = doc.get(name)
        if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
            raise Malformed(f"{name} must be a list of byte strings")
        return items

    @app.post("/p2p/consensus", status_code=204, include_in_schema=False)
    async def p2p_consensus(request: Request) -> Response:
        node().receive_consensus(_bytes_list(await _peer_doc(request), "messages"))
        return Response(status_code=204)

    @app.post("/p2p/events", status_code=204, include_in_schema=False)
    async def p2p_events(request: Request) -> Response:
        doc = await _peer_doc(request)
        sender = doc.get("from")
        await node().receive_events(
            _bytes_list(doc, "events"), sender if isinstance(sender, str) else ""
        )
        return Response(status_code=204)

    @app.get("/p2p/status", include_in_schema=False)
    async def p2p_status() -> Response:
        return Response(codec.encode({"height": node().store.height}), media_type=MSGPACK)

    @app.get("/p2p/blocks/{height}", include_in_schema=False)
    async def p2p_block(height: int) -> Response:
        store = node().store
        block = store.block(height) if 1 <= height <= MAX_INDEX else None
        commit = store.commit(height) if block is not None else None
        if block is None or commit is None:
            raise not_found(f"no block at height {height}")
        return Response(
            codec.encode({"block": block.to_wire(), "commit": commit.to_wire()}),
            media_type=MSGPACK,
        )

    return Guard(app, metrics, settings.max_body_bytes, MAX_P2P_BODY)  # type: ignore[return-value]
