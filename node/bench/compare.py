"""`scripts/bench compare --against REV`: this working tree's nodes beside another
revision's, under the same load at the same time.

Runs of one benchmark one after the other differ on a shared machine by more than most
changes do: the same code's CPU per event moved by a fifth between runs of one session
(README, "One event per request"). So this runs two clusters at once: one of this working
tree, one of REV checked out in a temporary `git worktree`. Each is created and started by
its own code's command line (`python -m node.cli cluster up`, run in its own tree), and
both get the same kind of load from this one client at the same moment, so whatever slows
the machine slows both. Every round prints, for each cluster, the CPU per event per node
and the committed events/s, and REV's CPU per event over this tree's; rounds alternate
which cluster's load starts first. The two clusters share the cores, so each one's
absolute figures are about half of what it would reach alone: the ratio is the result. For
the same reason the rate mode's latencies favour neither side's savings: what one cluster
saves lowers the other's latency too.

The modes are the paths of `scripts/bench cluster`: `single` (one JSON event per request
over `--clients` connections per cluster), `batch` (batches of `--batch` over four
clients), and `rate` (single events at `--rate` per cluster, open loop, `?wait=commit`,
with the p99 of each). A round is `cluster.side_by_side`, which the state map's cost in
`scripts/bench cluster` runs too. Nothing here asserts a figure.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.genesis import Genesis
from node.bench import cluster
from node.config import GENESIS_FILE
from node.ops.homes import node_home
from node.ops.processes import node_pid

MODES = cluster.LOAD_MODES
VALIDATORS = 4
DEFAULT_CLIENTS = {
    "single": cluster.SINGLE_CLIENTS // 2,  # `cluster --single`'s 32 connections, shared
    "batch": cluster.CLIENT_CONNECTIONS,
    "rate": 1,  # unused: the open loop opens what the rate needs
}
SECOND_CLUSTER_PORT_OFFSET = 200
"""Ports of REV's cluster: this tree's plus 200 (each cluster also uses its ports + 100)."""
START_TIMEOUT_S = 120
CLI_TIMEOUT_S = 180


class CompareError(RuntimeError):
    """The comparison cannot run: no such revision, no git checkout, a cluster that would
    not start, a tree whose code is not the one imported."""


@dataclass
class Side:
    """One of the two clusters: whose code it runs and where."""

    label: str
    code_dir: Path
    cluster_dir: Path
    base_port: int
    urls: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    chain_id: str = ""

    @property
    def env(self) -> dict[str, str]:
        """The environment its commands run in: its tree first on the import path."""
        return {**os.environ, "PYTHONPATH": str(self.code_dir)}


# --- the other revision --------------------------------------------------------------------


def repository_root() -> Path:
    """The git checkout this code runs from."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        raise CompareError(f"{root} is not a git checkout: nothing to compare against")
    return root


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )


def resolve_revision(root: Path, revision: str) -> str:
    """The full commit hash `revision` names in this repository."""
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if found.returncode != 0 or not found.stdout.strip():
        raise CompareError(f"{revision!r} is not a commit of this repository")
    return found.stdout.strip()


@contextlib.contextmanager
def worktree(root: Path, commit: str, parent: Path) -> Iterator[Path]:
    """`commit` checked out (detached) under `parent`, removed afterwards."""
    path = parent / f"tree-{commit[:12]}"
    added = _git(root, "worktree", "add", "--detach", "--quiet", str(path), commit)
    if added.returncode != 0:
        raise CompareError(f"git worktree add {commit[:12]} failed: {added.stderr.strip()}")
    try:
        yield path
    finally:
        _git(root, "worktree", "remove", "--force", str(path))
        _git(root, "worktree", "prune")


# --- the clusters --------------------------------------------------------------------------


def _python(side: Side, *args: str) -> subprocess.CompletedProcess[str]:
    """`python ARGS` with `side`'s tree as the working directory and import path."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=side.code_dir,
        env=side.env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


_IMPORT_PROBE = (
    "import consensus, ledger, node; print(*(p.__path__[0] for p in (consensus, ledger, node)))"
)
"""Run in a side's tree (not a module: an older tree would not have it)."""


def check_imports(side: Side) -> None:
    """Refuse a side whose commands would import another tree's packages."""
    probe = _python(side, "-c", _IMPORT_PROBE)
    expected = {str(side.code_dir.resolve() / name) for name in ("node", "ledger", "consensus")}
    found = set(probe.stdout.split())
    if probe.returncode != 0 or found != expected:
        raise CompareError(
            f"{side.label}: its commands import {sorted(found) or probe.stderr.strip()!r}, "
            f"not the packages of {side.code_dir}"
        )


