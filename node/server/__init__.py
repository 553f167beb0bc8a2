"""The daemon: everything that runs inside a node process.

- `run`: serve one node under uvicorn until it is told to stop.
- `service`: `NodeService`, one replica with its network, block sync and consensus task.
- `replica`: the deterministic machinery the service and the simulator both assemble.
- `driver`: carries the consensus core's outputs into effects; commit waiters.
- `executor`: `BlockExecutor`, block building, validation and commit (consensus's BlockSource).
- `admission`: what an event passes before the mempool; the signature cache.
- `mempool`: pending events and the state they lead to.
- `sync`: block sync from peers.
- `p2p`: outbound peer links.
- `signer_file`: the validator signer's crash-safe state file.
- `metrics`: Prometheus metrics.
- `errors`: the node's refusals as a typed family (no HTTP here).
- `http/`: the HTTP surface, the only place that maps errors to statuses.
"""
