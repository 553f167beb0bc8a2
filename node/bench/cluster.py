"""`scripts/bench cluster`: a 4-validator cluster under load.

It pre-signs N register events before the clock starts, submits them from concurrent clients
spread over all nodes, and reports committed events/s (until the last event is in a
checkpoint), submit-to-commit latency at half that rate, CPU time per committed event per node
and peak memory per node. It also measures this machine's bounds — ECDSA P-256 verifies/s per
core, LevelDB synced batch writes/s, a trivial endpoint's requests/s in the node's server stack
measured by wrk (`node.bench.httpbound`) — and prints each result as a ratio to the bound it
runs into. Beside the batch figures it prints the floor under them (`node.bench.floor`): the
core's own CPU per event in one process, the ceiling that sets on the share of the signature
bound, and how far the cluster's CPU per event is above it.

`--single` (`bench_single`, issue 16): one JSON `POST /v1/events` per event over many
keep-alive connections from the lean client of `node.bench.loadgen`, with the client's CPU
share, open-loop submit-to-commit latency, and batches in the same run for comparison;
`--profile` records every node with py-spy (`node.bench.profile` sums it up).

The state map's cost (docs/PROTOCOL.md §17, issue 12's budget: at most 15% fewer committed
events/s): in the same run, a second throwaway cluster whose every node has the bench-only
setting `bench_without_state_map` takes the same number of events the same way, and its
committed events/s are reported beside the first's (`--no-map-compare` skips it).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import plyvel

from ledger import crypto
from node.bench import httpbound, loadgen
from node.bench.anatomy import Totals, anatomy, anatomy_rows, histogram_totals
from node.bench.calls import floor_with_calls
from node.bench.floor import FLOOR_EVENTS, core_budget, floor_rows
from node.bench.ledger import bench_register
from node.client import AsyncNodeClient, ClientError
from node.clock import now_ms
from node.config import NodeSettings
from node.ops.homes import init_cluster, node_home
from node.ops.processes import node_pid, start_node, stop_nodes

SIGNING_KEYS = 8
# httpx's async pool slows down sharply past a few connections (measured here: ~1,200
# trivial requests/s with 4 connections, ~270/s with 32), so every phase uses a small pool.
CLIENT_CONNECTIONS = 4
LIGHT_EVENTS = 100
LIGHT_RATE = 5.0
NO_MAP_PORT_OFFSET = 200
"""The state map's two fresh clusters listen from base port + this (with the map) and + twice
this (without it): apart from the measured cluster's ports and from each other's peer ports
(+ 100)."""


# --- machine bounds -------------------------------------------------------------------------


def ecdsa_verifies_per_core(seconds: float = 1.0) -> float:
    key = crypto.PrivateKey.generate()
    message = b"provledger bench"
    signature = key.sign(message)
    public_key = key.public_key
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(100):
            crypto.verify(public_key, message, signature)
        count += 100
    return count / (time.perf_counter() - started)


def leveldb_synced_batches_per_s(seconds: float = 1.0) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = plyvel.DB(tmp, create_if_missing=True)
        try:
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                with db.write_batch(transaction=True, sync=True) as batch:
                    batch.put(b"k%d" % count, os.urandom(256))
                count += 1
            return count / (time.perf_counter() - started)
        finally:
            db.close()


_TRIVIAL_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})
"""


