"""State transfer on real node processes: nodes that join from a snapshot (a file written by
`provledger node snapshot` from a running validator, and one fetched from the peers) answer
exactly like an old node; a flipped byte stops the daemon before it writes anything; and a
backup taken under load restores into a new home that catches up and agrees."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node.ops.homes import init_full_node
from node.ops.processes import stop_nodes
from tests.cluster.harness import LocalCluster, free_port_block, wait_for


def provledger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=300
    )


STARTED: list[tuple[Path, subprocess.Popen[bytes]]] = []


@pytest.fixture(autouse=True)
def reap_daemons(cluster: LocalCluster) -> Iterator[None]:
    """Stop and reap the daemons a test started itself (before the cluster stops)."""
    yield
    stop_nodes([home for home, _ in STARTED])
    for _, process in STARTED:
        process.wait(timeout=30)
    STARTED.clear()


def daemon(home: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(home / "node.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "node.server", "--home", str(home), *extra],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    STARTED.append((home, process))
    return process


def admit(cluster: LocalCluster, node: int, name: str) -> tuple[bytes, dict]:
    key, event = cluster.admit_event(name)
    response = cluster.submit(node, event)
    assert response.status_code == 200, response.text
    return key.public_key, response.json()


def raw(cluster: LocalCluster, index: int, path: str) -> httpx.Response:
    return cluster.client.get(cluster.urls[index] + path, timeout=5.0)


LAST_DIFFERENCE: list[object] = []


def same_answers(cluster: LocalCluster, old: int, new: int, paths: list[str]) -> bool:
    """Both nodes at one head, answering every path identically (retried by the caller:
    an idle block may land between the two reads)."""
    answers = []
    for index in (old, new):
        docs = [raw(cluster, index, p) for p in ["/v1/checkpoint", *paths]]
        answers.append([(d.status_code, d.json()) for d in docs])
    differ = [
        (path, a, b)
        for path, a, b in zip(["/v1/checkpoint", *paths], *answers, strict=True)
        if a != b or a[0] != 200
    ]
    LAST_DIFFERENCE[:] = differ
    return not differ


def test_nodes_join_from_a_snapshot_and_answer_like_an_old_node(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    early = [admit(cluster, i % 4, f"early-{i}") for i in range(6)]
    snapshot = tmp_path / "snapshot.bin"
    made = provledger("node", "snapshot", "--home", str(cluster.homes[0]), "--out", str(snapshot))
    assert made.returncode == 0, made.stderr
    assert "snapshot of height" in made.stdout
    snap_height = int(made.stdout.split("snapshot of height ")[1].split()[0])
    assert snap_height >= max(r["height"] for _, r in early)

    # One byte flipped: the daemon refuses it, exits non-zero and writes no store.
    bad_home = tmp_path / "bad"
    ports = free_port_block(2)
    init_full_node(
        bad_home, cluster.root / "genesis.json", cluster.peer_urls, ports, p2p_port=ports + 1
    )
    damaged = tmp_path / "damaged.bin"
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    refused = subprocess.run(
        [sys.executable, "-m", "node.server", "--home", str(bad_home), "--snapshot", str(damaged)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "snapshot" in refused.stderr and "refused" in refused.stderr, refused.stderr
    assert not (bad_home / "data").exists()
    assert not any(p.name.startswith("data") for p in bad_home.iterdir())

    # Full node A starts from the file; full node B fetches a snapshot from its peers.
    a = cluster.add_full_node()
    daemon(cluster.homes[a], "--snapshot", str(snapshot))
    b_home = tmp_path / "full-b"
    b_ports = free_port_block(2)
    init_full_node(
        b_home,
        cluster.root / "genesis.json",
        cluster.peer_urls,
        b_ports,
        p2p_port=b_ports + 1,
        key=cluster.full_node_key,
    )
    cluster.homes.append(b_home)
    cluster.urls.append(f"http://127.0.0.1:{b_ports}")
    b = len(cluster.homes) - 1
    daemon(b_home, "--snapshot-from-peers")

    late = [admit(cluster, i % 4, f"late-{i}") for i in range(4)]
    top = max(r["height"] for _, r in late)
    cluster.wait_height(a, top)
    cluster.wait_height(b, top)
    # New events, committed after both joined: served by both like by any node.
    after = [admit(cluster, i % 4, f"after-{i}") for i in range(3)]
    early_key, early_result = early[0]
    late_key, _ = late[-1]
    _, late_result = after[-1]
    paths = [
        f"/v1/state/participant/{early_key.hex()}",
        f"/v1/state/participant/{late_key.hex()}",
        f"/v1/state/dataset/{'ab' * 32}",  # an absence proof
        f"/v1/events/{late_result['event_id']}",
        f"/v1/events/{late_result['event_id']}/proof",
        f"/v1/participants/{early_key.hex()}",
    ]
    for joined in (a, b):
        try:
            wait_for(lambda j=joined: same_answers(cluster, 0, j, paths), what="same answers")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {LAST_DIFFERENCE}") from None
        status = cluster.get(joined, "/v1/status")
        assert status is not None and status["validator"] is False
        # History before the snapshot: a clear 410, not a gap or a 500.
        for path in (f"/v1/events/{early_result['event_id']}", "/v1/blocks/1"):
            answer = raw(cluster, joined, path)
            assert answer.status_code == 410, (path, answer.text)
            problem = answer.json()
            assert problem["type"].endswith("/pruned")
            assert "started from a snapshot at height" in problem["detail"]
            assert "archive nodes" in problem["detail"]
    # B snapshot height is at least A's; both keep following and accept submissions.
    _, via_b = cluster.admit_event("via-snapshot-node")
    response = cluster.submit(b, via_b)
    assert response.status_code == 200, response.text
    wait_for(
        lambda: raw(cluster, a, f"/v1/events/{via_b.event_id.hex()}").status_code == 200,
        what="A to see the event submitted to B",
    )


def test_backup_under_load_restores_into_a_new_home_that_catches_up(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    stop = threading.Event()
    committed: list[int] = []

    def load() -> None:
        n = 0
        while not stop.is_set():
            _, event = cluster.admit_event(f"load-{n}")
            try:
                response = cluster.submit(n % 3, event)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                committed.append(response.json()["height"])
            n += 1

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        wait_for(lambda: len(committed) >= 5, what="load to commit")
        backup = tmp_path / "node-3.plbk"
        made = provledger("node", "backup", "--home", str(cluster.homes[3]), "--out", str(backup))
        assert made.returncode == 0, made.stderr
        assert "signer_state.bin" in made.stdout and "node_key.pem" in made.stdout
        wait_for(lambda: len(committed) >= 15, what="more load after the backup")
        # The runbook: stop the old node, restore, keep its newest signer state, start.
        stop_nodes([cluster.homes[3]])
        new_home = tmp_path / "node-3-restored"
        refused = provledger("node", "restore", "--from", str(backup), "--home", str(tmp_path))
        assert refused.returncode != 0 and "not empty" in refused.stderr
        restored = provledger("node", "restore", "--from", str(backup), "--home", str(new_home))
        assert restored.returncode == 0, restored.stderr
        for name in ("signer_state.bin", "signer_state.bin.alt"):
            if (cluster.homes[3] / name).exists():
                shutil.copy2(cluster.homes[3] / name, new_home / name)
        cluster.homes[3] = new_home
        cluster.pids[3] = daemon(new_home).pid
        wait_for(lambda: len(committed) >= 25, what="load with the restored node")
    finally:
        stop.set()
        worker.join(timeout=60)
    top = cluster.height(0)
    for index in range(4):
        cluster.wait_height(index, top)
    reference = cluster.block_hashes(0, top)
    for index in (1, 2, 3):
        assert cluster.block_hashes(index, top) == reference, f"node {index} disagrees"
    assert [cluster.evidence(i) for i in range(4)] == [0, 0, 0, 0]
    # The restored validator votes again: a block commits with only it and two others.
    cluster.signal(2, signal.SIGSTOP)
    try:
        _, event = cluster.admit_event("needs-the-restored-validator")
        response = cluster.submit(0, event)
        assert response.status_code == 200, response.text
    finally:
        cluster.signal(2, signal.SIGCONT)
