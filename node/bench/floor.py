"""The floor under the cluster's CPU per batched event: the pure core's own work for one
event on one validator, measured in this process on a fresh store.

A validator does, for every event of a batch, whatever the network around it: decode the
envelope, check its signature, apply the rules at admission (against the committed state
and the events pending before it), check the proposal's events against its header, execute
the block, and append it. `ledger_floor` times exactly those calls of `ledger/` (CPU time,
phase by phase, register events in blocks) and nothing else: no HTTP, no consensus
messages, no gossip, no mempool bookkeeping (that is the daemon's, measured only in the
cluster's figure).

Its use is the ceiling it sets. The batch path's share of the signature bound is at most
`signature / total` of this floor: that is the share with every node's CPU spent on the
core and on nothing else. The cluster's CPU per event per node, beside it, says how much
the rest of the node adds. Both together give the core's budget (`core_budget`): what the
core's work besides the signature may cost for the batch path to reach `BATCH_TARGET` with
the rest of the node as it was measured in the same run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any, TypeVar

from ledger import events
from ledger.blocks import Block
from ledger.crypto import PrivateKey
from ledger.rules import BlockContext
from ledger.store import Execution, Store
from node.bench.ledger import CHAIN_ID, EVENT_TIME, bench_register, make_genesis, sign_commit

FLOOR_EVENTS = 8_000
FLOOR_BLOCK_EVENTS = 2_000
"""About the blocks the batch run makes on two cores (2,000-3,000 events)."""
FLOOR_SIGNERS = 8
BATCH_TARGET = 0.50
"""Issue 16's target for the batch path: this share of the verify bound."""
CALLS_FIGURE = "c_calls_ms_per_event"
"""The floor's entry for the core's calls into C alone (`node.bench.calls`), when measured."""
PHASES = ("decode", "signature", "admission_rules", "execution", "append")

T = TypeVar("T")


@dataclass
class _Clock:
    """CPU seconds spent per phase."""

    spent: dict[str, float]

    def run(self, phase: str, work: Callable[[], T]) -> T:
        started = time.process_time()
        result = work()
        self.spent[phase] += time.process_time() - started
        return result


def register_envelopes(count: int) -> list[bytes]:
    """`count` signed register envelopes by `FLOOR_SIGNERS` keys, each of a new dataset."""
    keys = [PrivateKey.generate() for _ in range(FLOOR_SIGNERS)]
    return [
        bench_register(keys[i % FLOOR_SIGNERS], CHAIN_ID, EVENT_TIME, f"floor dataset {i}").envelope
        for i in range(count)
    ]


def _check_signatures(decoded: Sequence[events.SignedEvent]) -> None:
    for event in decoded:
        event.verify_signature()


def _admit(store: Store, decoded: Sequence[events.SignedEvent], time_ms: int) -> None:
    """The rules at admission, as a mempool applies them: each event in a child of the
    pending overlay, merged when it passes."""
    pending = store.state()
    for index, event in enumerate(decoded):
        draft = pending.child()
        ctx = BlockContext(store.height + 1, time_ms, store.tree_size + index)
        store.rules.apply_to_draft(draft, event, ctx)
        draft.merge_into_parent()


class FloorError(RuntimeError):
    """The core refused what the floor fed it: the figure would not be the work it names."""


def _commit_block(
    store: Store,
    keys: Sequence[PrivateKey],
    block_events: Sequence[events.SignedEvent],
    clock: _Clock,
) -> None:
    """A proposal's events checked against its header, the block executed and appended.
    The proposer's own execution, which makes the header, is not timed: a validator pays
    one execution per block, the proposer's or its own."""
    height = store.height + 1
    built = store.execute(block_events, height, EVENT_TIME + height)
    if built.rejected:
        raise FloorError(f"the core rejected a floor event: {built.rejected[0][1]}")
    validators = store.genesis.validators.hash()
    header = built.header(CHAIN_ID, store.head_hash, keys[0].public_key, validators)
    block = Block(header, tuple(e.envelope for e in built.accepted))
    commit = sign_commit(keys, height, header.block_hash)

    def validate() -> Execution:
        if not block.events_match_header():
            raise FloorError("a floor block's events do not match its header")
        execution = store.execute(block_events, height, header.time)
        if not execution.matches(header):
            raise FloorError("a floor block re-executed to another header")
        return execution

    execution = clock.run("execution", validate)
    clock.run("append", lambda: store.append_block(block, commit, execution))


def _one_block(
    store: Store, keys: Sequence[PrivateKey], envelopes: Sequence[bytes], clock: _Clock
) -> None:
    """Admit `envelopes` as one batch, then commit them as one block."""
    decoded = clock.run(
        "decode",
        lambda: [events.decode_envelope(e, chain_id=CHAIN_ID, verify=False) for e in envelopes],
    )
    clock.run("signature", lambda: _check_signatures(decoded))
    clock.run("admission_rules", lambda: _admit(store, decoded, EVENT_TIME + 1))
    _commit_block(store, keys, decoded, clock)


