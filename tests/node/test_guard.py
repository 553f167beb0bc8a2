"""The body guard's own bounds, in process: a body that does not arrive in time is refused
with 408 and the request is still timed; the request series the metrics keep looked up are
bounded."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException
from starlette.types import Message, Receive, Scope, Send

from node.server import metrics as metrics_module
from node.server.http.guard import BodyGuard
from node.server.metrics import Metrics

BODY_TIMEOUT_S = 0.05


def post_scope() -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/events",
        "headers": [(b"content-length", b"3")],
        "server": ("127.0.0.1", 1),
    }


async def read_body(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 204, "headers": []})


async def no_send(message: Message) -> None:
    return None


def request_count(metrics: Metrics, route: str, method: str) -> float:
    value = metrics.registry.get_sample_value(
        "provledger_http_requests_total", {"route": route, "method": method}
    )
    return 0.0 if value is None else value


def test_a_body_that_never_arrives_is_refused_with_408_and_counted() -> None:
    metrics = Metrics()
    guard = BodyGuard(read_body, metrics, 1 << 10, 1 << 10, body_timeout_s=BODY_TIMEOUT_S)

    async def never() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with pytest.raises(HTTPException) as refused:
        # A guard that never timed out would fail here (TimeoutError), not hang.
        asyncio.run(asyncio.wait_for(guard(post_scope(), never, no_send), 5))
    assert refused.value.status_code == 408
    assert "0.05 s" in str(refused.value.detail)
    assert request_count(metrics, "unmatched", "POST") == 1.0


def test_a_body_in_time_passes_the_deadline() -> None:
    # A late body well inside a generous deadline: a loaded test machine may stall the loop
    # for tens of milliseconds, which must not turn "in time" into a timeout.
    metrics = Metrics()
    guard = BodyGuard(read_body, metrics, 1 << 10, 1 << 10, body_timeout_s=100 * BODY_TIMEOUT_S)
    sent: list[Message] = []

    async def late_but_in_time() -> Message:
        await asyncio.sleep(BODY_TIMEOUT_S / 5)
        return {"type": "http.request", "body": b"abc", "more_body": False}

    async def record(message: Message) -> None:
        sent.append(message)

    asyncio.run(guard(post_scope(), late_but_in_time, record))
    assert sent[0]["status"] == 204


def test_request_series_are_remembered_up_to_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_REQUEST_SERIES", 3)
    metrics = Metrics()
    for index in range(5):
        metrics.observe_request(f"/route/{index}", "GET", 0.001)
        metrics.observe_request(f"/route/{index}", "GET", 0.001)
    # The first three pairs are the ones kept; the later ones are looked up each time.
    assert set(metrics._request_series) == {(f"/route/{i}", "GET") for i in range(3)}
    # Past the bound a request is still counted, only not remembered.
    assert request_count(metrics, "/route/4", "GET") == 2.0
    assert request_count(metrics, "/route/0", "GET") == 2.0


def test_request_series_bound_is_pinned() -> None:
    assert metrics_module.MAX_REQUEST_SERIES == 1024
