"""The public HTTP API of docs/PROTOCOL.md §10 against a real single-validator node.

Every status code of §10.2 is produced through the API and checked to be an RFC 9457 problem
document; every GET is checked for the JSON shape clients rely on, and the proofs it serves
are verified with the ledger's own offline verifiers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ledger import codec, crypto, events, merkle, provenance
from ledger.blocks import Commit, Header, verify_checkpoint
from ledger.crypto import PrivateKey
from ledger.errors import VerificationFailed
from ledger.genesis import Genesis
from ledger.provenance import verify_bundle
from node.config import NodeSettings
from node.ops.homes import REGISTRAR_FILE, init_cluster
from tests.node.conftest import (
    EventFactory,
    RunningNode,
    assert_problem,
    free_port,
    now_ms,
    running_node,
    serving,
)

MSGPACK = "application/msgpack"


@dataclass
class Story:
    """A small history on the module's node: alice's dataset, shared with and used by bob."""

    alice: PrivateKey
    bob: PrivateKey
    dataset: bytes
    derived: bytes
    register: events.SignedEvent
    grant: events.SignedEvent
    use: events.SignedEvent
    transfer: events.SignedEvent
    derive: events.SignedEvent
    attest: events.SignedEvent
    committed: dict[bytes, dict[str, Any]]


@pytest.fixture(scope="module")
def story(node: RunningNode, participant: PrivateKey) -> Story:
    alice, make = participant, node.make
    bob = node.admit_participant("bob")
    dataset = hashlib.sha256(b"alice's data " + os.urandom(8)).digest()
    register = make.register(alice, dataset, {"title": "sales.csv", "size": 12})
    grant = make.grant(alice, dataset, bob.public_key, ("analytics", "derive"), reshare=True)
    use = make.use(bob, dataset, "analytics", grant=grant.event_id)
    transfer = make.transfer(alice, dataset, bob.public_key)
    derive = make.derive(bob, (dataset,))
    attest = make.attest(bob, dataset)
    committed = {}
    for event in (register, grant, use, transfer, derive, attest):
        committed[event.event_id] = node.commit(event)
    return Story(
        alice,
        bob,
        dataset,
        derive.body.dataset,  # type: ignore[attr-defined]
        register,
        grant,
        use,
        transfer,
        derive,
        attest,
        committed,
    )


@pytest.fixture
def side_node(tmp_path: Path) -> Iterator[Callable[..., RunningNode]]:
    """A factory for extra nodes, each on its own chain, with settings overrides."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> RunningNode:
            return stack.enter_context(
                running_node(tmp_path / f"side-{id(overrides)}", **overrides)
            )

        yield start


def high_s(signature: bytes) -> bytes:
    r, s = signature[:32], int.from_bytes(signature[32:], "big")
    return r + (crypto.CURVE_ORDER - s).to_bytes(32, "big")


def event_doc(node: RunningNode, event_id: bytes) -> dict[str, Any]:
    response = node.client.get(f"/v1/events/{event_id.hex()}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return dict(response.json())


# --- 202 / 200 -----------------------------------------------------------------------------


def test_submit_answers_202_with_the_event_id(node: RunningNode) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "carol")
    response = node.submit(event)
    assert response.status_code == 202, response.text
    assert response.json()["event_id"] == event.event_id.hex()
    deadline = time.monotonic() + 20
    while node.client.get(f"/v1/events/{event.event_id.hex()}").status_code != 200:
        assert time.monotonic() < deadline, "a submitted event was never committed"
        time.sleep(0.02)


def test_wait_commit_answers_200_with_height_and_leaf_index(node: RunningNode) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "dave")
    response = node.submit(event, wait=True)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["event_id"] == event.event_id.hex()
    assert isinstance(doc["height"], int) and doc["height"] >= 1
    assert isinstance(doc["leaf_index"], int) and doc["leaf_index"] >= 0
    stored = event_doc(node, event.event_id)
    assert (stored["height"], stored["leaf_index"]) == (doc["height"], doc["leaf_index"])
    block = node.client.get(f"/v1/blocks/{doc['height']}").json()
    assert event.envelope.hex() in [e["envelope"] for e in block["events"]]


