"""Lineage exports of a dataset's verified story (docs/PROTOCOL.md §16.3, §16.4):
GET /v1/datasets/{hash}/prov (PROV-JSON, PROV-N, PROV-O Turtle) and /openlineage.

The node builds the bundle it would serve, verifies it against its own genesis
(`ledger.provenance.verify_bundle`), and converts the proven story with `node.lineage`; names
of keys are the ones its state holds (validators of genesis and of the set in force, and
registrars, first).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from ledger import provenance
from ledger.rules import participant_key
from node.lineage import openlineage, prov
from node.server.errors import NotFound
from node.server.http.encoding import reply
from node.server.http.public import DatasetHash, node_of
from node.server.service import NodeService

router = APIRouter()


MAX_PAGES = 10_000


def _story(service: NodeService, dataset: str) -> provenance.VerifiedStory:
    """The dataset's whole bundle (every page, against one checkpoint), verified."""
    store, ident = service.store, bytes.fromhex(dataset)
    first = provenance.proof_bundle(store, ident)
    if first is None:
        raise NotFound(f"no registered dataset {dataset}")
    pages = [first]
    height = first["checkpoint"]["header"]["height"]
    while pages[-1]["page"]["next"] is not None and len(pages) < MAX_PAGES:
        page = provenance.proof_bundle(store, ident, after=pages[-1]["page"]["next"], height=height)
        assert page is not None, "a registered dataset stays registered"
        pages.append(page)
    return provenance.verify_bundle(provenance.join_pages(pages), service.genesis)


def _names(service: NodeService, story: provenance.VerifiedStory) -> dict[bytes, str]:
    names = {key: "genesis registrar" for key in service.genesis.registrars}
    names.update({v.public_key: v.name for v in service.genesis.validators.validators})
    for validators in service.membership.sets_ahead():  # as governance changed the set
        names.update({v.public_key: v.name for v in validators.validators})
    state = service.store.state()
    for proven in story.events:
        for key in (proven.event.actor, getattr(proven.event.body, "to", None)):
            if isinstance(key, bytes) and key not in names:
                doc = state.get_doc(participant_key(key))
                if doc is not None:
                    names[key] = doc["name"]
    return names


@router.get("/v1/datasets/{dataset}/prov", tags=["datasets", "lineage"])
async def get_prov(
    request: Request,
    dataset: DatasetHash,
    format: Annotated[Literal["json", "provn", "ttl"], Query()] = "json",
) -> Response:
    """The verified story as W3C PROV: `json` (PROV-JSON), `provn` (PROV-N) or `ttl` (PROV-O)."""
    service = node_of(request)
    story = _story(service, dataset)
    doc = prov.story_document(story, service.genesis.chain_id, _names(service, story))
    return Response(prov.render(doc, format), media_type=prov.MEDIA_TYPES[format])


@router.get("/v1/datasets/{dataset}/openlineage", tags=["datasets", "lineage"])
async def get_openlineage(request: Request, dataset: DatasetHash) -> Response:
    """The verified story as OpenLineage RunEvents (register, derive and use events)."""
    service = node_of(request)
    story = _story(service, dataset)
    return reply(request, openlineage.export_document(story, service.genesis.chain_id))
