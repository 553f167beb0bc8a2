"""A verified dataset story in the formats of other lineage tools (docs/PROTOCOL.md §16).

- `prov`: W3C PROV documents (PROV-JSON, PROV-N, PROV-O Turtle) of a `VerifiedStory`.
- `openlineage`: OpenLineage RunEvents of a `VerifiedStory` (export).
- `ingest`: an ASGI app that accepts OpenLineage's HTTP transport and records each completed
  run as signed provledger events (import), talking to a node through `node.client`.

Pure conversion code apart from `ingest`: the node's HTTP routes and the CLI both use it, on a
story that `ledger.provenance.verify_bundle` has already proven.
"""
