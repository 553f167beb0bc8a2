"""Scenarios: the knobs of one simulation run, and their random generation from a seed.

`Scenario.random(seed)` draws the validator count, the Byzantine strategies (at most f, floods
included), the network's loss, duplication and delay, a partition, crashes of honest
validators, the heal time and the clock skew from the seed alone, so `--seed N` replays the
same scenario. `fork`, `crash_restart` and hand-made Scenarios pin the knobs for the targeted
tests.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from tests.simulation.byzantine import BYZANTINE_STRATEGIES, SPLIT
from tests.simulation.world import sim_genesis

MAX_SKEW_MS = sim_genesis(4).chain_params.time_precision_ms // 2
"""The largest clock skew drawn: half the genesis time precision (docs/PROTOCOL.md §14), so
any two clocks disagree by at most the precision."""


@dataclass(frozen=True)
class CrashPlan:
    """Honest validator `node` crashes at `at` ms and restarts at `back` ms."""

    node: int
    at: int
    back: int


ADD = "add"
REMOVE = "remove"
POWER = "power"


@dataclass(frozen=True)
class GovernanceStep:
    """One governance change, proposed `after_ms` after the previous one was decided (or the
    run started): add node `node` as a validator, remove it, or give it `power`."""

    op: str
    node: int
    power: int = 1
    after_ms: int = 500


@dataclass(frozen=True)
class Scenario:
    """Everything random about one run is drawn from `seed`; these are the knobs.

    Faults (loss, partitions, crashes) last until `heal_at`; then every honest node must
    commit `heights_after_heal` more blocks than the best one had, within
    `liveness_budget_ms`. `crashes` honest validators (chosen from the seed) crash and restart
    before the heal, unless `crash_plan` says exactly who and when. Each node's clock is off
    the simulated wall clock by a skew drawn within ±`clock_skew_ms`.
    """

    seed: int
    validators: int = 4
    byzantine: tuple[str, ...] = ()
    heights_after_heal: int = 3
    loss: float = 0.0
    duplicate: float = 0.0
    max_delay_ms: int = 50
    partition: bool = False
    crashes: int = 0
    crash_plan: tuple[CrashPlan, ...] = ()
    heal_at: int = 0
    liveness_budget_ms: int = 60_000
    tx_gap_ms: int = 800
    idle_block_interval_ms: int = 2000
    min_block_interval_ms: int = 0
    check_liveness: bool = True
    honest_cut: tuple[tuple[int, int], ...] = ()
    end_at: int = 0
    clock_skew_ms: int = 0
    joiners: int = 0
    """Honest nodes beyond the genesis validators: full nodes that governance may add."""
    governance: tuple[GovernanceStep, ...] = ()

    @property
    def honest_count(self) -> int:
        return self.validators - len(self.byzantine)

    @classmethod
    def random(cls, seed: int, validators: int | None = None) -> Scenario:
        rng = random.Random(f"scenario-{seed}")
        n = validators or rng.choice((4, 7))
        f = (n - 1) // 3
        count = min(f, rng.randint(0, f + 1))
        byzantine = tuple(rng.choice(BYZANTINE_STRATEGIES) for _ in range(count))
        faulty = rng.random() < 0.7
        return cls(
            seed=seed,
            validators=n,
            byzantine=byzantine,
            heights_after_heal=rng.randint(3, 4),
            loss=rng.choice((0.02, 0.1, 0.3)) if faulty else 0.0,
            duplicate=rng.choice((0.0, 0.05, 0.2)),
            max_delay_ms=rng.choice((20, 100, 400)),
            partition=faulty and rng.random() < 0.5,
            crashes=rng.randint(0, 2) if faulty else 0,
            heal_at=rng.randint(1000, 6000) if faulty else 0,
            tx_gap_ms=rng.choice((300, 1500, 6000)),
            idle_block_interval_ms=rng.choice((0, 1000, 3000)),
            clock_skew_ms=rng.choice((0, MAX_SKEW_MS // 2, MAX_SKEW_MS)),
            # Its own stream, so the scenarios of earlier seeds stay what they were.
            min_block_interval_ms=random.Random(f"pace-{seed}").choice((0, 100, 300)),
        )

    @classmethod
    def governed(cls, seed: int, validators: int | None = None) -> Scenario:
        """`random(seed)` with one joining full node and, while the faults last, three changes:
        the joiner is added, an honest genesis validator's power is doubled, another honest
        genesis validator is removed (it follows on as a full node)."""
        base = cls.random(seed, validators)
        rng = random.Random(f"governance-{seed}")
        n = base.validators
        joiner = n
        raised, removed = rng.sample(range(base.honest_count), 2)
        steps = (
            GovernanceStep(ADD, joiner, 1, rng.randint(100, 1500)),
            GovernanceStep(POWER, raised, 2, rng.randint(100, 1500)),
            GovernanceStep(REMOVE, removed, 1, rng.randint(100, 1500)),
        )
        heal_at = max(base.heal_at, rng.randint(4000, 9000))
        return dataclasses.replace(base, joiners=1, governance=steps, heal_at=heal_at)

    @classmethod
    def fork(cls, seed: int) -> Scenario:
        """2 of 4 validators split-brained and the two honest ones cut apart: safety can break."""
        return cls(
            seed=seed,
            validators=4,
            byzantine=(SPLIT, SPLIT),
            heights_after_heal=3,
            check_liveness=False,
            honest_cut=((0, 1),),
            heal_at=10**9,
            end_at=20_000,
        )

    @classmethod
    def crash_restart(cls, seed: int, victim: int = 1) -> Scenario:
        """4 honest validators on a lossy network; `victim` crashes twice, after it has
        committed blocks, and restarts over its data directory each time."""
        return cls(
            seed=seed,
            validators=4,
            heights_after_heal=4,
            loss=0.05,
            duplicate=0.05,
            max_delay_ms=60,
            crashes=2,
            crash_plan=(CrashPlan(victim, 2_500, 4_000), CrashPlan(victim, 5_500, 7_000)),
            heal_at=7_000,
            tx_gap_ms=300,
            idle_block_interval_ms=1000,
        )


__all__ = ["ADD", "MAX_SKEW_MS", "POWER", "REMOVE", "CrashPlan", "GovernanceStep", "Scenario"]
