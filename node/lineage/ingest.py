"""OpenLineage ingest (PROTOCOL §16.5): an ASGI app that accepts OpenLineage's HTTP transport
(`POST /api/v1/lineage`) and records each COMPLETE RunEvent as provledger events signed with
one organisation's key, through a node's public API.

A run becomes, in order: a `use` of every input (purpose: the run's `provledger` facet's
`purpose`, else the server's default), then for every output a `derive` from all inputs, or a
`register` if the run has no inputs. Each is submitted with `?wait=commit`; the first refusal
stops the run and is returned to the client with the node's status (403 for a use without a
grant, 409 for an output already registered, ...), together with what was recorded before it.
A dataset is named by its SHA-256 (`node.lineage.openlineage.dataset_hash`); a run naming a
dataset without one is refused with 400 before anything is signed. Runs in other states
(START, RUNNING, FAIL, ABORT, OTHER) and dataset or job events are acknowledged and ignored.

A raw ASGI callable served by uvicorn, so that it needs neither the daemon nor FastAPI.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from ledger import crypto, events
from ledger.errors import LedgerError
from node.client import AsyncNodeClient, ClientError
from node.clock import now_ms
from node.lineage import openlineage as ol

log = logging.getLogger("provledger.openlineage")

LINEAGE_PATH = "/api/v1/lineage"
MAX_BODY_BYTES = 1 << 20
MAX_DATASETS = 64
PROBLEM_BASE = "https://provledger.dev/problems/"
HOW_TO_NAME = (
    'add a dataset facet "provledger": {"sha256": "<64 hex>"}, or a "version" facet whose '
    '"datasetVersion" is the 64-hex SHA-256 of the data'
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class IngestError(Exception):
    """A request the ingest server refuses: an HTTP status, a problem slug and title, detail."""

    def __init__(self, status: int, slug: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.extra = extra

    def document(self, instance: str) -> dict[str, Any]:
        return {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            **self.extra,
        }


@dataclass(frozen=True)
class PlannedRun:
    """What one RunEvent will record: the inputs' and outputs' hashes and names."""

    run_id: str
    job_namespace: str
    job_name: str
    purpose: str
    inputs: tuple[tuple[bytes, str, str], ...]  # (hash, namespace, name)
    outputs: tuple[tuple[bytes, str, str], ...]


def _malformed(detail: str) -> IngestError:
    return IngestError(400, "malformed", "Malformed OpenLineage event", detail)


def _text(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise _malformed(f"{where} needs a non-empty string {key!r}")
    return value


def _datasets(run: Mapping[str, Any], role: str) -> tuple[tuple[bytes, str, str], ...]:
    items = run.get(role) or []
    if not isinstance(items, list) or len(items) > MAX_DATASETS:
        raise _malformed(f"{role} must be a list of at most {MAX_DATASETS} datasets")
    named = []
    for item in items:
        if not isinstance(item, Mapping):
            raise _malformed(f"each of {role} is an object")
        ns, name = _text(item, "namespace", role), _text(item, "name", role)
        digest = ol.dataset_hash(item)
        if digest is None:
            raise IngestError(
                400,
                "dataset-without-hash",
                "Dataset without a SHA-256",
                f"{role[:-1]} dataset {ns}/{name} names no SHA-256: {HOW_TO_NAME}",
            )
        named.append((digest, ns, name))
    hashes = [d for d, _, _ in named]
    if len(set(hashes)) != len(hashes):
        raise _malformed(f"{role} name the same SHA-256 twice")
    return tuple(named)


def plan_run(doc: Any, default_purpose: str) -> PlannedRun | None:
    """The run to record, or None for an event that records nothing (not a COMPLETE run)."""
    if not isinstance(doc, Mapping):
        raise _malformed("an OpenLineage event is a JSON object")
    run, job = doc.get("run"), doc.get("job")
    if run is None or job is None or doc.get("eventType", "COMPLETE") != "COMPLETE":
        return None
    if not isinstance(run, Mapping) or not isinstance(job, Mapping):
        raise _malformed("run and job are objects")
    facets = run.get("facets") if isinstance(run.get("facets"), Mapping) else {}
    ours = facets.get(ol.FACET) if isinstance(facets, Mapping) else None
    purpose = ours.get("purpose") if isinstance(ours, Mapping) else None
    inputs, outputs = _datasets(doc, "inputs"), _datasets(doc, "outputs")
    if {d for d, _, _ in inputs} & {d for d, _, _ in outputs}:
        raise _malformed("a dataset cannot be both an input and an output of one run")
    return PlannedRun(
        run_id=_text(run, "runId", "run"),
        job_namespace=_text(job, "namespace", "job"),
        job_name=_text(job, "name", "job"),
        purpose=purpose if isinstance(purpose, str) and purpose else default_purpose,
        inputs=inputs,
        outputs=outputs,
    )


def _clip(text: str) -> str:
    return text[: events.MAX_TEXT]


def build_bodies(plan: PlannedRun, chain_id: str, actor: bytes) -> list[events.EventBody]:
    """The events of a planned run, in submission order (uses, then derives or registers)."""

    def common() -> dict[str, Any]:  # a fresh time and nonce per event
        return {
            "chain": chain_id,
            "actor": actor,
            "time": now_ms(),
            "nonce": os.urandom(events.NONCE_SIZE),
        }

    bodies: list[events.EventBody] = [
        events.Use(**common(), dataset=d, purpose=_clip(plan.purpose)) for d, _, _ in plan.inputs
    ]
    for digest, ns, name in plan.outputs:
        meta: dict[str, events.MetaValue] = {
            "title": _clip(name),
            ol.META_NAMESPACE: _clip(ns),
            ol.META_NAME: _clip(name),
            ol.META_JOB_NAMESPACE: _clip(plan.job_namespace),
            ol.META_JOB_NAME: _clip(plan.job_name),
            ol.META_RUN_ID: _clip(plan.run_id),
        }
        if plan.inputs:
            inputs = tuple(d for d, _, _ in plan.inputs)
            bodies.append(events.Derive(**common(), dataset=digest, inputs=inputs, meta=meta))
        else:
            bodies.append(events.Register(**common(), dataset=digest, meta=meta, open=False))
    return bodies


class IngestApp:
    """The ASGI app: POST /api/v1/lineage, GET /healthz; one node client for its lifetime."""

    def __init__(self, key: crypto.PrivateKey, node_url: str, purpose: str = "analytics") -> None:
        self.key = key
        self.node_url = node_url
        self.purpose = purpose
        self._client: AsyncNodeClient | None = None
        self._chain_id: str | None = None

    def client(self) -> AsyncNodeClient:
        if self._client is None:
            self._client = AsyncNodeClient(self.node_url)
        return self._client

    async def chain_id(self) -> str:
        if self._chain_id is None:
            try:
                genesis = await self.client().genesis()
            except ClientError as exc:
                raise IngestError(
                    502, "node-unreachable", "Node unavailable", exc.describe()
                ) from exc
            chain = genesis.get("chain_id")
            if not isinstance(chain, str):
                raise IngestError(502, "node-unreachable", "Node unavailable", "no chain id")
            self._chain_id = chain
        return self._chain_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path == "/healthz" and method == "GET":
                await _reply(send, 200, {"status": "ok"})
            elif path != LINEAGE_PATH:
                raise IngestError(404, "not-found", "Not found", f"no route {path}")
            elif method != "POST":
                raise IngestError(405, "method-not-allowed", "Method not allowed", "POST only")
            else:
                await _reply(send, 200, await self.ingest(await _read_body(scope, receive)))
        except IngestError as exc:
            await _reply(send, exc.status, exc.document(path), problem=True)

    async def ingest(self, body: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _malformed(f"the body is not JSON: {exc}") from exc
        plan = plan_run(doc, self.purpose)
        if plan is None:
            kind = doc.get("eventType") if isinstance(doc, Mapping) else None
            return {"recorded": [], "ignored": f"only COMPLETE runs are recorded (got {kind})"}
        chain_id = await self.chain_id()
        recorded: list[dict[str, Any]] = []
        for body_ in build_bodies(plan, chain_id, self.key.public_key):
            recorded.append(await self._submit(events.sign_event(self.key, body_), recorded))
        log.info("run %s recorded %d events", plan.run_id, len(recorded))
        return {"run": plan.run_id, "recorded": recorded}

    async def _submit(
        self, signed: events.SignedEvent, recorded: list[dict[str, Any]]
    ) -> dict[str, Any]:
        what = {
            "event_id": signed.event_id.hex(),
            "type": signed.type,
            "dataset": getattr(signed.body, "dataset", b"").hex(),
        }
        try:
            events.decode_envelope(signed.envelope, chain_id=signed.body.chain)
            result = await self.client().submit(signed.envelope, wait=True)
        except LedgerError as exc:
            raise _malformed(f"the {signed.type} event would not be valid: {exc}") from exc
        except ClientError as exc:
            status = exc.status if 400 <= exc.status < 500 else 502
            raise IngestError(
                status,
                "refused" if status < 500 else "node-unreachable",
                exc.title if status < 500 else "Node unavailable",
                f"the node refused the {signed.type} of {what['dataset']}: {exc.describe()}",
                refused=what,
                recorded=recorded,
            ) from exc
        return {**what, "height": result.get("height"), "leaf_index": result.get("leaf_index")}

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    declared = dict(scope.get("headers", [])).get(b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise IngestError(413, "too-large", "Payload too large", f"at most {MAX_BODY_BYTES} B")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise IngestError(400, "malformed", "Malformed input", "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise IngestError(413, "too-large", "Payload too large", f"at most {MAX_BODY_BYTES} B")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _reply(send: Send, status: int, doc: Any, problem: bool = False) -> None:
    body = json.dumps(doc).encode()
    media = "application/problem+json" if problem else "application/json"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
