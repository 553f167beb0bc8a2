"""Run simulator seeds: `--seed N` replays one verbosely, `--seeds K` runs K and summarises.

python -m tests.simulation.run --seed 17
python -m tests.simulation.run --seeds 500 [--start 0] [--validators 7]
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.simulation.sim import Scenario, Simulation, SimulationFailure, run_seed


def replay(seed: int, validators: int | None) -> int:
    scenario = Scenario.random(seed, validators)
    try:
        result = Simulation(scenario, log=print).run()
    except SimulationFailure as exc:
        print(f"FAILED: {exc}")
        return 1
    print(
        f"ok: heights {result.heights} (target {result.target}) at t={result.end_time} ms, "
        f"{result.deliveries} deliveries, max round {result.rounds}, {result.evidence} evidence"
    )
    return 0


def sweep(start: int, count: int, validators: int | None) -> int:
    began = time.perf_counter()
    failures: list[str] = []
    for seed in range(start, start + count):
        try:
            run_seed(seed, validators=validators)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--seed", type=int, help="replay one seed verbosely")
    group.add_argument("--seeds", type=int, help="run this many seeds and print a summary")
    parser.add_argument("--start", type=int, default=0, help="first seed of --seeds")
    parser.add_argument("--validators", type=int, choices=(4, 7), help="force the set size")
    args = parser.parse_args(argv)
    if args.seed is not None:
        return replay(args.seed, args.validators)
    return sweep(args.start, args.seeds, args.validators)


if __name__ == "__main__":
    sys.exit(main())
