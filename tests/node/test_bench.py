"""The ledger benchmark runs end to end on a small log (behaviour only, never timings)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from node.bench import ledger as bench

POSITIVE = (
    "append_rate_eps",
    "append_total_s",
    "execute_s",
    "append_block_s",
    "proof_gen_mean_us",
    "proof_gen_p99_us",
    "proof_verify_mean_us",
    "proof_verify_p99_us",
    "history_mean_ms",
    "bundle_gen_mean_ms",
    "bundle_verify_mean_ms",
    "store_bytes",
    "peak_rss_mb",
)


def test_bench_ledger_small(tmp_path: Path) -> None:
    results = bench.bench_ledger(sizes=(2_000,), block_events=500, workdir=tmp_path)
    assert len(results) == 1
    result = results[0]
    assert result["size"] == 2_000
    assert result["blocks"] == 4
    for key in POSITIVE:
        assert result[key] > 0, key
    assert result["history_events"] == bench.TARGET_EVENTS == 10
    assert result["bundle_events"] == 10
    leaves = result["history_leaves"]
    assert leaves == sorted(leaves) and leaves[0] == 0 and leaves[-1] >= 1_800
    table = bench.format_table(results)
    assert "2,000" in table and "append rate" in table
    assert not list(tmp_path.iterdir()), "the temporary stores are removed"


def test_interleave_spreads_target_events() -> None:
    fillers = list(range(90))
    target = [f"t{j}" for j in range(10)]
    log = bench.interleave(fillers, target)  # type: ignore[arg-type]
    assert len(log) == 100
    assert [log.index(t) for t in target] == list(range(0, 100, 10))


def test_main_writes_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    code = bench.main(["ledger", "--sizes", "100,300", "--block-events", "50", "--json", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    assert [r["size"] for r in doc["ledger"]] == [100, 300]
    assert all(r["history_events"] == 10 for r in doc["ledger"])
    assert "last/first" in capsys.readouterr().out


def test_cluster_map_comparison_reports_both_clusters_and_the_cpu_drop() -> None:
    from node.bench import cluster

    with_map = {"events_per_s": 900.0, "lost": 0, "duplicated": 0, "cpu_ms_per_event": 0.2}
    without = {**with_map, "events_per_s": 1100.0, "cpu_ms_per_event": 0.17}
    figures = cluster.state_map_comparison(with_map, without)
    assert (figures["with_map"], figures["without_map"]) == (with_map, without)
    assert figures["drop_pct"] == 15.0  # 1 - 0.17 / 0.2: CPU, not the concurrent events/s
    rows = dict(cluster.map_cost_rows(figures, 20_000))
    assert rows["state map, two fresh clusters at once"] == "20,000 events each, same load"
    assert rows["  with the map"] == (
        "CPU ms per event per node 0.2000; 900.0 events/s; lost / duplicated 0 / 0"
    )
    assert rows["  without it"].startswith("CPU ms per event per node 0.1700; 1,100.0 events/s")
    assert rows["  drop due to the map"].startswith("15.0% of the events/s a CPU-bound cluster")
    assert "issue 12 budget: 15%" in rows["  drop due to the map"]
    assert cluster.NO_MAP_PORT_OFFSET == 200
    parser = bench.build_parser()
    assert parser.parse_args(["cluster"]).no_map_compare is False
    assert parser.parse_args(["cluster", "--no-map-compare"]).no_map_compare is True


def test_memory_rows_split_each_sample_and_name_the_backlog() -> None:
    from node.bench import cluster

    saturation = {
        "rss_mb_at_committed": {"100000": [426.7, 414.7], "300000": [531.4, 537.0]},
        "anonymous_mb_at_committed": {"100000": [382.5, 374.0], "300000": [432.7, 453.0]},
        "mempool_events_at_committed": {"100000": [47704, 48124], "300000": [0, 0]},
    }
    assert cluster.memory_rows(saturation) == [
        ("RSS MB at 100,000 committed", "426.7, 414.7"),
        ("  of which anonymous", "382.5, 374.0"),
        ("  events pending in each mempool", "47,704, 48,124"),
        ("RSS MB at 300,000 committed", "531.4, 537.0"),
        ("  of which anonymous", "432.7, 453.0"),
        ("  events pending in each mempool", "0, 0"),
        (
            "  growth, 100,000 to 300,000",
            "resident +25% to +29%, anonymous +13% to +21% (per node; issue 16 bound: 20%)",
        ),
    ]
    assert cluster.MEMORY_GROWTH_BOUND == 0.20
    assert cluster.memory_rows({"rss_mb_at_committed": {}}) == []


def test_anonymous_memory_is_part_of_the_resident_memory() -> None:
    import os

    from node.bench import cluster

    resident = cluster._memory_mb(os.getpid())
    anonymous = cluster._memory_mb(os.getpid(), "RssAnon")
    assert 0 < anonymous <= resident


def test_the_bench_only_setting_is_off_by_default_and_round_trips(tmp_path: Path) -> None:
    from dataclasses import replace

    from node.config import NodeSettings

    settings = NodeSettings(home=tmp_path)
    assert settings.bench_without_state_map is False
    replace(settings, bench_without_state_map=True).save()
    assert NodeSettings.load(tmp_path).bench_without_state_map is True


def test_bench_scale_small() -> None:
    """The scale bench builds a pair with many grants and a dataset with many attestations,
    and pages the whole bundle (behaviour only, never timings)."""
    from node.bench import scale

    results = scale.bench_scale(2_000, 2_000, lambda _: None, uses=500)
    assert (results["grants"], results["attests"]) == (2_000, 2_000)
    assert results["pages"] >= 1
    for key in ("grant_exec_ms_first", "grant_exec_ms_last", "use_exec_ms_after_grants"):
        assert results[key] > 0
    assert results["page_ms_max"] >= results["page_ms_median"] > 0


@pytest.mark.cluster
def test_the_map_cost_runs_both_clusters_at_once_and_loses_nothing(tmp_path: Path) -> None:
    from node.bench import cluster
    from tests.cluster.harness import free_port_block

    base = free_port_block(2 * cluster.NO_MAP_PORT_OFFSET + 104)
    figures = cluster.map_cost_side_by_side(
        300, clients=2, batch=50, nodes=4, base_port=base, workdir=str(tmp_path)
    )
    for side in ("with_map", "without_map"):
        saturation = figures[side]
        assert (saturation["committed"], saturation["lost"], saturation["duplicated"]) == (
            300,
            0,
            0,
        )
        assert len(saturation["cpu_ms_per_event_per_node"]) == 4
    cpu_with, cpu_without = (
        round(statistics.fmean(figures[side]["cpu_ms_per_event_per_node"]), 4)
        for side in ("with_map", "without_map")
    )
    assert figures["with_map"]["cpu_ms_per_event"] == cpu_with
    assert figures["drop_pct"] == round(100 * (1 - cpu_without / cpu_with), 1)
    assert list(tmp_path.iterdir()) == []  # both clusters' homes went with their directory


def test_a_paced_run_offers_no_event_before_its_time() -> None:
    from node.bench.cluster import pace_delay

    # 2,000 events/s from t = 10: the 5,000th event is due at t = 12.5.
    assert pace_delay(10.0, 5_000, 2_000.0, now=11.0) == 1.5
    assert pace_delay(10.0, 5_000, 2_000.0, now=12.5) == 0.0
    assert pace_delay(10.0, 5_000, 2_000.0, now=13.0) == 0.0  # late: no wait, no catching up
    assert pace_delay(10.0, 0, 2_000.0, now=10.0) == 0.0


def test_pace_is_a_positive_rate_for_the_batch_run_only(capsys: pytest.CaptureFixture[str]) -> None:
    parser = bench.build_parser()
    assert parser.parse_args(["cluster", "--pace", "2000"]).pace == 2000.0
    assert parser.parse_args(["cluster"]).pace is None
    for bad in ("0", "-5"):
        with pytest.raises(SystemExit):
            parser.parse_args(["cluster", "--pace", bad])
    assert bench.main(["cluster", "--single", "--pace", "2000"]) == 2
    assert "--pace paces the batch run, not --single" in capsys.readouterr().err
