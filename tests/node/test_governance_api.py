"""Governance through a running node (issue 13): the validator set it reports and follows,
the transitions it serves, the proposals it lists, and the 403 a suspended or rotated-away
key gets — over real HTTP handling, real consensus and a real LevelDB store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger import governance
from ledger.crypto import PrivateKey
from ledger.events import Approve, Propose, Reinstate, Rotate, Suspend
from ledger.governance import SET_POWER, Change
from node.server import proposals as proposal_view
from tests.node.conftest import RunningNode, assert_problem, running_node


@pytest.fixture(scope="module")
def gov_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    # Empty blocks every 200 ms, so that a change's effective height comes soon.
    with running_node(tmp_path_factory.mktemp("governed"), idle_block_interval_ms=200) as node:
        yield node


def node_key(node: RunningNode) -> PrivateKey:
    return PrivateKey.load(node.settings.key_path)


def propose(node: RunningNode, change: Change) -> dict[str, Any]:
    return node.commit(node.make._sign(node_key(node), Propose, change=change.to_map()))


def test_status_names_the_node_key_and_whether_it_votes(gov_node: RunningNode) -> None:
    status = gov_node.client.get("/v1/status").json()
    assert status["public_key"] == node_key(gov_node).public_key.hex()
    assert status["validator"] is True


def test_a_decided_change_shows_then_takes_effect_and_an_added_validator_is_peered(
    gov_node: RunningNode,
) -> None:
    """One story (the second change needs the first: a lone validator of power 1 may add
    no one, docs/PROTOCOL.md §19.2): the node raises its own power to 3, which shows as
    decided, then in force and in the history; then it adds a validator of power 1 (3 of 4
    is still a quorum, so it goes on alone), which it sends to and lets in on its peer port."""
    me = node_key(gov_node).public_key
    before = gov_node.client.get("/v1/validators").json()
    assert [v["power"] for v in before["validators"]] == [1]
    committed = propose(gov_node, Change(SET_POWER, public_key=me, power=3))
    effective = committed["height"] + governance.ACTIVATION_DELAY
    decided = gov_node.client.get("/v1/governance/proposals?status=decided").json()
    (proposal,) = decided["proposals"]
    assert proposal["id"] == committed["event_id"]
    assert proposal["effective"] == effective and proposal["status"] == "decided"
    assert proposal["change"] == {"op": "set-power", "power": 3, "public_key": me.hex()}
    assert gov_node.client.get("/v1/governance/proposals").json()["proposals"] == []
    gov_node.wait_height(effective)
    after = gov_node.client.get("/v1/validators").json()
    assert [v["power"] for v in after["validators"]] == [3]
    assert after["total_power"] == 3 and "next" not in after
    history = gov_node.client.get("/v1/validators/history").json()
    assert [t["height"] for t in history["transitions"]] == [effective]
    assert history["transitions"][0]["validators"][0]["power"] == 3

    # 3 of 4 is a quorum: the node goes on alone, sending to the new validator's URL.
    newcomer = PrivateKey.generate()
    url = "http://127.0.0.1:9"  # nothing listens: sends to it just fail and back off
    change = Change(
        governance.ADD_VALIDATOR, public_key=newcomer.public_key, name="e", url=url, power=1
    )
    committed = propose(gov_node, change)
    assert newcomer.public_key.hex() in gov_node.service.peer_auth.allowed
    assert url in [peer.url for peer in gov_node.service.network.peers]
    gov_node.wait_height(committed["height"] + governance.ACTIVATION_DELAY + 1)
    keys = [v["public_key"] for v in gov_node.client.get("/v1/validators").json()["validators"]]
    assert keys[-1] == newcomer.public_key.hex()
    assert gov_node.client.get("/v1/status").json()["validator"] is True


def test_an_approval_of_an_unknown_proposal_is_a_problem(gov_node: RunningNode) -> None:
    event = gov_node.make._sign(node_key(gov_node), Approve, proposal=bytes(32))
    doc = assert_problem(gov_node.submit(event), 422)
    assert "does not exist" in doc["detail"]


def test_a_stranger_cannot_propose(gov_node: RunningNode) -> None:
    stranger = PrivateKey.generate()
    change = Change(SET_POWER, public_key=node_key(gov_node).public_key, power=5)
    event = gov_node.make._sign(stranger, Propose, change=change.to_map())
    doc = assert_problem(gov_node.submit(event), 403)
    assert "only a validator" in doc["detail"]


def test_a_suspended_key_gets_403_until_reinstated(gov_node: RunningNode) -> None:
    alice = gov_node.admit_participant("alice-s")
    gov_node.commit(gov_node.make._sign(gov_node.registrar, Suspend, subject=alice.public_key))
    doc = assert_problem(gov_node.submit(gov_node.make.register(alice)), 403)
    assert "suspended" in doc["detail"]
    gov_node.commit(gov_node.make._sign(gov_node.registrar, Reinstate, subject=alice.public_key))
    gov_node.commit(gov_node.make.register(alice))


def test_after_rotation_the_new_key_owns_and_the_old_key_gets_403(gov_node: RunningNode) -> None:
    old = gov_node.admit_participant("bob-r")
    registered = gov_node.make.register(old)
    gov_node.commit(registered)
    dataset = registered.body.dataset  # type: ignore[attr-defined]
    new = PrivateKey.generate()
    message = governance.rotation_message(gov_node.genesis.chain_id, old.public_key, new.public_key)
    rotate = gov_node.make._sign(
        old, Rotate, subject=old.public_key, to=new.public_key, possession=new.sign(message)
    )
    gov_node.commit(rotate)
    doc = assert_problem(gov_node.submit(gov_node.make.register(old)), 403)
    assert "rotated" in doc["detail"]
    gov_node.commit(gov_node.make.use(new, dataset, "analytics"))
    owner = gov_node.client.get(f"/v1/datasets/{dataset.hex()}").json()
    assert owner["owner"] == old.public_key.hex()  # records name the identity: the first key


def test_the_proposal_listing_is_bounded(
    gov_node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = node_key(gov_node).public_key
    for power in (5, 6):  # two proposal records at least, whichever tests ran before
        propose(gov_node, Change(SET_POWER, public_key=me, power=power))
    store = gov_node.service.store
    assert proposal_view.MAX_PROPOSALS_LISTED == 1_000
    monkeypatch.setattr(proposal_view, "MAX_PROPOSALS_LISTED", 1)
    listed = proposal_view.proposals(store, "all")
    assert len(listed["proposals"]) == 1 and listed["truncated"] is True
    monkeypatch.setattr(proposal_view, "MAX_PROPOSALS_LISTED", 100)
    assert proposal_view.proposals(store, "all")["truncated"] is False


def test_a_bad_status_filter_is_a_problem(gov_node: RunningNode) -> None:
    assert_problem(gov_node.client.get("/v1/governance/proposals?status=pending"), 400)
