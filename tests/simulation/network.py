"""The simulated network: who can reach whom, and how a message travels.

Each message is delayed by 1..max_delay ms (so messages reorder), and until the heal time it
may be lost, and is dropped between validators on the two sides of a partition or of an
`honest_cut`. Any message may be duplicated. After the heal nothing is lost or cut, only
delayed. Addresses carry a side: a split-brain validator has one replica per side, and every
other node talks to the replica on its own side (`route`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tests.simulation.scenario import Scenario


@dataclass(frozen=True)
class Address:
    """One replica on the network: validator `index`, on `side` 0 or 1; `split` marks one of
    the two replicas of a split-brain validator."""

    name: str
    index: int
    side: int
    split: bool = False


class Located(Protocol):
    @property
    def address(self) -> Address: ...


L = TypeVar("L", bound=Located)


class Network:
    """Delivery faults of one run; all randomness comes from the simulation's `rng`."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.scenario = scenario
        self.rng = rng
        n = scenario.validators
        self.blocked: set[tuple[int, int]] = set()
        for a, b in scenario.honest_cut:
            self.blocked |= {(a, b), (b, a)}
        if scenario.partition:
            group = {i for i in range(n) if rng.random() < 0.5}
            for a in range(n):
                for b in range(n):
                    if (a in group) != (b in group):
                        self.blocked.add((a, b))

    def faulty(self, now: int) -> bool:
        """Whether faults are still on (before the heal)."""
        return now < self.scenario.heal_at

    def cut(self, a: Address, b: Address, now: int) -> bool:
        """Whether a partition separates the validators of `a` and `b` at `now`."""
        return self.faulty(now) and (a.index, b.index) in self.blocked

    def route(self, sender: Address, group: Sequence[L]) -> L | None:
        """The replica of one validator (`group`: none, one, or a split-brain's two) that
        `sender` talks to: a split-brain side reaches only the nodes of its side."""
        if not group:
            return None
        if len(group) == 1:
            target = group[0]
            if sender.split and target.address.side != sender.side:
                return None
            return target
        return group[sender.side]

    def transit(self, sender: Address, target: Address, now: int) -> list[int]:
        """The delays (ms) of the copies of one message that will arrive: none if it is cut
        off or lost, two if it is duplicated."""
        scenario = self.scenario
        if self.cut(sender, target, now):
            return []
        if self.faulty(now) and self.rng.random() < scenario.loss:
            return []
        delays = [self.rng.randint(1, scenario.max_delay_ms)]
        if self.rng.random() < scenario.duplicate:
            delays.append(self.rng.randint(1, scenario.max_delay_ms))
        return delays


__all__ = ["Address", "Located", "Network"]
