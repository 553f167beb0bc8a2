"""The metrics the dashboard plots exist and move: commit latency, the store's synced block
write, the signer's fdatasync, catching up (besides height, round, mempool, peers, evidence),
the block interval and events per block, each consensus input's wait and work."""

from __future__ import annotations

import typing
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from consensus import core as cc
from consensus.signer import SignerState
from node.bench.anatomy import histogram_totals
from node.server.metrics import CONSENSUS_INPUTS, Metrics
from node.server.signer_file import FileSignerPersistence
from tests.node.conftest import RunningNode

HISTOGRAMS = (
    "provledger_commit_latency_seconds",
    "provledger_store_append_seconds",
    "provledger_signer_fsync_seconds",
    "provledger_block_events",
)
GAUGES = (
    "provledger_height",
    "provledger_round",
    "provledger_mempool_events",
    "provledger_evidence",
    "provledger_catching_up",
)


def scrape(node: RunningNode) -> dict[str, float]:
    response = node.client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if not sample.labels or set(sample.labels) == {"le"}:
                key = sample.name + (f"{{le={sample.labels['le']}}}" if sample.labels else "")
                samples[key] = sample.value
    return samples


def test_histograms_and_gauges_exist_and_move_with_a_commit(node: RunningNode) -> None:
    before = scrape(node)
    for name in GAUGES:
        assert name in before, name
    for name in HISTOGRAMS:
        assert f"{name}_count" in before, name
    node.admit_participant("metrics")
    after = scrape(node)
    for name in HISTOGRAMS:
        assert after[f"{name}_count"] > before[f"{name}_count"], name
        assert after[f"{name}_sum"] >= before[f"{name}_sum"], name
    assert after["provledger_height"] > before["provledger_height"]
    assert after["provledger_catching_up"] == 0


def test_commit_latency_is_measured_from_the_block_time(node: RunningNode) -> None:
    """A block stored now whose time is ~0 s ago lands in the lowest buckets, not at 0 count."""
    node.admit_participant("latency")
    samples = scrape(node)
    count = samples["provledger_commit_latency_seconds_count"]
    assert count >= 1
    # Single-validator blocks commit within a few seconds of being proposed.
    assert samples["provledger_commit_latency_seconds_bucket{le=30.0}"] == count


def test_the_catching_up_gauge_follows_the_service(node: RunningNode) -> None:
    node.service.sync.best_peer_height = node.service.store.height + 10
    try:
        assert scrape(node)["provledger_catching_up"] == 1
    finally:
        node.service.sync.best_peer_height = 0


def test_the_signer_file_reports_each_fdatasync(tmp_path: Path) -> None:
    timings: list[float] = []
    persistence = FileSignerPersistence(tmp_path / "signer_state.bin")
    persistence.on_fsync = timings.append
    try:
        for height in (1, 2):
            persistence.save(SignerState(height, 0, 1, b"bytes", b"sig"))
    finally:
        persistence.close()
    assert len(timings) == 2 and all(t >= 0 for t in timings)


def labelled(node: RunningNode, name: str) -> dict[str, float]:
    """One labelled histogram's observation counts by their `input` label."""
    prefix = f"{name}{{input="
    totals = histogram_totals(node.client.get("/metrics").text)
    return {key[len(prefix) : -1]: t.count for key, t in totals.items() if key.startswith(prefix)}


def test_a_commit_counts_its_events_and_the_interval_from_the_block_before(
    node: RunningNode,
) -> None:
    node.admit_participant("first")  # the chain now has a block before the next
    before = scrape(node)
    node.admit_participant("second")
    after = scrape(node)
    assert after["provledger_block_events_count"] > before["provledger_block_events_count"]
    assert after["provledger_block_events_sum"] > before["provledger_block_events_sum"]
    assert (
        after["provledger_block_interval_seconds_count"]
        > before["provledger_block_interval_seconds_count"]
    )


def test_the_consensus_task_reports_each_input_it_takes(node: RunningNode) -> None:
    assert node.service.consensus_observer is not None, "the app's metrics are bound"
    before = labelled(node, "provledger_consensus_work_seconds")
    assert set(before) == {
        "proposal", "vote", "timeout", "events", "block_sync", "tick", "start", "other"
    }  # fmt: skip
    node.admit_participant("observed")
    after = labelled(node, "provledger_consensus_work_seconds")
    # A lone validator's own messages never pass the inbox; the event's wake-up and the
    # height's timeouts do.
    assert after["events"] + after["timeout"] > before["events"] + before["timeout"]
    assert labelled(node, "provledger_consensus_wait_seconds").keys() == after.keys()


def test_an_unknown_input_is_labelled_other_and_a_clock_step_back_waits_zero() -> None:
    metrics = Metrics()
    metrics.consensus_input(str, -40, 0.003)  # not a consensus input
    metrics.consensus_input(cc.VoteReceived, 7, 0.001)
    totals = histogram_totals(metrics.render()[0].decode())
    other_wait = totals["provledger_consensus_wait_seconds{input=other}"]
    assert other_wait.count == 1 and other_wait.sum == 0.0
    assert totals["provledger_consensus_work_seconds{input=other}"].sum == 0.003
    assert totals["provledger_consensus_wait_seconds{input=vote}"].sum == 0.007


def test_a_first_block_has_no_interval_but_counts_its_events() -> None:
    metrics = Metrics()
    metrics.block_stored(0.002, 30, None, 5)
    totals = histogram_totals(metrics.render()[0].decode())
    assert totals["provledger_block_interval_seconds"].count == 0
    assert totals["provledger_block_events"].count == 1
    assert totals["provledger_block_events"].sum == 5


def test_every_input_the_inbox_carries_has_its_own_label() -> None:
    """BlockApplied is the driver's own follow-up, fed straight to the core, never queued."""
    carried = set(typing.get_args(cc.Input)) - {cc.BlockApplied}
    assert set(CONSENSUS_INPUTS) == carried
    assert len(set(CONSENSUS_INPUTS.values())) == len(CONSENSUS_INPUTS), "one label each"
