"""A verified story as OpenLineage RunEvents (PROTOCOL §16.4), and the reverse naming rules
the ingest server uses.

Export: the dataset's origin and every derive, use in the story become one COMPLETE RunEvent
each, at the event's time: a `register` has the dataset as its only output; a `derive` has its
inputs (the parents) as inputs and its output (the child) as output; a `use` has the dataset as
its only input. Datasets are named `provledger://CHAIN` / the 64-hex SHA-256 and carry a
`provledger` facet (`sha256`) and a `version` facet (`datasetVersion` = the SHA-256); the run
carries a custom `provledger` run facet with the event id, type, actor, leaf index and the
checkpoint (height, block hash, tree size, tree root, time). The run id is a UUIDv7 made from
the event time and id, unless the event was ingested from OpenLineage (then the original
run id, job namespace and job name, kept in the event's `meta`, come back out).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from ledger import events
from ledger.provenance import ProvenEvent, VerifiedStory
from node.lineage.prov import iso_time

OPENLINEAGE_SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
RUN_EVENT_SCHEMA = f"{OPENLINEAGE_SPEC}#/$defs/RunEvent"
VERSION_FACET_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json"
    "#/$defs/DatasetVersionDatasetFacet"
)
PRODUCER = "https://provledger.dev/provledger"
RUN_FACET_SCHEMA = (
    "https://provledger.dev/spec/facets/1-0-0/ProvledgerRunFacet.json#/$defs/ProvledgerRunFacet"
)
DATASET_FACET_SCHEMA = (
    "https://provledger.dev/spec/facets/1-0-0/ProvledgerDatasetFacet.json"
    "#/$defs/ProvledgerDatasetFacet"
)
FACET = "provledger"
EXPORTED_TYPES = ("register", "derive", "use")
# Meta keys the ingest server writes on register/derive events, read back on export.
META_RUN_ID = "openlineage.run"
META_JOB_NAMESPACE = "openlineage.job_namespace"
META_JOB_NAME = "openlineage.job"
META_NAMESPACE = "openlineage.namespace"
META_NAME = "openlineage.name"
HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def namespace(chain_id: str) -> str:
    return f"provledger://{chain_id}"


def run_id(event: events.SignedEvent) -> str:
    """A UUIDv7 from the event's time (ms) and the first 80 bits of its id: stable per event."""
    ms = event.body.time & ((1 << 48) - 1)
    value = (ms << 80) | int.from_bytes(event.event_id[:10], "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def dataset_facets(dataset: bytes) -> dict[str, Any]:
    """The facets that name a dataset by its SHA-256 (what the ingest server reads back)."""
    return {
        FACET: {"_producer": PRODUCER, "_schemaURL": DATASET_FACET_SCHEMA, "sha256": dataset.hex()},
        "version": {
            "_producer": PRODUCER,
            "_schemaURL": VERSION_FACET_SCHEMA,
            "datasetVersion": dataset.hex(),
        },
    }


def _dataset(chain_id: str, dataset: bytes) -> dict[str, Any]:
    return {
        "namespace": namespace(chain_id),
        "name": dataset.hex(),
        "facets": dataset_facets(dataset),
    }


def _meta_text(meta: Mapping[str, events.MetaValue], key: str) -> str | None:
    value = meta.get(key)
    return value if isinstance(value, str) and value else None


def _job(proven: ProvenEvent, chain_id: str) -> dict[str, Any]:
    body = proven.event.body
    meta = body.meta if isinstance(body, events.Register | events.Derive) else {}
    name = _meta_text(meta, META_JOB_NAME) or f"{proven.event.type}-{body_dataset(body).hex()[:16]}"
    ns = _meta_text(meta, META_JOB_NAMESPACE) or namespace(chain_id)
    return {"namespace": ns, "name": name, "facets": {}}


def body_dataset(body: events.EventBody) -> bytes:
    dataset = getattr(body, "dataset", None)
    assert isinstance(dataset, bytes), "exported events name a dataset"
    return dataset


def _run_id(proven: ProvenEvent) -> str:
    body = proven.event.body
    meta = body.meta if isinstance(body, events.Register | events.Derive) else {}
    given = _meta_text(meta, META_RUN_ID)
    if given is not None:
        try:
            return str(uuid.UUID(given))
        except ValueError:
            pass
    return run_id(proven.event)


def _run_facet(proven: ProvenEvent, story: VerifiedStory, chain_id: str) -> dict[str, Any]:
    header = story.checkpoint
    return {
        "_producer": PRODUCER,
        "_schemaURL": RUN_FACET_SCHEMA,
        "chain": chain_id,
        "eventId": proven.event.event_id.hex(),
        "eventType": proven.event.type,
        "actor": proven.event.actor.hex(),
        "leafIndex": proven.leaf_index,
        "checkpoint": {
            "height": header.height,
            "blockHash": header.block_hash.hex(),
            "treeSize": header.tree_size,
            "treeRoot": header.tree_root.hex(),
            "time": iso_time(header.time),
        },
    }


def run_event(proven: ProvenEvent, story: VerifiedStory, chain_id: str) -> dict[str, Any]:
    """One COMPLETE RunEvent for a register, derive or use event of the story."""
    body = proven.event.body
    inputs: list[bytes] = []
    outputs: list[bytes] = []
    if isinstance(body, events.Register):
        outputs = [body.dataset]
    elif isinstance(body, events.Derive):
        inputs, outputs = list(body.inputs), [body.dataset]
    elif isinstance(body, events.Use):
        inputs = [body.dataset]
    else:
        raise ValueError(f"{proven.event.type} events are not exported as runs")
    return {
        "eventType": "COMPLETE",
        "eventTime": iso_time(body.time),
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA,
        "run": {"runId": _run_id(proven), "facets": {FACET: _run_facet(proven, story, chain_id)}},
        "job": _job(proven, chain_id),
        "inputs": [_dataset(chain_id, d) for d in inputs],
        "outputs": [_dataset(chain_id, d) for d in outputs],
    }


def story_run_events(story: VerifiedStory, chain_id: str) -> list[dict[str, Any]]:
    """The story's register, derive and use events as RunEvents, in log order."""
    return [run_event(p, story, chain_id) for p in story.events if p.event.type in EXPORTED_TYPES]


def export_document(story: VerifiedStory, chain_id: str) -> dict[str, Any]:
    """What GET /v1/datasets/{hash}/openlineage answers: the dataset, chain and its runs."""
    return {
        "dataset": story.dataset.hex(),
        "namespace": namespace(chain_id),
        "checkpoint_height": story.checkpoint.height,
        "events": story_run_events(story, chain_id),
    }


def dataset_hash(dataset: Mapping[str, Any]) -> bytes | None:
    """The SHA-256 an OpenLineage dataset names: the `provledger` facet's `sha256`, else a
    `version` facet whose `datasetVersion` is 64 hex digits; None if neither."""
    facets = dataset.get("facets")
    if not isinstance(facets, Mapping):
        return None
    ours, version = facets.get(FACET), facets.get("version")
    candidates = (
        ours.get("sha256") if isinstance(ours, Mapping) else None,
        version.get("datasetVersion") if isinstance(version, Mapping) else None,
    )
    for candidate in candidates:
        if isinstance(candidate, str) and HEX64.fullmatch(candidate):
            return bytes.fromhex(candidate)
    return None
