"""Consortium governance: what one proposal may change, the limits on one step, and the
schedules that say which validator set, registrars and chain parameters are in force at a
height (docs/PROTOCOL.md §19).

A change decided in block `h` is in force from height `h + ACTIVATION_DELAY`, so every node
knows the set (and with it the proposer schedule) of the next height while it decides the
current one. A schedule is a short list of `[effective_height, value]` entries, oldest first;
the value at a height is the newest entry that has taken effect by then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from ledger import crypto
from ledger.blocks import MAX_POWER, MAX_VALIDATORS, Validator, ValidatorSet
from ledger.errors import Malformed, RuleViolation
from ledger.genesis import ChainParams

ACTIVATION_DELAY = 2
"""A change decided in block h is in force from height h + 2."""
PROPOSAL_TTL_MS = 7 * 24 * 3_600_000
"""A proposal not decided within 7 days of its block time can no longer be approved."""
MAX_URL = 256
MAX_NAME = 64

ADD_VALIDATOR = "add-validator"
REMOVE_VALIDATOR = "remove-validator"
SET_POWER = "set-power"
ADD_REGISTRAR = "add-registrar"
REMOVE_REGISTRAR = "remove-registrar"
SET_PARAM = "set-param"
# The fields each kind of change carries besides "op".
CHANGE_FIELDS: dict[str, frozenset[str]] = {
    ADD_VALIDATOR: frozenset({"public_key", "name", "url", "power"}),
    REMOVE_VALIDATOR: frozenset({"public_key"}),
    SET_POWER: frozenset({"public_key", "power"}),
    ADD_REGISTRAR: frozenset({"public_key"}),
    REMOVE_REGISTRAR: frozenset({"public_key"}),
    SET_PARAM: frozenset({"name", "value"}),
}
VALIDATOR_CHANGES = frozenset({ADD_VALIDATOR, REMOVE_VALIDATOR, SET_POWER})
PARAM_NAMES = frozenset(asdict(ChainParams()))

Schedule = list[list[Any]]


@dataclass(frozen=True)
class Change:
    """One proposed change, parsed from the `change` map of a `propose` event."""

    op: str
    public_key: bytes = b""
    name: str = ""
    url: str = ""
    power: int = 0
    value: int = 0

    @classmethod
    def parse(cls, doc: Any) -> Change:
        """Check a `change` map strictly: its op, exactly that op's fields, each well typed."""
        if not isinstance(doc, dict):
            raise Malformed("change must be a map")
        op = doc.get("op")
        allowed = CHANGE_FIELDS.get(op) if isinstance(op, str) else None
        if allowed is None or not isinstance(op, str):
            raise Malformed(f"change op must be one of {sorted(CHANGE_FIELDS)}")
        given = set(doc) - {"op"}
        if given != allowed:
            raise Malformed(f"a {op} change has exactly the fields {sorted(allowed)}")
        return cls(op=op, **{name: _FIELD_PARSERS[name](doc[name]) for name in sorted(given)})

    def to_map(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"op": self.op}
        values = {
            "public_key": self.public_key,
            "name": self.name,
            "url": self.url,
            "power": self.power,
            "value": self.value,
        }
        for name in sorted(CHANGE_FIELDS[self.op]):
            doc[name] = values[name]
        return doc


