"""Runs one node in the foreground: the node service's app under uvicorn, with a pid file.

Two listeners serve the one app (docs/PROTOCOL.md §15): the public API on `host:port`, and
the peer protocol on `p2p_listen`, each its own uvicorn server with its own concurrency limit,
so a flood of one never starves the other. Both close connections whose request headers do
not arrive within `header_timeout_s` (slow-loris), and idle keep-alive connections after a few
seconds; the body guard bounds the time a body may take. The peer listener is bound before
anything starts, and stopped before the node service stops.

The process holds the home's lock (`node.homelock`) for its whole life: a second daemon on
the same home is refused, and the launcher knows which process runs a home from the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from collections.abc import Iterator

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from node import homelock
from node.config import NodeSettings
from node.server.http import create_app
from node.server.service import NodeService
from node.server.tls import TlsConfig, check_server_tls, ssl_options, warn_plain_http

# A node allocates a few dozen short-lived, acyclic objects per event (freed by reference
# counting), so the cycle collector's default of a pass every 700 allocations mostly walks
# live objects for nothing; measured on batch admission it cost about 3.5% of the CPU.
YOUNG_COLLECTION_THRESHOLD = 50_000
KEEP_ALIVE_S = 5
GRACEFUL_SHUTDOWN_S = 5

log = logging.getLogger("provledger.node")


def tune_garbage_collector() -> None:
    """Collect cycles less often, and leave the objects of start-up (modules, the app, its
    routes and schemas) out of every future collection."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def header_timeout_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol, closing a connection whose request line and headers are not
    complete `seconds` after the connection opened or the request began."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


class PeerServer(uvicorn.Server):
    """The peer listener's server: the public server owns the signals and the lifespan."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_peer_socket(settings: NodeSettings) -> socket.socket:
    """Bind the peer listener now, so that a busy port stops the node before it starts."""
    host, port = settings.p2p_address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(
            f"{settings.name}: cannot listen for peers on {host}:{port}: {exc}"
        ) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def server_config(settings: NodeSettings, app: object, *, peer: bool) -> uvicorn.Config:
    """The uvicorn configuration of one listener."""
    host, port = settings.p2p_address if peer else (settings.host, settings.port)
    return TlsConfig(  # HTTPS with the node's certificate when configured (PROTOCOL §18)
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        lifespan="off" if peer else "on",
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # the node reads no client address: no X-Forwarded-* layer
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=settings.max_peer_requests if peer else settings.max_public_requests,
        http=header_timeout_protocol(settings.header_timeout_s),
        **ssl_options(settings),
    )


async def serve(
    service: NodeService, public: uvicorn.Server, peer: PeerServer, sock: socket.socket
) -> None:
    """Run both listeners; the peer listener stops first when the node stops."""
    peer_task = asyncio.create_task(peer.serve(sockets=[sock]), name="peer listener")

    async def stop_peer_listener() -> None:
        peer.should_exit = True
        with contextlib.suppress(Exception):
            await peer_task

    service.before_stop = stop_peer_listener
    try:
        await public.serve()
    finally:
        peer.should_exit = True
        with contextlib.suppress(Exception):
            await peer_task


def run(settings: NodeSettings) -> None:
    """Serve the node until SIGINT/SIGTERM; the pid file lives as long as the process."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {settings.name} %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    check_server_tls(settings)
    warn_plain_http(settings)
    try:
        homelock.acquire(settings.home)  # held until the process exits
    except homelock.HomeLocked as exc:
        raise SystemExit(f"{settings.name}: {exc}") from exc
    settings.pid_path.write_text(f"{os.getpid()}\n")
    failures: list[BaseException] = []
    public: uvicorn.Server | None = None

    def stop_on_fatal(exc: BaseException) -> None:
        failures.append(exc)
        if public is not None:
            public.should_exit = True

    try:
        sock = bind_peer_socket(settings)
        service = NodeService(settings)
        service.on_fatal = stop_on_fatal
        app = create_app(service)
        public = uvicorn.Server(server_config(settings, app, peer=False))
        peer = PeerServer(server_config(settings, app, peer=True))
        tune_garbage_collector()
        # uvloop (uvicorn's "auto" loop) when installed, as `uvicorn.run` would pick it.
        with asyncio.Runner(loop_factory=public.config.get_loop_factory()) as runner:
            runner.run(serve(service, public, peer, sock))
        if failures:
            raise SystemExit(f"{settings.name} stopped: its consensus failed: {failures[0]!r}")
    finally:
        try:
            if settings.pid_path.read_text().strip() == str(os.getpid()):
                settings.pid_path.unlink()
        except OSError:
            pass