async def _hammer(urls: list[str], seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker(index: int) -> None:
            nonlocal done
            url = urls[index % len(urls)]
            while time.perf_counter() < deadline:
                await client.get(url)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return done / (time.perf_counter() - started)


def trivial_uvicorn_requests_per_s(port: int, seconds: float = 3.0) -> float:
    """Requests/s of a do-nothing ASGI app under uvicorn, loaded by this same client."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "trivial_app.py").write_text(_TRIVIAL_APP)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "trivial_app:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=tmp,
        )
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    httpx.get(url, timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            return asyncio.run(_hammer([url], seconds, CLIENT_CONNECTIONS))
        finally:
            server.terminate()
            server.wait()


def http_bound(port: int) -> dict[str, Any]:
    """The trivial endpoint's requests/s, measured by wrk in the node's server stack; without
    wrk, by this Python client (which caps it: the figure says so)."""
    wrk = httpbound.find_wrk()
    if wrk is not None:
        return {
            "trivial_uvicorn_requests_per_s": round(
                httpbound.trivial_server_requests_per_s(wrk, port)
            ),
            "http_bound_by": "wrk",
        }
    print(f"[bench] {httpbound.WRK_MISSING}; falling back to the Python client", file=sys.stderr)
    return {
        "trivial_uvicorn_requests_per_s": round(trivial_uvicorn_requests_per_s(port)),
        "http_bound_by": "Python client (capped by the client: install wrk)",
    }


# --- pre-signed load ------------------------------------------------------------------------


def _sign_batch(args: tuple[str, int, int, int]) -> list[tuple[str, bytes]]:
    chain_id, count, seed, time_ms = args
    keys = [crypto.PrivateKey.generate() for _ in range(SIGNING_KEYS)]
    out = []
    for i in range(count):
        key = keys[(seed + i) % SIGNING_KEYS]
        event = bench_register(key, chain_id, time_ms, f"bench dataset {seed}-{i}")
        out.append((event.event_id.hex(), event.envelope))
    return out


def presign(
    chain_id: str, count: int, workers: int = 2, ahead_ms: int = 0
) -> list[tuple[str, bytes]]:
    """`count` register events by several keys, signed in `workers` processes, timed
    `ahead_ms` from now (half the time window keeps a long run's last events inside it)."""
    shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    now = now_ms() + ahead_ms
    with ProcessPoolExecutor(workers) as pool:
        parts = pool.map(
            _sign_batch, [(chain_id, n, i * 1_000_003, now) for i, n in enumerate(shares)]
        )
        return [item for part in parts for item in part]


# --- the cluster run ------------------------------------------------------------------------


@dataclass
class NodeUsage:
    pid: int
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def cpu_ms_each(before: Sequence[float], after: Sequence[float], count: int) -> list[float]:
    """The CPU ms each node spent per one of `count` things (events, blocks) between two
    readings of its CPU seconds."""
    return [
        round(1000 * (later - earlier) / max(count, 1), 3)
        for earlier, later in zip(before, after, strict=True)
    ]


MEMORY_GROWTH_BOUND = 0.20
"""Issue 16: a node's memory within 20% between the first and last `--rss-at` samples."""


def memory_rows(saturation: dict[str, Any]) -> list[tuple[str, str]]:
    """The `--rss-at` samples: each node's resident memory, the anonymous part of it (the rest
    is LevelDB's table files, which it reads through mmap: page cache, shared and reclaimable,
    growing with the store), and the events then pending in each mempool (a load figure)."""
    rows = []
    resident = saturation.get("rss_mb_at_committed", {})
    anonymous = saturation.get("anonymous_mb_at_committed", {})
    backlog = saturation.get("mempool_events_at_committed", {})
    for committed, sizes in resident.items():
        rows.append((f"RSS MB at {int(committed):,} committed", ", ".join(map(str, sizes))))
        rows.append(("  of which anonymous", ", ".join(map(str, anonymous.get(committed, [])))))
        rows.append(
            (
                "  events pending in each mempool",
                ", ".join(f"{n:,}" for n in backlog.get(committed, [])),
            )
        )
    if len(resident) >= 2:
        first, last = min(resident, key=int), max(resident, key=int)
        rows.append(
            (
                f"  growth, {int(first):,} to {int(last):,}",
                f"resident {_growth(resident[first], resident[last])}, anonymous "
                f"{_growth(anonymous.get(first, []), anonymous.get(last, []))} "
                f"(per node; issue 16 bound: {MEMORY_GROWTH_BOUND:.0%})",
            )
        )
    return rows


def _growth(before: list[float], after: list[float]) -> str:
    """Each node's growth from `before` to `after`, as the range over the nodes."""
    changes = [b / a - 1 for a, b in zip(before, after, strict=True) if a > 0]
    if not changes:
        return "n/a"
    return f"{min(changes):+.0%} to {max(changes):+.0%}"


def _memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's memory figure from /proc (VmRSS now, VmHWM at its peak, RssAnon: the part
    of VmRSS that is not file-backed), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class ClusterRun:
    urls: list[str]
    pids: list[int]
    results: dict[str, Any] = field(default_factory=dict)


def node_clients(urls: list[str], connections: int) -> dict[str, AsyncNodeClient]:
    return {url: AsyncNodeClient(url, timeout=60, connections=connections) for url in urls}


async def close_clients(clients: dict[str, AsyncNodeClient]) -> None:
    await asyncio.gather(*(c.aclose() for c in clients.values()))


async def _wait_tree_size(client: AsyncNodeClient, size: int, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if (await client.status())["tree_size"] >= size:
            return time.perf_counter()
        await asyncio.sleep(0.02)
    raise TimeoutError(f"tree size {size} not reached in {timeout:.0f} s")


async def submit_codes(
    client: AsyncNodeClient, chunk: list[tuple[str, bytes]], wait: bool = False
) -> list[int | str]:
    """Submit one chunk (one event alone, or a batch); the outcome code of each event:
    202 pending, "committed", or the HTTP status it was refused with."""
    envelopes = [envelope for _, envelope in chunk]
    try:
        if len(chunk) == 1:
            doc = await client.submit(envelopes[0], wait=wait)
            results = [doc]
        else:
            results = (await client.submit_batch(envelopes, wait=wait))["results"]
    except ClientError as exc:
        return [exc.status] * len(chunk)
    codes: list[int | str] = []
    for result in results:
        status = result.get("status")
        codes.append(202 if status == "pending" else status if isinstance(status, int | str) else 0)
    return codes


def pace_delay(started: float, offered_events: int, pace: float, now: float) -> float:
    """Seconds to wait before offering more events when `offered_events` have been offered
    since `started` and at most `pace` events/s may be."""
    return max(0.0, started + offered_events / pace - now)


async def saturate(
    urls: list[str],
    load: list[tuple[str, bytes]],
    clients: int,
    batch: int,
    pids: list[int],
    rss_at: tuple[int, ...] = (),
    pace: float | None = None,
) -> dict[str, Any]:
    """Submit everything as fast as the nodes take it (or at most `pace` events/s); time
    until the last is committed.

    A full mempool (429) is honoured: the refused envelopes are offered again after a pause,
    as a well-behaved client would. With `rss_at`, each node's resident memory is sampled
    when that many events have been committed; a `pace` below what the cluster sustains
    takes those samples with the mempools near empty, so that they compare like with like.
    """
    nodes = node_clients(urls, clients)
    client = nodes[urls[0]]
    try:
        start_size = (await client.status())["tree_size"]
        statuses: dict[str, int] = {}
        chunks = [load[i : i + batch] for i in range(0, len(load), batch)]
        retries = offered = 0

        async def submit(url: str, chunk: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
            """Submit one chunk; return the envelopes refused with 429."""
            codes = await submit_codes(nodes[url], chunk)
            for code in codes:
                if code != 429:  # offered again below; counted as retries
                    statuses[str(code)] = statuses.get(str(code), 0) + 1
            return [item for item, code in zip(chunk, codes, strict=True) if code == 429]

        async def worker(index: int) -> None:
            nonlocal retries, offered
            url = urls[index % len(urls)]
            while chunks:
                chunk = chunks.pop()
                if pace:
                    wait = pace_delay(started, offered, pace, time.perf_counter())
                    offered += len(chunk)
                    await asyncio.sleep(wait)
                while chunk:
                    chunk = await submit(url, chunk)
                    if chunk:
                        retries += 1
                        await asyncio.sleep(0.2)

        rss: dict[str, list[float]] = {}
        backlog: dict[str, list[int]] = {}
        anonymous: dict[str, list[float]] = {}

        async def sample_memory() -> None:
            pending = sorted(rss_at)
            while pending:
                committed = (await client.status())["tree_size"] - start_size
                while pending and committed >= pending[0]:
                    at = str(pending.pop(0))
                    rss[at] = [round(_memory_mb(pid), 1) for pid in pids]
                    anonymous[at] = [round(_memory_mb(pid, "RssAnon"), 1) for pid in pids]
                    # What the nodes hold pending at that moment: a load figure, not growth.
                    backlog[at] = [(await nodes[url].status())["mempool_size"] for url in urls]
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample_memory())
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        submitted = time.perf_counter()
        # Only accepted events can commit: one refused for good (say, signed so long ago on a
        # slow machine that it left the time window) is reported, not waited for.
        accepted = statuses.get("202", 0)
        finished = await _wait_tree_size(client, start_size + accepted, 900)
        await asyncio.wait_for(sampler, 10)
    finally:
        await close_clients(nodes)
    elapsed = finished - started
    result: dict[str, Any] = {
        "events": len(load),
        "http_statuses": statuses,
        "retried_429": retries,
        "submit_s": round(submitted - started, 3),
        "commit_s": round(elapsed, 3),
        "events_per_s": round(len(load) / elapsed, 1),
    }
    if pace:
        result["pace_events_per_s"] = pace
    if rss:
        result["rss_mb_at_committed"] = rss
        result["mempool_events_at_committed"] = backlog
        result["anonymous_mb_at_committed"] = anonymous
    return result


async def count_committed(url: str, expected: set[str]) -> dict[str, int]:
    """Walk every block and count each submitted event: lost, duplicated, foreign."""
    seen: dict[str, int] = {}
    async with AsyncNodeClient(url, timeout=60) as client:
        height = (await client.status())["height"]
        for h in range(1, height + 1):
            block = await client.block(h)
            for event in block["events"]:
                seen[event["id"]] = seen.get(event["id"], 0) + 1
    return {
        "lost": sum(1 for event_id in expected if event_id not in seen),
        "duplicated": sum(1 for event_id in expected if seen.get(event_id, 0) > 1),
        "committed": sum(1 for event_id in expected if event_id in seen),
    }


async def latency_at_rate(
    urls: list[str], load: list[tuple[str, bytes]], rate: float, batch: int
) -> dict[str, Any]:
    """Open-loop submission at `rate` events/s (in requests of `batch`) with ?wait=commit.

    Each event's latency runs from the start of the request that carried it until the node
    answered that it is committed.
    """
    latencies: list[float] = []
    failures = 0
    failure_statuses: dict[str, int] = {}
    nodes = node_clients(urls, CLIENT_CONNECTIONS)
    try:

        async def one(index: int, chunk: list[tuple[str, bytes]]) -> None:
            nonlocal failures
            started = time.perf_counter()
            codes = await submit_codes(nodes[urls[index % len(urls)]], chunk, wait=True)
            elapsed = time.perf_counter() - started
            committed = codes.count("committed")
            latencies.extend([elapsed] * committed)
            failures += len(chunk) - committed
            for code in codes:
                if code != "committed":
                    failure_statuses[str(code)] = failure_statuses.get(str(code), 0) + 1

        tasks = []
        begin = time.perf_counter()
        for index, first in enumerate(range(0, len(load), batch)):
            delay = begin + first / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, load[first : first + batch])))
        await asyncio.gather(*tasks)
    finally:
        await close_clients(nodes)
    latencies.sort()
    if not latencies:
        raise RuntimeError(f"no event committed at {rate}/s: HTTP statuses {failure_statuses}")

    def pct(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {
        "rate": round(rate, 1),
        "events": len(load),
        "failures": failures,
        "failure_statuses": failure_statuses,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": round(1000 * statistics.fmean(latencies), 1),
    }


def bench_cluster(
    events_total: int = 20_000,
    clients: int = CLIENT_CONNECTIONS,
    batch: int = 1,
    nodes: int = 4,
    base_port: int = 18800,
    latency_events: int | None = None,
    workdir: str | None = None,
    rss_at: tuple[int, ...] = (),
    compare_map: bool = True,
    floor_events: int = FLOOR_EVENTS,
    pace: float | None = None,
) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    results: dict[str, Any] = {
        "cores": cores,
        "validators": nodes,
        "batch": batch,
        "clients": clients,
    }
    results["bounds"] = {
        "ecdsa_verifies_per_core": round(max(ecdsa_verifies_per_core() for _ in range(3))),
        "leveldb_synced_batches_per_s": round(leveldb_synced_batches_per_s()),
        **http_bound(base_port + 90),
    }
    results["floor"] = floor_with_calls(floor_events)
    require_free_ports(base_port, nodes)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp) / "cluster"
        genesis = init_cluster(root, nodes, base_port=base_port, open_admission=True)
        homes = [node_home(root, i) for i in range(nodes)]
        urls = [f"http://127.0.0.1:{base_port + i}" for i in range(nodes)]
        latency_events = latency_events or max(500, events_total // 10)
        ahead = genesis.chain_params.time_window_ms // 2
        load = presign(
            genesis.chain_id, events_total + latency_events + LIGHT_EVENTS, ahead_ms=ahead
        )
        light = load[events_total + latency_events :]
        try:
            for home in homes:
                start_node(home)
            asyncio.run(_wait_started(urls))
            results["light_latency"] = asyncio.run(latency_at_rate(urls, light, LIGHT_RATE, 1))
            pids = [node_pid(home) or 0 for home in homes]
            cpu_before = [_cpu_seconds(pid) for pid in pids]
            saturation = asyncio.run(
                saturate(urls, load[:events_total], clients, batch, pids, rss_at, pace)
            )
            cpu_after = [_cpu_seconds(pid) for pid in pids]
            saturation.update(
                asyncio.run(count_committed(urls[0], {i for i, _ in load[:events_total]}))
            )
            results["saturation"] = saturation
            results["cpu_ms_per_event_per_node"] = cpu_ms_each(cpu_before, cpu_after, events_total)
            half = saturation["events_per_s"] / 2
            results["latency"] = asyncio.run(
                latency_at_rate(
                    urls, load[events_total : events_total + latency_events], half, batch
                )
            )
            results["peak_rss_mb_per_node"] = [round(_memory_mb(pid, "VmHWM"), 1) for pid in pids]
            results["rss_mb_per_node"] = [round(_memory_mb(pid), 1) for pid in pids]
        finally:
            stop_nodes(homes)
    if compare_map:
        results["state_map"] = map_cost_side_by_side(
            events_total, clients, batch, nodes, base_port + NO_MAP_PORT_OFFSET, workdir
        )
    bounds = results["bounds"]
    verify_bound = cores * bounds["ecdsa_verifies_per_core"] / nodes
    results["ratios"] = {
        "events_per_s_vs_verify_bound": round(saturation["events_per_s"] / verify_bound, 3),
        "verify_bound_events_per_s": round(verify_bound),
        "submits_per_s_vs_trivial_uvicorn": round(
            (events_total / batch / saturation["submit_s"])
            / bounds["trivial_uvicorn_requests_per_s"],
            3,
        ),
    }
    results["core_budget"] = asdict(
        core_budget(results["floor"], results["cpu_ms_per_event_per_node"])
    )
    return results


@dataclass
class _MapSide:
    """One of the two fresh clusters of the state map's cost: with the map or without."""

    with_map: bool
    homes: list[Path]
    urls: list[str]
    chain_id: str
    pids: list[int] = field(default_factory=list)


def _map_side(root: Path, with_map: bool, nodes: int, base_port: int) -> _MapSide:
    require_free_ports(base_port, nodes)
    genesis = init_cluster(root, nodes, base_port=base_port, open_admission=True)
    homes = [node_home(root, i) for i in range(nodes)]
    if not with_map:
        for home in homes:
            replace(NodeSettings.load(home), bench_without_state_map=True).save()
    urls = [f"http://127.0.0.1:{base_port + i}" for i in range(nodes)]
    return _MapSide(with_map, homes, urls, genesis.chain_id)


def map_cost_side_by_side(
    events_total: int, clients: int, batch: int, nodes: int, base_port: int, workdir: str | None
) -> dict[str, Any]:
    """Saturate two fresh clusters at once, one with the state map and one whose every node
    runs without it (the bench-only `bench_without_state_map` setting, on that throwaway
    cluster only): each one's committed events/s, lost and duplicated events and CPU per
    event per node. At the same time, whatever slows the machine slows both; one after the
    other, the drop read anywhere from -1% to 28% for the same code (README)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        sides = [
            _map_side(Path(tmp) / "with-map", True, nodes, base_port),
            _map_side(Path(tmp) / "without-map", False, nodes, base_port + NO_MAP_PORT_OFFSET),
        ]
        try:
            for side in sides:
                for home in side.homes:
                    start_node(home)
            for side in sides:
                asyncio.run(_wait_started(side.urls))
                side.pids = [node_pid(home) or 0 for home in side.homes]
            saturations = side_by_side(sides, Load("batch", events_total, clients, batch, 0.0))
            head = asyncio.run(_head_header(sides[1].urls[0]))
        finally:
            for side in sides:
                stop_nodes(side.homes)
    assert head["state_root"] == "00" * 32, "the second cluster ran without the state map"
    return state_map_comparison(*saturations)


async def _head_header(url: str) -> dict[str, Any]:
    nodes = node_clients([url], 1)
    try:
        client = nodes[url]
        height = (await client.status())["height"]
        header: dict[str, Any] = (await client.block(height))["header"]
        return header
    finally:
        await close_clients(nodes)


def state_map_comparison(with_map: dict[str, Any], without: dict[str, Any]) -> dict[str, Any]:
    """The state map's cost from two clusters saturated at once (`side_by_side`'s figures):
    the drop is the share of a node's CPU per event that the map adds, which is the drop in
    committed events/s of a cluster bound by its CPU (a concurrent run's own events/s
    understate it: the cheaper cluster finishes first and leaves the other the whole
    machine)."""
    cpu_with, cpu_without = with_map["cpu_ms_per_event"], without["cpu_ms_per_event"]
    return {
        "with_map": with_map,
        "without_map": without,
        "drop_pct": round(100 * (1 - cpu_without / cpu_with), 1),
    }


def map_cost_rows(m: dict[str, Any], events: int) -> list[tuple[str, str]]:
    """The state map's cost, as printed rows."""
    rows = [("state map, two fresh clusters at once", f"{events:,} events each, same load")]
    for label, key in (("with the map", "with_map"), ("without it", "without_map")):
        side = m[key]
        rows.append(
            (
                f"  {label}",
                f"CPU ms per event per node {side['cpu_ms_per_event']:.4f}; "
                f"{side['events_per_s']:,} events/s; lost / duplicated "
                f"{side['lost']} / {side['duplicated']}",
            )
        )
    rows.append(
        (
            "  drop due to the map",
            f"{m['drop_pct']}% of the events/s a CPU-bound cluster commits (1 - CPU without / "
            "with; issue 12 budget: 15%)",
        )
    )
    return rows


