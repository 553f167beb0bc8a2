"""The benchmarks behind `scripts/bench`; they print figures and never gate tests.

- `ledger`: `scripts/bench ledger`, appends, proofs and provenance queries at 10^4..10^6
  events in one process; also the command-line parser of `scripts/bench`.
- `cluster`: `scripts/bench cluster`, a local 4-validator cluster under load, with this
  machine's bounds (ECDSA verifies, LevelDB synced batches, HTTP requests) in the same run.
"""
