"""Provenance: what the chain says about a dataset or a participant, proof bundles that
anyone holding only the genesis file can check offline, and proven state answers.

A bundle (docs/PROTOCOL.md §9) is JSON: the dataset id, one checkpoint (header bytes plus a
commit signed by more than 2/3 of the validators), the dataset's state record with its proof
against the checkpoint's `state_root` (the record carries the commitment to the dataset's
whole history), the state proof of each of its grants, and every event naming the dataset
with its RFC 9162 inclusion proof. `verify_bundle` trusts nothing in the bundle except what
the genesis validators signed, and refuses a story that is not complete. Bundles are served
in pages bounded by bytes; a verifier joins the pages (`join_pages`) before verifying.

A state answer (`state_answer`, `verify_state`) proves one record, or its absence, against
the latest checkpoint: a participant, a dataset, a grant or a signer's commitment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ledger import codec, events, merkle, smt, transitions
from ledger.blocks import Commit, Header, verify_checkpoint
from ledger.errors import BadSignature, LedgerError, Malformed, VerificationFailed

# Annotations inside VerifiedStory, whose `events` field shadows the module, name it directly.
from ledger.events import SignedEvent
from ledger.genesis import Genesis
from ledger.rules import (
    DATASET,
    EMPTY_HISTORY,
    GRANT,
    PARTICIPANT,
    SIGNED,
    dataset_key,
    grant_key,
    next_history,
    participant_key,
)
from ledger.store import ChainReader

BUNDLE_VERSION = 2
MAX_LINEAGE_DEPTH = 16
MAX_PAGE_BYTES = 256 << 10
"""A bundle page stops before the event entry that would take its JSON (on the first page with
the state proofs of the dataset and of the grants its events make) past this many bytes; it
always holds at least one event. With `MAX_PAGE_EVENTS` it bounds the work of one request."""
MAX_PAGE_EVENTS = 256
INCOMPLETE = "incomplete: the node omitted events"
STATE_KINDS: dict[str, tuple[bytes, int]] = {
    "participant": (PARTICIPANT, 33),
    "dataset": (DATASET, 32),
    "grant": (GRANT, 32),
    "commitment": (SIGNED, 33),
}
"""What `GET /v1/state/{kind}/{id}` answers: the state key prefix and the id's size."""


def event_json(store: ChainReader, leaf_index: int) -> dict[str, Any]:
    """An event as the API shows it: decoded fields, envelope, height and leaf index."""
    event = store.event_at(leaf_index)
    doc = event.to_json()
    location = store.locate(event.event_id)
    assert location is not None and location.leaf_index == leaf_index
    doc["height"] = location.height
    doc["leaf_index"] = leaf_index
    return doc


def dataset_summary(store: ChainReader, dataset: bytes) -> dict[str, Any] | None:
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


def history(store: ChainReader, dataset: bytes) -> list[dict[str, Any]]:
    """Every event that names `dataset`, in log order."""
    return [event_json(store, i) for i in store.dataset_leaves(dataset)]


def lineage(
    store: ChainReader, dataset: bytes, *, up: bool, depth: int
) -> list[tuple[bytes, bytes]]:
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
    store: ChainReader, actor: bytes, after: int = -1, limit: int = 100
) -> list[dict[str, Any]]:
    """What one key signed, in log order, after leaf index `after` (a page of `limit`)."""
    return [event_json(store, i) for i in store.actor_leaves(actor, after, limit)]


def checkpoint(store: ChainReader, height: int | None = None) -> dict[str, Any] | None:
    """The header and commit at `height` (default: the head) as JSON."""
    height = store.height if height is None else height
    header_bytes = store.header_bytes(height)
    commit = store.commit(height)
    if header_bytes is None or commit is None:
        return None
    header = Header.decode(header_bytes)
    point = {
        "header": header.to_json(),
        "header_bytes": header_bytes.hex(),
        "block_hash": header.block_hash.hex(),
        "commit": commit.to_json(),
        "tree_size": header.tree_size,
        "root_hash": header.tree_root.hex(),
    }
    steps = transitions.transitions_json(store, height)
    if steps:
        point["transitions"] = steps
    return point


