"""The ledger core: wire formats, verification, the circulation rules and the chain store.

No network and no clock: callers pass the time (and event nonces) in. Modules, bottom up:

- `errors`: the exception hierarchy, one root (`LedgerError`) and typed families of failure.
- `codec`: canonical msgpack, the one byte form of every signed or hashed structure.
- `crypto`: SHA-256, ECDSA P-256 keys and low-S 64-byte signatures, PEM private-key files.
- `merkle`: RFC 9162 Merkle hashing and inclusion/consistency proofs, with no storage.
- `merkle_log`: the append-only Merkle log over perfect-node hashes its owner persists (tiles).
- `events`: signed data-circulation events, the envelope and the nine event types.
- `genesis`: the genesis document (chain id, validators, registrars, admission), the trust root.
- `blocks`: validator sets, block headers, votes, commits and checkpoint verification.
- `state`: copy-on-write overlays of the rules state, and the committed-state read cache.
- `rules`: the circulation rules, a deterministic state machine that applies events.
- `store`: the LevelDB-backed chain, writing each block in one atomic batch, and its queries.
- `provenance`: a dataset's history and lineage, and proof bundles checkable offline.
"""
