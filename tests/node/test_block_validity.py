"""A block's validity is judged by the chain and the block alone (docs/PROTOCOL.md §6.5):
the same verdict on every node whatever its clock or its local limits, with the block limits
taken from genesis params."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from consensus import ConsensusConfig
from ledger import events
from ledger.blocks import Block
from ledger.crypto import PrivateKey
from ledger.genesis import OPEN, ChainParams, Genesis
from node.clock import now_ms
from node.server.replica import Replica, ReplicaLimits
from tests.consensus.helpers import validator_set

DAY_MS = 86_400_000


class Quiet:
    """Effects that do nothing (no consensus runs here)."""

    def now(self) -> int:
        return now_ms()

    def broadcast(self, message: Any) -> None: ...

    def schedule(self, timeout: Any) -> None: ...

    def evidence(self, evidence: Any) -> None: ...

    def committed(self, block: Any, execution: Any) -> None: ...


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return Genesis(
        chain_id="validity",
        genesis_time=now_ms() - DAY_MS,
        validators=validator_set(1),
        registrars=(PrivateKey.generate().public_key,),
        admission=OPEN,
        params=ChainParams(block_max_events=2),
    )


def replica(genesis: Genesis, path: Path, clock: Any, build_limit: int = 4_000) -> Replica:
    limits = ReplicaLimits(block_max_events=build_limit)
    return Replica(genesis, path, limits, ConsensusConfig(), None, None, clock, Quiet())


def registers(genesis: Genesis, count: int) -> list[events.SignedEvent]:
    key = PrivateKey.generate()
    return [
        events.sign_event(
            key,
            events.Register(
                chain=genesis.chain_id,
                actor=key.public_key,
                time=now_ms(),
                nonce=os.urandom(16),
                dataset=os.urandom(32),
                meta={"title": "t"},
                open=False,
            ),
        )
        for _ in range(count)
    ]


def build(genesis: Genesis, path: Path, count: int, time: int) -> Block:
    """A block of `count` registers built by a node that ignores the chain's limit."""
    builder = replica(genesis, path, now_ms)
    try:
        builder.executor.block_max_events = count  # a node with other local settings
        outcomes = builder.admission.admit(e.envelope for e in registers(genesis, count))
        assert all(isinstance(o, events.SignedEvent) for o in outcomes), outcomes
        proposer = genesis.validators.validators[0].public_key
        return builder.executor.build_block(1, 0, time, proposer)
    finally:
        builder.close()


def never(*_: object) -> int:
    raise AssertionError("validity must not read the clock")


def verdicts(genesis: Genesis, tmp_path: Path, block: Block) -> set[bool]:
    judges = [
        replica(genesis, tmp_path / "slow", lambda: 0),
        replica(genesis, tmp_path / "never", never),
        replica(genesis, tmp_path / "small", now_ms, build_limit=1),
    ]
    try:
        return {judge.executor.validate_block(block) for judge in judges}
    finally:
        for judge in judges:
            judge.close()


def test_a_block_within_the_chains_limits_is_valid_on_every_node(
    genesis: Genesis, tmp_path: Path
) -> None:
    block = build(genesis, tmp_path / "builder", 2, now_ms())
    assert verdicts(genesis, tmp_path, block) == {True}


def test_a_block_over_the_chains_limit_is_refused_by_every_node(
    genesis: Genesis, tmp_path: Path
) -> None:
    block = build(genesis, tmp_path / "builder", 3, now_ms())
    assert len(block.events) == 3
    assert verdicts(genesis, tmp_path, block) == {False}


def test_a_far_future_block_time_is_valid_everywhere_timeliness_is_for_prevotes(
    genesis: Genesis, tmp_path: Path
) -> None:
    block = build(genesis, tmp_path / "builder", 1, now_ms() + DAY_MS)
    assert verdicts(genesis, tmp_path, block) == {True}


def test_a_block_time_not_after_the_previous_one_is_refused_everywhere(
    genesis: Genesis, tmp_path: Path
) -> None:
    block = build(genesis, tmp_path / "builder", 1, now_ms())
    back = Block(dataclasses.replace(block.header, time=genesis.genesis_time), block.events)
    assert verdicts(genesis, tmp_path, back) == {False}


def test_the_event_time_window_is_the_chains(tmp_path: Path) -> None:
    genesis = Genesis(
        chain_id="window",
        genesis_time=0,
        validators=validator_set(1),
        registrars=(PrivateKey.generate().public_key,),
        admission=OPEN,
        params=ChainParams(time_window_ms=1_000),
    )
    node = replica(genesis, tmp_path / "w", now_ms)
    try:
        assert node.store.rules.time_window_ms == 1_000
    finally:
        node.close()
