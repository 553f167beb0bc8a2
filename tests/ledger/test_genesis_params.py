"""Consensus parameters in genesis (docs/PROTOCOL.md §8.6): defaults, bounds, and the hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger import codec, crypto
from ledger.blocks import Validator, ValidatorSet
from ledger.errors import Malformed
from ledger.genesis import DEFAULT_PARAMS, ChainParams, Genesis

K1 = bytes.fromhex("036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296")
K2 = bytes.fromhex("037cf27b188d034f7e8a52380304b51ac3c08969e277f21b35a60b48fc47669978")


def vector(params: ChainParams | None = None) -> Genesis:
    validators = ValidatorSet((Validator("v0", K1, 1, "http://127.0.0.1:8800"),))
    return Genesis("demo", 1_700_000_000_000, validators, (K2,), params=params)


def test_the_defaults_are_pinned() -> None:
    """docs/PROTOCOL.md §8.6 and §11.2."""
    assert DEFAULT_PARAMS.to_json() == {
        "block_max_events": 4_000,
        "block_max_bytes": 8_388_608,
        "time_window_ms": 600_000,
        "time_precision_ms": 1_000,
        "message_delay_ms": 5_000,
        "timeout_propose_ms": 1_000,
        "timeout_propose_delta_ms": 500,
        "timeout_vote_ms": 500,
        "timeout_vote_delta_ms": 500,
    }


def test_a_genesis_without_params_keeps_its_hash_and_uses_the_defaults() -> None:
    """The §13 test vector is unchanged."""
    genesis = vector()
    assert genesis.hash().hex() == (
        "10dd1c9da47c5c91c7c231c9fa5d1e96b33d71626f4b038f3ee9bef395eed1f5"
    )
    assert genesis.chain_params == DEFAULT_PARAMS
    assert "params" not in genesis.to_json()


def test_named_params_are_committed_to_by_the_hash() -> None:
    named = vector(ChainParams())
    doc = {
        "admission": "permissioned",
        "chain_id": "demo",
        "genesis_time": 1_700_000_000_000,
        "params": DEFAULT_PARAMS.to_json(),
        "registrars": [K2],
        "validators": named.validators.hash(),
    }
    assert named.hash() == crypto.sha256(codec.encode(doc))
    assert named.hash() != vector().hash()
    assert vector(ChainParams(block_max_events=10)).hash() != named.hash()


def test_params_round_trip_through_the_file(tmp_path: Path) -> None:
    genesis = vector(ChainParams(block_max_events=7, message_delay_ms=9_000))
    genesis.save(tmp_path / "g.json")
    assert Genesis.load(tmp_path / "g.json") == genesis
    doc = json.loads((tmp_path / "g.json").read_text())
    del doc["params"]["block_max_events"]
    assert Genesis.from_json(doc).chain_params.block_max_events == 4_000


@pytest.mark.parametrize(
    "params",
    [
        {"block_max_events": 0},
        {"block_max_events": 65_537},
        {"block_max_bytes": (12 << 20) + 1},
        {"time_window_ms": True},
        {"timeout_vote_ms": -1},
        {"message_delay_ms": "5000"},
        {"block_max_event": 10},  # a typo is refused, not ignored
        [],
    ],
)
def test_bad_params_are_refused(params: object) -> None:
    doc = vector().to_json()
    doc["params"] = params
    with pytest.raises(Malformed):
        Genesis.from_json(doc)


def test_a_delta_may_be_zero() -> None:
    assert ChainParams(timeout_vote_delta_ms=0).timeout_vote_delta_ms == 0
