"""Run simulator seeds: `--seed N` replays one verbosely, `--seeds K` runs K and summarises.

python -m tests.simulation.run --seed 17
python -m tests.simulation.run --seeds 500 [--start 0] [--validators 7] [--governed]

`--governed` runs `Scenario.governed` (validator set changes mid-run) instead of `random`.

Each seed runs real replicas (LevelDB stores in a temporary directory, see `sim.py`).
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.simulation.checkers import SimulationFailure
from tests.simulation.scenario import Scenario
from tests.simulation.sim import Result, Simulation


def scenario_of(seed: int, validators: int | None, governed: bool) -> Scenario:
    maker = Scenario.governed if governed else Scenario.random
    return maker(seed, validators)


def replay(seed: int, validators: int | None, governed: bool = False) -> int:
    scenario = scenario_of(seed, validators, governed)
    try:
        result = Simulation(scenario, log=print).run()
    except SimulationFailure as exc:
        print(f"FAILED: {exc}")
        return 1
    print(
        f"ok: heights {result.heights} (target {result.target}) at t={result.end_time} ms, "
        f"{result.block_hashes} blocks, {result.events_committed} events "
        f"({result.refused_admissions} refused at admission, {result.events_dropped} dropped "
        "from mempools), "
        f"{result.deliveries} deliveries, max round {result.rounds}, "
        f"{result.evidence} evidence, {len(result.restarts)} restarts"
    )
    print(f"byzantine: {scenario.byzantine or 'none'}, clock skew ±{scenario.clock_skew_ms} ms")
    print(memory_line(result))
    return 0


def memory_line(result: Result) -> str:
    """The peak of what an honest core held against the bound at the highest round reached."""
    peak, bound = result.memory_peak, result.memory_bound
    keys = ("bytes", "votes", "vote_sets", "proposal_bytes", "future_messages", "future_bytes")
    return "memory peak/bound: " + ", ".join(f"{k} {peak.get(k, 0)}/{bound[k]}" for k in keys)


def sweep(start: int, count: int, validators: int | None, governed: bool = False) -> int:
    began = time.perf_counter()
    failures: list[str] = []
    for seed in range(start, start + count):
        try:
            Simulation(scenario_of(seed, validators, governed)).run()
        except SimulationFailure as exc:
            failures.append(str(exc))
            print(f"FAILED {exc}", flush=True)
    elapsed = time.perf_counter() - began
    print(
        f"seeds run: {count} ({start}..{start + count - 1}), failures: {len(failures)}, "
        f"{elapsed:.1f} s"
    )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--seed", type=int, help="replay one seed verbosely")
    group.add_argument("--seeds", type=int, help="run this many seeds and print a summary")
    parser.add_argument("--start", type=int, default=0, help="first seed of --seeds")
    parser.add_argument("--validators", type=int, choices=(4, 7), help="force the set size")
    parser.add_argument("--governed", action="store_true", help="change the set mid-run")
    args = parser.parse_args(argv)
    if args.seed is not None:
        return replay(args.seed, args.validators, args.governed)
    return sweep(args.start, args.seeds, args.validators, args.governed)


if __name__ == "__main__":
    sys.exit(main())
