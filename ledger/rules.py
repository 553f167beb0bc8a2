"""The circulation rules: a deterministic state machine over participants, datasets, grants
and lineage (PROTOCOL §4).

`Rules.apply` either applies an event completely to a state overlay or raises a typed error
and writes nothing. On success it also records the event in the histories it joins (§4.6):
each touched dataset's and the signer's commitment, a hash chain over their events' leaf
indexes and leaf hashes that a verifier recomputes from a bundle (docs/PROTOCOL.md §17).

Time is judged against the reference time in the `BlockContext` (the block
time on execution, the node's clock on admission) — never against a clock read here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger import codec, crypto, events, merkle
from ledger.errors import Conflict, Forbidden, NotAdmitted, RuleViolation
from ledger.genesis import Genesis
from ledger.state import StateOverlay

DEFAULT_TIME_WINDOW_MS = 10 * 60 * 1000
STATUS_ACTIVE = "active"
STATUS_DESTROYED = "destroyed"
PARTICIPANT_ACTIVE = "active"
EMPTY_HISTORY = bytes(32)
# An event that names no grant is judged by the newest grants of its (dataset, holder) pair
# only, so that no one can make each such event cost work that grows with the grants made.
MAX_GRANT_SCAN = 64
HISTORY_PREFIX = b"\x04"

PARTICIPANT = b"sp"
DATASET = b"sd"
GRANT = b"sg"
GRANTS_OF = b"sG"
GRANT_SLOT = b"sI"
HOLDER = b"sh"
SIGNED = b"sa"
EVENT = b"se"
AUTHENTICATED = frozenset({PARTICIPANT, DATASET, GRANT, HOLDER, SIGNED})
"""Prefixes of the state records under `state_root` (docs/PROTOCOL.md §17.1). The event
index and the grant index are functions of the log and the grant records; they are not."""


def participant_key(public_key: bytes) -> bytes:
    return PARTICIPANT + public_key


def dataset_key(dataset: bytes) -> bytes:
    return DATASET + dataset


def grant_key(grant_id: bytes) -> bytes:
    return GRANT + grant_id


def grants_of_key(dataset: bytes, grantee: bytes) -> bytes:
    """How many grants `grantee` holds on `dataset` (a uint)."""
    return GRANTS_OF + dataset + grantee


def grant_slot_key(dataset: bytes, grantee: bytes, slot: int) -> bytes:
    """The id of `grantee`'s grant number `slot` (from 0, in creation order) on `dataset`."""
    return GRANT_SLOT + dataset + grantee + slot.to_bytes(4, "big")


def signed_key(actor: bytes) -> bytes:
    """The commitment to every event `actor` signed."""
    return SIGNED + actor


def is_authenticated(key: bytes) -> bool:
    return key[:2] in AUTHENTICATED


def next_history(head: bytes, leaf_index: int, leaf_hash: bytes) -> bytes:
    """One step of a history commitment: `H(0x04 || head || leaf_index:8 || leaf_hash)`."""
    return crypto.sha256(HISTORY_PREFIX + head + leaf_index.to_bytes(8, "big") + leaf_hash)


def holder_key(dataset: bytes, holder: bytes) -> bytes:
    return HOLDER + dataset + holder


def event_key(event_id: bytes) -> bytes:
    return EVENT + event_id


@dataclass(frozen=True)
class BlockContext:
    """Where an event lands: block height and time, and the leaf index it will get."""

    height: int
    time: int
    leaf_index: int


@dataclass(frozen=True)
class EventLocation:
    height: int
    leaf_index: int


def lookup_event(state: StateOverlay, event_id: bytes) -> EventLocation | None:
    doc = state.get_doc(event_key(event_id))
    return None if doc is None else EventLocation(doc[0], doc[1])


