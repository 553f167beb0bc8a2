"""`scripts/bench cluster --single` (issue 16): the load client's HTTP/1.1, its CPU-share
verdict, its connection bound, wrk's report, the metrics and profile summaries (behaviour
only, never timings). The clients talk to real asyncio servers on loopback."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from node.bench import cluster, httpbound, loadgen, profile
from node.bench import ledger as bench
from tests.node.fake_http import RawServer, serving_raw

# --- a tiny HTTP/1.1 server on loopback -----------------------------------------------------

Answer = Callable[[bytes, bytes], tuple[int, bytes]]


@asynccontextmanager
async def http_server(answer: Answer) -> AsyncIterator[tuple[str, RawServer]]:
    """Serves keep-alive requests with `answer(request head, body)` -> (status, JSON body);
    yields its URL and the server (its `requests` as received)."""

    async def reply(number: int, head: bytes, body: bytes) -> bytes:
        status, payload = answer(head, body)
        head = b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n" % status
        return head + b"content-length: %d\r\n\r\n" % len(payload) + payload

    server = RawServer(reply)
    async with serving_raw(server) as url:
        yield url, server


def received(server: RawServer) -> list[bytes]:
    """The bodies `server` received, in order."""
    return [body for _, body in server.requests]


# --- the request and the response head ------------------------------------------------------


def test_submit_request_is_one_json_post_per_envelope() -> None:
    request = loadgen.submit_request("http://127.0.0.1:8800", b"\x01\xab")
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/events HTTP/1.1"
    assert b"host: 127.0.0.1:8800" in lines
    assert b"content-type: application/json" in lines
    assert f"content-length: {len(body)}".encode() in lines
    assert json.loads(body) == {"envelope": "01ab"}
    waiting = loadgen.submit_request("http://127.0.0.1:8800", b"\x01", wait=True)
    assert waiting.startswith(b"POST /v1/events?wait=commit HTTP/1.1\r\n")


# --- the flood and the open-loop run against a real server ----------------------------------


def test_the_load_client_runs_without_collector_pauses_and_restores_the_collector() -> None:
    async def collector_enabled() -> bool:
        return gc.isenabled()

    assert gc.isenabled()
    assert loadgen.run(collector_enabled()) is False
    assert gc.isenabled()


def committed_unless(envelope: str, status: int) -> Answer:
    """A node answering `?wait=commit` submissions: committed, except `envelope` (hex)."""

    def answer(head: bytes, body: bytes) -> tuple[int, bytes]:
        assert head.startswith(b"POST /v1/events?wait=commit ")
        if json.loads(body)["envelope"] == envelope:
            return status, b'{"status":%d}' % status
        return 200, b'{"status":"committed","height":3}'

    return answer


def test_one_at_a_time_counts_committed_answers_in_order() -> None:
    async def scenario() -> tuple[dict[str, int], list[bytes]]:
        async with http_server(committed_unless("03", 409)) as (url, server):
            requests = [loadgen.submit_request(url, bytes([i]), wait=True) for i in range(8)]
            return await loadgen.one_at_a_time(url, requests), received(server)

    statuses, bodies = loadgen.run(scenario())
    assert statuses == {"committed": 7, "409": 1}
    assert [json.loads(b)["envelope"] for b in bodies] == [f"{i:02x}" for i in range(8)]


def test_p50_by_window_shows_where_a_stall_was() -> None:
    steady = [(0.1 * i, 0.050) for i in range(10)]  # due 0.0-0.9 s: 50 ms each
    stall = [(1.0 + 0.1 * i, 0.400 + 0.01 * i) for i in range(5)]  # due 1.0-1.4 s
    after = [(2.6, 0.060), (2.7, 0.080), (2.8, 0.070)]  # nothing due 1.5-2.5 s
    assert loadgen.p50_by_window(steady + stall + after, 0.5) == [50.0, 50.0, 420.0, 70.0]
    assert loadgen.p50_by_window([], 0.5) == []


def test_flood_submits_every_event_once_and_offers_a_429_again() -> None:
    refused = {"left": 3}

    def answer(head: bytes, body: bytes) -> tuple[int, bytes]:
        if refused["left"]:
            refused["left"] -= 1
            return 429, b"{}"
        return 202, b'{"status":"pending"}'

    async def scenario() -> tuple[loadgen.FloodResult, list[bytes]]:
        async with http_server(answer) as (url, server):
            requests = [[loadgen.submit_request(url, bytes([i]))] for i in range(40)]
            result = await loadgen.flood([url], requests, connections=4, retry_pause_s=0)
            return result, received(server)

    result, bodies = loadgen.run(scenario())
    assert result.statuses == {"202": 40}
    assert result.retried == 3
    assert len(bodies) == 43
    accepted = {json.loads(b)["envelope"] for b in bodies}
    assert accepted == {bytes([i]).hex() for i in range(40)}
    assert result.submit_s > 0 and result.client_cpu_s >= 0


def test_latency_run_counts_only_committed_answers() -> None:
    async def scenario() -> dict[str, object]:
        async with http_server(committed_unless("07", 504)) as (url, _):
            requests = [[loadgen.submit_request(url, bytes([i]), wait=True)] for i in range(20)]
            return await loadgen.latency_at_rate([url], requests, rate=2_000)

    result = loadgen.run(scenario())
    assert result["events"] == 20 and result["failures"] == 1
    assert result["failure_statuses"] == {"504": 1}
    assert len(result["p50_by_window_ms"]) == 1  # all 20 were due within the first 10 ms
    assert 0 <= result["p50_ms"] <= result["p99_ms"]  # type: ignore[operator]
    assert 1 <= result["peak_connections"] <= loadgen.MAX_OPEN_LOOP_CONNECTIONS  # type: ignore[operator]
    assert result["run_s"] >= 0.009  # type: ignore[operator]  # the last was due at 9.5 ms
    assert result["client_cpu_s"] > 0  # type: ignore[operator]


def hanging_up_on(numbers: set[int]) -> RawServer:
    """A node that closes the connection without answering requests `numbers` (counted
    from 1 over all connections), as when a kept-alive connection times out just as a
    request arrives; it answers every other one committed (202 for a plain submit)."""

    async def reply(number: int, head: bytes, body: bytes) -> bytes | None:
        if number in numbers:
            return None
        payload = b'{"status":"committed","height":3}'
        status = 200 if b"wait=commit" in head else 202
        return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n" % (status, len(payload)) + payload

    return RawServer(reply)


def test_the_open_loop_sends_once_more_when_the_node_hangs_up_unanswered() -> None:
    server = hanging_up_on({3})

    async def scenario() -> dict[str, object]:
        async with serving_raw(server) as url:
            requests = [[loadgen.submit_request(url, bytes([i]), wait=True)] for i in range(8)]
            return await loadgen.latency_at_rate([url], requests, rate=50)

    result = loadgen.run(scenario())
    assert result["failures"] == 0 and result["failure_statuses"] == {}
    bodies = received(server)
    assert len(bodies) == 9 and bodies[2] == bodies[3], "the unanswered request went again"
    assert server.connections >= 2, "on another connection"


def test_the_open_loop_sends_a_request_at_most_twice() -> None:
    server = hanging_up_on({1, 2})

    async def scenario() -> dict[str, object]:
        async with serving_raw(server) as url:
            requests = [[loadgen.submit_request(url, bytes([i]), wait=True)] for i in range(3)]
            return await loadgen.latency_at_rate([url], requests, rate=20)

    result = loadgen.run(scenario())
    assert result["failures"] == 1 and result["failure_statuses"] == {"lost-connection": 1}
    assert len(received(server)) == 4


def test_the_flood_sends_once_more_when_the_node_hangs_up_unanswered() -> None:
    server = hanging_up_on({5})

    async def scenario() -> loadgen.FloodResult:
        async with serving_raw(server) as url:
            requests = [[loadgen.submit_request(url, bytes([i]))] for i in range(12)]
            return await loadgen.flood([url], requests, connections=1)

    result = loadgen.run(scenario())
    assert result.statuses == {"202": 12}
    bodies = received(server)
    assert len(bodies) == 13 and bodies[4] == bodies[5]


def test_the_open_loop_pool_never_opens_more_than_its_limit() -> None:
    class Fake:
        closed = False
        ended_by_server = False

        def server_closed(self) -> bool:
            return self.ended_by_server

        def close(self) -> None:
            self.closed = True

    opened: list[Fake] = []

    async def opener(url: str) -> Fake:
        opened.append(Fake())
        return opened[-1]

    async def scenario() -> None:
        pool = loadgen.ConnectionPool(["a", "b"], limit=2, opener=opener)
        first = await pool.acquire(0)
        second = await pool.acquire(1)
        third = asyncio.create_task(pool.acquire(0))
        await asyncio.sleep(0.01)
        assert not third.done() and pool.open_count == 2  # waits: the bound is reached
        await pool.release(0, first)  # an idle connection to node 0: reused
        assert await third is first
        fourth = asyncio.create_task(pool.acquire(0))
        await pool.release(1, second)  # idle but to node 1: closed to make room
        await fourth
        assert second.closed and len(opened) == 3
        assert pool.peak == 2 and pool.open_count == 2
        await pool.release(0, fourth.result())
        fourth.result().ended_by_server = True  # idle too long: the server hung up
        fifth = await pool.acquire(0)
        assert fifth is not fourth.result() and fourth.result().closed and len(opened) == 4
        assert pool.open_count == 2
        pool.close()

    asyncio.run(scenario())


# --- the client's CPU share -------------------------------------------------------------------


def test_client_share_within_bounds_says_the_nodes_set_the_pace() -> None:
    share = loadgen.client_share(client_cpu_s=1.0, nodes_cpu_s=19.0, wall_s=10.0)
    assert share["machine_share"] == 0.05 and share["core_share"] == 0.1
    assert share["ok"] is True
    line = loadgen.describe_client_share(share)
    assert "5.0% of the run's CPU" in line and "within bounds" in line


@pytest.mark.parametrize(
    ("client", "nodes", "wall"),
    [
        (2.0, 8.0, 10.0),  # 20% of the machine's work: over the 15% bound
        (6.0, 94.0, 10.0),  # 6% of the work, but its one thread 60% busy: over 50%
    ],
)
def test_client_share_over_a_bound_flags_the_figure(
    client: float, nodes: float, wall: float
) -> None:
    share = loadgen.client_share(client, nodes, wall)
    assert share["ok"] is False
    assert "OVER BOUND" in loadgen.describe_client_share(share)


def test_client_share_at_its_bounds_is_still_ok() -> None:
    bound = loadgen.CLIENT_SHARE_BOUND
    share = loadgen.client_share(bound, 1 - bound, wall_s=10.0)
    assert share["ok"] is True


# --- wrk, metrics, profiles, the command line -------------------------------------------------

WRK_OUTPUT = b"""Running 4s test @ http://127.0.0.1:18890/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms  412.00us   9.84ms   88.20%
    Req/Sec    12.28k   402.11    12.90k    72.50%
  48871 requests in 4.00s, 6.71MB read
