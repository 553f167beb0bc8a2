"""`scripts/bench scale`: the work one participant can cause, as the chain grows.

Issue 11 asks that one participant cannot make each event cost more as it piles up events
about one thing. This bench builds, in one process on a real store:

- `--grants` grants (default 50,000) from one owner to one grantee on one dataset, in blocks,
  then `use` events that name no grant (each judged by the newest grants of the pair only);
- `--attests` attestations (default 100,000) on that dataset by another participant;

and prints the execution time per event of the first and the last blocks of each kind (flat
means the ratio stays near 1), and the time to build each page of the dataset's paged
provenance bundle (the work of one `GET /v1/datasets/{hash}/provenance?after=` request).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ledger import provenance
from ledger.crypto import PrivateKey
from ledger.events import Attest, EventBody, Grant, Register, SignedEvent, Use, sign_event
from ledger.store import Store
from node.bench.ledger import EVENT_TIME, fill, make_genesis

BLOCK_EVENTS = 1_000
SAMPLE_BLOCKS = 5


def _signed(key: PrivateKey, body: Callable[[dict[str, Any]], EventBody]) -> SignedEvent:
    common = {
        "chain": "bench",
        "actor": key.public_key,
        "time": EVENT_TIME,
        "nonce": os.urandom(16),
    }
    return sign_event(key, body(common))


def _per_event_ms(
    store: Store, keys: Sequence[PrivateKey], blocks: list[list[SignedEvent]]
) -> float:
    """Mean execution time per event over `blocks` (appended, so the chain grows)."""
    spent = [fill(store, keys, block, len(block))["execute_s"] / len(block) for block in blocks]
    return 1000 * statistics.fmean(spent)


def _grow(
    store: Store, keys: Sequence[PrivateKey], events: list[SignedEvent]
) -> tuple[float, float]:
    """Append `events` in blocks; the execution time per event (ms) of the first and last
    SAMPLE_BLOCKS blocks."""
    blocks = [events[i : i + BLOCK_EVENTS] for i in range(0, len(events), BLOCK_EVENTS)]
    sample = max(1, min(SAMPLE_BLOCKS, len(blocks) // 2))
    first = _per_event_ms(store, keys, blocks[:sample])
    for block in blocks[sample:-sample]:
        fill(store, keys, block, len(block))
    last = _per_event_ms(store, keys, blocks[-sample:])
    return first, last


def _pages(store: Store, dataset: bytes) -> list[float]:
    """Seconds to build each page of the dataset's bundle, following `next`."""
    times: list[float] = []
    after, height = -1, None
    while True:
        started = time.perf_counter()
        page = provenance.proof_bundle(store, dataset, after=after, height=height)
        times.append(time.perf_counter() - started)
        assert page is not None
        following = page["page"]["next"]
        if following is None:
            return times
        after, height = following, page["checkpoint"]["header"]["height"]


def bench_scale(
    grants: int, attests: int, say: Callable[[str], None], uses: int = BLOCK_EVENTS * SAMPLE_BLOCKS
) -> dict[str, Any]:
    keys, genesis = make_genesis()
    owner, grantee, witness = (PrivateKey.generate() for _ in range(3))
    dataset = os.urandom(32)
    say(
        f"signing {grants:,} grants, {BLOCK_EVENTS * SAMPLE_BLOCKS * 2:,} uses, {attests:,} attests"
    )
    register = _signed(owner, lambda c: Register(**c, dataset=dataset, meta={}, open=False))
    grant_events = [
        _signed(
            owner,
            lambda c: Grant(
                **c, dataset=dataset, to=grantee.public_key, purposes=("x",), reshare=False
            ),
        )
        for _ in range(grants)
    ]
    use_events = [
        _signed(grantee, lambda c: Use(**c, dataset=dataset, purpose="x", grant=None))
        for _ in range(uses)
    ]
    attest_events = [
        _signed(witness, lambda c: Attest(**c, dataset=dataset, claim="seen", meta={}))
        for _ in range(attests)
    ]
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "scale", genesis) as store:
        fill(store, keys, [register], 1)
        say("appending the grants")
        grant_first, grant_last = _grow(store, keys, grant_events)
        say("appending the uses")
        use_ms = _per_event_ms(
            store,
            keys,
            [use_events[i : i + BLOCK_EVENTS] for i in range(0, len(use_events), BLOCK_EVENTS)],
        )
        say("appending the attestations")
        attest_first, attest_last = _grow(store, keys, attest_events)
        say("paging the provenance bundle")
        pages = _pages(store, dataset)
    return {
        "grants": grants,
        "attests": attests,
        "grant_exec_ms_first": round(grant_first, 4),
        "grant_exec_ms_last": round(grant_last, 4),
        "use_exec_ms_after_grants": round(use_ms, 4),
        "attest_exec_ms_first": round(attest_first, 4),
        "attest_exec_ms_last": round(attest_last, 4),
        "pages": len(pages),
        "page_ms_median": round(1000 * statistics.median(pages), 1),
        "page_ms_max": round(1000 * max(pages), 1),
    }


def print_scale(r: dict[str, Any]) -> None:
    rows = [
        (
            "grant execution per event, first / last blocks (ms)",
            r["grant_exec_ms_first"],
            r["grant_exec_ms_last"],
        ),
        (
            "attest execution per event, first / last blocks (ms)",
            r["attest_exec_ms_first"],
            r["attest_exec_ms_last"],
        ),
    ]
    print(f"one pair with {r['grants']:,} grants, one dataset with {r['attests']:,} attestations")
    for label, first, last in rows:
        print(f"  {label}: {first} / {last}  (ratio {last / first:.2f})")
    print(
        "  use naming no grant, after the grants (ms per event):",
        r["use_exec_ms_after_grants"],
    )
    print(
        f"  provenance bundle: {r['pages']} pages, median {r['page_ms_median']} ms, "
        f"max {r['page_ms_max']} ms per page"
    )
