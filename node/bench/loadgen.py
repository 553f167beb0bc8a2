"""The single-submit load generator of `scripts/bench cluster --single`: one JSON
`POST /v1/events` per event over keep-alive HTTP/1.1 connections, lean enough that the
nodes, not this client, set the pace.

httpx's pool costs more per request than the nodes do on a shared 2-core machine (~270
trivial requests/s with 32 connections), so the benchmark speaks HTTP/1.1 itself through
`node.client.http11` (which nodes use for their peer requests too): every request is built as
bytes before the clock starts, each connection writes one and reads the status line,
headers and a `content-length` body back. Its own CPU time is measured
and reported beside the nodes' (`client_share`): a figure the client capped is flagged.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import uvloop

from node.client.http11 import Connection, HttpError, ServerClosed, request_bytes
from node.wire import JSON

T = TypeVar("T")

CLIENT_SHARE_BOUND = 0.15
"""The load client may use at most this share of the CPU the run used (its own plus the
nodes'); above it the figure may measure the client, and the report says so."""
CLIENT_CORE_BOUND = 0.5
"""...and at most this share of its one core (it is one thread: near 1.0 it would be the
bottleneck whatever the nodes do)."""
TIMELINE_WINDOW_S = 0.5
"""The open-loop run reports the p50 of each half second's requests beside its percentiles."""
MAX_OPEN_LOOP_CONNECTIONS = 512
"""The open-loop latency run opens a connection per request in flight, up to this many in
all; past it a request waits for a free one (and that wait counts in its latency)."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop (the nodes' loop too), like `asyncio.run`, with the cycle
    collector off: one of its passes over the client's heap (the pre-built requests, the
    tasks) held up the reading of every answer for 40-75 ms, which an open-loop run counted
    as the cluster's latency. As in `timeit`, it runs again once the coroutine is done."""
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    finally:
        if collecting:
            gc.enable()
        gc.collect()


def submit_request(url: str, envelope: bytes, *, wait: bool = False) -> bytes:
    """The whole HTTP/1.1 request submitting one envelope as JSON, as bytes."""
    body = json.dumps({"envelope": envelope.hex()}, separators=(",", ":")).encode()
    target = "/v1/events?wait=commit" if wait else "/v1/events"
    return request_bytes("POST", target, urlsplit(url).netloc, {"content-type": JSON}, body)


@dataclass
class FloodResult:
    """What a closed-loop flood did: per-status counts, retries, timings and CPU."""

    statuses: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    submit_s: float = 0.0
    client_cpu_s: float = 0.0


async def flood(
    urls: list[str],
    requests: list[list[bytes]],
    connections: int,
    retry_pause_s: float = 0.05,
) -> FloodResult:
    """Submit every request as fast as the nodes answer, `connections` keep-alive
    connections spread round-robin over `urls` (`requests[i]` holds the request bytes of
    one event, one per url). A 429 or 503 is offered again after a pause, as a
    well-behaved client would; any other answer is counted by status.
    """
    result = FloodResult()
    pending = list(range(len(requests)))
    pending.reverse()

    async def worker(index: int) -> None:
        node = index % len(urls)
        conn = await Connection.open(urls[node])
        try:
            while pending:
                item = pending.pop()
                resent = False
                while True:
                    if conn.closed:
                        conn = await Connection.open(urls[node])
                    try:
                        status, _ = await conn.exchange(requests[item][node])
                    except HttpError as exc:
                        if isinstance(exc, ServerClosed) and not resent:
                            resent = True  # closed before any answer: once more, fresh
                            continue
                        result.statuses["lost-connection"] = (
                            result.statuses.get("lost-connection", 0) + 1
                        )
                        break
                    if status in (429, 503):
                        result.retried += 1
                        await asyncio.sleep(retry_pause_s)
                        continue
                    key = str(status)
                    result.statuses[key] = result.statuses.get(key, 0) + 1
                    break
        finally:
            conn.close()

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    result.submit_s = time.perf_counter() - started
    result.client_cpu_s = time.process_time() - cpu
    return result


class ConnectionPool:
    """Connections to several nodes for open-loop load: an idle one is reused, else a new
    one is opened while fewer than `limit` are open in all, else the request waits."""

    def __init__(
        self, urls: list[str], limit: int = MAX_OPEN_LOOP_CONNECTIONS, opener: Any = None
    ) -> None:
        self.urls = urls
        self.limit = limit
        self.open_count = 0
        self.peak = 0
        self._opener: Callable[[str], Coroutine[Any, Any, Connection]] = opener or Connection.open
        self._idle: list[list[Connection]] = [[] for _ in urls]
        self._free = asyncio.Condition()

    async def acquire(self, node: int) -> Connection:
        async with self._free:
            while True:
                idle = self._idle[node]
                while idle:
                    conn = idle.pop()
                    if not conn.closed and not conn.server_closed():
                        return conn
                    conn.close()  # the server closed it while idle (keep-alive timeout)
                    self.open_count -= 1
                if self.open_count < self.limit:
                    self.open_count += 1
                    self.peak = max(self.peak, self.open_count)
                    break
                if not self._evict_idle():
                    await self._free.wait()
        try:
            return await self._opener(self.urls[node])
        except BaseException:
            async with self._free:
                self.open_count -= 1
                self._free.notify()
            raise

    def _evict_idle(self) -> bool:
        """Close an idle connection to another node to make room; False if none."""
        for idle in self._idle:
            if idle:
                idle.pop().close()
                self.open_count -= 1
                return True
        return False

    async def release(self, node: int, conn: Connection) -> None:
        async with self._free:
            if conn.closed:
                self.open_count -= 1
            else:
                self._idle[node].append(conn)
            self._free.notify()

    async def exchange(self, node: int, request: bytes) -> tuple[int, bytes]:
        """`request` on a connection to `node`; sent once more if the node closed the
        kept-alive connection just as it went (`ServerClosed`: nothing was answered, so
        nothing was submitted), as the node's peer links do."""
        try:
            return await self._exchange_once(node, request)
        except ServerClosed:
            return await self._exchange_once(node, request)

    async def _exchange_once(self, node: int, request: bytes) -> tuple[int, bytes]:
        conn = await self.acquire(node)
        try:
            return await conn.exchange(request)
        finally:
            await self.release(node, conn)

    def close(self) -> None:
        for idle in self._idle:
            while idle:
                idle.pop().close()


async def latency_at_rate(
    urls: list[str], requests: list[list[bytes]], rate: float
) -> dict[str, Any]:
    """Open loop: request i is due at start + i / rate on node i mod len(urls), with
    `?wait=commit`; its latency runs from when it was due (so a request held up by the
    client counts too) until the node answered that the event is committed."""
    pool = ConnectionPool(urls)
    timeline: list[tuple[float, float]] = []  # (due since the start, latency) per commit
    statuses: dict[str, int] = {}

    async def one(index: int, due: float) -> None:
        node = index % len(urls)
        try:
            status, body = await pool.exchange(node, requests[index][node])
        except HttpError:
            statuses["lost-connection"] = statuses.get("lost-connection", 0) + 1
            return
        if committed(status, body):
            timeline.append((due - begin, time.perf_counter() - due))
        else:
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    tasks = []
    cpu, begin = time.process_time(), time.perf_counter()
    try:
        for index in range(len(requests)):
            due = begin + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, due)))
        await asyncio.gather(*tasks)
    finally:
        pool.close()
    run_s, client_cpu_s = time.perf_counter() - begin, time.process_time() - cpu
    return {
        "rate": round(rate, 1),
        "run_s": round(run_s, 3),
        "client_cpu_s": client_cpu_s,
        "events": len(requests),
        "failures": len(requests) - len(timeline),
        "failure_statuses": statuses,
        "peak_connections": pool.peak,
        **percentiles([latency for _, latency in timeline]),
        "p50_by_window_ms": p50_by_window(timeline, TIMELINE_WINDOW_S),
    }


