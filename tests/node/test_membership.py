"""Following the validator set (node/server/membership.py): the peer links and the keys the
peer port accepts move with governance — and the scan of open proposals is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from ledger.blocks import ValidatorSet
from ledger.crypto import PrivateKey
from ledger.events import Approve, Propose
from ledger.governance import ADD_VALIDATOR, REMOVE_VALIDATOR, Change
from ledger.store import Store
from node.server import membership as membership_module
from node.server.executor import BlockExecutor
from node.server.membership import Membership
from node.server.mempool import Mempool
from node.server.p2p import Network
from node.server.peer_auth import PeerAuthenticator
from tests.ledger.helpers import ChainBuilder, make_genesis, make_key

CONFIGURED = "http://127.0.0.1:7000"


class World:
    def __init__(self, path: Path) -> None:
        self.keys, _, self.genesis = make_genesis(4, seed=4_000)
        self.store = Store(path, self.genesis)
        self.builder = ChainBuilder(self.store, self.keys)
        executor = BlockExecutor(
            self.store, self.genesis, Mempool(self.store, 10, 1 << 20), lambda: 0, 10, 1 << 20
        )
        self.network = Network((CONFIGURED,), "me", 8)
        self.auth = PeerAuthenticator(self.genesis.chain_id, (), lambda: 0)
        self.configured = frozenset({make_key(seed=4_100).public_key})
        self.membership = Membership(
            self.store, executor, self.network, self.auth, self.configured, self.keys[0].public_key
        )

    def propose(self, change: Change, approvers: int = 0) -> bytes:
        event = self.builder.ev(self.keys[0], Propose, change=change.to_map())
        approvals = [
            self.builder.ev(k, Approve, proposal=event.event_id)
            for k in self.keys[1 : 1 + approvers]
        ]
        self.builder.append([event])
        if approvals:
            self.builder.append(approvals)
        return event.event_id

    def refresh(self) -> None:
        self.membership.refresh(force=True)

    def allowed(self, key: PrivateKey) -> bool:
        return key.public_key.hex() in self.auth.allowed


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "store")
    yield w
    w.store.close()


def add(key: PrivateKey, url: str) -> Change:
    return Change(ADD_VALIDATOR, public_key=key.public_key, name="new", url=url, power=1)


def test_a_key_an_open_proposal_names_is_let_in_before_it_is_decided(world: World) -> None:
    joiner = make_key(seed=4_200)
    world.builder.append([])
    world.refresh()
    assert not world.allowed(joiner)
    assert all(world.allowed(k) for k in world.keys)  # the genesis validators
    assert world.membership.configured_keys <= {bytes.fromhex(k) for k in world.auth.allowed}
    world.propose(add(joiner, "http://127.0.0.1:7005"))
    world.refresh()
    assert world.allowed(joiner)
    assert [p.url for p in world.network.peers] == [CONFIGURED]  # not a validator yet


def test_a_decided_addition_is_peered_from_the_next_height_on(world: World) -> None:
    joiner = make_key(seed=4_201)
    world.propose(add(joiner, "http://127.0.0.1:7006"), approvers=2)
    world.refresh()  # in force at head + 2: peered now, so it hears the height it votes in
    assert [p.url for p in world.network.peers] == [CONFIGURED, "http://127.0.0.1:7006"]
    assert joiner.public_key in world.membership.validator_keys


def test_a_removed_validator_is_no_longer_sent_to_but_may_still_follow(
    tmp_path: Path,
) -> None:
    keys, _, genesis = make_genesis(4, seed=4_300)
    urls = [f"http://127.0.0.1:{7100 + i}" for i in range(4)]
    genesis = replace(
        genesis,
        validators=ValidatorSet(
            tuple(
                replace(v, url=u) for v, u in zip(genesis.validators.validators, urls, strict=True)
            )
        ),
    )
    store = Store(tmp_path / "s", genesis)
    try:
        builder = ChainBuilder(store, keys)
        executor = BlockExecutor(
            store, genesis, Mempool(store, 10, 1 << 20), lambda: 0, 10, 1 << 20
        )
        network = Network((), "me", 8)
        auth = PeerAuthenticator(genesis.chain_id, (), lambda: 0)
        configured = frozenset(v.public_key for v in genesis.validators.validators)
        member = Membership(store, executor, network, auth, configured, keys[0].public_key)

        async def follow() -> None:
            member.refresh(force=True)
            assert [p.url for p in network.peers] == urls[1:]
            removal = builder.ev(
                keys[0],
                Propose,
                change=Change(REMOVE_VALIDATOR, public_key=keys[3].public_key).to_map(),
            )
            builder.append([removal])
            builder.append([builder.ev(k, Approve, proposal=removal.event_id) for k in keys[1:3]])
            member.refresh()
            assert urls[3] in [p.url for p in network.peers]  # still in force next height
            builder.append([])
            builder.append([])
            member.refresh()
            assert [p.url for p in network.peers] == urls[1:3]
            assert keys[3].public_key.hex() in auth.allowed  # it may still sync as a full node
            await asyncio.sleep(0)

        asyncio.run(follow())
    finally:
        store.close()


def test_the_scan_of_open_proposals_is_bounded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert membership_module.MAX_PROPOSALS_SCANNED == 1_024
    joiners = [make_key(seed=4_400 + i) for i in range(3)]
    for index, joiner in enumerate(joiners):
        world.propose(add(joiner, f"http://127.0.0.1:{7200 + index}"))
    monkeypatch.setattr(membership_module, "MAX_PROPOSALS_SCANNED", 2)
    world.refresh()
    assert sum(world.allowed(j) for j in joiners) == 2
    monkeypatch.setattr(membership_module, "MAX_PROPOSALS_SCANNED", 1_024)
    world.refresh()
    assert all(world.allowed(j) for j in joiners)


def test_the_nodes_own_key_stays_let_in(world: World) -> None:
    """Its operator's tools (`node snapshot`, `node backup`) sign with the home's own key."""
    own = make_key(seed=4_500)
    world.membership.own_key = own.public_key
    world.refresh()
    assert world.allowed(own)
