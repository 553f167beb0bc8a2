"""Weighted round-robin proposer selection."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import proposer, proposer_schedule
from tests.consensus.helpers import key, validator_set


def test_equal_powers_rotate_in_set_order() -> None:
    validators = validator_set(4)
    keys = [key(i).public_key for i in range(4)]
    assert proposer_schedule(validators) == tuple(keys)
    expected = [keys[1], keys[2], keys[3], keys[0], keys[1]]
    assert [proposer(validators, 1, r) for r in range(5)] == expected
    assert proposer(validators, 5, 2) == keys[3]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=7))
def test_each_validator_proposes_power_times_per_period(powers: list[int]) -> None:
    validators = validator_set(len(powers), powers)
    total = validators.total_power
    period = [proposer(validators, h, 0) for h in range(total)]
    counts = Counter(period)
    assert all(counts[key(i).public_key] == p for i, p in enumerate(powers))
    assert [proposer(validators, h + total, 0) for h in range(total)] == period
    assert [proposer(validators, 3, r) for r in range(total)] == [
        proposer(validators, 3 + r, 0) for r in range(total)
    ]


def test_smooth_interleaving_and_determinism() -> None:
    validators = validator_set(3, [5, 1, 1])
    keys = [key(i).public_key for i in range(3)]
    schedule = proposer_schedule(validators)
    assert schedule == (keys[0], keys[0], keys[1], keys[0], keys[2], keys[0], keys[0])
    assert proposer_schedule(validator_set(3, [10, 2, 2])) == schedule  # gcd-reduced
