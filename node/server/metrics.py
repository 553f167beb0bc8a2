"""Prometheus metrics of one node: chain height, round, mempool, commits, peers, latencies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from node.server.service import NodeService


class Metrics:
    """A registry per app, so several nodes can live in one process (tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._service: NodeService | None = None
        self.height = Gauge("provledger_height", "Committed height", registry=self.registry)
        self.round = Gauge("provledger_round", "Current consensus round", registry=self.registry)
        self.mempool = Gauge(
            "provledger_mempool_events", "Events waiting in the mempool", registry=self.registry
        )
        self.events = Gauge(
            "provledger_events_committed", "Events in the log", registry=self.registry
        )
        self.dropped = Gauge(
            "provledger_events_dropped",
            "Admitted events later dropped because a block made them invalid",
            registry=self.registry,
        )
        self.evidence = Gauge(
            "provledger_evidence", "Equivocations seen since start", registry=self.registry
        )
        self.peer_up = Gauge(
            "provledger_peer_reachable",
            "1 if the peer answered the last exchange",
            ["peer"],
            registry=self.registry,
        )
        self.requests = Counter(
            "provledger_http_requests", "HTTP requests", ["route", "method"], registry=self.registry
        )
        self.latency = Histogram(
            "provledger_http_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    def bind(self, service: NodeService | None) -> None:
        self._service = service

    def observe_request(self, route: str, method: str, seconds: float) -> None:
        self.requests.labels(route, method).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        service = self._service
        if service is not None:
            self.height.set(service.store.height)
            self.round.set(service.core.round)
            self.mempool.set(len(service.mempool))
            self.events.set(service.store.tree_size)
            self.dropped.set(service.events_dropped)
            self.evidence.set(service.stats.evidence)
            for peer in service.network.peers:
                self.peer_up.labels(peer.url).set(1 if peer.reachable else 0)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
