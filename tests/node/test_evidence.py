"""Evidence is persisted (fsync'd, bounded per validator and in all), survives a restart, and
is served at GET /v1/evidence; a torn record at the end of the file is cut off on open."""

from __future__ import annotations

from pathlib import Path

from consensus.messages import Evidence
from ledger import codec
from node.server.evidence import EvidenceLog
from tests.consensus.helpers import sign_vote
from tests.node.conftest import running_node, serving


def equivocation(index: int, height: int, round_: int) -> Evidence:
    a = sign_vote(index, "prevote", height, round_, b"\x0a" * 32)
    b = sign_vote(index, "prevote", height, round_, b"\x0b" * 32)
    return Evidence.of(a, b)


def test_evidence_survives_reopening_and_a_torn_tail_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "evidence.bin"
    log = EvidenceLog(path)
    first, second = equivocation(1, 5, 0), equivocation(1, 5, 1)
    assert log.add(first) and log.add(second)
    assert not log.add(equivocation(1, 5, 1))  # the same slot again
    log.close()
    intact = path.stat().st_size
    with path.open("ab") as handle:
        handle.write(b"\x00\x00\x01\x00torn")  # a crash in the middle of an append
    reopened = EvidenceLog(path)
    assert [e.evidence for e in reopened.page(-1, 10)] == [first, second]
    assert [e.index for e in reopened.page(0, 10)] == [1]
    assert path.stat().st_size == intact
    assert reopened.add(equivocation(2, 5, 0))
    reopened.close()
    last = EvidenceLog(path)
    assert len(last) == 3
    last.close()


def test_evidence_is_bounded_per_validator_and_in_all(tmp_path: Path) -> None:
    log = EvidenceLog(tmp_path / "e.bin", max_records=5, max_per_validator=3)
    stored = [log.add(equivocation(1, 1, r)) for r in range(10)]
    assert stored == [True] * 3 + [False] * 7
    assert all(log.add(equivocation(2, 1, r)) for r in range(2))
    assert not log.add(equivocation(0, 1, 0))  # 5 in all
    assert len(log) == 5 and log.not_stored == 8
    log.close()
    assert (tmp_path / "e.bin").stat().st_size < 5 * 600


def test_evidence_is_served_and_kept_across_a_restart(tmp_path: Path) -> None:
    found = equivocation(1, 3, 2)
    with running_node(tmp_path / "c") as node:
        node.service.evidence(found)
        node.service.evidence(found)  # once
        assert node.client.get("/v1/status").json()["evidence"] == 1
        settings = node.settings
    with running_node(tmp_path / "c2") as other:
        assert other.client.get("/v1/evidence").json()["evidence"] == []
    with serving(settings) as (client, _):
        doc = client.get("/v1/evidence").json()
        (entry,) = doc["evidence"]
        assert (entry["index"], entry["height"], entry["round"]) == (0, 3, 2)
        assert entry["validator"] == found.validator.hex()
        assert Evidence.from_wire(codec.decode(bytes.fromhex(entry["evidence"]))) == found
        assert doc["next"] is None
        assert client.get("/v1/status").json()["evidence"] == 1
