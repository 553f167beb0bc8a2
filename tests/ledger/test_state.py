"""StateReadCache: reads through once, remembers absences, follows committed writes, bounded."""

from __future__ import annotations

from ledger.state import StateOverlay, StateReadCache


class CountingStore:
    def __init__(self, values: dict[bytes, bytes]) -> None:
        self.values = values
        self.reads: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        self.reads.append(key)
        return self.values.get(key)


def test_reads_go_to_the_store_once_absences_included() -> None:
    store = CountingStore({b"a": b"1"})
    cache = StateReadCache(store.get, capacity=10)
    assert [cache.get(b"a"), cache.get(b"a"), cache.get(b"x"), cache.get(b"x")] == [
        b"1",
        b"1",
        None,
        None,
    ]
    assert store.reads == [b"a", b"x"]


def test_committed_writes_replace_cached_values_and_absences() -> None:
    store = CountingStore({b"a": b"1"})
    cache = StateReadCache(store.get, capacity=10)
    cache.get(b"a")
    cache.get(b"x")
    store.values.update({b"a": b"2", b"x": b"new", b"y": b"3"})
    cache.committed({b"a": b"2", b"x": b"new", b"y": b"3"})
    assert (cache.get(b"a"), cache.get(b"x")) == (b"2", b"new")
    assert len(cache) == 2, "keys never read are not cached by a commit"
    assert cache.get(b"y") == b"3"
    assert store.reads == [b"a", b"x", b"y"]


def test_the_oldest_read_is_evicted_past_capacity() -> None:
    store = CountingStore({})
    cache = StateReadCache(store.get, capacity=2)
    for key in (b"1", b"2", b"3"):
        cache.get(key)
    assert len(cache) == 2
    cache.get(b"2")
    cache.get(b"3")
    cache.get(b"1")
    assert store.reads == [b"1", b"2", b"3", b"1"]


def test_an_overlay_over_the_cache_sees_its_own_writes_first() -> None:
    store = CountingStore({b"k": b"committed"})
    overlay = StateOverlay(StateReadCache(store.get, capacity=10).get)
    overlay.put(b"k", b"pending")
    assert overlay.get(b"k") == b"pending"
    assert overlay.child().get(b"k") == b"pending"
    assert store.reads == []


def test_merge_moves_the_child_writes_into_the_parent() -> None:
    parent = StateOverlay({b"base": b"0"}.get)
    child = parent.child()
    child.put(b"b", b"2")
    child.put(b"a", b"1")
    child.merge_into_parent()
    assert parent.writes == {b"b": b"2", b"a": b"1"} and child.writes == {}
    assert list(parent.items()) == [(b"a", b"1"), (b"b", b"2")]
    assert parent.get(b"base") == b"0" and child.get(b"a") == b"1"
