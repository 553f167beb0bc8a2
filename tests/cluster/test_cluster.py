"""Multi-process tests: four real validators on loopback, killed, paused and restarted."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

from ledger import events
from tests.cluster.harness import LocalCluster, wait_for


def commit_admits(cluster: LocalCluster, count: int, nodes: list[int]) -> list[dict]:
    results = []
    for n in range(count):
        _, event = cluster.admit_event(f"participant-{n}")
        response = cluster.submit(nodes[n % len(nodes)], event)
        assert response.status_code == 200, response.text
        results.append(response.json())
    return results


def assert_agreement(cluster: LocalCluster, nodes: list[int], up_to: int) -> None:
    reference = cluster.block_hashes(nodes[0], up_to)
    for index in nodes[1:]:
        assert cluster.block_hashes(index, up_to) == reference, f"node {index} disagrees"


def test_four_validators_commit_and_agree_on_every_block(cluster: LocalCluster) -> None:
    results = commit_admits(cluster, 12, [0, 1, 2, 3])
    top = max(r["height"] for r in results)
    for index in range(4):
        cluster.wait_height(index, top)
    assert_agreement(cluster, [0, 1, 2, 3], top)
    leaves = sorted(r["leaf_index"] for r in results)
    assert leaves == list(range(12))


def test_sigkill_one_validator_the_rest_commit_and_it_catches_up(cluster: LocalCluster) -> None:
    cluster.signal(3, signal.SIGKILL)
    results = commit_admits(cluster, 6, [0, 1, 2])
    top = max(r["height"] for r in results)
    cluster.start(3)
    cluster.wait_height(3, top)
    assert_agreement(cluster, [0, 1, 2, 3], top)
    _, event = cluster.admit_event("after-restart")
    response = cluster.submit(3, event)
    assert response.status_code == 200, response.text


def test_sigstop_two_of_four_halts_and_sigcont_commits_exactly_once(
    cluster: LocalCluster,
) -> None:
    cluster.signal(2, signal.SIGSTOP)
    cluster.signal(3, signal.SIGSTOP)
    time.sleep(1.0)
    before = [cluster.height(0), cluster.height(1)]
    _, event = cluster.admit_event("while-halted")
    response = cluster.submit(0, event, wait=False)
    assert response.status_code == 202, response.text
    time.sleep(4.0)
    assert [cluster.height(0), cluster.height(1)] == before, "committed without a quorum"
    assert cluster.get(0, f"/v1/events/{event.event_id.hex()}") is None
    cluster.signal(2, signal.SIGCONT)
    cluster.signal(3, signal.SIGCONT)
    found = wait_for(
        lambda: cluster.get(0, f"/v1/events/{event.event_id.hex()}"), what="the pending event"
    )
    top = found["height"]
    for index in range(4):
        cluster.wait_height(index, top)
    assert_agreement(cluster, [0, 1, 2, 3], top)
    occurrences = 0
    for height in range(1, cluster.height(0) + 1):
        block = cluster.get(0, f"/v1/blocks/{height}")
        assert block is not None
        occurrences += sum(e["id"] == event.event_id.hex() for e in block["events"])
    assert occurrences == 1


def test_sigkill_all_under_load_keeps_every_acknowledged_event(cluster: LocalCluster) -> None:
    acknowledged: list[tuple[str, int]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            _, event = cluster.admit_event(f"load-{worker}-{n}")
            n += 1
            try:
                response = cluster.submit(worker % 4, event)
            except Exception:
                continue
            if response.status_code == 200:
                acknowledged.append((event.event_id.hex(), response.json()["height"]))

    workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    wait_for(lambda: len(acknowledged) >= 20, what="20 acknowledged commits")
    for index in range(4):
        cluster.signal(index, signal.SIGKILL)
    stop.set()
    for worker in workers:
        worker.join(timeout=60)
    confirmed = list(acknowledged)
    cluster.start()
    cluster.wait_all_started()
    highest = max(height for _, height in confirmed)
    for index in range(4):
        cluster.wait_height(index, highest)
        for event_id, _ in confirmed:
            assert cluster.get(index, f"/v1/events/{event_id}") is not None, (
                f"node {index} lost acknowledged event {event_id}"
            )
    _, event = cluster.admit_event("after-total-crash")
    response = cluster.submit(1, event)
    assert response.status_code == 200, response.text


def test_validator_killed_repeatedly_never_signs_conflicting_votes(cluster: LocalCluster) -> None:
    rng = random.Random(7)
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            _, event = cluster.admit_event(f"churn-{n}")
            n += 1
            try:
                cluster.submit(1 + n % 3, event)
            except Exception:
                time.sleep(0.1)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        for _ in range(4):
            time.sleep(rng.uniform(0.2, 1.5))
            cluster.signal(0, signal.SIGKILL)
            cluster.start(0)
            cluster.wait_height(0, 1)
    finally:
        stop.set()
        worker.join(timeout=60)
    top = cluster.height(1)
    cluster.wait_height(0, top)
    assert_agreement(cluster, [0, 1, 2, 3], top)
    assert [cluster.evidence(i) for i in range(4)] == [0, 0, 0, 0]
    assert (cluster.homes[0] / "signer_state.bin").exists()


def test_new_full_node_syncs_and_serves_identical_proofs(cluster: LocalCluster) -> None:
    results = commit_admits(cluster, 8, [0, 1])
    full = cluster.add_full_node()
    cluster.start(full)
    top = max(r["height"] for r in results)
    cluster.wait_height(full, top)
    assert_agreement(cluster, [0, full], top)
    status = cluster.get(full, "/v1/status")
    assert status is not None and status["validator"] is False
    event_id = results[3]["event_id"]

    def same_size_proofs() -> tuple[dict, dict] | None:
        a = cluster.get(0, f"/v1/events/{event_id}/proof")
        b = cluster.get(full, f"/v1/events/{event_id}/proof")
        if a and b and a["tree_size"] == b["tree_size"]:
            return a, b
        return None

    a, b = wait_for(same_size_proofs, what="both nodes at one tree size")
    for field in ("leaf_index", "tree_size", "audit_path", "leaf_hash", "root_hash"):
        assert a[field] == b[field]
    _, event = cluster.admit_event("via-full-node")
    response = cluster.submit(full, event)
    assert response.status_code == 200, response.text


def test_blocks_larger_than_a_mebibyte_commit(cluster: LocalCluster) -> None:
    """Proposals carry whole blocks; a block of 14 KiB events far beyond 1 MiB must pass."""
    now = time.time_ns() // 1_000_000
    big_meta = {f"field{i:02d}": "x" * 1000 for i in range(14)}
    registered = [
        events.sign_event(
            cluster.registrar,
            events.Register(
                chain=cluster.genesis.chain_id,
                actor=cluster.registrar.public_key,
                time=now,
                nonce=os.urandom(16),
                dataset=os.urandom(32),
                meta=big_meta,
                open=False,
            ),
        )
        for _ in range(200)
    ]
    assert sum(len(e.envelope) for e in registered) > 2 * 1024 * 1024
    # Two of four paused: no quorum, so every event is pending when the next block is built
    # (otherwise how they split into blocks depends on timing).
    for paused in (2, 3):
        cluster.signal(paused, signal.SIGSTOP)
    for first in range(0, len(registered), 30):
        chunk = registered[first : first + 30]
        response = cluster.client.post(
            f"{cluster.urls[(first // 30) % 2]}/v1/events/batch",
            json={"envelopes": [e.envelope.hex() for e in chunk]},
        )
        assert response.status_code == 202, response.text
        assert all(r["status"] == "pending" for r in response.json()["results"])
    for paused in (2, 3):
        cluster.signal(paused, signal.SIGCONT)
    for event in registered:
        wait_for(
            lambda event=event: cluster.get(0, f"/v1/events/{event.event_id.hex()}"),
            what="every large event to commit",
        )
    sizes = []
    for height in range(1, cluster.height(0) + 1):
        block = cluster.get(0, f"/v1/blocks/{height}")
        assert block is not None
        sizes.append(sum(len(e["envelope"]) // 2 for e in block["events"]))
    assert max(sizes) > 1024 * 1024, "the test meant to commit a block over 1 MiB"