# --- 400 -----------------------------------------------------------------------------------


def _non_canonical(event: events.SignedEvent) -> bytes:
    # The same envelope with its keys in the wrong order ("sig" before "body").
    return msgpack.packb({"sig": event.signature, "body": event.body_bytes}, use_bin_type=True)


MALFORMED_BODIES: dict[str, Callable[[events.SignedEvent, events.SignedEvent], Any]] = {
    "bad hex": lambda fresh, other: {"envelope": "zz" * 40},
    "odd-length hex": lambda fresh, other: {"envelope": fresh.envelope.hex()[:-1]},
    "empty envelope": lambda fresh, other: {"envelope": ""},
    "hex of garbage": lambda fresh, other: {"envelope": "00" * 16},
    "truncated envelope": lambda fresh, other: {"envelope": fresh.envelope.hex()[:-8]},
    "non-canonical envelope": lambda fresh, other: {"envelope": _non_canonical(fresh).hex()},
    "wrong chain id": lambda fresh, other: {"envelope": other.envelope.hex()},
    "extra JSON field": lambda fresh, other: {"envelope": fresh.envelope.hex(), "extra": 1},
    "envelope as a number": lambda fresh, other: {"envelope": 12},
    "envelope missing": lambda fresh, other: {},
    "a list, not an object": lambda fresh, other: [fresh.envelope.hex()],
}


@pytest.mark.parametrize("case", sorted(MALFORMED_BODIES))
def test_400_for_a_malformed_submission(node: RunningNode, case: str) -> None:
    fresh = node.make.admit(node.registrar, PrivateKey.generate().public_key, "x")
    other_chain = EventFactory("some-other-chain").admit(
        node.registrar, PrivateKey.generate().public_key, "y"
    )
    body = MALFORMED_BODIES[case](fresh, other_chain)
    assert_problem(node.client.post("/v1/events", json=body), 400)
    # Nothing reached the chain or the mempool.
    assert node.client.get(f"/v1/events/{fresh.event_id.hex()}").status_code == 404
    assert fresh.event_id not in node.service.mempool


def test_400_for_a_body_that_is_not_json(node: RunningNode) -> None:
    response = node.client.post(
        "/v1/events", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 400)


def test_400_for_an_unknown_wait_mode(node: RunningNode) -> None:
    fresh = node.make.admit(node.registrar, PrivateKey.generate().public_key, "x")
    response = node.client.post("/v1/events?wait=maybe", json={"envelope": fresh.envelope.hex()})
    assert_problem(response, 400)
    assert fresh.event_id not in node.service.mempool


# --- 401 -----------------------------------------------------------------------------------


def test_401_for_a_tampered_body(node: RunningNode) -> None:
    subject = PrivateKey.generate().public_key
    honest = node.make.admit(node.registrar, subject, "honest")
    tampered_body = events.Admit(
        chain=node.genesis.chain_id,
        actor=node.registrar.public_key,
        time=events.parse_body(codec.decode_map(honest.body_bytes)).time,
        nonce=os.urandom(16),
        subject=subject,
        role=events.ROLE_REGISTRAR,  # escalated, signature kept
        name="honest",
    ).encode()
    forged = codec.encode({"body": tampered_body, "sig": honest.signature})
    assert_problem(node.submit(forged), 401)


def test_401_for_a_high_s_signature(node: RunningNode) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "malleable")
    malleated = codec.encode({"body": event.body_bytes, "sig": high_s(event.signature)})
    assert_problem(node.submit(malleated), 401)
    # The low-S original is still accepted afterwards.
    assert node.submit(event, wait=True).status_code == 200


# --- 403 -----------------------------------------------------------------------------------