class Rules:
    """Validates and applies events against a state overlay for one genesis."""

    def __init__(self, genesis: Genesis, time_window_ms: int = DEFAULT_TIME_WINDOW_MS) -> None:
        self.genesis = genesis
        self.time_window_ms = time_window_ms
        self._genesis_registrars = frozenset(genesis.registrars)
        self._handlers: dict[type[events.EventBody], Callable[..., tuple[bytes, ...]]] = {
            cls: getattr(self, f"_apply_{cls.TYPE}") for cls in events.EVENT_TYPES.values()
        }

    def apply(
        self, state: StateOverlay, event: events.SignedEvent, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        """Apply `event` to `state` or raise; returns the datasets whose history it joins.

        The caller has checked the envelope's encoding and signature. On any error nothing is
        written to `state`.
        """
        draft = state.child()
        touched = self.apply_to_draft(draft, event, ctx)
        self._record(draft, event, ctx, touched)
        draft.merge_into_parent()
        return touched

    def _record(
        self,
        state: StateOverlay,
        event: events.SignedEvent,
        ctx: BlockContext,
        touched: tuple[bytes, ...],
    ) -> None:
        """Count the event in each touched dataset and extend its history and the signer's.

        Bookkeeping that no rule reads, kept out of `apply_to_draft` so that a mempool's
        pending events do not all write (and so conflict on) their signer's commitment.
        """
        leaf = merkle.leaf_hash(event.envelope)
        for dataset in touched:
            doc = state.get_doc(dataset_key(dataset))
            if doc is None:
                continue
            counts = doc["counts"]
            counts[event.type] = counts.get(event.type, 0) + 1
            doc["events"] += 1
            doc["head"] = next_history(doc["head"], ctx.leaf_index, leaf)
            state.put_doc(dataset_key(dataset), doc)
        key = signed_key(event.actor)
        signed = state.get_doc(key) or {"events": 0, "head": EMPTY_HISTORY}
        signed["events"] += 1
        signed["head"] = next_history(signed["head"], ctx.leaf_index, leaf)
        state.put_doc(key, signed)

    def apply_to_draft(
        self, draft: StateOverlay, event: events.SignedEvent, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        """`apply`, writing into `draft`: a child overlay its caller merges on success and
        discards if this raises (it may then hold part of the event's writes)."""
        body = event.body
        if body.chain != self.genesis.chain_id:
            raise RuleViolation(f"event is for chain {body.chain!r}")
        if abs(body.time - ctx.time) > self.time_window_ms:
            raise RuleViolation(
                f"event time {body.time} is outside ±{self.time_window_ms} ms of {ctx.time}"
            )
        if draft.get(event_key(event.event_id)) is not None:
            raise Conflict("duplicate event: this event id is already on the chain")
        if not isinstance(body, events.Admit):
            self._require_admitted(draft, body.actor)
        touched = tuple(dict.fromkeys(self._handlers[type(body)](draft, body, event.event_id, ctx)))
        draft.put(event_key(event.event_id), encode_location(ctx.height, ctx.leaf_index))
        return touched

    def check(self, state: StateOverlay, event: events.SignedEvent, ctx: BlockContext) -> None:
        """Raise what `apply` would raise, without changing `state`."""
        self.apply(state.child(), event, ctx)

    # --- who is who -----------------------------------------------------------------------

    def is_registrar(self, state: StateOverlay, public_key: bytes) -> bool:
        if public_key in self._genesis_registrars:
            return True
        doc = state.get_doc(participant_key(public_key))
        return doc is not None and doc["role"] == events.ROLE_REGISTRAR

    def is_admitted(self, state: StateOverlay, public_key: bytes) -> bool:
        return public_key in self._genesis_registrars or (
            state.get(participant_key(public_key)) is not None
        )

    def _require_admitted(self, state: StateOverlay, public_key: bytes) -> None:
        if not self.genesis.is_open and not self.is_admitted(state, public_key):
            raise NotAdmitted("the signer is not an admitted participant of this chain")

    def _require_recipient(self, state: StateOverlay, public_key: bytes) -> None:
        if not self.genesis.is_open and not self.is_admitted(state, public_key):
            raise RuleViolation("the recipient is not an admitted participant")

    def _dataset(self, state: StateOverlay, dataset: bytes) -> dict[str, Any]:
        doc: dict[str, Any] | None = state.get_doc(dataset_key(dataset))
        if doc is None:
            raise RuleViolation(f"dataset {dataset.hex()} is not registered")
        return doc

    def _active_dataset(self, state: StateOverlay, dataset: bytes) -> dict[str, Any]:
        """A registered dataset its owner has not destroyed (no new grants or transfers)."""
        doc = self._dataset(state, dataset)
        if doc["status"] == STATUS_DESTROYED:
            raise RuleViolation("the dataset has been destroyed by its owner")
        return doc

    def _live_grant(
        self,
        state: StateOverlay,
        grant_id: bytes,
        *,
        dataset: bytes,
        holder: bytes,
        now: int,
    ) -> dict[str, Any]:
        grant: dict[str, Any] | None = state.get_doc(grant_key(grant_id))
        if grant is None:
            raise RuleViolation(f"grant {grant_id.hex()} does not exist")
        if grant["dataset"] != dataset:
            raise RuleViolation("the grant is for another dataset")
        if grant["to"] != holder:
            raise Forbidden("the grant was made to someone else")
        if "revoked" in grant:
            raise RuleViolation("the grant has been revoked")
        if "expires" in grant and grant["expires"] <= now:
            raise RuleViolation("the grant has expired")
        return grant

    def _find_live_grant(
        self,
        state: StateOverlay,
        *,
        dataset: bytes,
        holder: bytes,
        now: int,
        purpose: str | None = None,
        reshare: bool = False,
    ) -> dict[str, Any] | None:
        # Newest first (a later grant is likelier live); which covering grant is found does
        # not change the outcome. Only the newest MAX_GRANT_SCAN are looked at: past them the
        # event must name its grant.
        count = state.get_doc(grants_of_key(dataset, holder)) or 0
        for slot in reversed(range(max(0, count - MAX_GRANT_SCAN), count)):
            grant_id = state.get(grant_slot_key(dataset, holder, slot))
            assert grant_id is not None, "every slot below the count holds a grant id"
            grant: dict[str, Any] = state.get_doc(grant_key(grant_id))
            if self._covers(grant, now, purpose, reshare):
                return grant
        return None

    @staticmethod
    def _covers(grant: dict[str, Any], now: int, purpose: str | None, reshare: bool) -> bool:
        if "revoked" in grant or ("expires" in grant and grant["expires"] <= now):
            return False
        if purpose is not None and purpose not in grant["purposes"]:
            return False
        return grant["reshare"] or not reshare

    # --- one method per event type --------------------------------------------------------

    def _apply_admit(
        self, state: StateOverlay, body: events.Admit, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        if not self.is_registrar(state, body.actor):
            raise Forbidden("only a registrar may admit participants")
        if self.is_admitted(state, body.subject):
            raise Conflict("this key is already admitted")
        state.put_doc(
            participant_key(body.subject),
            {"name": body.name, "role": body.role, "event": event_id, "status": PARTICIPANT_ACTIVE},
        )
        return ()

    def _new_dataset(
        self,
        state: StateOverlay,
        body: events.Register | events.Derive,
        event_id: bytes,
        ctx: BlockContext,
        *,
        is_open: bool,
        parents: tuple[bytes, ...] = (),
    ) -> None:
        """Create the dataset's record, owned by the signer, its origin this event."""
        dataset = body.dataset
        if state.get(dataset_key(dataset)) is not None:
            raise Conflict(f"dataset {dataset.hex()} is already registered")
        doc: dict[str, Any] = {
            "owner": body.actor,
            "origin": event_id,
            "open": is_open,
            "status": STATUS_ACTIVE,
            "height": ctx.height,
            "meta": body.meta,
            "counts": {},
            "events": 0,
            "head": EMPTY_HISTORY,
        }
        if parents:
            doc["parents"] = list(parents)
        state.put_doc(dataset_key(dataset), doc)

    def _apply_register(
        self, state: StateOverlay, body: events.Register, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        self._new_dataset(state, body, event_id, ctx, is_open=body.open)
        return (body.dataset,)

    def _apply_grant(
        self, state: StateOverlay, body: events.Grant, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        dataset = self._active_dataset(state, body.dataset)
        if dataset["owner"] != body.actor:
            raise Forbidden("only the dataset's owner may grant it")
        self._require_recipient(state, body.to)
        if body.expires is not None and body.expires <= ctx.time:
            raise RuleViolation("the grant would already be expired")
        grant: dict[str, Any] = {
            "dataset": body.dataset,
            "grantor": body.actor,
            "to": body.to,
            "purposes": list(body.purposes),
            "reshare": body.reshare,
        }
        if body.expires is not None:
            grant["expires"] = body.expires
        state.put_doc(grant_key(event_id), grant)
        key = grants_of_key(body.dataset, body.to)
        count = state.get_doc(key) or 0
        state.put(grant_slot_key(body.dataset, body.to, count), event_id)
        state.put_doc(key, count + 1)
        return (body.dataset,)

    def _apply_revoke(
        self, state: StateOverlay, body: events.Revoke, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        grant = state.get_doc(grant_key(body.grant))
        if grant is None:
            raise RuleViolation(f"grant {body.grant.hex()} does not exist")
        if grant["grantor"] != body.actor:
            raise Forbidden("only the grantor may revoke a grant")
        if "revoked" in grant:
            raise Conflict("the grant is already revoked")
        if "expires" in grant and grant["expires"] <= ctx.time:
            raise RuleViolation("the grant has already expired")
        grant["revoked"] = event_id
        state.put_doc(grant_key(body.grant), grant)
        return (grant["dataset"],)

    def _authorise_holder(
        self,
        state: StateOverlay,
        *,
        dataset: bytes,
        actor: bytes,
        grant_id: bytes | None,
        now: int,
        purpose: str | None,
        reshare: bool,
        what: str,
    ) -> None:
        """Owner passes; otherwise a live grant (the named one, or any) must cover the act."""
        doc = self._dataset(state, dataset)
        if doc["owner"] == actor and grant_id is None:
            return
        if grant_id is not None:
            grant = self._live_grant(state, grant_id, dataset=dataset, holder=actor, now=now)
            if not self._covers(grant, now, purpose, reshare):
                raise Forbidden(f"the grant does not allow {what}")
            return
        if self._find_live_grant(
            state, dataset=dataset, holder=actor, now=now, purpose=purpose, reshare=reshare
        ):
            return
        raise Forbidden(
            f"the signer is not the owner and holds no live grant allowing {what} among its "
            f"{MAX_GRANT_SCAN} newest grants on this dataset (name the grant to use an older one)"
        )

    def _apply_transfer(
        self, state: StateOverlay, body: events.Transfer, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        self._active_dataset(state, body.dataset)
        self._authorise_holder(
            state,
            dataset=body.dataset,
            actor=body.actor,
            grant_id=body.grant,
            now=ctx.time,
            purpose=None,
            reshare=True,
            what="resharing",
        )
        self._require_recipient(state, body.to)
        state.put(holder_key(body.dataset, body.to), b"")
        return (body.dataset,)

    def _apply_use(
        self, state: StateOverlay, body: events.Use, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        dataset = self._dataset(state, body.dataset)
        if dataset["open"] and body.grant is None:
            return (body.dataset,)
        self._authorise_holder(
            state,
            dataset=body.dataset,
            actor=body.actor,
            grant_id=body.grant,
            now=ctx.time,
            purpose=body.purpose,
            reshare=False,
            what=f"purpose {body.purpose!r}",
        )
        return (body.dataset,)

    def _apply_derive(
        self, state: StateOverlay, body: events.Derive, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        for source in body.inputs:
            self._authorise_holder(
                state,
                dataset=source,
                actor=body.actor,
                grant_id=None,
                now=ctx.time,
                purpose=events.DERIVE_PURPOSE,
                reshare=False,
                what=f"deriving from {source.hex()}",
            )
        self._new_dataset(state, body, event_id, ctx, is_open=False, parents=body.inputs)
        return (body.dataset, *body.inputs)

    def _apply_destroy(
        self, state: StateOverlay, body: events.Destroy, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        dataset = self._dataset(state, body.dataset)
        if dataset["owner"] == body.actor:
            if dataset["status"] == STATUS_DESTROYED:
                raise Conflict("the owner's copy is already destroyed")
            dataset["status"] = STATUS_DESTROYED
            state.put_doc(dataset_key(body.dataset), dataset)
            return (body.dataset,)
        holder = holder_key(body.dataset, body.actor)
        if state.get(holder) == b"":
            state.put(holder, b"destroyed")
            return (body.dataset,)
        if state.get(holder) == b"destroyed":
            raise Conflict("the signer's copy is already destroyed")
        raise Forbidden("only the owner or a holder of a copy may record its destruction")

    def _apply_attest(
        self, state: StateOverlay, body: events.Attest, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        self._dataset(state, body.dataset)
        return (body.dataset,)


def encode_location(height: int, leaf_index: int) -> bytes:
    return codec.encode_trusted([height, leaf_index])
