"""Provenance: what the chain says about a dataset or a participant, and proof bundles that
anyone holding only the genesis file can check offline.

A bundle is JSON: the dataset id, one checkpoint (header bytes plus a commit signed by more
than 2/3 of the validators), and every event naming the dataset with its RFC 9162 inclusion
proof against that checkpoint's tree. `verify_bundle` trusts nothing in the bundle except
what the genesis validators signed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger import events, merkle
from ledger.blocks import Commit, Header, verify_checkpoint
from ledger.errors import BadSignature, LedgerError, VerificationFailed

# Annotations inside VerifiedStory, whose `events` field shadows the module, name it directly.
from ledger.events import SignedEvent
from ledger.genesis import Genesis
from ledger.rules import dataset_key
from ledger.store import Store

BUNDLE_VERSION = 1
MAX_LINEAGE_DEPTH = 16


def event_json(store: Store, leaf_index: int) -> dict[str, Any]:
    """An event as the API shows it: decoded fields, envelope, height and leaf index."""
    event = store.event_at(leaf_index)
    doc = event.to_json()
    location = store.locate(event.event_id)
    assert location is not None and location.leaf_index == leaf_index
    doc["height"] = location.height
    doc["leaf_index"] = leaf_index
    return doc


def dataset_summary(store: Store, dataset: bytes) -> dict[str, Any] | None:
    """Owner, origin, status, parents, children and per-type counts, or None if unknown."""
    doc = store.state().get_doc(dataset_key(dataset))
    if doc is None:
        return None
    return {
        "dataset": dataset.hex(),
        "owner": doc["owner"].hex(),
        "origin": doc["origin"].hex(),
        "open": doc["open"],
        "status": doc["status"],
        "registered_height": doc["height"],
        "meta": events.to_json_value(doc["meta"]),
        "parents": [p.hex() for p in store.parents(dataset)],
        "children": [c.hex() for c in store.children(dataset)],
        "counts": doc["counts"],
        "events": sum(doc["counts"].values()),
    }


def history(store: Store, dataset: bytes) -> list[dict[str, Any]]:
    """Every event that names `dataset`, in log order."""
    return [event_json(store, i) for i in store.dataset_leaves(dataset)]


def lineage(store: Store, dataset: bytes, *, up: bool, depth: int) -> list[tuple[bytes, bytes]]:
    """Lineage edges (parent, child) reachable from `dataset` within `depth` steps."""
    depth = max(0, min(depth, MAX_LINEAGE_DEPTH))
    edges: list[tuple[bytes, bytes]] = []
    frontier, seen = [dataset], {dataset}
    for _ in range(depth):
        next_frontier = []
        for node in frontier:
            for other in store.parents(node) if up else store.children(node):
                edges.append((other, node) if up else (node, other))
                if other not in seen:
                    seen.add(other)
                    next_frontier.append(other)
        frontier = next_frontier
    return edges


def participant_events(
    store: Store, actor: bytes, after: int = -1, limit: int = 100
) -> list[dict[str, Any]]:
    """What one key signed, in log order, after leaf index `after` (a page of `limit`)."""
    return [event_json(store, i) for i in store.actor_leaves(actor, after, limit)]


def checkpoint(store: Store, height: int | None = None) -> dict[str, Any] | None:
    """The header and commit at `height` (default: the head) as JSON."""
    height = store.height if height is None else height
    header_bytes = store.header_bytes(height)
    commit = store.commit(height)
    if header_bytes is None or commit is None:
        return None
    header = Header.decode(header_bytes)
    return {
        "header": header.to_json(),
        "header_bytes": header_bytes.hex(),
        "block_hash": header.block_hash.hex(),
        "commit": commit.to_json(),
        "tree_size": header.tree_size,
        "root_hash": header.tree_root.hex(),
    }


def inclusion(store: Store, leaf_index: int, height: int | None = None) -> dict[str, Any]:
    """An inclusion proof for one leaf against the checkpoint at `height` (default: head)."""
    point = checkpoint(store, height)
    assert point is not None
    size = point["tree_size"]
    return {
        "leaf_index": leaf_index,
        "tree_size": size,
        "audit_path": [h.hex() for h in store.inclusion_proof(leaf_index, size)],
        "leaf_hash": merkle.leaf_hash(store.envelope(leaf_index)).hex(),
        "root_hash": point["root_hash"],
        "checkpoint": point,
    }


def proof_bundle(store: Store, dataset: bytes) -> dict[str, Any] | None:
    """A self-contained proof of the dataset's story against the latest checkpoint."""
    if store.state().get(dataset_key(dataset)) is None:
        return None
    point = checkpoint(store)
    assert point is not None, "a registered dataset implies at least one block"
    size = point["tree_size"]
    entries = []
    for leaf_index in store.dataset_leaves(dataset):
        doc = event_json(store, leaf_index)
        doc["audit_path"] = [h.hex() for h in store.inclusion_proof(leaf_index, size)]
        entries.append(doc)
    return {
        "version": BUNDLE_VERSION,
        "dataset": dataset.hex(),
        "checkpoint": point,
        "events": entries,
        "lineage": {
            "parents": [p.hex() for p in store.parents(dataset)],
            "children": [c.hex() for c in store.children(dataset)],
        },
    }


@dataclass(frozen=True)
class ProvenEvent:
    event: events.SignedEvent
    leaf_index: int