def test_403_when_the_signer_is_not_admitted(node: RunningNode) -> None:
    stranger = PrivateKey.generate()
    doc = assert_problem(node.submit(node.make.register(stranger)), 403)
    assert "admit" in doc["detail"].lower()


def test_403_when_a_non_owner_grants(node: RunningNode, story: Story) -> None:
    carol = node.admit_participant("carol")
    grant = node.make.grant(carol, story.dataset, carol.public_key)
    forbidden = assert_problem(node.submit(grant), 403)
    not_admitted = assert_problem(node.submit(node.make.register(PrivateKey.generate())), 403)
    assert forbidden["type"] != not_admitted["type"]


# --- 404 -----------------------------------------------------------------------------------


def test_404_for_unknown_things(node: RunningNode) -> None:
    unknown = os.urandom(32).hex()
    unknown_key = PrivateKey.generate().public_key.hex()
    for path in (
        f"/v1/events/{unknown}",
        f"/v1/events/{unknown}/proof",
        f"/v1/datasets/{unknown}",
        f"/v1/datasets/{unknown}/provenance",
        f"/v1/participants/{unknown_key}",
        "/v1/blocks/1000000",
        "/v1/no-such-route",
    ):
        assert_problem(node.client.get(path), 404)


def test_unknown_participant_has_no_events(node: RunningNode) -> None:
    unknown_key = PrivateKey.generate().public_key.hex()
    response = node.client.get(f"/v1/participants/{unknown_key}/events")
    assert response.status_code == 200
    assert response.json() == {"events": [], "next": None}


# --- 409 -----------------------------------------------------------------------------------


def test_409_for_a_replay_after_commit(node: RunningNode) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "once")
    node.commit(event)
    assert_problem(node.submit(event), 409)
    assert_problem(node.submit(event, wait=True), 409)


def test_409_for_a_replay_while_pending(tmp_path: Path) -> None:
    # A node that follows but does not vote never commits, so the first copy stays pending.
    genesis = init_cluster(tmp_path / "chain", 1, base_port=free_port())
    registrar = PrivateKey.load(tmp_path / "chain" / REGISTRAR_FILE)
    follower = NodeSettings(home=(tmp_path / "follower").resolve(), name="follower")
    follower.save()
    genesis.save(follower.genesis_path)
    event = EventFactory(genesis.chain_id).admit(registrar, PrivateKey.generate().public_key)
    with serving(follower) as (client, service):
        body = {"envelope": event.envelope.hex()}
        first = client.post("/v1/events", json=body)
        assert first.status_code == 202, first.text
        assert event.event_id in service.mempool
        doc = assert_problem(client.post("/v1/events", json=body), 409)
        assert "pending" in doc["detail"]
        assert len(service.mempool) == 1


# --- 413 -----------------------------------------------------------------------------------


def test_413_for_a_declared_body_over_one_mib(node: RunningNode) -> None:
    big = b'{"envelope": "' + b"00" * (1 << 20) + b'"}'
    response = node.client.post(
        "/v1/events", content=big, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)
    assert node.client.get("/healthz").status_code == 200


def test_413_for_a_streamed_body_over_one_mib(node: RunningNode) -> None:
    def chunks() -> Iterator[bytes]:  # no content-length: the limit applies while reading
        yield b'{"envelope": "'
        for _ in range(20):
            yield b"00" * 32 * 1024
        yield b'"}'

    response = node.client.post(
        "/v1/events", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)
    assert node.client.get("/healthz").status_code == 200


# --- 422 -----------------------------------------------------------------------------------


def test_422_for_a_grant_on_an_unregistered_dataset(
    node: RunningNode, participant: PrivateKey
) -> None:
    grant = node.make.grant(participant, os.urandom(32), node.registrar.public_key)
    doc = assert_problem(node.submit(grant), 422)
    assert "not registered" in doc["detail"]


# --- 429 -----------------------------------------------------------------------------------


