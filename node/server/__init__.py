"""The daemon: everything that runs inside a node process.

- `run`: serve one node (public and peer listeners) under uvicorn until it is told to stop;
  `__main__`: `python -m node.server --home DIR`.
- `service`: `NodeService`, one replica with its network, block sync and consensus task.
- `replica`: the deterministic machinery the service and the simulator both assemble.
- `driver`: carries the consensus core's outputs into effects; commit waiters.
- `executor`: `BlockExecutor`, block building, validation and commit (consensus's BlockSource).
- `admission`: what an event passes before the mempool; the signature cache.
- `mempool`: pending events and the state they lead to.
- `inbox`: the bounded consensus input queue (control first, peers round-robin).
- `sync`: block sync from peers, believing heights only as far as verified commits prove.
- `p2p`: outbound peer links, their requests signed by `peer_auth`.
- `peer_auth`: signing and checking peer requests (strangers refused in O(1)).
- `tls`: HTTPS on both listeners (TLS 1.3), the plain-HTTP warning, the trust in peers.
- `evidence`: equivocation evidence, bounded and persisted in the home.
- `readiness`: what `/readyz` judges: caught up and voting.
- `signer_file`: the validator signer's crash-safe state file.
- `metrics`: Prometheus metrics.
- `errors`: the node's refusals as a typed family (no HTTP here).
- `http/`: the HTTP surface, the only place that maps errors to statuses.
"""
