"""Prometheus metrics of one node: chain height, round, mempool, commits, peers, latencies.

Gauges are read from the service when scraped. The histograms are fed as things happen:
commit latency (a block's time, i.e. its proposal, to its commit here), the store's synced
block write, the interval between block times and the events per block, through the
executor's `CommitObserver` hook; the signer state's fdatasync through
`FileSignerPersistence.on_fsync`; each consensus input's wait in the inbox and the consensus
task's time on it, through the service's `ConsensusObserver` hook. Together they say where
a height's time goes (the anatomy `scripts/bench cluster --single` prints). The dashboard in
docker/k8s/monitoring/ plots these names; tests/deploy checks that they exist.
"""

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

from consensus import core as cc

if TYPE_CHECKING:
    from node.server.service import NodeService

MAX_REQUEST_SERIES = 1024
"""(route, method) pairs whose request series a node keeps looked up."""
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
CONSENSUS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
# Every 25 ms up to 300 ms (a loaded chain's pace), then coarser.
BLOCK_INTERVAL_BUCKETS = (
    0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.275, 0.3,
    0.4, 0.5, 0.75, 1, 2, 5, 10, 30, 60,
)  # fmt: skip
BLOCK_EVENTS_BUCKETS = (0, 1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
CONSENSUS_INPUTS: dict[type, str] = {
    cc.ProposalReceived: "proposal",
    cc.VoteReceived: "vote",
    cc.TimeoutFired: "timeout",
    cc.EventsAvailable: "events",
    cc.CommitReceived: "block_sync",
    cc.Tick: "tick",
    cc.Start: "start",
}
"""The `input` label of each consensus input the inbox carries (any other: "other")."""


class Metrics:
    """A registry per app, so several nodes can live in one process (tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._service: NodeService | None = None
        self._request_series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
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
        self.peer_refused = Gauge(
            "provledger_peer_requests_refused",
            "Peer-protocol requests refused as unauthenticated (401) since start",
            registry=self.registry,
        )
        self.inbox_dropped = Gauge(
            "provledger_consensus_inbox_dropped",
            "Consensus inputs dropped because a peer's lane of the inbox was full",
            registry=self.registry,
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

        self.commit_latency = self._histogram(
            "provledger_commit_latency_seconds",
            "From a block's time (its proposal) to its commit on this node; blocks fetched by "
            "block sync count too",
            (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
        )
        self.store_append = self._histogram(
            "provledger_store_append_seconds",
            "The store's synced write of one block (one LevelDB batch with sync)",
            FSYNC_BUCKETS,
        )
        self.signer_fsync = self._histogram(
            "provledger_signer_fsync_seconds",
            "fdatasync of the signer state file before a signature leaves",
            FSYNC_BUCKETS,
        )
        self.catching_up = Gauge(
            "provledger_catching_up", "1 while the node is behind its peers", registry=self.registry
        )
        self.block_interval = self._histogram(
            "provledger_block_interval_seconds",
            "Between a stored block's time and the time of the block before it",
            BLOCK_INTERVAL_BUCKETS,
        )
        self.block_events = self._histogram(
            "provledger_block_events", "Events in each stored block", BLOCK_EVENTS_BUCKETS
        )
        wait = self._histogram(
            "provledger_consensus_wait_seconds",
            "How long a consensus input waited in the inbox for the consensus task",
            CONSENSUS_BUCKETS,
            "input",
        )
        work = self._histogram(
            "provledger_consensus_work_seconds",
            "The consensus task's time on one input, with all it set off: building or "
            "validating a block, signing (the signer's fdatasync included), storing a block",
            CONSENSUS_BUCKETS,
            "input",
        )
        # One series per label, made now: the label set is fixed, never taken from input.
        self._consensus_series = {
            label: (wait.labels(label), work.labels(label))
            for label in (*CONSENSUS_INPUTS.values(), "other")
        }

    def _histogram(
        self, name: str, documentation: str, buckets: tuple[float, ...], *labels: str
    ) -> Histogram:
        return Histogram(name, documentation, labels, registry=self.registry, buckets=buckets)

    def bind(self, service: NodeService | None) -> None:
        """Read gauges from `service` and receive its commit and fsync timings."""
        if self._service is not None:
            self._service.replica.executor.observer = None
            self._service.signer_file.on_fsync = None
            self._service.consensus_observer = None
        self._service = service
        if service is not None:
            service.replica.executor.observer = self
            service.signer_file.on_fsync = self.signer_fsync.observe
            service.consensus_observer = self

    def block_stored(
        self, append_seconds: float, latency_ms: int, interval_ms: int | None, events: int
    ) -> None:
        """`CommitObserver`: one block was stored (see `BlockExecutor.commit`)."""
        self.store_append.observe(append_seconds)
        self.commit_latency.observe(max(latency_ms, 0) / 1000)
        if interval_ms is not None:
            self.block_interval.observe(max(interval_ms, 0) / 1000)
        self.block_events.observe(events)

    def consensus_input(self, kind: type, waited_ms: int, work_seconds: float) -> None:
        """`ConsensusObserver`: the consensus task took an input of class `kind` after it
        waited `waited_ms` in the inbox, and spent `work_seconds` on it."""
        wait, work = self._consensus_series[CONSENSUS_INPUTS.get(kind, "other")]
        wait.observe(max(waited_ms, 0) / 1000)
        work.observe(work_seconds)

    def observe_request(self, route: str, method: str, seconds: float) -> None:
        counter, histogram = self._request_children(route, method)
        counter.inc()
        histogram.observe(seconds)

    def _request_children(self, route: str, method: str) -> tuple[Counter, Histogram]:
        """The labelled series of one route and method, looked up once (`labels` costs a
        lock and a tuple per call). Routes are the app's templates and methods those the
        HTTP parser knows; past MAX_REQUEST_SERIES pairs nothing more is remembered."""
        children = self._request_series.get((route, method))
        if children is None:
            children = (self.requests.labels(route, method), self.latency.labels(route))
            if len(self._request_series) < MAX_REQUEST_SERIES:
                self._request_series[(route, method)] = children
        return children

    def render(self) -> tuple[bytes, str]:
        service = self._service
        if service is not None:
            self.height.set(service.store.height)
            self.round.set(service.core.round)
            self.mempool.set(len(service.mempool))
            self.events.set(service.store.tree_size)
            self.dropped.set(service.events_dropped)
            self.evidence.set(service.stats.evidence)
            self.catching_up.set(1 if service.catching_up else 0)
            self.peer_refused.set(service.peer_auth.rejected)
            self.inbox_dropped.set(service.inbox.dropped)
            for peer in service.network.peers:
                self.peer_up.labels(peer.url).set(1 if peer.reachable else 0)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
