"""Everything outside the pure cores, sorted by audience.

- `server/`: the daemon — one node process (service, replica, consensus driver, executor,
  admission, mempool, block sync, peer links, signer file, metrics) and `server/http/`, its
  HTTP surface (the only place that knows FastAPI and HTTP statuses).
- `client/`: the HTTP clients of a node (blocking and asyncio), for people and scripts.
- `cli/`: the `provledger` command line, one module per command group.
- `ops/`: local operations — node homes, node processes, local clusters.
- `lineage/`: a verified story as W3C PROV and OpenLineage, and OpenLineage ingest.
- `bench/`: the benchmarks behind `scripts/bench`.
- `config`: a node's settings and home layout; `homelock`: the lock a daemon holds on its
  home; `clock`: the one wall clock; `wire`: constants of the HTTP wire shared by server and
  clients.

Import direction (enforced by import-linter, see pyproject.toml): client, cli, ops and bench
never import `server`; `server` builds on `consensus` and `ledger`.
"""