def require_free_ports(base_port: int, count: int) -> None:
    """Refuse to measure a cluster that something else is already answering for."""
    for port in range(base_port, base_port + count):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                raise RuntimeError(
                    f"port {port} is in use (a leftover node?); choose --base-port or stop it"
                ) from exc


async def _wait_started(urls: list[str], timeout: float = 90) -> None:
    deadline = time.perf_counter() + timeout
    for url in urls:
        async with AsyncNodeClient(url, timeout=3) as client:
            while True:
                try:
                    if (await client.status())["height"] >= 1:
                        break
                except ClientError:
                    pass
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{url} did not start")
                await asyncio.sleep(0.2)


def print_cluster(results: dict[str, Any]) -> None:
    s, lat, b, r = results["saturation"], results["latency"], results["bounds"], results["ratios"]
    rows = [
        (
            "machine",
            f"{results['cores']} cores; {results['validators']} validators + load generator",
        ),
        ("ECDSA P-256 verifies/s per core", f"{b['ecdsa_verifies_per_core']:,}"),
        ("LevelDB synced batches/s", f"{b['leveldb_synced_batches_per_s']:,}"),
        (
            "trivial uvicorn requests/s",
            f"{b['trivial_uvicorn_requests_per_s']:,} (by {b.get('http_bound_by', '?')})",
        ),
        (
            "submissions",
            f"{s['events']:,} events, batch {results['batch']}, {results['clients']} clients, "
            + (f"paced at {s['pace_events_per_s']:,}/s, " if s.get("pace_events_per_s") else "")
            + f"statuses {s['http_statuses']}",
        ),
        (
            "committed events/s",
            f"{s['events_per_s']:,} (all in a checkpoint after {s['commit_s']} s)",
        ),
        (
            "  vs verify bound",
            f"{r['events_per_s_vs_verify_bound']:.1%} of {r['verify_bound_events_per_s']:,}/s "
            "= cores x verifies/s / validators",
        ),
        ("  requests/s vs trivial uvicorn", f"{r['submits_per_s_vs_trivial_uvicorn']:.1%}"),
        ("lost / duplicated", f"{s['lost']} / {s['duplicated']} (committed {s['committed']:,})"),
        (
            "latency at half rate",
            f"{lat['rate']}/s: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
            f"p99 {lat['p99_ms']} ms ({lat['failures']} failed)",
        ),
        (
            "CPU ms per event per node",
            ", ".join(str(x) for x in results["cpu_ms_per_event_per_node"]),
        ),
        *floor_rows(results["floor"], results["cpu_ms_per_event_per_node"]),
        ("peak RSS MB per node", ", ".join(str(x) for x in results["peak_rss_mb_per_node"])),
    ]
    light = results["light_latency"]
    rows.insert(
        4,
        (
            "latency at light load",
            f"{light['rate']}/s single submits: p50 {light['p50_ms']} ms, "
            f"p99 {light['p99_ms']} ms ({light['failures']} failed)",
        ),
    )
    rows += memory_rows(s)
    if s.get("retried_429"):
        rows.append(("requests retried after 429", f"{s['retried_429']:,}"))
    if "state_map" in results:
        rows += map_cost_rows(results["state_map"], s["events"])
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