def ledger_floor(
    events_total: int = FLOOR_EVENTS, block_events: int = FLOOR_BLOCK_EVENTS
) -> dict[str, Any]:
    """CPU ms per event of each phase, their total, and the ceiling the signature's share
    of it sets on the batch path (a fraction of the verify bound)."""
    keys, genesis = make_genesis()
    envelopes = register_envelopes(events_total)
    clock = _Clock(dict.fromkeys(PHASES, 0.0))
    with tempfile.TemporaryDirectory() as tmp, Store(tmp, genesis) as store:
        for start in range(0, events_total, block_events):
            _one_block(store, keys, envelopes[start : start + block_events], clock)
        if store.tree_size != events_total:
            raise FloorError(f"{store.tree_size} of {events_total} floor events on the chain")
    per_event = {phase: 1000 * spent / events_total for phase, spent in clock.spent.items()}
    total = sum(per_event.values())
    return {
        "events": events_total,
        "block_events": block_events,
        "ms_per_event": {phase: round(ms, 4) for phase, ms in per_event.items()},
        "total_ms": round(total, 4),
        "ceiling_vs_verify_bound": round(per_event["signature"] / total, 3),
    }


def over_floor(floor: dict[str, Any], cpu_ms_per_event_per_node: Sequence[float]) -> float:
    """How much more CPU per event the cluster's nodes spent than the floor (a fraction)."""
    return round(fmean(cpu_ms_per_event_per_node) / floor["total_ms"] - 1, 3)


@dataclass(frozen=True)
class CoreBudget:
    """What the batch path's share could be with another core, the rest as measured: each
    node's CPU per event is the signature, the core's other work, and the cluster's CPU over
    the floor (HTTP, gossip, consensus, mempool, kernel; over a long run also what a longer
    chain adds, the floor's chain being short)."""

    rest_ms: float
    """The cluster's CPU per event per node beyond the floor (never below 0)."""
    share_with_free_core: float
    """The share if the core's work besides the signature cost nothing."""
    core_ms: float
    """The core's work besides the signature, now."""
    budget_ms: float
    """What that work may cost for `BATCH_TARGET` (negative: out of reach at any cost)."""
    calls_ms: float | None
    """The core's calls into C alone (`node.bench.calls`), when measured."""


def core_budget(floor: dict[str, Any], cpu_ms_per_event_per_node: Sequence[float]) -> CoreBudget:
    """The share is `signature / node CPU`, as the ceiling's is `signature / floor`."""
    signature = floor["ms_per_event"]["signature"]
    rest = max(0.0, fmean(cpu_ms_per_event_per_node) - floor["total_ms"])
    return CoreBudget(
        rest_ms=round(rest, 5),
        share_with_free_core=round(signature / (signature + rest), 4),
        core_ms=round(floor["total_ms"] - signature, 5),
        budget_ms=round(signature / BATCH_TARGET - signature - rest, 5),
        calls_ms=floor.get(CALLS_FIGURE),
    )


def _calls_row(budget: CoreBudget) -> list[tuple[str, str]]:
    calls = budget.calls_ms
    if calls is None:
        return []
    if calls > budget.budget_ms:
        verdict = "over the budget: no core in Python fits it"
    else:
        verdict = (
            f"{budget.budget_ms - calls:.4f} ms left for all the Python around them "
            f"(now {budget.core_ms - calls:.4f})"
        )
    return [("  the core's C calls alone", f"{calls:.4f} ms per event, {verdict}")]


def _budget_rows(budget: CoreBudget) -> list[tuple[str, str]]:
    if budget.budget_ms <= 0:
        verdict = "none: the cluster's CPU over the floor alone is over it"
    else:
        verdict = (
            f"{budget.budget_ms:.4f} ms per event, now {budget.core_ms:.4f} "
            f"({budget.core_ms / budget.budget_ms:.1f}x it)"
        )
    return [
        (
            "  share with the core's other work free",
            f"{budget.share_with_free_core:.1%} (signature / (signature + the cluster's CPU "
            f"over the floor, {budget.rest_ms:.4f} ms))",
        ),
        (f"  core budget for {BATCH_TARGET:.0%}", f"{verdict}: decode, rules, map, append"),
        *_calls_row(budget),
    ]


def floor_rows(
    floor: dict[str, Any], cpu_ms_per_event_per_node: Sequence[float]
) -> list[tuple[str, str]]:
    """The floor, its ceiling, the cluster's CPU over it and what the core may cost for the
    batch target, as printed rows."""
    phases = ", ".join(
        f"{phase.replace('_', ' ')} {ms:.4f}" for phase, ms in floor["ms_per_event"].items()
    )
    return [
        (
            "ledger work per event, one process",
            f"{floor['total_ms']:.4f} ms CPU ({phases})",
        ),
        (
            "  ceiling of the batch path",
            f"{floor['ceiling_vs_verify_bound']:.1%} of the verify bound "
            "(signature / ledger work: every node's CPU on the core, nothing else)",
        ),
        (
            "  batch CPU per event over it",
            f"{over_floor(floor, cpu_ms_per_event_per_node):+.0%} (HTTP, gossip, consensus, "
            "mempool, kernel)",
        ),
        *_budget_rows(core_budget(floor, cpu_ms_per_event_per_node)),
    ]
