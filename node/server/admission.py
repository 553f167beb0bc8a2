"""Admission: what a node checks before an event enters its mempool.

Strict decoding, the signature (checked once per node: `SignatureCache`), room in the
mempool before any decoding of a batch, then the rules against the committed state plus the
pending events (the mempool's job).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

from ledger import events
from ledger.errors import LedgerError
from node.server.errors import MempoolFull
from node.server.mempool import Mempool


class SignatureCache:
    """(event id, signature) pairs this node already checked (bounded, oldest evicted).

    Keyed by the signature too: a body seen once with a valid signature proves nothing about
    the same body with other signature bytes. It only has to outlive an event's way to a
    block (pending events validate through the mempool; committed ones are duplicates), so
    it is sized like the mempool, which keeps a node's memory flat under sustained load.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, key: bytes) -> bool:
        return key in self._ids

    def add(self, key: bytes) -> None:
        self._ids[key] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def decode(self, envelope: bytes, chain_id: str) -> events.SignedEvent:
        """Decode strictly; check the signature unless this node already did."""
        event = events.decode_envelope(envelope, chain_id=chain_id, verify=False)
        key = event.event_id + event.signature
        if key not in self._ids:
            event.verify_signature()
            self.add(key)
        return event


class Admission:
    """The door of one node's mempool, shared by client submissions and peer gossip."""

    def __init__(
        self,
        mempool: Mempool,
        chain_id: str,
        clock: Callable[[], int],
        signatures: SignatureCache,
    ) -> None:
        self.mempool = mempool
        self.chain_id = chain_id
        self.clock = clock
        self.signatures = signatures

    def admit(self, envelopes: Iterable[bytes]) -> list[events.SignedEvent | Exception]:
        """Admit envelopes into the mempool: the admitted event, or why not, per envelope.

        Room is checked before anything is decoded, so a full mempool costs no signature
        checks; refusals are LedgerErrors or MempoolFull. The whole batch is decoded
        and signature-checked before any of it meets the rules (in order, so an event may
        depend on one earlier in the batch): each phase runs with its own code and data hot
        in the CPU caches.
        """
        decoded: list[events.SignedEvent | Exception] = []
        ahead_events = ahead_bytes = 0
        full: MempoolFull | None = None
        for envelope in envelopes:
            if not self.mempool.has_room(len(envelope), ahead_events, ahead_bytes):
                full = full or self.mempool.full_error()
                decoded.append(full)
                continue
            try:
                decoded.append(self.signatures.decode(envelope, self.chain_id))
            except LedgerError as exc:
                decoded.append(exc)
                continue
            ahead_events, ahead_bytes = ahead_events + 1, ahead_bytes + len(envelope)
        now = self.clock()
        outcomes: list[events.SignedEvent | Exception] = []
        for item in decoded:
            try:
                if isinstance(item, events.SignedEvent):
                    self.mempool.admit(item, now)
            except (LedgerError, MempoolFull) as exc:
                item = exc
            outcomes.append(item)
        return outcomes

    def admit_one(self, envelope: bytes) -> events.SignedEvent:
        """Decode, check the signature (once per node) and admit one envelope, or raise why
        not; a client submitting one event hears about its encoding before a full mempool."""
        event = self.signatures.decode(envelope, self.chain_id)
        self.mempool.admit(event, self.clock())
        return event
