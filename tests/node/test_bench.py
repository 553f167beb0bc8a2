"""The ledger benchmark runs end to end on a small log (behaviour only, never timings)."""

from __future__ import annotations

import json
from pathlib import Path

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
