"""Constants of the HTTP wire shared by the server, its client and the peer links
(docs/PROTOCOL.md §10): media types and size limits that both sides must agree on."""

from __future__ import annotations

MSGPACK = "application/msgpack"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
# The largest peer message body (a proposal carrying a full block).
MAX_P2P_BODY = 16 * 1024 * 1024
# The most envelopes one public batch submission may carry.
MAX_PUBLIC_BATCH = 1000