# --- two clusters side by side ---------------------------------------------------------------

LOAD_MODES = ("single", "batch", "rate")
"""One event per request (a flood), batches (a flood), or single events at a rate (open
loop, `?wait=commit`)."""


class RunningCluster(Protocol):
    """A started cluster as `side_by_side` drives it."""

    urls: list[str]
    pids: list[int]
    chain_id: str


@dataclass(frozen=True)
class Load:
    """What each cluster gets in a side-by-side round: `events` in `mode` (`LOAD_MODES`), from
    `clients` connections (or submitters of `batch` envelopes), or at `rate` events/s (rate
    mode, whose events/s figure is this offered rate)."""

    mode: str
    events: int
    clients: int
    batch: int
    rate: float


async def _drive(
    side: RunningCluster, load: Load, signed: list[tuple[str, bytes]], start_size: int
) -> dict[str, Any]:
    """Submit `signed` to `side` (holding `start_size` events) as `load.mode` says; its own
    figures (events/s, p99)."""
    if load.mode == "batch":
        result = await saturate(side.urls, signed, load.clients, load.batch, side.pids)
        return {"events_per_s": result["events_per_s"], "statuses": result["http_statuses"]}
    wait = load.mode == "rate"
    requests = single_requests(side.urls, signed, wait=wait)
    if wait:
        latency = await loadgen.latency_at_rate(side.urls, requests, load.rate)
        return {
            "events_per_s": load.rate,
            "statuses": {
                "committed": load.events - latency["failures"],
                **latency["failure_statuses"],
            },
            "p50_ms": latency.get("p50_ms"),
            "p99_ms": latency.get("p99_ms"),
        }
    flood, seconds = await flood_single(side.urls, requests, load.clients, start_size)
    return {"events_per_s": round(load.events / seconds, 1), "statuses": flood.statuses}


