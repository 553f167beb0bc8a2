"""The pure pieces of ledger/governance.py at their edges: the change map's field bounds,
`apply_to_set`'s result, and the schedules (`value_at`, `latest`, `schedule_change`)."""

from __future__ import annotations

from typing import Any

import pytest

from ledger import governance
from ledger.blocks import MAX_POWER
from ledger.errors import Malformed
from ledger.governance import ADD_VALIDATOR, SET_PARAM, SET_POWER, Change
from tests.ledger.helpers import make_key, make_validators

KEY = make_key(seed=8_800).public_key


def add_map(**fields: Any) -> dict[str, Any]:
    return {"op": ADD_VALIDATOR, "public_key": KEY, "name": "n", "url": "", "power": 1, **fields}


def test_an_empty_url_is_allowed_and_the_bounds_are_inclusive() -> None:
    change = Change.parse(add_map(url="", name="x" * governance.MAX_NAME, power=MAX_POWER))
    assert (change.url, len(change.name), change.power) == ("", 64, 65_536)
    assert governance.MAX_NAME == 64 and governance.MAX_URL == 256
    assert Change.parse(add_map(url="u" * 256)).url == "u" * 256
    for bad in (
        add_map(name="x" * 65),
        add_map(name=""),
        add_map(url="u" * 257),
        add_map(power=MAX_POWER + 1),
        add_map(power=0),
        add_map(power=True),
        add_map(public_key=KEY.hex()),
    ):
        with pytest.raises(Malformed):
            Change.parse(bad)


def test_a_param_value_is_a_63_bit_uint() -> None:
    top = (1 << 63) - 1
    assert Change.parse({"op": SET_PARAM, "name": "p", "value": top}).value == top
    for bad in (1 << 63, -1, False):
        with pytest.raises(Malformed, match="64-bit"):
            Change.parse({"op": SET_PARAM, "name": "p", "value": bad})


def test_a_change_keeps_only_its_ops_fields() -> None:
    change = Change.parse({"op": SET_POWER, "public_key": KEY, "power": 7})
    assert change == Change(SET_POWER, public_key=KEY, power=7)
    assert change.to_map() == {"op": SET_POWER, "power": 7, "public_key": KEY}


def test_set_power_changes_exactly_that_members_power() -> None:
    keys, validators = make_validators(4, [10, 10, 10, 10], seed=8_900)
    new = governance.apply_to_set(
        validators, Change(SET_POWER, public_key=keys[2].public_key, power=12)
    )
    assert [v.power for v in new.validators] == [10, 10, 12, 10]
    assert [v.public_key for v in new.validators] == [k.public_key for k in keys]


def test_value_at_takes_the_newest_entry_in_force() -> None:
    schedule = [[3, "a"], [5, "b"], [9, "c"]]
    assert [governance.value_at(schedule, h) for h in (2, 3, 4, 5, 8, 9, 100)] == [
        None,
        "a",
        "a",
        "b",
        "b",
        "c",
        "c",
    ]
    assert governance.value_at([], 7) is None


def test_latest_is_the_newest_value_pending_or_not() -> None:
    assert governance.latest([[3, "a"], [9, "c"]]) == "c"
    assert governance.latest([]) is None


@pytest.mark.parametrize(
    ("schedule", "effective", "now", "expected"),
    [
        # nothing yet: the first entry
        ([], 5, 3, [[5, "new"]]),
        # the entry in force at `now` is kept, older ones dropped, pending ones kept
        ([[1, "a"], [2, "b"], [6, "c"]], 7, 5, [[2, "b"], [6, "c"], [7, "new"]]),
        # an entry in force exactly at `now` is the one kept
        ([[1, "a"], [5, "b"]], 7, 5, [[5, "b"], [7, "new"]]),
        # an entry of the same height is replaced
        ([[1, "a"], [7, "b"]], 7, 5, [[1, "a"], [7, "new"]]),
        # an entry that takes effect at exactly `now + 1` is pending, kept
        ([[1, "a"], [6, "b"]], 7, 5, [[1, "a"], [6, "b"], [7, "new"]]),
        # the new entry in force already at `now` replaces what was in force
        ([[1, "a"]], 5, 5, [[5, "new"]]),
    ],
)
def test_schedule_change(
    schedule: list[Any], effective: int, now: int, expected: list[Any]
) -> None:
    assert governance.schedule_change(schedule, effective, "new", now) == expected


def test_a_public_key_given_as_text_says_it_must_be_bytes() -> None:
    with pytest.raises(Malformed, match="change public_key must be bytes"):
        Change.parse(add_map(public_key=KEY.hex()))
