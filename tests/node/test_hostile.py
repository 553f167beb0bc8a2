"""A node under hostile input: garbage from "peers", malformed client requests, forged events.

Peer endpoints take msgpack `{"from": name, "messages": [bytes...]}` (consensus) and
`{"from": name, "events": [bytes...]}` (mempool gossip). Whatever arrives there, the node must
answer without a 5xx, refuse malformed top-level bodies with 400, stay healthy and keep its
chain exactly as it was.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from consensus.messages import Proposal, encode_message
from ledger import codec, crypto
from ledger.blocks import PRECOMMIT, PREVOTE, Block, Header, Vote, vote_sign_bytes
from ledger.crypto import PrivateKey
from ledger.provenance import verify_bundle
from node.wire import MAX_P2P_BODY
from tests.node.conftest import EventFactory, RunningNode, assert_problem

MSGPACK = "application/msgpack"
CONSENSUS = "/p2p/consensus"
EVENTS = "/p2p/events"
GARBAGE_MESSAGES = 1_000
SEED = 20_240_601


@dataclass(frozen=True)
class Hostile:
    """One hostile POST: where, what, and whether its top level is malformed (-> 400)."""

    path: str
    body: bytes
    malformed: bool


def packed(value: Any) -> bytes:
    """msgpack as a careless peer writes it: insertion order, no canonical checks."""
    return msgpack.packb(value, use_bin_type=True)


def wrap(path: str, items: list[bytes]) -> bytes:
    field = "messages" if path == CONSENSUS else "events"
    return codec.encode({"from": "x", field: items})


class Garbage:
    """Builds the hostile corpus for one chain from a seeded RNG."""

    def __init__(self, node: RunningNode, rng: random.Random) -> None:
        self.rng = rng
        self.chain_id = node.genesis.chain_id
        self.validator = node.genesis.validators.validators[0].public_key
        self.height = node.service.store.height
        self.registrar = node.registrar
        self.make = EventFactory(self.chain_id)
        self.strangers = [PrivateKey.generate() for _ in range(4)]
        self.valid_vote = self._vote(self.strangers[0], PREVOTE, self.height + 1, 0)

    def blob(self, low: int = 0, high: int = 200) -> bytes:
        return self.rng.randbytes(self.rng.randint(low, high))

    def path(self) -> str:
        return self.rng.choice((CONSENSUS, EVENTS))

    # --- inner messages with a valid structure -------------------------------------------

    def _vote(
        self,
        key: PrivateKey,
        vote_type: str,
        height: int,
        round: int,
        block_hash: bytes | None = None,
        validator: bytes | None = None,
    ) -> bytes:
        signature = key.sign(vote_sign_bytes(self.chain_id, height, round, vote_type, block_hash))
        vote = Vote(vote_type, height, round, block_hash, validator or key.public_key, signature)
        return encode_message(vote)

    def non_validator_vote(self) -> bytes:
        height = self.rng.choice((0, 1, self.height, self.height + 1, self.height + 2, 1 << 31))
        round = self.rng.choice((0, 1, 5, (1 << 31) - 1))
        vote_type = self.rng.choice((PREVOTE, PRECOMMIT))
        block_hash = self.rng.choice((None, os.urandom(32)))
        return self._vote(self.rng.choice(self.strangers), vote_type, height, round, block_hash)

    def forged_validator_vote(self) -> bytes:
        # Claims to be the validator, signed by someone else (or just random bytes).
        vote_type = self.rng.choice((PREVOTE, PRECOMMIT))
        height = self.rng.choice((self.height, self.height + 1, self.height + 2))
        block_hash = self.rng.choice((None, os.urandom(32)))
        if self.rng.random() < 0.5:
            return self._vote(
                self.strangers[1], vote_type, height, 0, block_hash, validator=self.validator
            )
        wire = {
            "type": vote_type,
            "height": height,
            "round": 0,
            "validator": self.validator,
            "signature": self.rng.randbytes(64),
        }
        if block_hash is not None:
            wire["block"] = block_hash
        return codec.encode(wire)

    def proposal(self) -> bytes:
        # A well-formed block proposal at the next height, badly signed or by a stranger.
        header = Header(
            chain=self.chain_id,
            height=self.height + 1,
            time=1_900_000_000_000,
            prev=os.urandom(32),
            proposer=self.validator,
            events_root=crypto.sha256(b""),
            tree_size=0,
            tree_root=crypto.sha256(b""),
            state_root=os.urandom(32),
            validators=os.urandom(32),
        )
        block = Block(header, (self.event_with_bad_signature(),))
        stranger = self.rng.choice(self.strangers)
        proposer = self.rng.choice((self.validator, stranger.public_key))
        proposal = Proposal(
            height=self.rng.choice((self.height, self.height + 1)),
            round=0,
            block=block,
            valid_round=-1,
            proposer=proposer,
            signature=stranger.sign(b"not the proposal"),
        )
        return encode_message(proposal)

    # --- inner events that must not get in ------------------------------------------------

    def event_with_bad_signature(self) -> bytes:
        event = self.make.admit(self.registrar, PrivateKey.generate().public_key, "forged")
        return codec.encode({"body": event.body_bytes, "sig": self.rng.randbytes(64)})

    def event_from_a_stranger(self) -> bytes:
        return self.make.register(self.rng.choice(self.strangers)).envelope

    def event_for_another_chain(self) -> bytes:
        other = EventFactory("another-chain")
        return other.admit(self.registrar, PrivateKey.generate().public_key).envelope

    def event_with_high_s(self) -> bytes:
        event = self.make.admit(self.registrar, PrivateKey.generate().public_key, "high-s")
        s = int.from_bytes(event.signature[32:], "big")
        sig = event.signature[:32] + (crypto.CURVE_ORDER - s).to_bytes(32, "big")
        return codec.encode({"body": event.body_bytes, "sig": sig})

    def inner_garbage(self) -> bytes:
        choice = self.rng.randrange(8)
        if choice == 0:
            return self.blob()
        if choice == 1:
            return packed({"type": "prevote", "height": "one", "round": -1})
        if choice == 2:
            return packed(msgpack.ExtType(5, b"ext"))
        if choice == 3:
            return packed({"type": PREVOTE, "height": 1.5})
        if choice == 4:
            return b"\x91" * 50 + b"\xc0"
        if choice == 5:
            return self.valid_vote[: self.rng.randrange(len(self.valid_vote))]
        if choice == 6:  # non-canonical: keys out of order
            return packed(dict(reversed(list(codec.decode_map(self.valid_vote).items()))))
        return b"\xdb\xff\xff\xff\xff" + self.blob(0, 8)

    # --- malformed top-level bodies --------------------------------------------------------

    def malformed_body(self, path: str) -> bytes:
        field = "messages" if path == CONSENSUS else "events"
        good = wrap(path, [self.valid_vote])
        choice = self.rng.randrange(16)
        if choice == 0:
            return self.blob(0, 400)
        if choice == 1:
            return good[: self.rng.randrange(len(good))]
        if choice == 2:  # huge declared lengths
            return self.rng.choice(
                (
                    b"\xdb\xff\xff\xff\xff",
                    b"\xc6\xff\xff\xff\xffabc",
                    b"\xdd\xff\xff\xff\xff\x01",
                    b"\xdf\xff\xff\xff\xff",
                    b"\x82\xa4from\xa1x" + packed(field) + b"\xdd\x7f\xff\xff\xff",
                    b"\x82\xa4from\xa1x" + packed(field) + b"\x91\xc6\x7f\xff\xff\xff",
                )
            )
        if choice == 3:  # valid msgpack, wrong shape
            return packed(
                self.rng.choice(
                    (
                        1,
                        "messages",
                        [b"x"],
                        None,
                        True,
                        {},
                        {"from": "x"},
                        {"from": "x", field: "abc"},
                        {"from": "x", field: [1, 2, 3]},
                        {"from": "x", field: [b"ok", "not bytes"]},
                        {"from": "x", field: {"a": b"b"}},
                        {"from": "x", field: None},
                        {"from": "x", field: [[b"nested"]]},
                    )
                )
            )
        if choice == 4:  # non-canonical map: keys out of order
            return packed(dict(sorted({field: [self.valid_vote], "from": "x"}.items())[::-1]))
        if choice == 5:  # non-canonical: duplicate keys
            return b"\x83\xa4from\xa1x" + packed(field) + b"\x90" + packed(field) + b"\x90"
        if choice == 6:  # non-canonical: integer not in its shortest form
            return b"\x82\xa4from\xce\x00\x00\x00\x01" + packed(field) + b"\x90"
        if choice == 7:  # ext types
            return packed({"from": msgpack.ExtType(1, b"x"), field: []})
        if choice == 8:  # timestamp ext
            return packed({"from": "x", field: [msgpack.Timestamp(1, 2)]})
        if choice == 9:  # floats
            return packed({"from": 1.5, field: []})
        if choice == 10:
            return packed(3.25)
        if choice == 11:  # deep nesting, from barely too deep to absurdly deep
            depth = self.rng.choice((9, 20, 1_000, 100_000))
            return packed({"from": "x", field: []})[:-1] + b"\x91" * depth + b"\x90"
        if choice == 12:  # trailing bytes after a valid body
            return good + self.blob(1, 10)
        if choice == 13:  # non-UTF-8 text
            return b"\x82\xa4from\xa2\xff\xfe" + packed(field) + b"\x90"
        if choice == 14:  # map with a non-text key
            return b"\x82\x01\xa1x" + packed(field) + b"\x90"
        return b""

    def corpus(self, count: int) -> list[Hostile]:
        wellformed: list[Callable[[], bytes]] = [
            self.non_validator_vote,
            self.forged_validator_vote,
            self.proposal,
            self.inner_garbage,
            self.event_with_bad_signature,
            self.event_from_a_stranger,
            self.event_for_another_chain,
            self.event_with_high_s,
        ]
        out = []
        for i in range(count):
            path = CONSENSUS if i % 2 == 0 else EVENTS
            if self.rng.random() < 0.55:
                out.append(Hostile(path, self.malformed_body(path), True))
            else:
                items = [self.rng.choice(wellformed)() for _ in range(self.rng.randint(1, 3))]
                out.append(Hostile(path, wrap(path, items), False))
        return out


def block_hashes(node: RunningNode, up_to: int) -> list[str]:
    hashes = []
    for height in range(1, up_to + 1):
        response = node.client.get(f"/v1/blocks/{height}")
        assert response.status_code == 200, response.text
        hashes.append(response.json()["block_hash"])
    return hashes


def test_a_thousand_garbage_peer_messages(node: RunningNode) -> None:
    # Some history first, so that there is something to keep intact.
    alice = node.admit_participant("alice")
    node.commit(node.make.register(alice))
    height_before = node.height()
    hashes_before = block_hashes(node, height_before)
    size_before = node.client.get("/v1/status").json()["tree_size"]

    corpus = Garbage(node, random.Random(SEED)).corpus(GARBAGE_MESSAGES)
    assert len(corpus) == GARBAGE_MESSAGES
    assert sum(h.malformed for h in corpus) > 300
    assert sum(not h.malformed for h in corpus) > 300
    statuses: dict[int, int] = {}
    for index, hostile in enumerate(corpus):
        response = node.peer_post(hostile.path, hostile.body)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (index, hostile, response.text)
        if hostile.malformed:
            assert_problem(response, 400)
        else:
            assert response.status_code in (200, 202, 204), (index, hostile, response.text)
    assert set(statuses) <= {204, 400}, statuses

    assert node.client.get("/healthz").status_code == 200
    assert block_hashes(node, height_before) == hashes_before
    status = node.client.get("/v1/status").json()
    assert status["tree_size"] == size_before, "garbage must not add events to the log"
    assert status["evidence"] == 0
    assert node.service.stats.peer_messages_rejected > 0
    # The node still works: a valid event commits, and history stays as it was.
    node.commit(node.make.register(alice))
    assert block_hashes(node, height_before) == hashes_before


def test_an_oversized_peer_body_is_413(node: RunningNode) -> None:
    body = b"\x00" * (MAX_P2P_BODY + 1)
    for path in (CONSENSUS, EVENTS):
        assert_problem(node.peer_post(path, body), 413)
    assert node.client.get("/healthz").status_code == 200


def test_peer_block_requests_never_fail_with_5xx(node: RunningNode) -> None:
    for height in ("0", "-1", str(10**6), str(1 << 63), str(1 << 64), str(10**30)):
        response = node.peer_get(f"/p2p/blocks/{height}")
        assert response.status_code == 404, (height, response.status_code, response.text)
    assert_problem(node.peer_get("/p2p/blocks/abc"), 400)


def test_public_block_heights_out_of_range_are_not_5xx(node: RunningNode) -> None:
    for height in (str(1 << 63), str(1 << 64), str(10**30)):
        response = node.client.get(f"/v1/blocks/{height}")
        assert response.status_code in (400, 404), (height, response.status_code, response.text)
        assert_problem(response, response.status_code)


# --- the strict request model --------------------------------------------------------------


@pytest.mark.parametrize("envelope", [True, 1, 1.5, None, ["00"], {"hex": "00"}])
def test_the_envelope_must_be_a_hex_string(node: RunningNode, envelope: Any) -> None:
    assert_problem(node.client.post("/v1/events", json={"envelope": envelope}), 400)


@pytest.mark.parametrize(
    "query",
    ["limit=abc", "limit=true", "limit=1.5", "after=1.5", "after=abc", "limit=0", "limit=501"],
)
def test_query_parameters_are_typed(node: RunningNode, query: str) -> None:
    key = node.registrar.public_key.hex()
    assert_problem(node.client.get(f"/v1/participants/{key}/events?{query}"), 400)


@pytest.mark.parametrize("query", ["first=a&second=1", "first=1.5&second=2", "first=-1&second=0"])
def test_consistency_parameters_are_typed(node: RunningNode, query: str) -> None:
    assert_problem(node.client.get(f"/v1/consistency?{query}"), 400)


def test_page_positions_beyond_64_bits_are_not_5xx(node: RunningNode) -> None:
    key = node.registrar.public_key.hex()
    for after in ((1 << 63) - 1, (1 << 64) - 1, 10**30):
        response = node.client.get(f"/v1/participants/{key}/events?after={after}")
        assert response.status_code in (200, 400), (after, response.status_code, response.text)
        if response.status_code == 200:
            assert response.json() == {"events": [], "next": None}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/events/" + "g" * 64,
        "/v1/events/" + "ab" * 31,
        "/v1/events/" + "AB" * 32,
        "/v1/datasets/xyz",
        "/v1/participants/" + "00" * 32,
    ],
)
def test_bad_path_parameters_are_400_or_404(node: RunningNode, path: str) -> None:
    response = node.client.get(path)
    assert response.status_code in (400, 404), response.text
    assert_problem(response, response.status_code)


# --- forged signatures over bodies the node has already seen -------------------------------


def test_a_forged_signature_over_a_previously_refused_body_is_refused(
    node: RunningNode,
) -> None:
    """The node may remember which signatures it checked, but never accept a different one.

    A grant on an unregistered dataset is well signed but refused (422). Once the dataset is
    registered, the same body with a garbage signature must still be refused (401) — else the
    node commits an envelope whose signature does not verify, and every proof bundle of the
    dataset becomes unverifiable.
    """
    alice = node.admit_participant("alice-2")
    dataset = os.urandom(32)
    grant = node.make.grant(alice, dataset, node.registrar.public_key)
    assert_problem(node.submit(grant), 422)
    node.commit(node.make.register(alice, dataset))
    forged = codec.encode({"body": grant.body_bytes, "sig": b"\x01" * 64})
    assert_problem(node.submit(forged), 401)
    bundle = node.client.get(f"/v1/datasets/{dataset.hex()}/provenance").json()
    verify_bundle(bundle, node.genesis)


def test_a_forged_signature_over_a_refused_body_is_not_gossiped_in(node: RunningNode) -> None:
    # The same through the peer endpoint: a garbage signature must never enter the log.
    bob = node.admit_participant("bob-2")
    dataset = os.urandom(32)
    use = node.make.use(bob, dataset, "analytics")
    assert_problem(node.submit(use), 422)  # well signed, refused: the dataset is unknown yet
    node.commit(node.make.register(bob, dataset))
    forged_use = codec.encode({"body": use.body_bytes, "sig": b"\x02" * 64})
    response = node.peer_post(EVENTS, wrap(EVENTS, [forged_use]))
    assert response.status_code == 204
    node.commit(node.make.attest(bob, dataset))  # whatever was admitted is in a block now
    assert forged_use.hex() not in [e["envelope"] for e in _all_events(node)]
    verify_bundle(node.client.get(f"/v1/datasets/{dataset.hex()}/provenance").json(), node.genesis)


def _all_events(node: RunningNode) -> list[dict[str, Any]]:
    docs = []
    for height in range(1, node.height() + 1):
        docs.extend(node.client.get(f"/v1/blocks/{height}").json()["events"])
    return docs
