"""The governance proposals a node holds, as its HTTP API reports them (bounded)."""

from __future__ import annotations

from itertools import islice
from typing import Any

from ledger import codec
from ledger.events import to_json_value
from ledger.rules import PROPOSAL
from ledger.store import Store

MAX_PROPOSALS_LISTED = 1_000


def proposals(store: Store, status: str = "open") -> dict[str, Any]:
    """Proposals with `status` ("open", "decided" or "all"), each with its approved power
    against the set in force at the next height; at most `MAX_PROPOSALS_LISTED` scanned."""
    height = store.height + 1
    validators = store.rules.validators_at(store.state(), height)
    listed = []
    scanned = 0
    for key, raw in islice(store.items(PROPOSAL), MAX_PROPOSALS_LISTED + 1):
        scanned += 1
        if scanned > MAX_PROPOSALS_LISTED:
            break
        doc = codec.decode_trusted(raw)
        if status != "all" and doc["status"] != status:
            continue
        item: dict[str, Any] = {"id": key[len(PROPOSAL) :].hex(), **to_json_value(doc)}
        item["approved_power"] = validators.power_of(frozenset(doc["approvals"]))
        listed.append(item)
    listed.sort(key=lambda item: (item["height"], item["id"]))
    return {
        "height": height,
        "total_power": validators.total_power,
        "proposals": listed,
        "truncated": scanned > MAX_PROPOSALS_LISTED,
    }