def test_429_when_the_mempool_is_full(side_node: Callable[..., RunningNode]) -> None:
    full = side_node(mempool_max_events=0)
    event = full.make.admit(full.registrar, PrivateKey.generate().public_key)
    response = full.submit(event)
    assert_problem(response, 429)
    assert "retry-after" in response.headers


# --- 503 -----------------------------------------------------------------------------------


def test_503_when_the_node_is_not_caught_up(node: RunningNode) -> None:
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "late")
    service = node.service
    service.sync.best_peer_height = service.store.height + 100
    try:
        response = node.submit(event)
        assert_problem(response, 503)
        assert "retry-after" in response.headers
        assert node.client.get("/v1/status").json()["catching_up"] is True
    finally:
        service.sync.best_peer_height = 0
    assert node.submit(event, wait=True).status_code == 200


# --- GET shapes ----------------------------------------------------------------------------


def test_event_shape(node: RunningNode, story: Story) -> None:
    event = story.grant
    doc = event_doc(node, event.event_id)
    where = story.committed[event.event_id]
    assert doc["id"] == event.event_id.hex()
    assert doc["type"] == "grant"
    assert doc["actor"] == story.alice.public_key.hex()
    assert doc["envelope"] == event.envelope.hex()
    assert (doc["height"], doc["leaf_index"]) == (where["height"], where["leaf_index"])
    assert doc["chain"] == node.genesis.chain_id
    assert doc["dataset"] == story.dataset.hex()
    assert doc["to"] == story.bob.public_key.hex()
    assert doc["purposes"] == ["analytics", "derive"]
    assert doc["reshare"] is True
    assert doc["v"] == 1
    assert isinstance(doc["time"], int) and len(bytes.fromhex(doc["nonce"])) == 16


def _checkpoint(node: RunningNode) -> dict[str, Any]:
    response = node.client.get("/v1/checkpoint")
    assert response.status_code == 200, response.text
    point = dict(response.json())
    for name in ("header", "header_bytes", "block_hash", "commit", "tree_size", "root_hash"):
        assert name in point, name
    header_bytes = bytes.fromhex(point["header_bytes"])
    header = Header.decode(header_bytes)
    assert point["header"] == header.to_json()
    assert point["block_hash"] == hashlib.sha256(header_bytes).hexdigest()
    assert point["tree_size"] == header.tree_size
    assert point["root_hash"] == header.tree_root.hex()
    _check_commit_shape(point["commit"], header)
    genesis = node.genesis
    verify_checkpoint(
        header, Commit.from_json(point["commit"]), genesis.chain_id, genesis.validators
    )
    return point


def _check_commit_shape(commit: dict[str, Any], header: Header) -> None:
    assert commit["height"] == header.height
    assert isinstance(commit["round"], int)
    assert commit["block_hash"] == header.block_hash.hex()
    assert commit["signatures"], "a commit carries signatures"
    for entry in commit["signatures"]:
        assert set(entry) >= {"validator", "signature"}
        assert len(bytes.fromhex(entry["validator"])) == 33
        assert len(bytes.fromhex(entry["signature"])) == 64


def test_checkpoint_shape_and_signatures(node: RunningNode, story: Story) -> None:
    point = _checkpoint(node)
    status = node.client.get("/v1/status").json()
    assert point["tree_size"] == status["tree_size"]
    assert point["root_hash"] == status["root_hash"]


def test_inclusion_proof_verifies_against_the_checkpoint(node: RunningNode, story: Story) -> None:
    point = _checkpoint(node)
    for event in (story.register, story.use, story.attest):
        response = node.client.get(f"/v1/events/{event.event_id.hex()}/proof")
        assert response.status_code == 200, response.text
        proof = response.json()
        for name in ("leaf_index", "tree_size", "audit_path", "leaf_hash", "root_hash"):
            assert name in proof, name
        assert "checkpoint" in proof
        assert proof["leaf_index"] == story.committed[event.event_id]["leaf_index"]
        assert proof["leaf_hash"] == merkle.leaf_hash(event.envelope).hex()
        assert proof["tree_size"] == point["tree_size"]
        merkle.verify_inclusion(
            bytes.fromhex(proof["leaf_hash"]),
            proof["leaf_index"],
            proof["tree_size"],
            [bytes.fromhex(h) for h in proof["audit_path"]],
            bytes.fromhex(point["root_hash"]),
        )
        assert proof["checkpoint"]["root_hash"] == proof["root_hash"] == point["root_hash"]


