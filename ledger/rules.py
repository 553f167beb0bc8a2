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

from ledger import codec, crypto, events, governance, merkle
from ledger.blocks import Validator, ValidatorSet
from ledger.errors import BadSignature, Conflict, Forbidden, NotAdmitted, RuleViolation
from ledger.genesis import ChainParams, Genesis
from ledger.state import StateOverlay

DEFAULT_TIME_WINDOW_MS = 10 * 60 * 1000
STATUS_ACTIVE = "active"
STATUS_DESTROYED = "destroyed"
PARTICIPANT_ACTIVE = "active"
PARTICIPANT_SUSPENDED = "suspended"
PARTICIPANT_ROTATED = "rotated"
PROPOSAL_OPEN = "open"
PROPOSAL_DECIDED = "decided"
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
PROPOSAL = b"sP"
VALIDATOR_SCHEDULE = b"sV"
PARAMS_SCHEDULE = b"sC"
REGISTRAR_SCHEDULE = b"sR"
TRANSITION = b"sT"
AUTHENTICATED = frozenset(
    {
        PARTICIPANT,
        DATASET,
        GRANT,
        HOLDER,
        SIGNED,
        PROPOSAL,
        VALIDATOR_SCHEDULE,
        PARAMS_SCHEDULE,
        REGISTRAR_SCHEDULE,
        TRANSITION,
    }
)
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


def proposal_key(proposal_id: bytes) -> bytes:
    return PROPOSAL + proposal_id


def registrar_schedule_key(identity: bytes) -> bytes:
    """Governance's decisions on whether `identity` is a registrar, by effective height."""
    return REGISTRAR_SCHEDULE + identity


