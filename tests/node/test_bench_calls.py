"""The core's calls into C, timed alone (`node.bench.calls`): behaviour, never timings."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgpack

from ledger.store import Store
from node.bench import calls
from node.bench.floor import register_envelopes


def test_every_event_writes_its_five_records_in_its_block() -> None:
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
        assert stored[b"l" + index.to_bytes(8, "big")] == envelope
        dataset = msgpack.unpackb(msgpack.unpackb(envelope)["body"])["dataset"]
        record = stored[b"sd" + dataset]
        assert record is not None
        assert msgpack.unpackb(record)["meta"] == {"title": f"floor dataset {index}"}


def test_the_figure_counts_every_event() -> None:
    result = calls.c_calls_floor(events_total=40, block_events=16)
    assert (result["events"], result["records_written"]) == (40, 200)
    assert result["ms_per_event"] > 0