def test_dataset_summary_shape(node: RunningNode, story: Story) -> None:
    response = node.client.get(f"/v1/datasets/{story.dataset.hex()}")
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["owner"] == story.alice.public_key.hex()
    assert doc["origin"] == story.register.event_id.hex()
    assert doc["status"] == "active"
    assert doc["parents"] == []
    assert doc["children"] == [story.derived.hex()]
    counts = doc["counts"]
    for kind in ("register", "grant", "use", "transfer", "derive", "attest"):
        assert counts.get(kind) == 1, (kind, counts)
    derived = node.client.get(f"/v1/datasets/{story.derived.hex()}").json()
    assert derived["owner"] == story.bob.public_key.hex()
    assert derived["parents"] == [story.dataset.hex()]
    assert derived["origin"] == story.derive.event_id.hex()


def test_provenance_bundle_verifies_against_the_genesis(node: RunningNode, story: Story) -> None:
    response = node.client.get(f"/v1/datasets/{story.dataset.hex()}/provenance")
    assert response.status_code == 200, response.text
    bundle = response.json()
    genesis = Genesis.from_json(node.client.get("/v1/genesis").json())
    verified = verify_bundle(bundle, genesis)
    assert verified.dataset == story.dataset
    assert verified.owner == story.alice.public_key
    ids = [p.event.event_id for p in verified.events]
    assert ids == [
        e.event_id
        for e in (
            story.register,
            story.grant,
            story.use,
            story.transfer,
            story.derive,
            story.attest,
        )
    ]
    assert verified.children == (story.derived,)
    assert [g.event.event_id for g in verified.grants] == [story.grant.event_id]
    assert verified.grants[0].live
    assert bundle["lineage"]["children"] == [story.derived.hex()]


def test_participant_events_page_by_after_and_limit(node: RunningNode, story: Story) -> None:
    key = story.bob.public_key.hex()
    everything = node.client.get(f"/v1/participants/{key}/events")
    assert everything.status_code == 200, everything.text
    all_events = everything.json()["events"]
    assert [e["id"] for e in all_events] == [
        e.event_id.hex() for e in (story.use, story.derive, story.attest)
    ]
    assert everything.json()["next"] is None
    pages, after = [], -1
    for _ in range(10):
        response = node.client.get(f"/v1/participants/{key}/events?after={after}&limit=2")
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["events"]) <= 2
        pages.extend(page["events"])
        if page["next"] is None:
            break
        assert page["next"] == page["events"][-1]["leaf_index"]
        after = page["next"]
    assert pages == all_events
    first = node.client.get(f"/v1/participants/{key}/events?limit=1").json()
    assert [e["id"] for e in first["events"]] == [story.use.event_id.hex()]
    assert first["next"] == story.committed[story.use.event_id]["leaf_index"]


def test_consistency_proof_verifies(node: RunningNode, story: Story) -> None:
    point = _checkpoint(node)
    size = point["tree_size"]
    first = story.committed[story.register.event_id]["leaf_index"] + 1
    response = node.client.get(f"/v1/consistency?first={first}&second={size}")
    assert response.status_code == 200, response.text
    doc = response.json()
    assert (doc["first"], doc["second"]) == (first, size)
    assert doc["second_root"] == point["root_hash"]
    merkle.verify_consistency(
        first,
        size,
        [bytes.fromhex(h) for h in doc["proof"]],
        bytes.fromhex(doc["first_root"]),
        bytes.fromhex(doc["second_root"]),
    )