def transition_key(effective_height: int) -> bytes:
    """The validator set that takes effect at `effective_height` (one record per change)."""
    return TRANSITION + effective_height.to_bytes(8, "big")


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
        window = self._time_window(draft, ctx.height)
        if abs(body.time - ctx.time) > window:
            raise RuleViolation(f"event time {body.time} is outside ±{window} ms of {ctx.time}")
        if draft.get(event_key(event.event_id)) is not None:
            raise Conflict("duplicate event: this event id is already on the chain")
        self._check_signer(draft, body, ctx.height)
        touched = tuple(dict.fromkeys(self._handlers[type(body)](draft, body, event.event_id, ctx)))
        draft.put(event_key(event.event_id), encode_location(ctx.height, ctx.leaf_index))
        return touched

    def check(self, state: StateOverlay, event: events.SignedEvent, ctx: BlockContext) -> None:
        """Raise what `apply` would raise, without changing `state`."""
        self.apply(state.child(), event, ctx)

    # --- who is who -----------------------------------------------------------------------

    def is_registrar(self, state: StateOverlay, public_key: bytes, height: int) -> bool:
        """Whether `public_key` may act as a registrar at `height`: an active key whose
        identity governance made a registrar, or else one that genesis or its admission
        made a registrar (and governance has not removed)."""
        doc = state.get_doc(participant_key(public_key))
        if doc is not None and doc["status"] != PARTICIPANT_ACTIVE:
            return False
        identity = doc.get("identity", public_key) if doc is not None else public_key
        schedule = state.get_doc(registrar_schedule_key(identity))
        decided = governance.value_at(schedule, height) if schedule else None
        if decided is not None:
            return bool(decided)
        if identity in self._genesis_registrars:
            return True
        return doc is not None and doc["role"] == events.ROLE_REGISTRAR

    def is_admitted(self, state: StateOverlay, public_key: bytes) -> bool:
        return public_key in self._genesis_registrars or (
            state.get(participant_key(public_key)) is not None
        )

    def identity(self, state: StateOverlay, public_key: bytes) -> bytes:
        """The identity a key acts for: the key first admitted, whatever it has rotated to.
        Ownership, grants and copies are recorded against identities (docs/PROTOCOL.md §19.3)."""
        doc = state.get_doc(participant_key(public_key))
        return public_key if doc is None else doc.get("identity", public_key)

    def _check_signer(self, state: StateOverlay, body: events.EventBody, height: int) -> None:
        """A suspended or rotated-away key signs nothing new; on a permissioned chain the
        signer is admitted, a registrar, or (for governance events) checked as a validator."""
        doc = state.get_doc(participant_key(body.actor))
        if doc is not None:
            _require_active(doc, "the signer's key")
            return
        if (
            self.genesis.is_open
            or body.actor in self._genesis_registrars
            or isinstance(body, events.Admit | events.Propose | events.Approve)
        ):
            return
        if self.is_registrar(state, body.actor, height):
            return
        raise NotAdmitted("the signer is not an admitted participant of this chain")

    def _recipient(self, state: StateOverlay, public_key: bytes) -> bytes:
        """The identity of an active, admitted recipient key."""
        doc = state.get_doc(participant_key(public_key))
        if doc is None:
            if not self.genesis.is_open and public_key not in self._genesis_registrars:
                raise RuleViolation("the recipient is not an admitted participant")
            return public_key
        try:
            _require_active(doc, "the recipient's key")
        except Forbidden as exc:
            raise RuleViolation(str(exc)) from exc
        identity: bytes = doc.get("identity", public_key)
        return identity

    # --- governance state ---------------------------------------------------------------

    def validators_at(self, state: StateOverlay, height: int | None) -> ValidatorSet:
        """The validator set in force at `height`, for heights from the newest executed block
        on (older entries are pruned from the schedule; see `transition_key`); None: the
        newest scheduled, pending changes included."""
        found = _scheduled(state, VALIDATOR_SCHEDULE, height)
        return self.genesis.validators if found is None else governance.set_from_doc(found)

    def params_at(self, state: StateOverlay, height: int | None) -> ChainParams:
        """The chain parameters in force at `height` (as `validators_at`)."""
        found = _scheduled(state, PARAMS_SCHEDULE, height)
        return self.genesis.chain_params if found is None else ChainParams(**found)

    def _time_window(self, state: StateOverlay, height: int) -> int:
        """The event time window: the node's (genesis) value until governance changes it."""
        if state.get(PARAMS_SCHEDULE) is None:
            return self.time_window_ms
        return self.params_at(state, height).time_window_ms

    def _approving_validator(self, state: StateOverlay, actor: bytes, height: int) -> Validator:
        for member in self.validators_at(state, height).validators:
            if member.approver == actor:
                return member
        raise Forbidden(
            "only a validator of the current set (its node key, or its operator key if it has "
            "one) may propose or approve governance changes"
        )

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
        if not self.is_registrar(state, body.actor, ctx.height):
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
            "owner": self.identity(state, body.actor),
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
        grantor = self.identity(state, body.actor)
        if dataset["owner"] != grantor:
            raise Forbidden("only the dataset's owner may grant it")
        grantee = self._recipient(state, body.to)
        if body.expires is not None and body.expires <= ctx.time:
            raise RuleViolation("the grant would already be expired")
        grant: dict[str, Any] = {
            "dataset": body.dataset,
            "grantor": grantor,
            "to": grantee,
            "purposes": list(body.purposes),
            "reshare": body.reshare,
        }
        if body.expires is not None:
            grant["expires"] = body.expires
        state.put_doc(grant_key(event_id), grant)
        key = grants_of_key(body.dataset, grantee)
        count = state.get_doc(key) or 0
        state.put(grant_slot_key(body.dataset, grantee, count), event_id)
        state.put_doc(key, count + 1)
        return (body.dataset,)

    def _apply_revoke(
        self, state: StateOverlay, body: events.Revoke, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        grant = state.get_doc(grant_key(body.grant))
        if grant is None:
            raise RuleViolation(f"grant {body.grant.hex()} does not exist")
        if grant["grantor"] != self.identity(state, body.actor):
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
            actor=self.identity(state, body.actor),
            grant_id=body.grant,
            now=ctx.time,
            purpose=None,
            reshare=True,
            what="resharing",
        )
        state.put(holder_key(body.dataset, self._recipient(state, body.to)), b"")
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
            actor=self.identity(state, body.actor),
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
        actor = self.identity(state, body.actor)
        for source in body.inputs:
            self._authorise_holder(
                state,
                dataset=source,
                actor=actor,
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
        actor = self.identity(state, body.actor)
        if dataset["owner"] == actor:
            if dataset["status"] == STATUS_DESTROYED:
                raise Conflict("the owner's copy is already destroyed")
            dataset["status"] = STATUS_DESTROYED
            state.put_doc(dataset_key(body.dataset), dataset)
            return (body.dataset,)
        holder = holder_key(body.dataset, actor)
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

    # --- governance (docs/PROTOCOL.md §19) ---------------------------------------------------

    def _apply_propose(
        self, state: StateOverlay, body: events.Propose, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        member = self._approving_validator(state, body.actor, ctx.height)
        self._check_change(state, governance.Change.parse(body.change))
        proposal: dict[str, Any] = {
            "change": body.change,
            "proposer": body.actor,
            "height": ctx.height,
            "expires": ctx.time + governance.PROPOSAL_TTL_MS,
            "approvals": [member.public_key],
            "status": PROPOSAL_OPEN,
        }
        self._count_approvals(state, event_id, proposal, ctx)
        return ()

    def _apply_approve(
        self, state: StateOverlay, body: events.Approve, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        member = self._approving_validator(state, body.actor, ctx.height)
        proposal: dict[str, Any] | None = state.get_doc(proposal_key(body.proposal))
        if proposal is None:
            raise RuleViolation(f"proposal {body.proposal.hex()} does not exist")
        if proposal["status"] != PROPOSAL_OPEN:
            raise Conflict(f"the proposal is already {proposal['status']}")
        if proposal["expires"] <= ctx.time:
            raise RuleViolation("the proposal has expired")
        if member.public_key in proposal["approvals"]:
            raise Conflict("this validator has already approved the proposal")
        proposal["approvals"].append(member.public_key)
        self._count_approvals(state, body.proposal, proposal, ctx)
        return ()

    def _count_approvals(
        self,
        state: StateOverlay,
        proposal_id: bytes,
        proposal: dict[str, Any],
        ctx: BlockContext,
    ) -> None:
        """Store the proposal, deciding it once its approvers hold more than 2/3 of the power
        of the set in force; a decided change is in force from ctx.height + 2."""
        validators = self.validators_at(state, ctx.height)
        if validators.has_quorum(validators.power_of(frozenset(proposal["approvals"]))):
            effective = ctx.height + governance.ACTIVATION_DELAY
            self._enact(state, governance.Change.parse(proposal["change"]), effective, ctx)
            proposal["status"] = PROPOSAL_DECIDED
            proposal["decided"] = ctx.height
            proposal["effective"] = effective
        state.put_doc(proposal_key(proposal_id), proposal)

    def _check_change(self, state: StateOverlay, change: governance.Change) -> None:
        """Raise unless `change` applies on top of every change already scheduled."""
        if change.op in governance.VALIDATOR_CHANGES:
            governance.apply_to_set(self.validators_at(state, None), change)
        elif change.op == governance.SET_PARAM:
            governance.params_with(self.params_at(state, None), change)
        else:
            wanted = change.op == governance.ADD_REGISTRAR
            if self._registrar_latest(state, change.public_key) == wanted:
                state_word = "already" if wanted else "not"
                raise RuleViolation(f"that key is {state_word} a registrar")

    def _registrar_latest(self, state: StateOverlay, public_key: bytes) -> bool:
        identity = self.identity(state, public_key)
        schedule = state.get_doc(registrar_schedule_key(identity))
        if schedule:
            return bool(governance.latest(schedule))
        return self.is_registrar(state, public_key, 0)

    def _enact(
        self, state: StateOverlay, change: governance.Change, effective: int, ctx: BlockContext
    ) -> None:
        self._check_change(state, change)
        if change.op in governance.VALIDATOR_CHANGES:
            new_set = governance.apply_to_set(self.validators_at(state, None), change)
            # Two changes decided in one block take effect at the same height: the step that
            # matters is from the set in force just before it, not from the first change.
            try:
                governance.check_step(self.validators_at(state, effective - 1), new_set)
            except RuleViolation as exc:
                raise RuleViolation(
                    f"{exc}; a change decided earlier in this block already takes effect at "
                    f"height {effective}: approve again in a later block"
                ) from exc
            doc = governance.set_to_doc(new_set)
            self._schedule(state, VALIDATOR_SCHEDULE, effective, doc, ctx.height)
            state.put_doc(transition_key(effective), doc)
        elif change.op == governance.SET_PARAM:
            params = governance.params_with(self.params_at(state, None), change)
            self._schedule(state, PARAMS_SCHEDULE, effective, params.to_json(), ctx.height)
        else:
            key = registrar_schedule_key(self.identity(state, change.public_key))
            self._schedule(state, key, effective, change.op == governance.ADD_REGISTRAR, ctx.height)

    @staticmethod
    def _schedule(state: StateOverlay, key: bytes, effective: int, value: Any, now: int) -> None:
        schedule = state.get_doc(key) or []
        state.put_doc(key, governance.schedule_change(schedule, effective, value, now))

    # --- participant lifecycle (docs/PROTOCOL.md §19.3) ---------------------------------------

    def _known_participant(self, state: StateOverlay, subject: bytes) -> dict[str, Any]:
        """The subject's participant record (a default one for a genesis registrar, a key
        governance made a registrar, or, on an open chain, any key that has none yet)."""
        doc: dict[str, Any] | None = state.get_doc(participant_key(subject))
        if doc is not None:
            return doc
        if subject in self._genesis_registrars or state.get(registrar_schedule_key(subject)):
            return {"name": "", "role": events.ROLE_REGISTRAR, "status": PARTICIPANT_ACTIVE}
        if self.genesis.is_open:
            return {"name": "", "role": events.ROLE_PARTICIPANT, "status": PARTICIPANT_ACTIVE}
        raise RuleViolation("the subject is not an admitted participant")

    def _require_registrar(self, state: StateOverlay, actor: bytes, height: int, what: str) -> None:
        if not self.is_registrar(state, actor, height):
            raise Forbidden(f"only a registrar may {what}")

    def _apply_suspend(
        self, state: StateOverlay, body: events.Suspend, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        self._require_registrar(state, body.actor, ctx.height, "suspend participants")
        if body.subject == body.actor:
            raise RuleViolation("a registrar cannot suspend its own key")
        doc = self._known_participant(state, body.subject)
        if doc["status"] == PARTICIPANT_SUSPENDED:
            raise Conflict("the key is already suspended")
        _require_active(doc, "the subject's key", error=RuleViolation)
        doc["status"] = PARTICIPANT_SUSPENDED
        doc["suspended_by"] = event_id
        state.put_doc(participant_key(body.subject), doc)
        return ()

    def _apply_reinstate(
        self, state: StateOverlay, body: events.Reinstate, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        self._require_registrar(state, body.actor, ctx.height, "reinstate participants")
        doc = self._known_participant(state, body.subject)
        if doc["status"] != PARTICIPANT_SUSPENDED:
            raise Conflict("the key is not suspended")
        doc["status"] = PARTICIPANT_ACTIVE
        del doc["suspended_by"]
        state.put_doc(participant_key(body.subject), doc)
        return ()

    def _apply_rotate(
        self, state: StateOverlay, body: events.Rotate, event_id: bytes, ctx: BlockContext
    ) -> tuple[bytes, ...]:
        if body.actor != body.subject:
            self._require_registrar(state, body.actor, ctx.height, "rotate another party's key")
        old = self._known_participant(state, body.subject)
        if old["status"] == PARTICIPANT_ROTATED:
            raise Conflict("the key has already been rotated")
        if body.to == body.subject or self.is_admitted(state, body.to):
            raise Conflict("the new key is already in use on this chain")
        message = governance.rotation_message(self.genesis.chain_id, body.subject, body.to)
        try:
            crypto.verify(body.to, message, body.possession)
        except BadSignature as exc:
            raise RuleViolation(
                "possession is not the new key's signature of the rotation"
            ) from exc
        successor: dict[str, Any] = {
            "name": old["name"],
            "role": old["role"],
            "event": event_id,
            "status": PARTICIPANT_ACTIVE,
            "identity": old.get("identity", body.subject),
            "previous": body.subject,
        }
        old.pop("suspended_by", None)
        old["status"] = PARTICIPANT_ROTATED
        old["successor"] = body.to
        state.put_doc(participant_key(body.subject), old)
        state.put_doc(participant_key(body.to), successor)
        return ()


def _scheduled(state: StateOverlay, key: bytes, height: int | None) -> Any | None:
    """The value of the schedule under `key` in force at `height` (None: its newest entry),
    or None when governance never scheduled one."""
    schedule = state.get_doc(key)
    if not schedule:
        return None
    return governance.latest(schedule) if height is None else governance.value_at(schedule, height)


def _require_active(
    doc: dict[str, Any], whose: str, error: type[Forbidden] | type[RuleViolation] = Forbidden
) -> None:
    """Raise unless a participant record's key may still sign (or receive)."""
    if doc["status"] == PARTICIPANT_SUSPENDED:
        raise error(f"{whose} is suspended by a registrar: it signs nothing new until reinstated")
    if doc["status"] == PARTICIPANT_ROTATED:
        raise error(f"{whose} was rotated to {doc['successor'].hex()}: use the new key")


def encode_location(height: int, leaf_index: int) -> bytes:
    return codec.encode_trusted([height, leaf_index])
