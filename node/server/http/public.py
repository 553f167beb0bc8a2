"""The public API under /v1 (docs/PROTOCOL.md §10): submit events, read the chain, get proofs.

Handlers reach the node service through `request.app.state.service`; they translate HTTP
to service calls and results to documents, and let errors propagate to `problems`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from consensus.messages import Evidence
from ledger import codec, provenance, transitions
from ledger.errors import Malformed
from ledger.rules import participant_key
from ledger.store import ChainView
from node.server import proposals as governance_view
from node.server.errors import ConsensusStopped, NotFound, NotReady
from node.server.http.encoding import (
    BatchRequest,
    SubmitRequest,
    from_hex,
    parse_submission,
    reply,
    wants_msgpack,
)
from node.server.http.problems import refusal
from node.server.readiness import not_ready_reason, view_of
from node.server.service import Accepted, NodeService, SubmitOutcome
from node.wire import JSON, MSGPACK

HEX64 = r"^[0-9a-f]{64}$"
HEX66 = r"^[0-9a-f]{66}$"
STATE_KIND = "^(" + "|".join(provenance.STATE_KINDS) + ")$"
STATE_ID = r"^[0-9a-f]{64}([0-9a-f]{2})?$"
MAX_PAGE = 500
MAX_INDEX = (1 << 63) - 1

DatasetHash = Annotated[str, Path(pattern=HEX64, description="SHA-256 of the dataset")]
EventId = Annotated[str, Path(pattern=HEX64, description="SHA-256 of the event body")]
PublicKey = Annotated[str, Path(pattern=HEX66, description="compressed P-256 key, hex")]
WaitCommit = Annotated[str | None, Query(pattern="^commit$")]

router = APIRouter()


def node_of(request: Request) -> NodeService:
    service: NodeService = request.app.state.service
    return service


def outcome_json(outcome: SubmitOutcome) -> dict[str, Any]:
    """One submission's outcome as the API reports it."""
    if isinstance(outcome, Accepted):
        doc: dict[str, Any] = {"event_id": outcome.event_id.hex(), "status": "pending"}
        if outcome.committed is not None:
            doc.update(
                status="committed",
                height=outcome.committed.height,
                leaf_index=outcome.committed.leaf_index,
            )
        return doc
    doc = refusal(outcome.error)
    if outcome.event_id is not None:
        doc = {"event_id": outcome.event_id.hex(), **doc}
    return doc


def leaf_of(service: NodeService, event_id: str) -> int:
    location = service.store.locate(bytes.fromhex(event_id))
    if location is None:
        raise NotFound(f"no committed event {event_id}")
    return location.leaf_index


