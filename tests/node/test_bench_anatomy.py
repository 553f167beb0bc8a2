"""`node.bench.anatomy`: the histograms' totals read back from a node's real /metrics text,
their change over a run summed over nodes, means and bucket quantiles, and the printed rows."""

from __future__ import annotations

import pytest

from consensus import core as cc
from node.bench.anatomy import (
    Totals,
    anatomy,
    anatomy_rows,
    histogram_totals,
    quantile,
)
from node.server.metrics import Metrics

INF = float("inf")


def rendered(metrics: Metrics) -> str:
    return metrics.render()[0].decode()


def test_totals_are_read_from_the_nodes_own_exposition() -> None:
    metrics = Metrics()
    metrics.block_stored(0.004, 90, 120, 50)
    metrics.block_stored(0.006, 110, 180, 70)
    metrics.consensus_input(cc.VoteReceived, 3, 0.002)
    metrics.consensus_input(cc.ProposalReceived, 1, 0.020)
    totals = histogram_totals(rendered(metrics))
    assert totals["provledger_block_events"].count == 2
    assert totals["provledger_block_events"].sum == 120
    interval = totals["provledger_block_interval_seconds"]
    assert interval.count == 2 and interval.sum == pytest.approx(0.3)
    assert dict(interval.buckets)[0.125] == 1 and dict(interval.buckets)[0.2] == 2
    assert dict(interval.buckets)[INF] == 2
    vote_wait = totals["provledger_consensus_wait_seconds{input=vote}"]
    assert vote_wait.count == 1 and vote_wait.sum == pytest.approx(0.003)
    assert totals["provledger_consensus_work_seconds{input=proposal}"].sum == pytest.approx(0.02)
    # Every input's series exists from the start, observed or not.
    assert totals["provledger_consensus_work_seconds{input=timeout}"].count == 0
    assert "provledger_http_request_seconds" not in totals, "only the anatomy's histograms"


def test_the_anatomy_is_the_change_over_the_run_summed_over_nodes() -> None:
    nodes = [Metrics(), Metrics()]
    nodes[0].block_stored(0.050, 5_000, 4_000, 1)  # before the run: not counted
    before = [histogram_totals(rendered(m)) for m in nodes]
    nodes[0].block_stored(0.010, 100, 200, 80)
    nodes[1].block_stored(0.020, 140, 200, 80)
    nodes[1].block_stored(0.030, 120, 220, 100)
    for node in nodes:
        node.signer_fsync.observe(0.002)
        node.signer_fsync.observe(0.004)
        node.consensus_input(cc.VoteReceived, 10, 0.001)
    nodes[1].consensus_input(cc.VoteReceived, 4, 0.005)
    after = [histogram_totals(rendered(m)) for m in nodes]
    figures = anatomy(before, after)
    assert figures["events_per_block"] == pytest.approx(86.67, abs=0.01)
    assert figures["store_append_ms"] == 20.0
    assert figures["proposal_to_commit_ms"] == 120.0
    assert figures["signer_fsync_ms"] == 3.0
    assert figures["signer_fsyncs_per_block"] == pytest.approx(4 / 3, abs=0.01)
    # Three intervals over the run (200, 200, 220 ms): the median is in the (175, 200] bucket.
    assert 175 < figures["block_interval_p50_ms"] <= 200
    assert 200 < figures["block_interval_p90_ms"] <= 225
    assert figures["consensus_inputs"] == {"vote": {"wait_ms": 8.0, "work_ms": 2.33}}


def test_a_node_without_the_histograms_has_no_figures() -> None:
    older = [{}, {}]  # an older revision's nodes export none of them
    figures = anatomy(older, older)
    assert figures["block_interval_p50_ms"] is None and figures["store_append_ms"] is None
    assert figures["signer_fsyncs_per_block"] is None and figures["consensus_inputs"] == {}
    assert anatomy_rows(figures) == []


def test_quantiles_interpolate_within_the_bucket_like_prometheus() -> None:
    change = Totals(sum=1.0, count=8, buckets=((0.1, 2), (0.2, 6), (INF, 8)))
    assert quantile(change, 0.25) == 100.0
    assert quantile(change, 0.5) == 150.0
    assert quantile(change, 0.75) == 200.0, "a rank past the last finite bucket: its bound"
    assert quantile(Totals(0.0, 0), 0.5) is None
    assert quantile(None, 0.5) is None


def test_the_rows_say_where_a_height_went() -> None:
    nodes = [Metrics()]
    before = [histogram_totals(rendered(m)) for m in nodes]
    nodes[0].block_stored(0.015, 110, 210, 80)
    nodes[0].signer_fsync.observe(0.003)
    nodes[0].consensus_input(cc.ProposalReceived, 2, 0.025)
    rows = dict(anatomy_rows(anatomy(before, [histogram_totals(rendered(m)) for m in nodes])))
    height = rows["  a height, mean of all nodes"]
    assert "holding 80.0 events" in height and "proposal to commit 110.0 ms" in height
    assert rows["  consensus task per input, ms"] == "proposal waited 2.0, took 25.0"
    assert rows["  durable writes, ms"] == "block append 15.0; signer fdatasync 3.0 (1.0 per block)"
