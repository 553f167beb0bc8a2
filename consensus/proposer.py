"""Weighted round-robin proposer selection that every node computes identically.

The schedule is the smooth weighted round-robin sequence (nginx SWRR, Tendermint's proposer
priorities) over the validator set in genesis order: each step every validator's priority
grows by its power, the highest (first in set order on a tie) proposes and loses the total
power. The sequence repeats with period `total_power`, within which every validator proposes
exactly `power` times. Powers are divided by their gcd first, which yields the same sequence
with a shorter period.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

from ledger.blocks import ValidatorSet


@lru_cache(maxsize=16)
def _schedule(members: tuple[tuple[bytes, int], ...]) -> tuple[bytes, ...]:
    divisor = 0
    for _, power in members:
        divisor = gcd(divisor, power)
    powers = [power // divisor for _, power in members]
    period = sum(powers)
    priorities = [0] * len(members)
    order: list[bytes] = []
    for _ in range(period):
        best = 0
        for i, power in enumerate(powers):
            priorities[i] += power
            if priorities[i] > priorities[best]:
                best = i
        priorities[best] -= period
        order.append(members[best][0])
    return tuple(order)


def proposer_schedule(validators: ValidatorSet) -> tuple[bytes, ...]:
    """One period of the proposer sequence (public keys); cached per validator set."""
    return _schedule(tuple((v.public_key, v.power) for v in validators.validators))


def proposer(validators: ValidatorSet, height: int, round: int) -> bytes:
    """The public key of proposer(height, round): schedule[(height + round) mod period]."""
    schedule = proposer_schedule(validators)
    return schedule[(height + round) % len(schedule)]


__all__ = ["proposer", "proposer_schedule"]
