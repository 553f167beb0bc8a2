"""Strangers flood every node's peer port while an honest client commits (issue 11).

Four threads POST forged votes and garbage events to the peer endpoints of all four nodes for
`FLOOD_S` seconds — half of the requests anonymous, half claiming a validator's key with a
signature that does not verify. Meanwhile an honest client submits with `?wait=commit`.
Every honest event must commit, its p99 latency stay within 2 s, and no node's resident
memory grow by more than 200 MB. The figures are printed (`-s` shows them).
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from pathlib import Path

import httpx

from ledger import codec
from node.wire import (
    PEER_DIGEST_HEADER,
    PEER_KEY_HEADER,
    PEER_SIGNATURE_HEADER,
    PEER_TIME_HEADER,
)
from tests.cluster.harness import LocalCluster

FLOOD_S = 20.0
THREADS = 4
P99_LIMIT_S = 2.0
RSS_GROWTH_LIMIT_MB = 200


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def forged_votes(rng: random.Random, count: int) -> bytes:
    votes = [
        codec.encode(
            {
                "type": rng.choice(("prevote", "precommit")),
                "height": rng.randint(1, 50),
                "round": rng.randint(0, 5),
                "validator": b"\x02" + rng.randbytes(32),
                "signature": rng.randbytes(64),
            }
        )
        for _ in range(count)
    ]
    return codec.encode({"from": "stranger", "messages": votes})


def garbage_events(rng: random.Random, count: int) -> bytes:
    return codec.encode({"from": "stranger", "events": [rng.randbytes(300) for _ in range(count)]})


def test_strangers_flooding_the_peer_ports_change_nothing_for_honest_clients(
    cluster: LocalCluster,
) -> None:
    pids = [cluster.pids[i] for i in range(4)]
    before = [rss_mb(pid) for pid in pids]
    validator_key = cluster.genesis.validators.validators[0].public_key.hex()
    stop = threading.Event()
    sent = [0] * THREADS
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def flood(worker: int) -> None:
        rng = random.Random(worker)
        bodies = [forged_votes(rng, 512), garbage_events(rng, 1_000)]
        with httpx.Client(timeout=5.0) as client:
            while not stop.is_set():
                url = rng.choice(cluster.peer_urls)
                path = rng.choice(("/p2p/consensus", "/p2p/events"))
                body = bodies[path == "/p2p/events"]
                headers = {"content-type": "application/msgpack"}
                if rng.random() < 0.5:  # claim to be a validator, with a bad signature
                    headers |= {
                        PEER_KEY_HEADER: validator_key,
                        PEER_TIME_HEADER: str(time.time_ns() // 1_000_000),
                        PEER_DIGEST_HEADER: os.urandom(32).hex(),
                        PEER_SIGNATURE_HEADER: os.urandom(64).hex(),
                    }
                try:
                    status = client.post(url + path, content=body, headers=headers).status_code
                except httpx.HTTPError:
                    status = 0
                sent[worker] += 1
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=flood, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    latencies: list[float] = []
    failures: list[str] = []
    started = time.monotonic()
    try:
        n = 0
        while time.monotonic() - started < FLOOD_S:
            _, event = cluster.admit_event(f"honest-{n}")
            began = time.monotonic()
            response = cluster.submit(n % 4, event)
            latencies.append(time.monotonic() - began)
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:200]}")
            n += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    after = [rss_mb(pid) for pid in pids]
    latencies.sort()
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    print(
        f"\nstrangers: {sum(sent)} requests in {FLOOD_S:.0f} s ({sum(sent) / FLOOD_S:.0f}/s), "
        f"statuses {statuses}; honest: {len(latencies)} commits, "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; "
        f"RSS MB before {[round(b) for b in before]} after {[round(a) for a in after]}"
    )
    assert not failures, failures[:5]
    assert set(statuses) <= {401, 503, 0}, statuses  # 503: the peer listener was full
    assert statuses.get(401, 0) > 0
    assert p99 <= P99_LIMIT_S, p99
    for b, a in zip(before, after, strict=True):
        assert a - b <= RSS_GROWTH_LIMIT_MB, (before, after)
    # and every honest event is on every node
    top = max(cluster.height(i) for i in range(4))
    for index in range(4):
        cluster.wait_height(index, top)