def side_by_side(
    sides: Sequence[RunningCluster], load: Load, first: int = 0
) -> list[dict[str, Any]]:
    """Two running clusters under the same load at the same time (side `first`'s started
    first): whatever slows the machine slows both. Per side: its own figures (events/s,
    statuses, p50/p99 in rate mode), its CPU ms per event per node and their mean, its peer
    POSTs per event, and every submitted event counted in its blocks (committed, lost,
    duplicated)."""
    assert len(sides) == 2 and first in (0, 1) and load.mode in LOAD_MODES
    signed = [presign(side.chain_id, load.events) for side in sides]
    sizes = [tree_size(side.urls[0]) for side in sides]
    before = [Meter.read(side.urls, side.pids) for side in sides]
    order = (first, 1 - first)

    async def both() -> list[dict[str, Any]]:
        jobs: list[Awaitable[dict[str, Any]]] = [
            _drive(sides[i], load, signed[i], sizes[i]) for i in order
        ]
        results = await asyncio.gather(*jobs)
        return [results[order.index(i)] for i in range(2)]

    figures = loadgen.run(both())
    for side, was, figure in zip(sides, before, figures, strict=True):
        work = Meter.read(side.urls, side.pids).work_since(was, load.events)
        figure.update(work)
        figure["cpu_ms_per_event"] = round(statistics.fmean(work["cpu_ms_per_event_per_node"]), 4)
    # Counted only once both are metered: walking one cluster's blocks costs its nodes CPU.
    for side, events, figure in zip(sides, signed, figures, strict=True):
        figure.update(asyncio.run(count_committed(side.urls[0], {i for i, _ in events})))
    return figures


# --- one event per request (`--single`) -----------------------------------------------------

SINGLE_RATE = 1_000.0
SINGLE_CLIENTS = 32
BATCH_COMPARE = 100
BLOCK_COST_EVENTS = 200
"""Events submitted one at a time (each a block of its own) to measure what a block costs."""


def single_requests(
    urls: list[str], load: list[tuple[str, bytes]], wait: bool
) -> list[list[bytes]]:
    """Every event's submit request, built before the clock starts, once per node."""
    return [
        [loadgen.submit_request(url, envelope, wait=wait) for url in urls] for _, envelope in load
    ]


