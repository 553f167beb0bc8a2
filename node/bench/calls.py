"""The calls into C under the core's work for one batched register event, timed with no
other Python around them: what the core would cost one validator if every line of it were
free except those calls (made through the core's own one-line helpers where it has them).

`node.bench.floor` times the core as it is and `floor.core_budget` says what the core's
work besides the signature may cost for the batch target. This says whether any core written
in Python could come within that budget: it makes, per event, only calls that the core
makes for a register event (the core makes more of them, and Python between them), in a
plain loop on a real store opened as a node opens its own:

- decoding: unpack the envelope and the body, pack each again to check its canonical form,
  hash the body for the event id;
- admission: read the event's key and its dataset's key from LevelDB (both absent), encode
  the dataset record and the event's location;
- execution: the same two reads from a dict (the node's read cache answers them), the
  dataset record encoded twice (applied, then its history extended) and the location once,
  the dataset's and the signer's history hashes, the event's leaf hash;
- the Merkle log: one node hash (a log of n leaves has n - 1 of them);
- the state map: the key's path, value and leaf hashes and one node hash (a block of k new
  keys changes at least the k - 1 nodes joining them), no tile encoded or written;
- the block: five records written (leaf, actor index, dataset index, event index, dataset
  record), one synced batch per block.

No signature: it is the budget's other side.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack

from ledger import codec, merkle, rules, smt
from ledger.store import ACTOR_INDEX, DATASET_INDEX, LEAF, LevelDB, Store
from node.bench.floor import (
    CALLS_FIGURE,
    FLOOR_BLOCK_EVENTS,
    FLOOR_EVENTS,
    ledger_floor,
    register_envelopes,
)

_sha256 = hashlib.sha256


def _event_calls(
    envelope: bytes, leaf_index: int, db: LevelDB, cache: dict[bytes, bytes | None]
) -> tuple[tuple[bytes, bytes], ...]:
    """One event's calls; returns the records its block writes, as (key, value) pairs."""
    outer = msgpack.unpackb(envelope, raw=False)
    msgpack.packb(outer, use_bin_type=True)
    body = outer["body"]
    doc = msgpack.unpackb(body, raw=False)
    msgpack.packb(doc, use_bin_type=True)
    event_id = _sha256(body).digest()
    event_key, dataset_key = rules.EVENT + event_id, rules.DATASET + doc["dataset"]
    cache[event_key] = db.get(event_key)
    cache[dataset_key] = db.get(dataset_key)
    record = {"owner": doc["actor"], "origin": event_id, "meta": doc["meta"]}
    codec.encode_trusted(record)
    location = rules.encode_location(1, leaf_index)
    cache.get(event_key)
    cache.get(dataset_key)
    codec.encode_trusted(record)
    stored = codec.encode_trusted(record)
    rules.encode_location(1, leaf_index)
    leaf = merkle.leaf_hash(envelope)
    rules.next_history(rules.EMPTY_HISTORY, leaf_index, leaf)
    rules.next_history(rules.EMPTY_HISTORY, leaf_index, leaf)
    merkle.node_hash(leaf, leaf)
    path = _sha256(dataset_key).digest()  # as smt.update hashes: written out, no helpers
    map_leaf = _sha256(smt.LEAF_PREFIX + path + _sha256(stored).digest()).digest()
    _sha256(smt.NODE_PREFIX + map_leaf + path).digest()
    leaf_key = leaf_index.to_bytes(8, "big")
    return (
        (LEAF + leaf_key, envelope),
        (ACTOR_INDEX + doc["actor"] + leaf_key, b""),
        (DATASET_INDEX + doc["dataset"] + leaf_key, b""),
        (event_key, location),
        (dataset_key, stored),
    )


def _blocks(db: LevelDB, envelopes: Sequence[bytes], block_events: int) -> int:
    """Every envelope's calls, a synced batch per block; returns the records written."""
    written = 0
    for start in range(0, len(envelopes), block_events):
        cache: dict[bytes, bytes | None] = {}
        with db.write_batch(sync=True) as batch:
            for offset, envelope in enumerate(envelopes[start : start + block_events]):
                for key, value in _event_calls(envelope, start + offset, db, cache):
                    batch.put(key, value)
                    written += 1
    return written


def c_calls_floor(
    events_total: int = FLOOR_EVENTS, block_events: int = FLOOR_BLOCK_EVENTS
) -> dict[str, Any]:
    """CPU ms per event of the calls alone, on a fresh store."""
    envelopes = register_envelopes(events_total)
    with tempfile.TemporaryDirectory() as tmp:
        db = Store._open(Path(tmp) / "calls")
        try:
            started = time.process_time()
            written = _blocks(db, envelopes, block_events)
            spent = time.process_time() - started
        finally:
            db.close()
    return {
        "events": events_total,
        "records_written": written,
        "ms_per_event": round(1000 * spent / events_total, 4),
    }


def floor_with_calls(events_total: int = FLOOR_EVENTS) -> dict[str, Any]:
    """`ledger_floor`, with the calls' figure beside its phases for `floor.core_budget`."""
    floor = ledger_floor(events_total)
    floor[CALLS_FIGURE] = c_calls_floor(events_total)["ms_per_event"]
    return floor
