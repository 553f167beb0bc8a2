"""`create_app(service)`: the FastAPI app of one node, from its routers and middleware.

The app starts the node service with its lifespan and stops it after; routes find it at
`app.state.service`. The body guard runs in front of every route as middleware, and behind
it `fast_peer.FastPeer` answers the peer protocol's POSTs and `fast_events.FastSubmit` the
common `POST /v1/events` without FastAPI's routing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from node.server.http import explorer, lineage, peer, public
from node.server.http.fast_events import FastSubmit
from node.server.http.fast_peer import FastPeer
from node.server.http.guard import BodyGuard
from node.server.http.problems import install_handlers
from node.server.metrics import Metrics
from node.server.service import NodeService
from node.wire import MAX_P2P_BODY

NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(service: NodeService) -> FastAPI:
    """The app serving `service`'s public API and peer protocol."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="provledger node",
        version="1",
        description="Signed data-circulation events, agreed by BFT consensus, provable offline.",
        lifespan=lifespan,
        # The node's metrics are its own (`/metrics`); FastAPI's OpenTelemetry hooks would
        # only ask, on every request, whether a provider was configured.
        telemetry=NO_TELEMETRY,
    )
    metrics = Metrics()
    metrics.bind(service)
    app.state.service = service
    app.state.metrics = metrics
    install_handlers(app)
    app.include_router(public.router)
    app.include_router(peer.router)
    app.include_router(lineage.router)
    app.include_router(explorer.router)
    # Inside the guard: the hot routes' common requests skip FastAPI's machinery.
    app.add_middleware(FastSubmit)
    app.add_middleware(FastPeer)
    app.add_middleware(
        BodyGuard,
        metrics=metrics,
        public_limit=service.settings.max_body_bytes,
        peer_limit=MAX_P2P_BODY,
        peer_port=service.settings.p2p_address[1],
        authenticator=service.peer_auth,
        body_timeout_s=service.settings.body_timeout_s,
    )
    return app
