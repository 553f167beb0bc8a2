"""A copy-on-write view of the rules state over a read-only base (LevelDB or a dict).

Applying an event writes into a child overlay that is merged into its parent only when the
event is fully accepted, so a rejected event leaves nothing behind. The block's overlay is
what the store writes in its one atomic batch; its authenticated records also go into the
state map under `state_root` (`ledger.smt`).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from ledger import codec

Reader = Callable[[bytes], bytes | None]


class _Unread(enum.Enum):
    """The type of `_UNREAD`: a cache-miss marker no cached value (bytes or None) can be."""

    TOKEN = enum.auto()


_UNREAD: Final = _Unread.TOKEN


class StateReadCache:
    """The committed state's recent reads, absent keys included, bounded (oldest evicted).

    A node reads the same keys twice for every event — once to admit it, once to execute
    its block — and most of them are absent (a new event id, a new dataset), which LevelDB
    answers only after consulting every level. The owner must pass every committed write
    to `committed`, so the cache never disagrees with the store.
    """

    def __init__(self, read: Reader, capacity: int) -> None:
        assert capacity > 0
        self._read = read
        self.capacity = capacity
        self._values: OrderedDict[bytes, bytes | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: bytes) -> bytes | None:
        value = self._values.get(key, _UNREAD)
        if value is _UNREAD:
            value = self._read(key)
            self._remember(key, value)
        return value

    def committed(self, writes: Mapping[bytes, bytes]) -> None:
        """The store now holds `writes`: cached reads of those keys take the new values."""
        for key, value in writes.items():
            if key in self._values:
                self._values[key] = value

    def _remember(self, key: bytes, value: bytes | None) -> None:
        self._values[key] = value
        if len(self._values) > self.capacity:
            self._values.popitem(last=False)


class StateOverlay:
    """Pending writes layered over `base`; reads see the newest write first."""

    def __init__(self, base: Reader | StateOverlay) -> None:
        self._base = base
        self.writes: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        overlay = self
        while True:
            value = overlay.writes.get(key)
            if value is not None:
                return value
            base = overlay._base
            if not isinstance(base, StateOverlay):
                return base(key)
            overlay = base

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def get_doc(self, key: bytes) -> Any:
        """The record `put_doc` stored under `key`, decoded (the caller knows its shape), or
        None."""
        raw = self.get(key)
        return None if raw is None else codec.decode_trusted(raw)

    def put_doc(self, key: bytes, doc: Any) -> None:
        """Store a record the rules built from checked values (see `codec.encode_trusted`)."""
        self.put(key, codec.encode_trusted(doc))

    def child(self) -> StateOverlay:
        return StateOverlay(self)

    def merge_into_parent(self) -> None:
        assert isinstance(self._base, StateOverlay), "only a child overlay can be merged"
        self._base.writes.update(self.writes)
        self.writes = {}

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(self.writes.items()))
