"""Bundle pages at their boundaries (ledger/provenance.py, docs/PROTOCOL.md §9): the byte
budget of a page (the first page's state proofs included), the event limit, the page
cursor and checkpoint height parameters, and joining pages."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from ledger import provenance
from ledger.errors import Malformed, VerificationFailed
from tests.ledger.test_completeness import World, build

EVENTS = 9  # the world's dataset has nine events


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build(tmp_path_factory.mktemp("pages") / "chain")
    yield w
    w.store.close()


@pytest.fixture(scope="module")
def whole(world: World) -> dict[str, Any]:
    b = provenance.proof_bundle(world.store, world.d)
    assert b is not None and len(b["events"]) == EVENTS
    return b


def size(entry: Any) -> int:
    return provenance._entry_bytes(entry)


def page(world: World, **kwargs: Any) -> dict[str, Any]:
    doc = provenance.proof_bundle(world.store, world.d, **kwargs)
    assert doc is not None
    return doc


def test_entry_bytes_are_compact_json() -> None:
    assert size({"a": [1, 2]}) == len('{"a":[1,2]}') == 11


def with_grant_proofs(world: World, whole: dict, events: list[dict]) -> int:
    """The bytes events take in a page: each entry, and the state proof of a grant it makes."""
    proofs = {g["key"]: g for g in whole["state"]["grants"]}
    total = 0
    for entry in events:
        total += size(entry)
        if entry["type"] == "grant":
            total += size(proofs[(b"sg" + bytes.fromhex(entry["id"])).hex()])
    return total


def test_the_first_page_budget_counts_its_state_proofs(world: World, whole: dict) -> None:
    state = size({**whole["state"], "grants": []})
    events = whole["events"]
    exact = state + with_grant_proofs(world, whole, events[:2])
    assert [e["id"] for e in page(world, max_bytes=exact)["events"]] == [
        e["id"] for e in events[:2]
    ]
    assert len(page(world, max_bytes=exact - 1)["events"]) == 1
    # without the state proofs' share, the two events alone would fit in fewer bytes
    assert len(page(world, max_bytes=size(events[0]) + size(events[1]))["events"]) == 1
    assert len(page(world, max_bytes=1)["events"]) == 1  # always at least one event


def test_the_first_page_carries_the_proofs_of_its_own_grants_only(
    world: World, whole: dict
) -> None:
    """No page costs more than its own events: grants made on later pages get no proof (their
    status follows from the complete story)."""
    height = whole["checkpoint"]["header"]["height"]
    pages = [page(world, limit=1)]
    while pages[-1]["page"]["next"] is not None:
        pages.append(page(world, after=pages[-1]["page"]["next"], height=height, limit=1))
    assert all("grants" not in p and "state" not in p for p in pages[1:])
    made = [
        (b"sg" + bytes.fromhex(e["id"])).hex() for e in pages[0]["events"] if e["type"] == "grant"
    ]
    assert [g["key"] for g in pages[0]["state"]["grants"]] == made
    joined = provenance.join_pages(pages)
    story = provenance.verify_bundle(joined, world.genesis)
    assert len(story.grants) == 2


def test_a_later_page_budget_counts_only_its_events(world: World, whole: dict) -> None:
    height = whole["checkpoint"]["header"]["height"]
    after = whole["events"][2]["leaf_index"]
    exact = sum(size(e) for e in whole["events"][3:6])
    later = page(world, after=after, height=height, max_bytes=exact)
    assert later["events"] == whole["events"][3:6]
    assert later["page"] == {"after": after, "next": whole["events"][5]["leaf_index"]}
    assert "state" not in later and "lineage" not in later
    assert (
        page(world, after=after, height=height, max_bytes=exact - 1)["events"]
        == (whole["events"][3:5])
    )


@pytest.mark.parametrize(("limit", "count"), [(-5, 1), (0, 1), (1, 1), (8, 8), (9, 9), (50, 9)])
def test_a_page_holds_at_most_limit_events(
    world: World, whole: dict, limit: int, count: int
) -> None:
    doc = page(world, limit=limit)
    assert doc["events"] == whole["events"][:count]
    last = None if count == EVENTS else doc["events"][-1]["leaf_index"]
    assert doc["page"] == {"after": -1, "next": last}


def test_the_first_page_carries_state_and_lineage(world: World, whole: dict) -> None:
    assert set(whole) == {"version", "dataset", "checkpoint", "state", "lineage", "events", "page"}
    assert whole["version"] == 2 and whole["dataset"] == world.d.hex()
    assert whole["lineage"] == {"parents": [], "children": []}
    assert len(whole["state"]["grants"]) == 2


def test_height_parameters(world: World, whole: dict) -> None:
    head = world.store.height
    assert page(world, height=head) == whole  # the first page may name the head
    for bad in (0, -1, head + 1):
        with pytest.raises(Malformed, match=rf"1 \.\. {head}"):
            provenance.proof_bundle(world.store, world.d, after=0, height=bad)
    # height 1 holds only the admissions: a later page against it has no events
    early = page(world, after=0, height=1)
    assert early["events"] == [] and early["page"] == {"after": 0, "next": None}
    assert early["checkpoint"]["header"]["height"] == 1
    # after 0 is a later page (no state proofs), not the first
    later = page(world, after=0, height=head)
    assert "state" not in later and later["events"] == whole["events"]
    unknown = hashlib.sha256(b"unknown").digest()
    assert provenance.proof_bundle(world.store, unknown, after=0, height=head) is None


def test_join_pages_checks_each_page(world: World, whole: dict) -> None:
    height = whole["checkpoint"]["header"]["height"]
    pages = [page(world, limit=3)]
    while pages[-1]["page"]["next"] is not None:
        pages.append(page(world, after=pages[-1]["page"]["next"], height=height, limit=3))
    assert len(pages) == 3
    joined = provenance.join_pages(pages)
    assert joined == {**whole, "page": {"after": -1, "next": None}}
    assert pages[0]["page"]["next"] is not None  # the pages themselves are not changed
    for bad in ([], ["page"], [None]):
        with pytest.raises(VerificationFailed, match="no first page"):
            provenance.join_pages(bad)
    with pytest.raises(VerificationFailed, match="'events'"):
        provenance.join_pages([pages[0], {"checkpoint": pages[0]["checkpoint"]}])
    with pytest.raises(VerificationFailed, match="'checkpoint'"):
        provenance.join_pages([pages[0], "page"])
    older = page(world, after=pages[2]["page"]["after"], height=height - 1, limit=3)
    with pytest.raises(VerificationFailed, match="page 3 is against another checkpoint"):
        provenance.join_pages([pages[0], pages[1], older])
    one = provenance.join_pages([pages[0]])
    assert one["events"] == pages[0]["events"] and one["page"] == {"after": -1, "next": None}