def inclusion(store: ChainReader, leaf_index: int, height: int | None = None) -> dict[str, Any]:
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


def json_value(value: Any) -> Any:
    """A decoded state record as JSON: bytes as hex, maps and lists recursively."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value


def state_entry(store: ChainReader, key: bytes) -> dict[str, Any]:
    """One authenticated record (or its absence) with its proof against `state_root`."""
    value, proof = store.state_proof(key)
    return {
        "key": key.hex(),
        "value": None if value is None else value.hex(),
        "proof": proof.to_json(),
    }


def state_answer(store: ChainReader, kind: str, ident: bytes) -> dict[str, Any] | None:
    """`GET /v1/state/{kind}/{id}`: the record, decoded and as bytes, or its absence, with
    its proof against the head's checkpoint; None before the first block."""
    prefix, size = STATE_KINDS[kind]
    if len(ident) != size:
        raise Malformed(f"a {kind} is identified by {size} bytes")
    point = checkpoint(store)
    if point is None:
        return None
    entry = state_entry(store, prefix + ident)
    raw = entry["value"]
    record = None if raw is None else json_value(codec.decode(bytes.fromhex(raw)))
    return {"kind": kind, "id": ident.hex(), **entry, "record": record, "checkpoint": point}


def _entry_bytes(entry: dict[str, Any]) -> int:
    return len(json.dumps(entry, separators=(",", ":")))


def proof_bundle(
    store: ChainReader,
    dataset: bytes,
    *,
    after: int = -1,
    height: int | None = None,
    limit: int = MAX_PAGE_EVENTS,
    max_bytes: int = MAX_PAGE_BYTES,
) -> dict[str, Any] | None:
    """One page of the dataset's proof bundle, or None if the dataset is not registered.

    The first page (`after` = -1) is at the head and carries the dataset's state proof and
    those of the grants its own events make (`state.grants`); a later page continues after
    leaf `after` against the checkpoint at `height` (the first page's) and carries events
    only. No page costs more than its own events: a grant's status at the checkpoint follows
    from the complete story (its revocation is in it, its expiry in its body), so the state
    proofs of grants are extra evidence, not needed (docs/PROTOCOL.md §9.3). A page's
    `page.next` is the `after` of the next page, or None on the last.
    """
    first = after < 0
    if first:
        if height is not None and height != store.height:
            raise Malformed("the first page is at the head: pass height only with after")
        height = store.height
    elif height is None or not 1 <= height <= store.height:
        raise Malformed(f"a later page needs the first page's height (1 .. {store.height})")
    if store.state().get(dataset_key(dataset)) is None:
        return None
    point = checkpoint(store, height)
    assert point is not None, "a registered dataset implies at least one block"
    size = point["tree_size"]
    doc: dict[str, Any] = {"version": BUNDLE_VERSION, "dataset": dataset.hex(), "checkpoint": point}
    budget = max_bytes
    if first:
        doc["state"] = {"dataset": state_entry(store, dataset_key(dataset)), "grants": []}
        signer = _origin_signer(store, dataset)
        if signer is not None:
            doc["state"]["origin_signer"] = state_entry(store, participant_key(signer))
        doc["lineage"] = {
            "parents": [p.hex() for p in store.parents(dataset)],
            "children": [c.hex() for c in store.children(dataset)],
        }
        budget -= _entry_bytes(doc["state"])
    leaves = store.dataset_leaves(dataset, after, max(1, limit) + 1, below=size)
    entries: list[dict[str, Any]] = []
    grants: list[dict[str, Any]] = []
    for leaf_index in leaves[: max(1, limit)]:
        entry = event_json(store, leaf_index)
        entry["audit_path"] = [h.hex() for h in store.inclusion_proof(leaf_index, size)]
        grant = _grant_entry(store, entry, dataset) if first else None
        budget -= _entry_bytes(entry) + (_entry_bytes(grant) if grant is not None else 0)
        if entries and budget < 0:
            break
        entries.append(entry)
        if grant is not None:
            grants.append(grant)
    more = len(entries) < len(leaves)
    doc["events"] = entries
    if first:
        doc["state"]["grants"] = grants
    doc["page"] = {"after": after, "next": entries[-1]["leaf_index"] if more else None}
    return doc


