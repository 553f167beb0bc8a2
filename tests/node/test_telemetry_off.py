"""The node's app leaves FastAPI's OpenTelemetry hooks off: its metrics are its own
(`/metrics`), and the hooks would otherwise look up the global providers on every request."""

from __future__ import annotations

import pytest
from opentelemetry import _logs, metrics, trace

from tests.node.conftest import RunningNode


def test_requests_never_ask_opentelemetry_for_a_provider(
    node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    def asked() -> None:
        raise AssertionError("the app asked OpenTelemetry for a provider")

    monkeypatch.setattr(trace, "get_tracer_provider", asked)
    monkeypatch.setattr(metrics, "get_meter_provider", asked)
    monkeypatch.setattr(_logs, "get_logger_provider", asked)
    assert node.client.get("/healthz").status_code == 200
    assert node.client.get("/v1/status").status_code == 200
