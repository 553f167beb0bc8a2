"""The metrics the dashboard plots exist and move: commit latency, the store's synced block
write, the signer's fdatasync, catching up (besides height, round, mempool, peers, evidence)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from consensus.signer import SignerState
from node.server.signer_file import FileSignerPersistence
from tests.node.conftest import RunningNode

HISTOGRAMS = (
    "provledger_commit_latency_seconds",
    "provledger_store_append_seconds",
    "provledger_signer_fsync_seconds",
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
