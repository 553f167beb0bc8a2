"""Readiness: is this node caught up and, if it is a validator, voting? (`GET /readyz`).

Liveness (`/healthz`) only says the consensus task runs. An orchestrator needs more before it
sends clients to a node (docs/PROTOCOL.md §10.3): a node is ready when

1. its consensus task runs;
2. it is not catching up (no peer proved a height more than `CATCH_UP_LAG` blocks ahead);
3. it has committed a block, and the head block is recent: its time is at most
   `head_age_bound_ms` before the node's clock. A live chain makes a block at least every
   `idle_block_interval_ms`, so the bound is four idle intervals plus the clock drift a
   block's time may have (`MAX_CLOCK_DRIFT_MS`); with idle blocks off (interval 0) a quiet
   chain is normal and this check is skipped;
4. a validator has signed at the head's height or later: it voted for the last block or is
   voting on the next one. A validator that only caught up by block sync is not ready until
   it takes part in a height. "Validator" means a member of the current set: a node holding
   a key the set does not name (a joining organisation's full node, a removed validator) is
   judged as a full node.

`not_ready_reason` is pure: it judges a `ReadinessView`, which `view_of` takes from a service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from node.server.executor import MAX_CLOCK_DRIFT_MS

if TYPE_CHECKING:
    from node.server.service import NodeService

IDLE_INTERVALS_BEFORE_STALE = 4


@dataclass(frozen=True)
class ReadinessView:
    """What readiness is judged on, taken from a node at one instant."""

    consensus_alive: bool
    catching_up: bool
    height: int
    head_time_ms: int
    now_ms: int
    idle_block_interval_ms: int
    validator: bool
    last_signed_height: int | None


def head_age_bound_ms(idle_block_interval_ms: int) -> int:
    """How old the head block may be on a ready node (0: no bound)."""
    if idle_block_interval_ms <= 0:
        return 0
    return IDLE_INTERVALS_BEFORE_STALE * idle_block_interval_ms + MAX_CLOCK_DRIFT_MS


def not_ready_reason(view: ReadinessView) -> str | None:
    """Why the node is not ready, or None when it is."""
    if not view.consensus_alive:
        return "the consensus task has stopped"
    if view.catching_up:
        return f"catching up: at height {view.height}, a peer proved a higher one"
    if view.height == 0:
        return "no block committed yet (are enough validators up?)"
    bound = head_age_bound_ms(view.idle_block_interval_ms)
    age = view.now_ms - view.head_time_ms
    if bound and age > bound:
        return f"the head block (height {view.height}) is {age} ms old, over {bound} ms"
    if view.validator and (view.last_signed_height or 0) < view.height:
        signed = view.last_signed_height
        return f"validator has not voted since height {signed} (head {view.height})"
    return None


def view_of(service: NodeService) -> ReadinessView:
    signer = service.replica.signer
    state = signer.state if signer is not None else None
    return ReadinessView(
        consensus_alive=service.consensus_alive,
        catching_up=service.catching_up,
        height=service.store.height,
        head_time_ms=service.store.head_time,
        now_ms=service.clock(),
        idle_block_interval_ms=service.settings.idle_block_interval_ms,
        validator=signer is not None and service.core.is_validator,
        last_signed_height=state.height if state is not None else None,
    )
