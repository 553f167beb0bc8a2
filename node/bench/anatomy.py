"""Where a height's time goes, from the nodes' own histograms (`node.server.metrics`).

`scripts/bench cluster --single` reads every node's /metrics before and after each open-loop
run and prints, from the histograms' sums and counts over that run (means over all nodes):
how often blocks came and how many events they held, how long from a block's proposal to
its commit, how long each kind of consensus input waited in the inbox and how long the
consensus task then spent on it, and the durable writes on the way (the store's synced
block write, the signer's fdatasync before each signature leaves).

A node that does not export a histogram (an older revision) simply has no figure for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

HISTOGRAMS = (
    "provledger_block_interval_seconds",
    "provledger_block_events",
    "provledger_commit_latency_seconds",
    "provledger_store_append_seconds",
    "provledger_signer_fsync_seconds",
    "provledger_consensus_wait_seconds",
    "provledger_consensus_work_seconds",
)
SHOWN_INPUTS = ("proposal", "vote", "timeout", "events")
"""The consensus inputs whose wait and work are printed (ticks, start, block sync are rare)."""


@dataclass(frozen=True)
class Totals:
    """A histogram's sum, count and cumulative bucket counts by upper bound (one series: a
    histogram name, or name{input=...})."""

    sum: float
    count: float
    buckets: tuple[tuple[float, float], ...] = ()


def histogram_totals(metrics_text: str) -> dict[str, Totals]:
    """The sum and count of each of `HISTOGRAMS`' series in one node's /metrics text."""
    found: dict[str, dict[str, float]] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name not in HISTOGRAMS:
            continue
        for sample in family.samples:
            label = sample.labels.get("input")
            key = family.name if label is None else f"{family.name}{{input={label}}}"
            part = sample.name.removeprefix(family.name)
            if part == "_bucket":
                buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
            elif part in ("_sum", "_count"):
                found.setdefault(key, {})[part] = sample.value
    return {
        key: Totals(
            parts.get("_sum", 0.0), parts.get("_count", 0.0), tuple(sorted(buckets.get(key, ())))
        )
        for key, parts in found.items()
    }


def _change(
    before: Sequence[Mapping[str, Totals]], after: Sequence[Mapping[str, Totals]], key: str
) -> Totals | None:
    """The series' sum and count over the run, summed over the nodes that export it."""
    total_sum = total_count = 0.0
    in_bucket: dict[float, float] = {}
    exported = False
    for old, new in zip(before, after, strict=True):
        if key not in new:
            continue
        exported = True
        start = old.get(key, Totals(0.0, 0.0))
        total_sum += new[key].sum - start.sum
        total_count += new[key].count - start.count
        earlier = dict(start.buckets)
        for bound, count in new[key].buckets:
            in_bucket[bound] = in_bucket.get(bound, 0.0) + count - earlier.get(bound, 0.0)
    if not exported:
        return None
    return Totals(total_sum, total_count, tuple(sorted(in_bucket.items())))


def quantile(change: Totals | None, q: float, scale: float = 1000.0) -> float | None:
    """The q-quantile of the observations over the run from the cumulative buckets, linear
    within the bucket it falls in (as Prometheus's histogram_quantile), in ms for seconds;
    None without observations, the largest finite bound if it falls in the +Inf bucket."""
    if change is None or change.count <= 0 or not change.buckets:
        return None
    rank = q * change.count
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in change.buckets:
        if count >= rank:
            if bound == float("inf"):
                return round(lower_bound * scale, 1)
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return round((lower_bound + (bound - lower_bound) * share) * scale, 1)
        lower_bound, lower_count = bound, count
    return round(lower_bound * scale, 1)


def _mean(change: Totals | None, scale: float = 1000.0) -> float | None:
    """The mean of the observations over the run (in ms for seconds), None if there were none."""
    if change is None or change.count <= 0:
        return None
    return round(change.sum / change.count * scale, 2)


def anatomy(
    before: Sequence[Mapping[str, Totals]], after: Sequence[Mapping[str, Totals]]
) -> dict[str, Any]:
    """The means over a run, from every node's histogram totals at its start and its end."""

    def mean_ms(name: str) -> float | None:
        return _mean(_change(before, after, name))

    heights = _change(before, after, "provledger_block_events")
    fsyncs = _change(before, after, "provledger_signer_fsync_seconds")
    per_input: dict[str, dict[str, float | None]] = {}
    for label in SHOWN_INPUTS:
        wait = _change(before, after, f"provledger_consensus_wait_seconds{{input={label}}}")
        work = _change(before, after, f"provledger_consensus_work_seconds{{input={label}}}")
        if wait is not None and wait.count > 0:
            per_input[label] = {"wait_ms": _mean(wait), "work_ms": _mean(work)}
    intervals = _change(before, after, "provledger_block_interval_seconds")
    return {
        "block_interval_p50_ms": quantile(intervals, 0.5),
        "block_interval_p90_ms": quantile(intervals, 0.9),
        "events_per_block": _mean(heights, scale=1.0),
        "proposal_to_commit_ms": mean_ms("provledger_commit_latency_seconds"),
        "store_append_ms": mean_ms("provledger_store_append_seconds"),
        "signer_fsync_ms": _mean(fsyncs),
        "signer_fsyncs_per_block": (
            round(fsyncs.count / heights.count, 2)
            if fsyncs is not None and heights is not None and heights.count > 0
            else None
        ),
        "consensus_inputs": per_input,
    }


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def anatomy_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The anatomy of an open-loop run as printed rows (empty if the nodes export nothing)."""
    if figures["block_interval_p50_ms"] is None and not figures["consensus_inputs"]:
        return []
    inputs = "; ".join(
        f"{label} waited {_ms(f['wait_ms'])}, took {_ms(f['work_ms'])}"
        for label, f in figures["consensus_inputs"].items()
    )
    return [
        (
            "  a height, mean of all nodes",
            f"a block every {_ms(figures['block_interval_p50_ms'])} ms (p50; p90 "
            f"{_ms(figures['block_interval_p90_ms'])}) holding {_ms(figures['events_per_block'])}"
            f" events; proposal to commit {_ms(figures['proposal_to_commit_ms'])} ms",
        ),
        ("  consensus task per input, ms", inputs or "?"),
        (
            "  durable writes, ms",
            f"block append {_ms(figures['store_append_ms'])}; signer fdatasync "
            f"{_ms(figures['signer_fsync_ms'])} ({_ms(figures['signer_fsyncs_per_block'])} "
            "per block)",
        ),
    ]