def test_consistency_with_first_after_second_is_400(node: RunningNode, story: Story) -> None:
    size = node.client.get("/v1/status").json()["tree_size"]
    assert_problem(node.client.get(f"/v1/consistency?first={size}&second=1"), 400)
    assert_problem(node.client.get(f"/v1/consistency?first=0&second={size + 1}"), 400)
    assert_problem(node.client.get("/v1/consistency?first=0"), 400)


def test_block_shape(node: RunningNode, story: Story) -> None:
    where = story.committed[story.derive.event_id]
    response = node.client.get(f"/v1/blocks/{where['height']}")
    assert response.status_code == 200, response.text
    block = response.json()
    header_bytes = bytes.fromhex(block["header_bytes"])
    header = Header.decode(header_bytes)
    assert block["header"] == header.to_json()
    assert header.height == where["height"]
    assert block["block_hash"] == header.block_hash.hex()
    _check_commit_shape(block["commit"], header)
    envelopes = [e["envelope"] for e in block["events"]]
    assert story.derive.envelope.hex() in envelopes
    indexes = [e["leaf_index"] for e in block["events"]]
    assert indexes == list(range(header.tree_size - len(indexes), header.tree_size))
    leaves = [merkle.leaf_hash(bytes.fromhex(e)) for e in envelopes]
    assert merkle.root_from_leaf_hashes(leaves) == header.events_root
    assert_problem(node.client.get("/v1/blocks/0"), 400)


def test_status_genesis_validators_health_metrics(node: RunningNode) -> None:
    status = node.client.get("/v1/status").json()
    assert status["chain_id"] == node.genesis.chain_id
    assert isinstance(status["height"], int) and status["height"] >= 1
    assert status["catching_up"] is False

    genesis = node.client.get("/v1/genesis").json()
    assert genesis["chain_id"] == node.genesis.chain_id
    assert genesis["admission"] == "permissioned"
    assert genesis["registrars"] == [node.registrar.public_key.hex()]
    [validator] = genesis["validators"]
    assert set(validator) >= {"name", "public_key", "power", "url"}
    assert validator["public_key"] == status["public_key"]
    assert Genesis.from_json(genesis).hash() == node.genesis.hash()

    validators = node.client.get("/v1/validators").json()
    [mine] = validators["validators"]
    assert mine["public_key"] == status["public_key"]
    assert mine["reachable"] is True
    assert validators["total_power"] == 1

    health = node.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"

    metrics = node.client.get("/metrics")
    assert metrics.status_code == 200
    assert "provledger_height" in metrics.text

    schema = node.client.get("/openapi.json")
    assert schema.status_code == 200 and "/v1/events" in schema.json()["paths"]
    assert node.client.get("/docs").status_code == 200


def test_participant_lookup(node: RunningNode, story: Story) -> None:
    doc = node.client.get(f"/v1/participants/{story.alice.public_key.hex()}").json()
    assert doc == {
        "public_key": story.alice.public_key.hex(),
        "name": "alice",
        "role": "participant",
    }
    registrar = node.client.get(f"/v1/participants/{node.registrar.public_key.hex()}").json()
    assert registrar["role"] == "registrar"


# --- msgpack -------------------------------------------------------------------------------


def test_msgpack_is_returned_on_request(node: RunningNode, story: Story) -> None:
    for path in (
        f"/v1/events/{story.use.event_id.hex()}",
        f"/v1/datasets/{story.dataset.hex()}",
        "/v1/checkpoint",
        "/v1/genesis",
    ):
        as_json = node.client.get(path).json()
        response = node.client.get(path, headers={"accept": MSGPACK})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(MSGPACK)
        assert msgpack.unpackb(response.content, raw=False) == as_json, path


def test_msgpack_request_bodies_are_accepted(node: RunningNode) -> None:
    # docs/PROTOCOL.md §10.1: JSON by default, msgpack accepted and returned on request.
    event = node.make.admit(node.registrar, PrivateKey.generate().public_key, "packed")
    response = node.client.post(
        "/v1/events",
        content=codec.encode({"envelope": event.envelope.hex()}),
        headers={"content-type": MSGPACK, "accept": MSGPACK},
    )
    assert response.status_code == 202, response.text
    assert msgpack.unpackb(response.content)["event_id"] == event.event_id.hex()