def _origin_signer(store: ChainReader, dataset: bytes) -> bytes | None:
    """The key that signed the dataset's origin, when it is not the owner identity itself
    (a key the owner rotated to): its participant record proves which identity it acts for."""
    record = store.state().get_doc(dataset_key(dataset))
    location = store.locate(record["origin"])
    assert location is not None, "a dataset's origin is on the chain"
    actor = store.event_at(location.leaf_index).actor
    return None if actor == record["owner"] else actor


def _grant_entry(
    store: ChainReader, entry: dict[str, Any], dataset: bytes
) -> dict[str, Any] | None:
    """The state proof of the grant an event entry makes on `dataset`, if it makes one."""
    if entry.get("type") != events.Grant.TYPE or entry.get("dataset") != dataset.hex():
        return None
    return state_entry(store, grant_key(bytes.fromhex(entry["id"])))


def join_pages(pages: list[Any]) -> dict[str, Any]:
    """One bundle from its pages in order: the first page with every page's events.

    Each later page must be against the first page's checkpoint and continue where the
    previous one stopped; the joined bundle is then verified as a whole (`verify_bundle`).
    """
    if not pages or not isinstance(pages[0], dict):
        raise VerificationFailed("malformed bundle", "no first page")
    joined = dict(pages[0])
    point = _field(joined, "checkpoint", dict).get("header_bytes")
    collected = list(_field(joined, "events", list))
    for number, page in enumerate(pages[1:], start=2):
        if _field(page, "checkpoint", dict).get("header_bytes") != point:
            raise VerificationFailed(
                "malformed bundle", f"page {number} is against another checkpoint"
            )
        collected += _field(page, "events", list)
    joined["events"] = collected
    joined["page"] = {"after": -1, "next": None}
    return joined


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
    record: dict[str, Any] = field(default_factory=dict)
    """The dataset's state record at the checkpoint (owner, status, history commitment)."""

    @property
    def status(self) -> str:
        status = self.record.get("status")
        return status if isinstance(status, str) else "unknown"

    @property
    def origin(self) -> SignedEvent:
        return self.events[0].event

    @property
    def owner(self) -> bytes:
        """The owner's identity (the key first admitted; the origin's signer unless it is a
        key the owner rotated to, docs/PROTOCOL.md §19.3)."""
        owner = self.record.get("owner")
        return owner if isinstance(owner, bytes) else self.origin.actor

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
    steps = point.get("transitions", [])
    if not isinstance(steps, list):
        raise VerificationFailed("malformed checkpoint", "transitions is a list")
    signers = transitions.walk(genesis, steps, header.height)
    verify_checkpoint(header, commit, genesis.chain_id, signers)
    return header


def _names_dataset(event: events.SignedEvent, dataset: bytes, grants: set[bytes]) -> bool:
    if isinstance(event.body, events.Revoke):
        return event.body.grant in grants
    return dataset in event.body.datasets()


