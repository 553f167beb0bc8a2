"""Equivocation evidence kept across restarts: a bounded, append-only, fsync'd file.

`HOME/evidence.bin` holds records `length (4 bytes, big-endian) || SHA-256(evidence) ||
evidence`, where evidence is the canonical wire form of docs/PROTOCOL.md §7.8. On open, the
file is read up to its first torn or damaged record (a crash mid-append) and cut there. At
most `MAX_PER_VALIDATOR` records per validator and `MAX_RECORDS` in all are kept, so a
validator equivocating in every round fills only its own quota: more is counted, not stored.
One (validator, height, round, type) slot is stored once. Served at `GET /v1/evidence`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from consensus.messages import Evidence
from ledger import codec, crypto
from ledger.errors import LedgerError

MAX_RECORDS = 10_000
MAX_PER_VALIDATOR = 256
MAX_RECORD_BYTES = 4_096
_HEADER = struct.Struct(">I32s")


@dataclass(frozen=True)
class StoredEvidence:
    """One record: its index in the file and the evidence."""

    index: int
    evidence: Evidence


def _slot(evidence: Evidence) -> tuple[bytes, int, int, str]:
    vote = evidence.vote_a
    return vote.validator, vote.height, vote.round, vote.type


class EvidenceLog:
    """The evidence this node found, persisted before it is counted as stored."""

    def __init__(
        self,
        path: str | Path,
        max_records: int = MAX_RECORDS,
        max_per_validator: int = MAX_PER_VALIDATOR,
    ) -> None:
        self.path = Path(path)
        self.max_records = max_records
        self.max_per_validator = max_per_validator
        self._records: list[Evidence] = []
        self._slots: set[tuple[bytes, int, int, str]] = set()
        self._per_validator: dict[bytes, int] = {}
        self.not_stored = 0
        self._load()
        self._file = open(self.path, "ab")  # noqa: SIM115 - held open for the node's life

    def __len__(self) -> int:
        return len(self._records)

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, digest = _HEADER.unpack_from(data, offset)
            start = offset + _HEADER.size
            body = data[start : start + length]
            if length > MAX_RECORD_BYTES or len(body) != length or crypto.sha256(body) != digest:
                break
            try:
                evidence = Evidence.from_wire(codec.decode(body, MAX_RECORD_BYTES))
            except LedgerError:
                break
            self._index(evidence)
            offset = start + length
        if offset != len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(offset)
                os.fsync(handle.fileno())

    def _index(self, evidence: Evidence) -> None:
        self._records.append(evidence)
        self._slots.add(_slot(evidence))
        validator = evidence.validator
        self._per_validator[validator] = self._per_validator.get(validator, 0) + 1

    def add(self, evidence: Evidence) -> bool:
        """Persist new evidence (fsync'd); False if it is a known slot or over a bound."""
        if _slot(evidence) in self._slots:
            return False
        full = len(self._records) >= self.max_records
        if full or self._per_validator.get(evidence.validator, 0) >= self.max_per_validator:
            self.not_stored += 1
            return False
        body = codec.encode(evidence.to_wire())
        assert len(body) <= MAX_RECORD_BYTES, "two votes always fit a record"
        self._file.write(_HEADER.pack(len(body), crypto.sha256(body)) + body)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._index(evidence)
        return True

    def page(self, after: int, limit: int) -> list[StoredEvidence]:
        """Records with index > `after`, at most `limit` of them, in file order."""
        start = max(after + 1, 0)
        return [
            StoredEvidence(i, e)
            for i, e in enumerate(self._records[start : start + limit], start=start)
        ]

    def close(self) -> None:
        self._file.close()


__all__ = ["EvidenceLog", "StoredEvidence"]