def test_time_outside_the_window_is_refused(node: RunningNode) -> None:
    stale = node.make.admit(
        node.registrar, PrivateKey.generate().public_key, "stale", time=now_ms() - 3_600_000
    )
    assert_problem(node.submit(stale), 422)


# --- complete bundles in pages, state answers (docs/PROTOCOL.md §9, §10.3, §17) -------------


def test_provenance_pages_join_into_the_complete_story(node: RunningNode, story: Story) -> None:
    path = f"/v1/datasets/{story.dataset.hex()}/provenance"
    first = node.client.get(path, params={"limit": 2})
    assert first.status_code == 200, first.text
    pages = [first.json()]
    height = pages[0]["checkpoint"]["header"]["height"]
    assert pages[0]["page"]["next"] == pages[0]["events"][-1]["leaf_index"]
    while pages[-1]["page"]["next"] is not None:
        params = {"after": pages[-1]["page"]["next"], "height": height, "limit": 2}
        response = node.client.get(path, params=params)
        assert response.status_code == 200, response.text
        pages.append(response.json())
    assert len(pages) == 3
    genesis = Genesis.from_json(node.client.get("/v1/genesis").json())
    story_pages = provenance.join_pages(pages)
    verified = verify_bundle(story_pages, genesis)
    assert len(verified.events) == 6 and verified.status == "active"
    # a missing page is caught by the commitment
    with pytest.raises(VerificationFailed, match="incomplete"):
        verify_bundle(provenance.join_pages([pages[0], pages[2]]), genesis)


@pytest.mark.parametrize(
    "params",
    [
        {"height": 1},  # the first page is at the head
        {"after": 3},  # a later page names its checkpoint
        {"after": -2},
        {"limit": 0},
        {"limit": provenance.MAX_PAGE_EVENTS + 1},
        {"after": 1, "height": 0},
    ],
)
def test_provenance_page_parameters_are_checked(
    node: RunningNode, story: Story, params: dict[str, int]
) -> None:
    response = node.client.get(f"/v1/datasets/{story.dataset.hex()}/provenance", params=params)
    assert_problem(response, 400)


def test_state_answers_are_proven(node: RunningNode, story: Story) -> None:
    genesis = Genesis.from_json(node.client.get("/v1/genesis").json())
    cases = [
        ("dataset", story.dataset, "owner"),
        ("grant", story.grant.event_id, "purposes"),
        ("participant", story.bob.public_key, "role"),
        ("commitment", story.bob.public_key, "head"),
    ]
    for kind, ident, field in cases:
        response = node.client.get(f"/v1/state/{kind}/{ident.hex()}")
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["kind"] == kind and field in doc["record"]
        state = provenance.verify_state(doc, genesis, kind, ident)
        assert state.record is not None
    unknown = hashlib.sha256(b"never registered" + os.urandom(8)).digest()
    response = node.client.get(f"/v1/state/dataset/{unknown.hex()}")
    assert response.status_code == 200
    doc = response.json()
    assert doc["value"] is None and doc["record"] is None
    assert provenance.verify_state(doc, genesis, "dataset", unknown).record is None
    assert_problem(node.client.get(f"/v1/datasets/{unknown.hex()}/provenance"), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/state/holder/" + "00" * 32,
        "/v1/state/dataset/" + "00" * 31,
        "/v1/state/dataset/" + "0G" * 32,
        "/v1/state/grant/" + "00" * 33,  # a grant id is 32 bytes
        "/v1/state/participant/" + "00" * 32,  # a public key is 33
    ],
)
def test_state_query_refuses_bad_paths(node: RunningNode, path: str) -> None:
    assert_problem(node.client.get(path), 400)