def _record(value: bytes | None, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        record = codec.decode(value)
    except Malformed as exc:
        raise VerificationFailed("malformed state record", f"{what}: {exc}") from exc
    if not isinstance(record, dict):
        raise VerificationFailed("malformed state record", f"{what} is not a map")
    return record


def _proven_entry(entry: Any, key: bytes, root: bytes, what: str) -> dict[str, Any] | None:
    """Check one state entry `{key, value, proof}` against `root`; its decoded record, or
    None for a proven absence."""
    if _hex(_field(entry, "key", str), f"{what} key") != key:
        raise VerificationFailed("malformed bundle", f"{what} is the proof of another key")
    raw = entry.get("value")
    value = None if raw is None else _hex(raw, f"{what} value")
    try:
        proof = smt.StateProof.from_json(entry.get("proof"))
    except Malformed as exc:
        raise VerificationFailed("malformed bundle", f"{what} proof: {exc}") from exc
    try:
        smt.verify(root, key, value, proof)
    except VerificationFailed as exc:
        raise VerificationFailed("state proof invalid", f"{what}: {exc.detail}") from exc
    return _record(value, what)


def _history(record: dict[str, Any], what: str) -> tuple[int, bytes]:
    length, head = record.get("events"), record.get("head")
    if type(length) is not int or not isinstance(head, bytes):
        raise VerificationFailed("malformed state record", f"{what} has no history commitment")
    return length, head


def _check_complete(record: dict[str, Any], proven: list[tuple[int, bytes]], height: int) -> None:
    """The events' history commitment must be the one in the proven dataset record."""
    length, head = _history(record, "the dataset record")
    chain = EMPTY_HISTORY
    for leaf_index, leaf in proven:
        chain = next_history(chain, leaf_index, leaf)
    if len(proven) != length:
        raise VerificationFailed(
            INCOMPLETE,
            f"the bundle has {len(proven)} events, the dataset's committed history at height "
            f"{height} has {length}",
        )
    if chain != head:
        raise VerificationFailed(
            INCOMPLETE,
            f"the bundle's {length} events are not the dataset's committed history at height "
            f"{height} (events substituted or out of order)",
        )


def verify_bundle(bundle: Any, genesis: Genesis) -> VerifiedStory:
    """Check a whole proof bundle (pages joined) offline against `genesis`; return the
    complete, proven story.

    Checks (docs/PROTOCOL.md §9.3): the checkpoint's commit signatures and voting power
    against the genesis validators and the header's hash; the dataset record's state proof
    against the header's `state_root`; each event's encoding, chain, signature and inclusion
    proof; that the events are exactly the dataset's committed history (the record's
    commitment); that each names the dataset and the story starts at its origin; and each
    grant's state proof. Raises VerificationFailed naming the first thing that failed.
    """
    if _field(bundle, "version", int) != BUNDLE_VERSION:
        raise VerificationFailed("malformed bundle", "unsupported bundle version")
    dataset = _hex(_field(bundle, "dataset", str), "dataset")
    header = _verify_checkpoint(bundle, genesis)
    state = _field(bundle, "state", dict)
    record = _proven_entry(
        _field(state, "dataset", dict), dataset_key(dataset), header.state_root, "dataset record"
    )
    if record is None:
        raise VerificationFailed(
            "no origin", f"the dataset is proven absent at height {header.height}"
        )
    _history(record, "the dataset record")
    proven = _proven_events(bundle, genesis, header)
    _check_complete(
        record, [(p.leaf_index, merkle.leaf_hash(p.event.envelope)) for p in proven], header.height
    )
    _check_story(proven, dataset, record, _origin_identity(state, proven, header))
    grants = _proven_grants(_field(state, "grants", list), proven, dataset, header)
    return VerifiedStory(dataset, header, tuple(proven), grants, record)


def _proven_events(bundle: Any, genesis: Genesis, header: Header) -> list[ProvenEvent]:
    proven: list[ProvenEvent] = []
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
        try:
            merkle.verify_inclusion(
                merkle.leaf_hash(envelope), leaf_index, header.tree_size, path, header.tree_root
            )
        except VerificationFailed as exc:
            raise VerificationFailed("inclusion proof invalid", f"{where}: {exc.detail}") from exc
        proven.append(ProvenEvent(event, leaf_index))
    return proven


def _origin_identity(state: dict[str, Any], proven: list[ProvenEvent], header: Header) -> bytes:
    """The identity the origin's signer acts for: itself, unless `state.origin_signer` proves
    (against the checkpoint) that the key was rotated in for another identity (§19.3)."""
    if not proven:
        raise VerificationFailed("no origin", "the bundle has no events")
    actor = proven[0].event.actor
    entry = state.get("origin_signer")
    if entry is None:
        return actor
    key = participant_key(actor)
    record = _proven_entry(entry, key, header.state_root, "the origin signer's record")
    identity = None if record is None else record.get("identity")
    if not isinstance(identity, bytes):
        raise VerificationFailed("no origin", "the origin signer's record names no identity")
    return identity


def _check_story(
    proven: list[ProvenEvent], dataset: bytes, record: dict[str, Any], owner: bytes
) -> None:
    grant_ids: set[bytes] = set()
    last_index = -1
    for position, p in enumerate(proven):
        where = f"event {position}"
        if p.leaf_index <= last_index:
            raise VerificationFailed("events out of log order", where)
        last_index = p.leaf_index
        if not _names_dataset(p.event, dataset, grant_ids):
            raise VerificationFailed("event is about another dataset", where)
        if isinstance(p.event.body, events.Grant):
            grant_ids.add(p.event.event_id)
    assert proven, "_origin_identity refuses a bundle without events before this runs"
    origin = proven[0].event
    body = origin.body
    if not isinstance(body, events.Register | events.Derive) or body.dataset != dataset:
        raise VerificationFailed("no origin", "the first event does not register the dataset")
    if record.get("origin") != origin.event_id or record.get("owner") != owner:
        raise VerificationFailed("no origin", "the dataset record names another origin")


def _proven_grants(
    entries: list[Any], proven: list[ProvenEvent], dataset: bytes, header: Header
) -> tuple[GrantStatus, ...]:
    """Each grant of the story with its status at the checkpoint: revoked by the story's
    revocation of it, expired by its body's `expires` against the checkpoint time. A state
    proof given for a grant must verify and agree; none is required (the story is complete,
    so it holds every revocation)."""
    by_key = {}
    for number, entry in enumerate(entries):
        key = _hex(_field(entry, "key", str), f"grant proof {number} key")
        by_key[key] = entry
    revocations = {
        p.event.body.grant: p.event for p in proven if isinstance(p.event.body, events.Revoke)
    }
    statuses = []
    for p in proven:
        body = p.event.body
        if not isinstance(body, events.Grant):
            continue
        key = grant_key(p.event.event_id)
        entry = by_key.pop(key, None)
        revoked_by = revocations.get(p.event.event_id)
        if entry is not None:
            _check_grant_proof(entry, key, header, dataset, revoked_by)
        expires = body.expires
        expired = expires is not None and expires <= header.time
        statuses.append(GrantStatus(p.event, revoked_by, expired))
    if by_key:
        raise VerificationFailed("malformed bundle", "a state proof for a grant not in the story")
    return tuple(statuses)


def _check_grant_proof(
    entry: Any, key: bytes, header: Header, dataset: bytes, revoked_by: SignedEvent | None
) -> None:
    what = f"grant {key[len(GRANT) :].hex()}"
    record = _proven_entry(entry, key, header.state_root, what)
    if record is None or record.get("dataset") != dataset:
        raise VerificationFailed("grant state mismatch", f"{what} is not a grant of the dataset")
    if record.get("revoked") != (None if revoked_by is None else revoked_by.event_id):
        raise VerificationFailed("grant state mismatch", f"{what}: revocation differs")


@dataclass(frozen=True)
class VerifiedState:
    """One state record (None: proven absent) as proven against a signed checkpoint."""

    kind: str
    ident: bytes
    checkpoint: Header
    record: dict[str, Any] | None


def verify_state(doc: Any, genesis: Genesis, kind: str, ident: bytes) -> VerifiedState:
    """Check a state answer (`state_answer`) for `kind` `ident` offline against `genesis`."""
    prefix, size = STATE_KINDS[kind]
    if len(ident) != size:
        raise VerificationFailed("malformed state answer", f"a {kind} id is {size} bytes")
    header = _verify_checkpoint(doc, genesis)
    record = _proven_entry(doc, prefix + ident, header.state_root, kind)
    return VerifiedState(kind, ident, header, record)
