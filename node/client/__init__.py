"""Clients of a node, for the CLI, the operations tools and the benchmark.

- `http`: `NodeClient` (blocking) and `AsyncNodeClient` (asyncio) over the public API, with
  `ClientError` / `NotFound` built from the node's problem documents.
"""

from node.client.http import AsyncNodeClient, ClientError, NodeClient, NotFound

__all__ = ["AsyncNodeClient", "ClientError", "NodeClient", "NotFound"]
