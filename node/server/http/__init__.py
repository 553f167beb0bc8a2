"""The HTTP surface of a node; the only package that knows FastAPI and HTTP statuses.

- `app`: `create_app(service)`, the app assembled from the routers below and the guard.
- `public`: the public API under /v1 (plus /healthz and /metrics).
- `peer`: the peer protocol under /p2p/.
- `guard`: the body-size and timing middleware.
- `encoding`: JSON and msgpack bodies, request models.
- `problems`: errors to RFC 9457 problem documents with their statuses.
"""

from node.server.http.app import create_app

__all__ = ["create_app"]
