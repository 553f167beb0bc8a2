"""Clients of a node, for the CLI, the operations tools and the benchmark.

- `http`: `NodeClient` (blocking) and `AsyncNodeClient` (asyncio) over the public API, with
  `ClientError` / `NotFound` built from the node's problem documents.
- `tls`: what an `https://` node is verified against (a CA bundle, `SSL_CERT_FILE`), and how
  a node pins its peers' certificates to the node keys in genesis.
"""

from node.client.http import AsyncNodeClient, ClientError, NodeClient, NotFound

__all__ = ["AsyncNodeClient", "ClientError", "NodeClient", "NotFound"]