async def flood_single(
    urls: list[str], requests: list[list[bytes]], clients: int, start_size: int
) -> tuple[loadgen.FloodResult, float]:
    """Submit one event per request over `clients` connections; seconds until the last
    is in a checkpoint."""
    nodes = node_clients(urls[:1], 1)
    try:
        started = time.perf_counter()
        result = await loadgen.flood(urls, requests, clients)
        accepted = result.statuses.get("202", 0)
        finished = await _wait_tree_size(nodes[urls[0]], start_size + accepted, 900)
    finally:
        await close_clients(nodes)
    return result, finished - started


_REQUESTS_METRIC = re.compile(
    r'^provledger_http_requests_total\{(?=[^}]*method="POST")[^}]*route="(?P<route>[^"]+)"[^}]*\}'
    r" (?P<value>[0-9.e+]+)$",
    re.MULTILINE,
)


def post_counts(metrics_text: str) -> dict[str, float]:
    """POST requests served per route, from one node's /metrics."""
    counts: dict[str, float] = {}
    for match in _REQUESTS_METRIC.finditer(metrics_text):
        route = match.group("route")
        counts[route] = counts.get(route, 0.0) + float(match.group("value"))
    return counts


def cluster_post_counts(metrics_texts: Sequence[str]) -> dict[str, float]:
    """POST requests served per route, summed over the nodes' /metrics texts."""
    total: dict[str, float] = {}
    for text in metrics_texts:
        for route, count in post_counts(text).items():
            total[route] = total.get(route, 0.0) + count
    return total


@dataclass(frozen=True)
class Meter:
    """The nodes' CPU seconds, the peer POSTs they served and their histograms' totals
    (`node.bench.anatomy`), at one moment."""

    cpu_s: tuple[float, ...]
    posts: dict[str, float]
    histograms: tuple[dict[str, Totals], ...] = ()

    @classmethod
    def read(cls, urls: list[str], pids: list[int]) -> Meter:
        cpu_s = tuple(_cpu_seconds(pid) for pid in pids)
        texts = [httpx.get(f"{url}/metrics", timeout=10).text for url in urls]
        return cls(cpu_s, cluster_post_counts(texts), tuple(histogram_totals(t) for t in texts))

    def work_since(self, before: Meter, events: int) -> dict[str, Any]:
        """CPU ms per event per node and peer POSTs per event (all nodes) since `before`."""
        return {
            "cpu_ms_per_event_per_node": cpu_ms_each(before.cpu_s, self.cpu_s, events),
            "peer_posts_per_event": {
                route: round((count - before.posts.get(route, 0)) / events, 3)
                for route, count in sorted(self.posts.items())
                if route.startswith("/p2p/")
            },
        }


def _height(url: str) -> int:
    return int(httpx.get(f"{url}/v1/status", timeout=10).json()["height"])


def tree_size(url: str) -> int:
    async def size() -> int:
        async with AsyncNodeClient(url, timeout=10) as client:
            return int((await client.status())["tree_size"])

    return asyncio.run(size())