Requests/sec:  12210.45
Transfer/sec:      1.68MB
"""


def test_wrk_report_is_parsed_and_garbage_refused() -> None:
    assert httpbound.parse_wrk(WRK_OUTPUT) == 12210.45
    with pytest.raises(ValueError):
        httpbound.parse_wrk(b"unable to connect to 127.0.0.1:1 Connection refused")


def test_find_wrk_without_install_reports_absence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpbound.shutil, "which", lambda name, **_: None)
    assert httpbound.find_wrk(install=False) is None
    assert "apt-get install wrk" in httpbound.WRK_MISSING


def test_post_counts_read_the_request_counter_per_route() -> None:
    text = "\n".join(
        [
            "# HELP provledger_http_requests_total HTTP requests",
            'provledger_http_requests_total{route="/p2p/events",method="POST"} 12.0',
            'provledger_http_requests_total{route="/p2p/events",method="GET"} 5.0',
            'provledger_http_requests_total{route="/v1/events",method="POST"} 3.0',
            'provledger_http_requests_created{route="/v1/events",method="POST"} 1.7e+09',
        ]
    )
    assert cluster.post_counts(text) == {"/p2p/events": 12.0, "/v1/events": 3.0}


def test_the_meter_counts_a_route_first_served_after_its_first_reading() -> None:
    before = cluster.Meter((1.0, 2.0), {"/p2p/consensus": 10.0, "/v1/events": 4.0})
    after = cluster.Meter((1.5, 2.2), {"/p2p/consensus": 30.0, "/p2p/events": 50.0})
    work = after.work_since(before, 100)
    assert work["cpu_ms_per_event_per_node"] == [5.0, 2.0]
    assert work["peer_posts_per_event"] == {"/p2p/consensus": 0.2, "/p2p/events": 0.5}


RAW_PROFILE = "\n".join(
    [
        "main (node/server/run.py:1);run (uvicorn/x.py:2);__call__ (node/server/http/guard.py:3);"
        "__call__ (node/server/http/fast_events.py:4);p2p_events (node/server/http/peer.py:5);"
        "verify (ledger/crypto.py:6) 30",
        "main (node/server/run.py:1);__call__ (node/server/http/fast_peer.py:2);"
        "__call__ (node/server/http/fast_events.py:4);"
        "submit (node/server/service.py:9);sha256 (ledger/crypto.py:7) 10",
        "main (node/server/run.py:1);__call__ (node/server/http/fast_peer.py:2);"
        "answer_or_pass (node/server/http/fast_path.py:3);"
        "receive_events (node/server/service.py:9);verify (ledger/crypto.py:6) 20",
        "main (node/server/run.py:1);_run_once (asyncio/base_events.py:8) 10",
        "not a profile line",
    ]
)


def test_profile_summary_puts_samples_in_phases_and_layers() -> None:
    summary = profile.summarize(RAW_PROFILE)
    assert summary.samples == 70
    assert summary.phases == {
        "p2p_events (node/server/http/peer.py)": 30,
        "__call__ (node/server/http/fast_events.py)": 10,
        "__call__ (node/server/http/fast_peer.py)": 20,
        "event loop (waiting, callbacks)": 10,
    }
    assert summary.layers["p2p_events (node/server/http/peer.py)"] == {"ECDSA verify": 30}
    text = profile.format_summary(profile.merge([summary, summary]))
    assert "140 samples" in text and "42.9%  p2p_events" in text


def test_single_mode_on_the_command_line() -> None:
    parser = bench.build_parser()
    args = parser.parse_args(["cluster", "--single"])
    assert args.single is True and args.clients is None and args.rate == 1_000.0
    assert cluster.SINGLE_CLIENTS == 32
    args = parser.parse_args(["cluster", "--single", "--clients", "8", "--profile", "/tmp/p"])
    assert args.clients == 8 and args.profile == "/tmp/p"
    assert parser.parse_args(["cluster"]).single is False


# --- end to end, on a real 4-validator cluster ------------------------------------------------


@pytest.mark.cluster
def test_bench_single_runs_end_to_end_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cluster.harness import free_port_block

    base = free_port_block(120)  # nodes, their peer ports (+100) and the trivial server (+90)
    results = cluster.bench_single(
        events_total=240,
        clients=8,
        base_port=base,
        rate=60.0,
        latency_events=60,
        batch=40,
        workdir=str(tmp_path),
        block_cost_events=12,
        floor_events=60,
        light_events=10,  # at 5/s: 2 s, not the 20 s of the default 100
    )
    single, batched = results["single"], results["batched"]
    cost = results["block_cost"]
    assert cost["statuses"] == {"committed": 12} and cost["blocks"] >= 12
    assert len(cost["cpu_ms_per_block_per_node"]) == 4
    assert all(ms > 0 for ms in cost["cpu_ms_per_block_per_node"])
    assert single["http_statuses"] == {"202": 240}
    assert (single["lost"], single["duplicated"], single["committed"]) == (0, 0, 240)
    assert (batched["lost"], batched["duplicated"], batched["committed"]) == (0, 0, 240)
    assert set(single["client"]) >= {"machine_share", "core_share", "ok"}
    assert single["blocks"] >= 1 and "/p2p/events" in single["peer_posts_per_event"]
    latency = results["latency"]
    assert latency["events"] == 60 and latency["failures"] == 0
    assert len(latency["cpu_ms_per_event_per_node"]) == 4
    assert all(ms > 0 for ms in latency["cpu_ms_per_event_per_node"])
    assert "/p2p/consensus" in latency["peer_posts_per_event"]
    assert set(latency["client"]) >= {"machine_share", "core_share", "ok"}
    assert "client_cpu_s" not in latency, "the client's CPU is reported as its share"
    anatomy = latency["anatomy"]  # where the heights' time went, from the nodes' histograms
    assert anatomy["events_per_block"] > 0 and anatomy["store_append_ms"] > 0
    assert anatomy["proposal_to_commit_ms"] > 0 and anatomy["block_interval_p50_ms"] > 0
    # Each validator signs a prevote and a precommit per height (its fsyncs: before each).
    assert anatomy["signer_fsyncs_per_block"] > 1
    assert {"proposal", "vote"} <= set(anatomy["consensus_inputs"])
    assert len(batched["cpu_ms_per_event_per_node"]) == 4 and batched["peer_posts_per_event"]
    assert results["light_latency"]["failures"] == 0 and results["light_latency"]["events"] == 10
    ratios = results["ratios"]
    assert ratios["single_vs_verify_bound"] > 0 and ratios["batched_vs_verify_bound"] > 0
    assert results["floor"]["events"] == 60 and 0 < results["floor"]["ceiling_vs_verify_bound"] < 1
    assert not list(tmp_path.iterdir()), "the throwaway cluster is removed"
    cluster.print_single(results)
    printed = capsys.readouterr().out
    assert "  vs verify bound" in printed and "  ceiling of the batch path" in printed
    assert "  consensus task per input, ms" in printed and "  durable writes, ms" in printed


def test_the_presigned_load_is_cut_into_consecutive_parts() -> None:
    items = list(range(10))
    assert cluster.consecutive(items, 3, 0, 5, 2) == [[0, 1, 2], [], [3, 4, 5, 6, 7], [8, 9]]
    with pytest.raises(AssertionError):
        cluster.consecutive(items, 3, 3)