@router.post(
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
async def submit_event(request: Request, wait: WaitCommit = None) -> Response:
    """Submit a signed envelope `{"envelope": hex}` (JSON, or msgpack with hex or bin).

    With `?wait=commit`, answer once it is committed, with its height and leaf index.
    """
    envelope = parse_submission(await request.body(), request.headers.get("content-type"))
    outcome = await node_of(request).submit(envelope, wait == "commit")
    return reply(request, outcome_json(outcome), 200 if wait == "commit" else 202)


@router.post("/v1/events/batch", status_code=202, tags=["events"])
async def submit_batch(request: Request, body: BatchRequest, wait: WaitCommit = None) -> Response:
    """Submit up to 1,000 envelopes; each gets its own outcome, in order.

    An accepted envelope answers `{"event_id", "status": "pending"}` (with `?wait=commit`:
    `"committed"`, `height`, `leaf_index`); a refused one answers `{"status": <code>,
    "title", "detail"}` with the code a single submit would get.
    """
    envelopes = [from_hex(item, "envelope") for item in body.envelopes]
    outcomes = await node_of(request).submit_batch(envelopes, wait == "commit")
    results = [outcome_json(o) for o in outcomes]
    return reply(request, {"results": results}, 200 if wait == "commit" else 202)


@router.get("/v1/events/{event_id}", tags=["events"])
async def get_event(request: Request, event_id: EventId) -> Response:
    """The event, decoded, with its envelope, height and leaf index."""
    service = node_of(request)
    return reply(request, provenance.event_json(service.store, leaf_of(service, event_id)))


@router.get("/v1/events/{event_id}/proof", tags=["proofs"])
async def get_event_proof(request: Request, event_id: EventId) -> Response:
    """Inclusion proof of the event against the latest checkpoint."""
    service = node_of(request)
    return reply(request, provenance.inclusion(service.store, leaf_of(service, event_id)))


@router.get("/v1/datasets/{dataset}", tags=["datasets"])
async def get_dataset(request: Request, dataset: DatasetHash) -> Response:
    """Owner, origin, status, parents, children and counts."""
    summary = provenance.dataset_summary(node_of(request).store, bytes.fromhex(dataset))
    if summary is None:
        raise NotFound(f"no registered dataset {dataset}")
    return reply(request, summary)


def _bundle_page(view: ChainView, dataset: bytes, **page: Any) -> dict[str, Any] | None:
    """One bundle page read from a snapshot, on a worker thread, which then releases it."""
    with view:
        return provenance.proof_bundle(view, dataset, **page)


@router.get("/v1/datasets/{dataset}/provenance", tags=["datasets", "proofs"])
async def get_provenance(
    request: Request,
    dataset: DatasetHash,
    after: Annotated[int, Query(ge=-1, le=MAX_INDEX)] = -1,
    height: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None,
    limit: Annotated[int, Query(ge=1, le=provenance.MAX_PAGE_EVENTS)] = (
        provenance.MAX_PAGE_EVENTS
    ),
) -> Response:
    """A page of the dataset's complete proof bundle (docs/PROTOCOL.md §9).

    The first page is at the latest checkpoint and carries the state proofs; while
    `page.next` is not null, ask for `?after=<next>&height=<the first page's height>`.
    Pages are read from a snapshot of the store, off the event loop, at most 1 MiB of JSON.
    """
    view = node_of(request).store.view()
    bundle = await asyncio.to_thread(
        _bundle_page, view, bytes.fromhex(dataset), after=after, height=height, limit=limit
    )
    if bundle is None:
        raise NotFound(f"no registered dataset {dataset}")
    return reply(request, bundle)


@router.get("/v1/state/{kind}/{key}", tags=["proofs"])
async def get_state(
    request: Request,
    kind: Annotated[str, Path(pattern=STATE_KIND, description="what kind of record")],
    key: Annotated[str, Path(pattern=STATE_ID, description="its id: 32 or 33 bytes, hex")],
) -> Response:
    """A state record, or its absence, with its proof against the latest checkpoint's
    `state_root`: a participant or a signer's commitment by public key, a dataset by hash,
    a grant by id. An absent record is answered 200 with `value` null and its proof."""
    answer = provenance.state_answer(node_of(request).store, kind, bytes.fromhex(key))
    if answer is None:
        raise NotFound("no block has been committed yet")
    return reply(request, answer)


@router.get("/v1/participants/{public_key}", tags=["participants"])
async def get_participant(request: Request, public_key: PublicKey) -> Response:
    """The admitted participant's name and role."""
    service = node_of(request)
    key = bytes.fromhex(public_key)
    doc = service.store.state().get_doc(participant_key(key))
    if doc is None:
        if key in service.genesis.registrars:
            return reply(
                request, {"public_key": public_key, "name": "registrar", "role": "registrar"}
            )
        raise NotFound(f"no admitted participant {public_key}")
    return reply(request, {"public_key": public_key, "name": doc["name"], "role": doc["role"]})


@router.get("/v1/participants/{public_key}/events", tags=["participants"])
async def get_participant_events(
    request: Request,
    public_key: PublicKey,
    after: Annotated[int, Query(ge=-1, le=MAX_INDEX)] = -1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Response:
    """What one key signed, in log order; pass `next` as `after` for the next page."""
    store = node_of(request).store
    page = provenance.participant_events(store, bytes.fromhex(public_key), after, limit)
    following = page[-1]["leaf_index"] if len(page) == limit else None
    return reply(request, {"events": page, "next": following})


@router.get("/v1/checkpoint", tags=["proofs"])
async def get_checkpoint(request: Request) -> Response:
    """The latest header with its commit: this ledger's signed tree head."""
    point = provenance.checkpoint(node_of(request).store)
    if point is None:
        raise NotFound("no block has been committed yet")
    return reply(request, point)


@router.get("/v1/consistency", tags=["proofs"])
async def get_consistency(
    request: Request,
    first: Annotated[int, Query(ge=0, le=MAX_INDEX)],
    second: Annotated[int, Query(ge=0, le=MAX_INDEX)],
) -> Response:
    """RFC 9162 consistency proof between two tree sizes."""
    store = node_of(request).store
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


@router.get("/v1/blocks/{height}", tags=["blocks"])
async def get_block(request: Request, height: Annotated[int, Path(ge=1, le=MAX_INDEX)]) -> Response:
    """A block with its commit."""
    store = node_of(request).store
    block = store.block(height)
    commit = store.commit(height)
    if block is None or commit is None:
        raise NotFound(f"no block at height {height}")
    first = store.block_leaves(height).start
    return reply(
        request,
        {
            "header": block.header.to_json(),
            "header_bytes": block.header.encode().hex(),
            "block_hash": block.block_hash.hex(),
            "events": [provenance.event_json(store, first + i) for i in range(len(block.events))],
            "commit": commit.to_json(),
        },
    )


@router.get("/v1/status", tags=["node"])
async def get_status(request: Request) -> Response:
    """Height, round, mempool and peer state of this node."""
    return reply(request, node_of(request).status())


@router.get("/v1/genesis", tags=["node"])
async def get_genesis(request: Request) -> Response:
    """The genesis file, byte for byte: its SHA-256 is the fingerprint `status` reports."""
    service = node_of(request)
    if wants_msgpack(request):
        return reply(request, json.loads(service.genesis_bytes))
    return Response(service.genesis_bytes, media_type=JSON)


@router.get("/v1/validators", tags=["node", "governance"])
async def get_validators(request: Request) -> Response:
    """The validator set in force at the next height, each validator's reachability from this
    node, and the set scheduled for the height after when governance changed it."""
    service = node_of(request)
    reachable = {p.url: p for p in service.network.peers}
    height = service.store.height + 1
    current, following = service.membership.sets_ahead()
    validators = []
    for v in current.validators:
        doc = v.to_json()
        peer = reachable.get(v.url.rstrip("/"))
        doc["reachable"] = (
            True if v.public_key == service.public_key else bool(peer and peer.reachable)
        )
        validators.append(doc)
    answer: dict[str, Any] = {
        "height": height,
        "validators": validators,
        "total_power": current.total_power,
        "hash": current.hash().hex(),
    }
    if following != current:
        answer["next"] = {"height": height + 1, "validators": following.to_json()}
    return reply(request, answer)


@router.get("/v1/validators/history", tags=["governance", "proofs"])
async def get_validator_history(request: Request) -> Response:
    """Every validator-set transition from genesis to the head, each with the header and
    commit that certify it (docs/PROTOCOL.md §19.4), for verifiers to cache."""
    service = node_of(request)
    store = service.store
    return reply(
        request,
        {
            "chain_id": service.genesis.chain_id,
            "height": store.height,
            "transitions": transitions.transitions_json(store),
        },
    )


@router.get("/v1/governance/proposals", tags=["governance"])
async def get_proposals(
    request: Request, status: Annotated[str, Query(pattern="^(open|decided|all)$")] = "open"
) -> Response:
    """Governance proposals (open ones by default) with the power that approved them."""
    service = node_of(request)
    return reply(request, governance_view.proposals(service.store, status))


@router.get("/v1/evidence", tags=["node"])
async def get_evidence(
    request: Request,
    after: Annotated[int, Query(ge=-1, le=MAX_INDEX)] = -1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Response:
    """Equivocation evidence this node found and stored, in the order found (`next` pages)."""
    log = node_of(request).evidence_log
    page = [evidence_json(item.index, item.evidence) for item in log.page(after, limit)]
    following = page[-1]["index"] if len(page) == limit else None
    return reply(request, {"evidence": page, "next": following, "not_stored": log.not_stored})


def evidence_json(index: int, evidence: Evidence) -> dict[str, Any]:
    vote = evidence.vote_a
    return {
        "index": index,
        "validator": evidence.validator.hex(),
        "height": vote.height,
        "round": vote.round,
        "type": vote.type,
        "evidence": codec.encode(evidence.to_wire()).hex(),
    }


@router.get("/healthz", tags=["node"])
async def healthz(request: Request) -> Response:
    """Liveness: 200 while the consensus task runs, 503 if it has stopped."""
    service = node_of(request)
    if not service.consensus_alive:
        raise ConsensusStopped("see the node log")
    return reply(request, {"status": "ok", "height": service.store.height})


@router.get("/readyz", tags=["node"])
async def readyz(request: Request) -> Response:
    """Readiness: 200 when caught up and (a validator) voting; 503 `not-ready` with why."""
    service = node_of(request)
    reason = not_ready_reason(view_of(service))
    if reason is not None:
        raise NotReady(reason)
    return reply(request, {"status": "ready", "height": service.store.height})


@router.get("/metrics", tags=["node"], include_in_schema=False)
async def get_metrics(request: Request) -> Response:
    body, media_type = request.app.state.metrics.render()
    return Response(body, media_type=media_type)