class Profiler:
    """py-spy recording every node while a phase runs (`--profile DIR`): one raw
    (collapsed stacks) file per node, summed up by `node.bench.profile`."""

    def __init__(self, directory: str | None, pids: list[int], seconds: int) -> None:
        self.runs: list[subprocess.Popen[bytes]] = []
        self.paths: list[Path] = []
        if directory is None:
            return
        py_spy = shutil.which("py-spy") or shutil.which(
            "py-spy", path=str(Path(sys.executable).parent)
        )
        if py_spy is None:
            print(
                "[bench] py-spy not found (pip install -e '.[bench]'): no profile", file=sys.stderr
            )
            return
        Path(directory).mkdir(parents=True, exist_ok=True)
        for index, pid in enumerate(pids):
            path = Path(directory) / f"node{index}.txt"
            self.paths.append(path)
            self.runs.append(
                subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--format",
                        "raw",
                        "--rate",
                        "250",
                        "--duration",
                        str(seconds),
                        "--output",
                        str(path),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> list[Path]:
        for run in self.runs:
            run.send_signal(signal.SIGINT)
        for run in self.runs:
            try:
                run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                run.kill()
        return [path for path in self.paths if path.exists()]


def _subdir(directory: str | None, name: str) -> str | None:
    return None if directory is None else str(Path(directory) / name)


T = TypeVar("T")


def consecutive(items: list[T], *sizes: int) -> list[list[T]]:
    """`items` cut into consecutive parts of `sizes` (which add up to its length)."""
    assert sum(sizes) == len(items), "every item goes to one part"
    bounds = list(itertools.accumulate(sizes, initial=0))
    return [items[start:end] for start, end in itertools.pairwise(bounds)]


def block_cost(url: str, load: list[tuple[str, bytes]], pids: list[int]) -> dict[str, Any]:
    """Events submitted to one node one at a time with `?wait=commit`, each a block of its
    own: the CPU each node spent per block (votes, signatures, fsyncs, the block's tiles,
    one event; the nodes' idle work in that time included)."""
    requests = [row[0] for row in single_requests([url], load, wait=True)]
    start_height = _height(url)
    cpu_before = [_cpu_seconds(pid) for pid in pids]
    started = time.perf_counter()
    statuses = loadgen.run(loadgen.one_at_a_time(url, requests))
    elapsed = time.perf_counter() - started
    blocks = _height(url) - start_height
    return {
        "events": len(load),
        "statuses": statuses,
        "blocks": blocks,
        "ms_per_block": round(1000 * elapsed / max(blocks, 1), 2),
        "cpu_ms_per_block_per_node": cpu_ms_each(
            cpu_before, [_cpu_seconds(pid) for pid in pids], blocks
        ),
    }


def bench_single(
    events_total: int = 20_000,
    clients: int = SINGLE_CLIENTS,
    nodes: int = 4,
    base_port: int = 18800,
    rate: float = SINGLE_RATE,
    latency_events: int | None = None,
    batch: int = BATCH_COMPARE,
    workdir: str | None = None,
    profile_dir: str | None = None,
    block_cost_events: int = BLOCK_COST_EVENTS,
    floor_events: int = FLOOR_EVENTS,
    light_events: int = LIGHT_EVENTS,
) -> dict[str, Any]:
    """One JSON `POST /v1/events` per event over `clients` keep-alive connections spread
    over the nodes, beside batches of `batch` in the same run, each against the bounds."""
    cores = os.cpu_count() or 1
    results: dict[str, Any] = {
        "mode": "single",
        "cores": cores,
        "validators": nodes,
        "clients": clients,
        "batch": batch,
    }
    wrk = httpbound.find_wrk()
    bounds: dict[str, Any] = {
        "ecdsa_verifies_per_core": round(max(ecdsa_verifies_per_core() for _ in range(3))),
        "leveldb_synced_batches_per_s": round(leveldb_synced_batches_per_s()),
    }
    if wrk is None:
        print(f"[bench] {httpbound.WRK_MISSING}", file=sys.stderr)
        bounds["http_bound_skipped"] = httpbound.WRK_MISSING
    else:
        bounds["trivial_server_requests_per_s"] = round(
            httpbound.trivial_server_requests_per_s(wrk, base_port + 90)
        )
    results["bounds"] = bounds
    results["floor"] = floor_with_calls(floor_events)
    require_free_ports(base_port, nodes)
    latency_events = latency_events or max(2_000, int(rate * 5))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp) / "cluster"
        genesis = init_cluster(root, nodes, base_port=base_port, open_admission=True)
        homes = [node_home(root, i) for i in range(nodes)]
        urls = [f"http://127.0.0.1:{base_port + i}" for i in range(nodes)]
        sizes = (events_total, events_total, latency_events, latency_events, light_events)
        flood_load, batch_load, rate_load, half_load, light, one_by_one = consecutive(
            presign(genesis.chain_id, sum(sizes) + block_cost_events), *sizes, block_cost_events
        )
        flood_requests = single_requests(urls, flood_load, wait=False)
        rate_requests = single_requests(urls, rate_load, wait=True)
        half_requests = single_requests(urls, half_load, wait=True)
        try:
            for home in homes:
                start_node(home)
            asyncio.run(_wait_started(urls))
            pids = [node_pid(home) or 0 for home in homes]
            if wrk is not None:
                bounds["node_healthz_requests_per_s"] = round(
                    httpbound.wrk_requests_per_s(wrk, [f"{url}/healthz" for url in urls])
                )
            results["light_latency"] = asyncio.run(latency_at_rate(urls, light, LIGHT_RATE, 1))
            results["block_cost"] = block_cost(urls[0], one_by_one, pids)

            start_size, start_height = tree_size(urls[0]), _height(urls[0])
            before = Meter.read(urls, pids)
            profiler = Profiler(_subdir(profile_dir, "single"), pids, 600)
            flood, elapsed = loadgen.run(flood_single(urls, flood_requests, clients, start_size))
            profiles = profiler.stop()
            after = Meter.read(urls, pids)
            blocks = _height(urls[0]) - start_height
            nodes_cpu = sum(after.cpu_s) - sum(before.cpu_s)
            single: dict[str, Any] = {
                "events": events_total,
                "http_statuses": flood.statuses,
                "retried_429_503": flood.retried,
                "submit_s": round(flood.submit_s, 3),
                "commit_s": round(elapsed, 3),
                "events_per_s": round(events_total / elapsed, 1),
                "requests_per_s": round(events_total / flood.submit_s, 1),
                **after.work_since(before, events_total),
                "client": loadgen.client_share(flood.client_cpu_s, nodes_cpu, flood.submit_s),
                "blocks": blocks,
            }
            single.update(asyncio.run(count_committed(urls[0], {i for i, _ in flood_load})))
            if profiles:
                single["profiles"] = [str(path) for path in profiles]
            results["single"] = single

            results["latency"] = open_loop(urls, pids, rate_requests, rate)
            half = single["events_per_s"] / 2
            if half < rate:  # `rate` is past what the cluster sustains: also at half its rate
                results["latency_at_half"] = open_loop(urls, pids, half_requests, half)

            start_height = _height(urls[0])
            before = Meter.read(urls, pids)
            profiler = Profiler(_subdir(profile_dir, "batched"), pids, 600)
            batched = asyncio.run(saturate(urls, batch_load, CLIENT_CONNECTIONS, batch, pids))
            batch_profiles = profiler.stop()
            batched.update(Meter.read(urls, pids).work_since(before, events_total))
            batched["blocks"] = _height(urls[0]) - start_height
            if batch_profiles:
                batched["profiles"] = [str(path) for path in batch_profiles]
            batched.update(asyncio.run(count_committed(urls[0], {i for i, _ in batch_load})))
            results["batched"] = batched
            results["peak_rss_mb_per_node"] = [round(_memory_mb(pid, "VmHWM"), 1) for pid in pids]
        finally:
            stop_nodes(homes)
    verify_bound = cores * bounds["ecdsa_verifies_per_core"] / nodes
    ratios: dict[str, Any] = {
        "verify_bound_events_per_s": round(verify_bound),
        "single_vs_verify_bound": round(results["single"]["events_per_s"] / verify_bound, 3),
        "batched_vs_verify_bound": round(results["batched"]["events_per_s"] / verify_bound, 3),
    }
    for name in ("trivial_server_requests_per_s", "node_healthz_requests_per_s"):
        if bounds.get(name):
            ratios[f"single_requests_vs_{name}"] = round(
                results["single"]["requests_per_s"] / bounds[name], 3
            )
    results["ratios"] = ratios
    results["core_budget"] = asdict(
        core_budget(results["floor"], results["batched"]["cpu_ms_per_event_per_node"])
    )
    return results


def open_loop(
    urls: list[str], pids: list[int], requests: list[list[bytes]], rate: float
) -> dict[str, Any]:
    """The open-loop latency run at `rate`, with the nodes' work per event, the load
    client's share of the CPU and where the heights' time went meanwhile."""
    before = Meter.read(urls, pids)
    latency = loadgen.run(loadgen.latency_at_rate(urls, requests, rate))
    after = Meter.read(urls, pids)
    nodes_cpu_s = sum(after.cpu_s) - sum(before.cpu_s)
    client = loadgen.client_share(latency.pop("client_cpu_s"), nodes_cpu_s, latency["run_s"])
    return {
        **latency,
        **after.work_since(before, len(requests)),
        "client": client,
        "anatomy": anatomy(before.histograms, after.histograms),
    }


