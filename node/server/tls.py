"""TLS on a node's two listeners, and the trust it puts in its peers (docs/PROTOCOL.md §18).

With `tls_cert` set, both listeners serve HTTPS with that certificate and `tls_key` (by
default the node's identity key), TLS 1.3 only: the node key also signs consensus messages,
and TLS 1.3's signed handshake content (64 spaces first) can never be taken for one of them.
Without it the node serves plain HTTP, and says so in its log for every listener that is not
on loopback.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import uvicorn

from ledger.genesis import Genesis
from node.client.tls import PeerTrust
from node.config import NodeSettings, plain_http_warnings

SERVER_TLS_VERSION = ssl.TLSVersion.TLSv1_3

log = logging.getLogger("provledger.node")


class TlsConfig(uvicorn.Config):
    """uvicorn's configuration, whose TLS context (if any) accepts TLS 1.3 only."""

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            self.ssl.minimum_version = SERVER_TLS_VERSION


def ssl_options(settings: NodeSettings) -> dict[str, Any]:
    """The uvicorn options that make a listener serve the node's certificate (or none)."""
    if not settings.tls:
        return {}
    return {"ssl_certfile": str(settings.tls_cert_path), "ssl_keyfile": str(settings.tls_key_path)}


def check_server_tls(settings: NodeSettings) -> None:
    """Load the certificate and key once before serving, so that a bad pair stops the node
    with a clear message instead of a traceback from inside the server."""
    if not settings.tls:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(settings.tls_cert_path), str(settings.tls_key_path))
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(
            f"{settings.name}: cannot serve TLS with {settings.tls_cert_path} and "
            f"{settings.tls_key_path}: {exc}"
        ) from exc


def warn_plain_http(settings: NodeSettings) -> None:
    for warning in plain_http_warnings(settings):
        log.warning("%s", warning)


def peer_trust(settings: NodeSettings, genesis: Genesis) -> PeerTrust:
    """How this node verifies `https://` peers: its CA bundle, and genesis's node keys."""
    return PeerTrust.from_genesis(settings.tls_ca_path, genesis.validators.validators)