def start(side: Side) -> None:
    """Create and start `side`'s cluster with its own command line; wait for block 1."""
    try:
        cluster.require_free_ports(side.base_port, VALIDATORS)
    except RuntimeError as exc:
        raise CompareError(f"{side.label}: {exc}") from exc
    started = _python(
        side,
        *("-m", "node.cli", "cluster", "up", "--dir", str(side.cluster_dir)),
        *("--nodes", str(VALIDATORS), "--base-port", str(side.base_port)),
        *("--open", "--detach", "--timeout", str(START_TIMEOUT_S)),
    )
    if started.returncode != 0:
        raise CompareError(f"{side.label}: cluster up failed: {started.stderr.strip()[-800:]}")
    side.chain_id = Genesis.load(side.cluster_dir / GENESIS_FILE).chain_id
    side.urls = [f"http://127.0.0.1:{side.base_port + i}" for i in range(VALIDATORS)]
    pids = [node_pid(node_home(side.cluster_dir, i)) for i in range(VALIDATORS)]
    if None in pids:
        raise CompareError(f"{side.label}: a node of {side.cluster_dir} is not running")
    side.pids = [pid for pid in pids if pid is not None]


def stop(side: Side) -> None:
    if (side.cluster_dir / GENESIS_FILE).exists():
        _python(side, "-m", "node.cli", "cluster", "down", "--dir", str(side.cluster_dir))


# --- the rounds' result --------------------------------------------------------------------


def summarize(rounds: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """REV's CPU per event over this tree's, each round, and their median and range."""
    ratios = [round(r[1]["cpu_ms_per_event"] / r[0]["cpu_ms_per_event"], 3) for r in rounds]
    return {
        "cpu_ratios": ratios,
        "median": round(statistics.median(ratios), 3),
        "low": min(ratios),
        "high": max(ratios),
    }


def verdict(summary: dict[str, Any], revision: str) -> str:
    """The summary in words: how much more (or less) CPU per event REV spends."""
    median = summary["median"]
    change = f"{median - 1:.1%} more" if median >= 1 else f"{1 - median:.1%} less"
    return (
        f"{revision} spends {change} CPU per event than this tree (median of "
        f"{len(summary['cpu_ratios'])} rounds; {summary['low']:.3f} to {summary['high']:.3f})"
    )


def compare(
    revision: str,
    load: cluster.Load,
    rounds: int,
    base_port: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """This tree against `revision`, `rounds` rounds of `load` on both at once."""
    assert load.mode in MODES and rounds >= 1
    root = repository_root()
    commit = resolve_revision(root, revision)
    with tempfile.TemporaryDirectory(prefix="provledger-compare-") as tmp:
        parent = Path(tmp)
        with worktree(root, commit, parent) as other:
            sides = (
                Side("this tree", root, parent / "this", base_port),
                Side(revision, other, parent / "other", base_port + SECOND_CLUSTER_PORT_OFFSET),
            )
            results: list[list[dict[str, Any]]] = []
            try:
                for side in sides:
                    check_imports(side)
                    say(f"starting {side.label}'s cluster on port {side.base_port}")
                    start(side)
                time.sleep(2)
                for index in range(rounds):
                    say(f"round {index + 1} of {rounds}: {load.events:,} events each, {load.mode}")
                    try:
                        results.append(cluster.side_by_side(sides, load, first=index % 2))
                    except TimeoutError as exc:
                        raise CompareError(f"round {index + 1}: {exc}") from exc
            finally:
                for side in sides:
                    stop(side)
    return {
        "revision": revision,
        "commit": commit,
        "mode": load.mode,
        "events": load.events,
        "clients": load.clients,
        "batch": load.batch,
        "rate": load.rate,
        "rounds": results,
        "summary": summarize(results),
    }


def print_compare(results: dict[str, Any]) -> None:
    revision = results["revision"]
    print(
        f"this tree vs {revision} ({results['commit'][:12]}), both clusters at once, "
        f"{results['mode']}, {results['events']:,} events per cluster per round"
    )
    print(
        f"{'round':<6} {'cluster':<14} {'CPU ms/event/node':>17} {'events/s':>9}  "
        "lost/duplicated  statuses"
    )
    for number, pair in enumerate(results["rounds"], 1):
        for label, figure in zip(("this tree", revision), pair, strict=True):
            extra = ""
            if "p99_ms" in figure:
                extra = f"  p50 {figure['p50_ms']} ms, p99 {figure['p99_ms']} ms"
            print(
                f"{number:<6} {label[:14]:<14} {figure['cpu_ms_per_event']:>17.4f} "
                f"{figure['events_per_s']:>9,.1f}  "
                f"{figure['lost']}/{figure['duplicated']:<14} {figure['statuses']}{extra}"
            )
    summary = results["summary"]
    print(f"{revision} / this tree, CPU per event: {', '.join(map(str, summary['cpu_ratios']))}")
    print(verdict(summary, revision))
    if any(f["lost"] or f["duplicated"] for pair in results["rounds"] for f in pair):
        print("events were lost or duplicated: the CPU per event of that cluster is not comparable")