def _work_rows(phase: dict[str, Any]) -> list[tuple[str, str]]:
    """An open-loop run's CPU per event per node, peer POSTs per event and the load client's
    share, as printed rows."""
    cpu = ", ".join(str(x) for x in phase["cpu_ms_per_event_per_node"])
    posts = ", ".join(f"{k} {v}" for k, v in sorted(phase["peer_posts_per_event"].items()))
    return [
        ("  CPU ms per event per node; POSTs", f"{cpu}; {posts}"),
        ("  load client CPU", loadgen.describe_client_share(phase["client"])),
        *(anatomy_rows(phase["anatomy"]) if "anatomy" in phase else []),
    ]


def _block_cost_row(results: dict[str, Any]) -> list[tuple[str, str]]:
    cost = results.get("block_cost")
    if cost is None:
        return []
    cpu = ", ".join(f"{ms:.2f}" for ms in cost["cpu_ms_per_block_per_node"])
    return [
        (
            "one event at a time, wait=commit",
            f"{cost['blocks']} blocks for {cost['events']} events ({cost['statuses']}), "
            f"{cost['ms_per_block']} ms each; CPU per block per node {cpu} ms",
        )
    ]


def _timeline(latency: dict[str, Any]) -> str:
    return " ".join(f"{p50:.0f}" for p50 in latency.get("p50_by_window_ms", []))


def _half_rate_row(results: dict[str, Any]) -> list[tuple[str, str]]:
    half = results.get("latency_at_half")
    if half is None:
        return []
    return [
        (
            "  same, at half the single rate",
            f"{half['rate']}/s: p50 {half.get('p50_ms')} ms, p95 {half.get('p95_ms')} ms, "
            f"p99 {half.get('p99_ms')} ms ({half['failures']} failed {half['failure_statuses']})",
        ),
        *_work_rows(half),
    ]


def print_single(results: dict[str, Any]) -> None:
    s, b, r = results["single"], results["bounds"], results["ratios"]
    lat, light, bat = results["latency"], results["light_latency"], results["batched"]
    rows = [
        (
            "machine",
            f"{results['cores']} cores; {results['validators']} validators + load generator",
        ),
        ("ECDSA P-256 verifies/s per core", f"{b['ecdsa_verifies_per_core']:,}"),
        ("LevelDB synced batches/s", f"{b['leveldb_synced_batches_per_s']:,}"),
    ]
    if "http_bound_skipped" in b:
        rows.append(("HTTP bound", b["http_bound_skipped"]))
    else:
        rows.append(
            (
                "wrk: trivial endpoint, node's server stack",
                f"{b['trivial_server_requests_per_s']:,} requests/s (one process)",
            )
        )
        rows.append(
            (
                "wrk: GET /healthz on all nodes at once",
                f"{b['node_healthz_requests_per_s']:,} requests/s",
            )
        )
    rows += [
        (
            "latency at light load",
            f"{light['rate']}/s single submits: p50 {light['p50_ms']} ms, "
            f"p99 {light['p99_ms']} ms ({light['failures']} failed)",
        ),
        (
            "single submits",
            f"{s['events']:,} events, one per request, {results['clients']} connections "
            f"over {results['validators']} nodes, statuses {s['http_statuses']}",
        ),
        (
            "  committed events/s",
            f"{s['events_per_s']:,} (all in a checkpoint after {s['commit_s']} s; "
            f"requests/s {s['requests_per_s']:,})",
        ),
        (
            "  vs verify bound",
            f"{r['single_vs_verify_bound']:.1%} of {r['verify_bound_events_per_s']:,}/s "
            "= cores x verifies/s / validators",
        ),
    ]
    for name, label in (
        ("trivial_server_requests_per_s", "trivial endpoint"),
        ("node_healthz_requests_per_s", "/healthz on all nodes"),
    ):
        key = f"single_requests_vs_{name}"
        if key in r:
            rows.append((f"  requests/s vs {label}", f"{r[key]:.1%}"))
    rows += [
        (
            "  lost / duplicated",
            f"{s['lost']} / {s['duplicated']} (committed {s['committed']:,}; "
            f"retried after 429/503: {s['retried_429_503']:,})",
        ),
        ("  CPU ms per event per node", ", ".join(str(x) for x in s["cpu_ms_per_event_per_node"])),
        (
            "  blocks; peer POSTs per event",
            f"{s['blocks']} blocks; "
            + ", ".join(f"{k} {v}" for k, v in sorted(s["peer_posts_per_event"].items())),
        ),
        ("  load client CPU", loadgen.describe_client_share(s["client"])),
        (
            "submit-to-commit, single, open loop",
            f"{lat['rate']}/s: p50 {lat.get('p50_ms')} ms, p95 {lat.get('p95_ms')} ms, "
            f"p99 {lat.get('p99_ms')} ms ({lat['failures']} failed {lat['failure_statuses']}; "
            f"{lat['peak_connections']} connections at most)",
        ),
        ("  p50 per half second, ms", _timeline(lat)),
        *_work_rows(lat),
        *_block_cost_row(results),
        *_half_rate_row(results),
        (
            f"batches of {results['batch']}",
            f"{bat['events']:,} events, statuses {bat['http_statuses']}",
        ),
        (
            "  committed events/s",
            f"{bat['events_per_s']:,}; lost / duplicated {bat['lost']} / {bat['duplicated']}",
        ),
        ("  vs verify bound", f"{r['batched_vs_verify_bound']:.1%}"),
        (
            "  CPU ms per event per node",
            ", ".join(str(x) for x in bat["cpu_ms_per_event_per_node"])
            + f" ({bat['blocks']} blocks)",
        ),
        *floor_rows(results["floor"], bat["cpu_ms_per_event_per_node"]),
        ("peak RSS MB per node", ", ".join(str(x) for x in results["peak_rss_mb_per_node"])),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