async def one_at_a_time(url: str, requests: list[bytes]) -> dict[str, int]:
    """Closed loop over one connection: each request (`?wait=commit`) is sent once the one
    before it was answered, so at light load every event is a block of its own. Returns the
    count of answers per status (`committed` for a 200 that says so)."""
    statuses: dict[str, int] = {}
    connection = await Connection.open(url)
    try:
        for request in requests:
            status, body = await connection.exchange(request)
            key = "committed" if committed(status, body) else str(status)
            statuses[key] = statuses.get(key, 0) + 1
    finally:
        connection.close()
    return statuses


def committed(status: int, body: bytes) -> bool:
    """Whether a `?wait=commit` answer says the event is committed."""
    return status == 200 and b'"committed"' in body


def p50_by_window(timeline: list[tuple[float, float]], window_s: float) -> list[float]:
    """The p50 latency (ms) of the requests due in each `window_s` of the run, in order
    (a window no committed answer came from is left out): where a run's tail came from,
    a steady queue or a stall the cluster took seconds to work off."""
    windows: dict[int, list[float]] = {}
    for due, latency in timeline:
        windows.setdefault(int(due / window_s), []).append(latency)
    return [percentiles(windows[w])["p50_ms"] for w in sorted(windows)]


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50, p95, p99 and mean in ms (nearest rank)."""
    if not latencies:
        return {}
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": round(1000 * sum(ordered) / len(ordered), 1),
    }


def client_share(client_cpu_s: float, nodes_cpu_s: float, wall_s: float) -> dict[str, Any]:
    """How much of the run's CPU the load client took, against its bounds.

    `machine_share` is the client's part of all the CPU the run used (client plus nodes);
    `core_share` how busy its one thread was. Both under their bounds means the client was
    not the bottleneck; otherwise `ok` is False and the report flags the figure.
    """
    total = client_cpu_s + nodes_cpu_s
    machine = client_cpu_s / total if total > 0 else 0.0
    core = client_cpu_s / wall_s if wall_s > 0 else 0.0
    return {
        "client_cpu_s": round(client_cpu_s, 3),
        "nodes_cpu_s": round(nodes_cpu_s, 3),
        "machine_share": round(machine, 3),
        "core_share": round(core, 3),
        "machine_bound": CLIENT_SHARE_BOUND,
        "core_bound": CLIENT_CORE_BOUND,
        "ok": machine <= CLIENT_SHARE_BOUND and core <= CLIENT_CORE_BOUND,
    }


def describe_client_share(share: dict[str, Any]) -> str:
    """One line for the report."""
    verdict = (
        "within bounds: the nodes set the pace"
        if share["ok"]
        else "OVER BOUND: this figure may measure the load client"
    )
    return (
        f"{share['machine_share']:.1%} of the run's CPU (bound {share['machine_bound']:.0%}), "
        f"{share['core_share']:.1%} of its core (bound {share['core_bound']:.0%}): {verdict}"
    )
