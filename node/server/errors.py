"""Refusals of the node that are not ledger errors, as a typed family.

The daemon raises these (and `ledger.errors.LedgerError`s); only `node.server.http` knows
which HTTP status each one becomes.
"""

from __future__ import annotations


class NodeError(Exception):
    """A node-level refusal: the request was fine, the node cannot serve it now or at all."""


class MempoolFull(NodeError):
    """No room for more pending events; the client should retry later."""


class NotCaughtUp(NodeError):
    """The node is behind its peers and does not accept submissions until it catches up."""


class NotFound(NodeError):
    """The node does not know the requested thing."""


class CommitTimeout(NodeError):
    """An event was admitted but not committed in time; it may still commit."""


class ConsensusStopped(NodeError):
    """The node's consensus task has stopped; it no longer follows the chain."""


class NotReady(NodeError):
    """The node runs but is not caught up and voting yet (`/readyz`)."""


class TooManyWaiters(NodeError):
    """Too many clients already wait for commits on this node; retry later."""


class PeerUnauthorized(NodeError):
    """A request on the peer protocol that does not prove a configured peer (§15)."""


class PeerTooMany(NodeError):
    """A peer batch carrying more items than the protocol allows."""


class Busy(NodeError):
    """The node already serves as many snapshot or backup streams as it allows."""