@dataclass(frozen=True)
class GrantStatus:
    event: events.SignedEvent
    revoked_by: events.SignedEvent | None
    expired: bool

    @property
    def live(self) -> bool:
        return self.revoked_by is None and not self.expired


@dataclass(frozen=True)
class VerifiedStory:
    """A dataset's history as proven by a bundle against one signed checkpoint."""

    dataset: bytes
    checkpoint: Header
    events: tuple[ProvenEvent, ...]
    grants: tuple[GrantStatus, ...] = field(default=())

    @property
    def origin(self) -> SignedEvent:
        return self.events[0].event

    @property
    def owner(self) -> bytes:
        return self.origin.actor

    @property
    def parents(self) -> tuple[bytes, ...]:
        body = self.origin.body
        return body.inputs if isinstance(body, events.Derive) else ()

    @property
    def children(self) -> tuple[bytes, ...]:
        return tuple(
            p.event.body.dataset
            for p in self.events
            if isinstance(p.event.body, events.Derive) and p.event.body.dataset != self.dataset
        )

    def of_type(self, event_type: str) -> list[SignedEvent]:
        return [p.event for p in self.events if p.event.type == event_type]


def _field(doc: Any, name: str, kind: type) -> Any:
    if not isinstance(doc, dict) or not isinstance(doc.get(name), kind):
        raise VerificationFailed("malformed bundle", f"missing or mistyped {name!r}")
    return doc[name]


def _hex(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationFailed("malformed bundle", f"{name} is not hex")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise VerificationFailed("malformed bundle", f"{name} is not hex") from exc


def _verify_checkpoint(doc: Any, genesis: Genesis) -> Header:
    point = _field(doc, "checkpoint", dict)
    try:
        header = Header.decode(_hex(_field(point, "header_bytes", str), "header_bytes"))
        commit = Commit.from_json(_field(point, "commit", dict))
    except VerificationFailed:
        raise
    except LedgerError as exc:
        raise VerificationFailed("malformed checkpoint", str(exc)) from exc
    verify_checkpoint(header, commit, genesis.chain_id, genesis.validators)
    return header


def _names_dataset(event: events.SignedEvent, dataset: bytes, grants: set[bytes]) -> bool:
    if isinstance(event.body, events.Revoke):
        return event.body.grant in grants
    return dataset in event.body.datasets()


def verify_bundle(bundle: Any, genesis: Genesis) -> VerifiedStory:
    """Check a proof bundle offline against `genesis`; return the proven story.

    Checks: the checkpoint's commit signatures and voting power against the genesis
    validators and the header's hash; each event's encoding, chain and signature; each
    inclusion proof against the checkpoint's tree root; that each event names the dataset;
    and that the story starts with the dataset's origin. Raises VerificationFailed naming the
    first thing that failed.
    """
    if _field(bundle, "version", int) != BUNDLE_VERSION:
        raise VerificationFailed("malformed bundle", "unsupported bundle version")
    dataset = _hex(_field(bundle, "dataset", str), "dataset")
    header = _verify_checkpoint(bundle, genesis)
    proven: list[ProvenEvent] = []
    grant_ids: set[bytes] = set()
    last_index = -1
    for position, entry in enumerate(_field(bundle, "events", list)):
        where = f"event {position}"
        envelope = _hex(_field(entry, "envelope", str), f"{where} envelope")
        leaf_index = _field(entry, "leaf_index", int)
        path = [_hex(h, f"{where} audit path") for h in _field(entry, "audit_path", list)]
        try:
            event = events.decode_envelope(envelope, chain_id=genesis.chain_id)
        except BadSignature as exc:
            raise VerificationFailed("event signature invalid", f"{where}: {exc}") from exc
        except LedgerError as exc:
            raise VerificationFailed("event malformed", f"{where}: {exc}") from exc
        if leaf_index <= last_index:
            raise VerificationFailed("events out of log order", where)
        last_index = leaf_index
        try:
            merkle.verify_inclusion(
                merkle.leaf_hash(envelope), leaf_index, header.tree_size, path, header.tree_root
            )
        except VerificationFailed as exc:
            raise VerificationFailed("inclusion proof invalid", f"{where}: {exc.detail}") from exc
        if not _names_dataset(event, dataset, grant_ids):
            raise VerificationFailed("event is about another dataset", where)
        if isinstance(event.body, events.Grant):
            grant_ids.add(event.event_id)
        proven.append(ProvenEvent(event, leaf_index))
    if not proven:
        raise VerificationFailed("no origin", "the bundle has no events")
    origin = proven[0].event.body
    if not isinstance(origin, events.Register | events.Derive) or origin.dataset != dataset:
        raise VerificationFailed("no origin", "the first event does not register the dataset")
    return VerifiedStory(dataset, header, tuple(proven), _grant_statuses(proven, header.time))


def _grant_statuses(proven: list[ProvenEvent], now: int) -> tuple[GrantStatus, ...]:
    revocations = {
        p.event.body.grant: p.event for p in proven if isinstance(p.event.body, events.Revoke)
    }
    statuses = []
    for p in proven:
        body = p.event.body
        if isinstance(body, events.Grant):
            expired = body.expires is not None and body.expires <= now
            statuses.append(GrantStatus(p.event, revocations.get(p.event.event_id), expired))
    return tuple(statuses)
