"""The core's calls into C, timed alone (`node.bench.calls`): behaviour, never timings."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgpack

from ledger import events, rules
from ledger.store import ACTOR_INDEX, DATASET_INDEX, LEAF, Store
from node.bench import calls
from node.bench.floor import CALLS_FIGURE, PHASES, register_envelopes


def test_every_event_writes_its_five_records_under_the_stores_own_keys() -> None:
    envelopes = register_envelopes(7)
    with tempfile.TemporaryDirectory() as tmp:
        db = Store._open(Path(tmp) / "calls")
        try:
            assert calls._blocks(db, envelopes, 3) == 35  # blocks of 3, 3 and 1
            keys = list(db.iterator(include_value=False))
            stored = {key: db.get(key) for key in keys}
        finally:
            db.close()
    assert len(stored) == 35
    for index, envelope in enumerate(envelopes):
        leaf_key = index.to_bytes(8, "big")
        body_bytes = msgpack.unpackb(envelope)["body"]
        body = msgpack.unpackb(body_bytes)
        assert stored[LEAF + leaf_key] == envelope
        assert stored[ACTOR_INDEX + body["actor"] + leaf_key] == b""
        assert stored[DATASET_INDEX + body["dataset"] + leaf_key] == b""
        location = stored[rules.event_key(events.event_id_of(body_bytes))]
        assert location == rules.encode_location(1, index)
        record = stored[rules.dataset_key(body["dataset"])]
        assert record is not None
        assert msgpack.unpackb(record)["meta"] == {"title": f"floor dataset {index}"}


def test_the_figure_counts_every_event() -> None:
    result = calls.c_calls_floor(events_total=40, block_events=16)
    assert (result["events"], result["records_written"]) == (40, 200)
    assert result["ms_per_event"] > 0


def test_the_floor_carries_the_calls_figure_beside_its_phases() -> None:
    floor = calls.floor_with_calls(60)
    assert tuple(floor["ms_per_event"]) == PHASES
    assert floor[CALLS_FIGURE] > 0
