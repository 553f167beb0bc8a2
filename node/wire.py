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
# The most consensus messages one peer POST may carry (a sender batches at most this many).
MAX_PEER_MESSAGES = 512
# Peer authentication (docs/PROTOCOL.md §15): the request headers, and how far a request's
# time may be from the receiver's clock.
PEER_KEY_HEADER = "x-provledger-peer"
PEER_TIME_HEADER = "x-provledger-time"
PEER_DIGEST_HEADER = "x-provledger-digest"
PEER_SIGNATURE_HEADER = "x-provledger-signature"
PEER_AUTH_WINDOW_MS = 30_000