def _text(value: Any, name: str, limit: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > limit or (not value and not allow_empty):
        raise Malformed(f"{name} must be text of {0 if allow_empty else 1}..{limit} characters")
    return value


def _uint(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
        raise Malformed(f"{name} must be a non-negative 64-bit integer")
    return value


def _power(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_POWER:
        raise Malformed(f"validator power must be an integer in 1..{MAX_POWER}")
    return value


def _public_key(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise Malformed("change public_key must be bytes")
    return crypto.check_public_key(value)


_FIELD_PARSERS: dict[str, Callable[[Any], Any]] = {
    "public_key": _public_key,
    "name": lambda v: _text(v, "change name", MAX_NAME),
    "url": lambda v: _text(v, "change url", MAX_URL, allow_empty=True),
    "power": _power,
    "value": lambda v: _uint(v, "change value"),
}


# --- validator sets ---------------------------------------------------------------------------


def apply_to_set(validators: ValidatorSet, change: Change) -> ValidatorSet:
    """The set after a validator change, or RuleViolation if the change cannot apply or
    would break the one-step limits (`check_step`)."""
    members = list(validators.validators)
    existing = validators.get(change.public_key)
    if change.op == ADD_VALIDATOR:
        if existing is not None:
            raise RuleViolation("that key is already a validator")
        if len(members) >= MAX_VALIDATORS:
            raise RuleViolation(f"a validator set has at most {MAX_VALIDATORS} members")
        members.append(Validator(change.name, change.public_key, change.power, change.url))
    elif existing is None:
        raise RuleViolation("that key is not a validator")
    elif change.op == REMOVE_VALIDATOR:
        if len(members) == 1:
            raise RuleViolation("the last validator cannot be removed")
        members.remove(existing)
    else:
        if change.power == existing.power:
            raise RuleViolation("the validator already has that power")
        index = members.index(existing)
        members[index] = replace(existing, power=change.power)
    new = ValidatorSet(tuple(members))
    check_step(validators, new)
    return new


def check_step(old: ValidatorSet, new: ValidatorSet) -> None:
    """The one-step limit: the members of `old` that stay in `new` hold more than 2/3 of
    `new`'s power (at their new powers). So the members that stay can still commit on their
    own right after the change, and no single step hands a quorum to members the old set
    had not already trusted. Raising or lowering a member's power and removing members
    always pass; a new member may bring less than half of what the staying members hold."""
    kept = sum(member.power for member in new.validators if old.get(member.public_key))
    if not new.has_quorum(kept):
        raise RuleViolation(
            f"the change moves too much power in one step: the members kept hold {kept} of "
            f"{new.total_power}, and must hold more than 2/3 (add in smaller steps, or raise "
            "the power of the members first)"
        )


def set_to_doc(validators: ValidatorSet) -> list[dict[str, Any]]:
    return [v.to_doc() for v in validators.validators]


def set_from_doc(doc: list[dict[str, Any]]) -> ValidatorSet:
    return ValidatorSet(tuple(Validator.from_doc(v) for v in doc))


# --- schedules --------------------------------------------------------------------------------


def value_at(schedule: Schedule, height: int) -> Any | None:
    """The value in force at `height`: the newest entry whose height is at most `height`."""
    found = None
    for effective, value in schedule:
        if effective > height:
            break
        found = value
    return found


def latest(schedule: Schedule) -> Any | None:
    """The newest value scheduled, in force now or pending."""
    return schedule[-1][1] if schedule else None


def schedule_change(schedule: Schedule, effective: int, value: Any, now: int) -> Schedule:
    """`schedule` with `value` in force from `effective` (replacing an entry of that same
    height), keeping only the entry in force at height `now` and those still pending."""
    assert not schedule or schedule[-1][0] <= effective, "changes are scheduled in order"
    entries = [entry for entry in schedule if entry[0] != effective] + [[effective, value]]
    in_force = [entry for entry in entries if entry[0] <= now]
    return in_force[-1:] + [entry for entry in entries if entry[0] > now]


def params_with(params: ChainParams, change: Change) -> ChainParams:
    """`params` with one parameter changed (Malformed → RuleViolation if out of range)."""
    if change.name not in PARAM_NAMES:
        raise RuleViolation(f"unknown chain parameter {change.name!r}")
    doc = params.to_json()
    if doc[change.name] == change.value:
        raise RuleViolation(f"params.{change.name} is already {change.value}")
    doc[change.name] = change.value
    try:
        return ChainParams(**doc)
    except Malformed as exc:
        raise RuleViolation(str(exc)) from exc


def rotation_message(chain_id: str, old_key: bytes, new_key: bytes) -> bytes:
    """What the new key signs in a `rotate` event to prove it is held by the rotating party."""
    return b"provledger-rotate\x00" + chain_id.encode() + b"\x00" + old_key + new_key
