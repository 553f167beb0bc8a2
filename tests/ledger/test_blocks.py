"""Validator sets, votes, commits, headers, blocks and checkpoints (PROTOCOL §6-7)."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import msgpack
import pytest

from ledger import codec, crypto, merkle
from ledger.blocks import (
    HEADER_FIELDS,
    MAX_VALIDATORS,
    NEXT_VALIDATORS,
    PRECOMMIT,
    PREVOTE,
    Block,
    Commit,
    CommitSignature,
    Header,
    Validator,
    ValidatorSet,
    Vote,
    verify_checkpoint,
    vote_sign_bytes,
)
from ledger.errors import BadSignature, Malformed, VerificationFailed
from tests.ledger.helpers import (
    CHAIN_ID,
    make_header,
    make_key,
    make_keys,
    make_validators,
    sign_commit,
    sign_vote,
)

BLOCK = crypto.sha256(b"block")
OTHER_BLOCK = crypto.sha256(b"other block")


@pytest.fixture(scope="module")
def four() -> tuple[list, ValidatorSet]:
    return make_validators(4)


@pytest.fixture(scope="module")
def weighted() -> tuple[list, ValidatorSet]:
    return make_validators(4, [3, 1, 1, 1])


def wire_roundtrip(doc: dict) -> dict:
    """What a peer receives: the canonical bytes, strictly decoded."""
    return codec.decode(codec.encode(doc))


# --- validator sets --------------------------------------------------------------------------


def test_validator_set_basics(weighted: tuple[list, ValidatorSet]) -> None:
    keys, vs = weighted
    assert vs.total_power == 6
    assert vs.get(keys[0].public_key).power == 3
    assert vs.get(keys[1].public_key).name == "v1"
    assert vs.get(make_key().public_key) is None
    assert vs.power_of({k.public_key for k in keys[:2]}) == 4
    assert vs.power_of({keys[0].public_key, make_key().public_key}) == 3
    assert vs.power_of(frozenset()) == 0


def test_empty_validator_set_is_malformed() -> None:
    with pytest.raises(Malformed):
        ValidatorSet(())


def test_validator_set_size_limit() -> None:
    keys = make_keys(MAX_VALIDATORS + 1, seed=1_000)
    members = tuple(Validator(f"v{i}", k.public_key, 1) for i, k in enumerate(keys))
    assert len(ValidatorSet(members[:MAX_VALIDATORS]).validators) == MAX_VALIDATORS
    with pytest.raises(Malformed):
        ValidatorSet(members)


def test_duplicate_validator_key_is_malformed() -> None:
    key = make_key()
    with pytest.raises(Malformed):
        ValidatorSet((Validator("a", key.public_key, 1), Validator("a", key.public_key, 1)))
    with pytest.raises(Malformed):
        ValidatorSet((Validator("a", key.public_key, 1), Validator("b", key.public_key, 2)))


@pytest.mark.parametrize(
    ("powers", "quorum_boundary", "third_boundary"),
    [
        # (powers, largest power WITHOUT quorum, largest power NOT exceeding 1/3)
        ([1, 1, 1, 1], 2, 1),
        ([3, 1, 1, 1], 4, 2),  # 4/6 is exactly 2/3, 2/6 exactly 1/3
        ([1, 1, 1], 2, 1),  # 2/3 exactly, 1/3 exactly
        ([1], 0, 0),
        ([1, 1], 1, 0),
        ([10, 10, 10, 10, 10, 10, 10], 46, 23),
    ],
)
def test_quorum_thresholds_are_strict(
    powers: list[int], quorum_boundary: int, third_boundary: int
) -> None:
    _, vs = make_validators(len(powers), powers)
    assert not vs.has_quorum(quorum_boundary)
    assert vs.has_quorum(quorum_boundary + 1)
    assert not vs.exceeds_one_third(third_boundary)
    assert vs.exceeds_one_third(third_boundary + 1)
    assert vs.has_quorum(vs.total_power)
    assert not vs.has_quorum(0)


def test_quorum_thresholds_match_exact_fractions() -> None:
    keys = make_keys(1, seed=50)
    for total in range(1, 40):
        vs = ValidatorSet((Validator("v", keys[0].public_key, total),))
        for power in range(total + 1):
            assert vs.has_quorum(power) == (Fraction(power, total) > Fraction(2, 3))
            assert vs.exceeds_one_third(power) == (Fraction(power, total) > Fraction(1, 3))


def test_validator_set_hash_is_stable_and_canonical() -> None:
    keys, vs = make_validators(3, [1, 2, 3], seed=7)
    _, again = make_validators(3, [1, 2, 3], seed=7)
    assert vs == again
    assert vs.hash() == again.hash()
    assert len(vs.hash()) == 32
    expected = crypto.sha256(
        codec.encode(
            [
                {"name": f"v{i}", "power": p, "public_key": k.public_key}
                for i, (k, p) in enumerate(zip(keys, [1, 2, 3], strict=True))
            ]
        )
    )
    assert vs.hash() == expected
    # hand-built canonical form of the first entry: keys sorted name < power < public_key
    first = b"\x83\xa4name\xa2v0\xa5power\x01\xaapublic_key\xc4\x21" + keys[0].public_key
    assert codec.encode([{"public_key": keys[0].public_key, "power": 1, "name": "v0"}]) == (
        b"\x91" + first
    )


def test_validator_set_hash_commits_to_members_order_and_powers() -> None:
    _, vs = make_validators(3, seed=11)
    base = vs.hash()
    members = list(vs.validators)
    variants = {
        "reordered": [members[1], members[0], members[2]],
        "power": [dataclasses.replace(members[0], power=2), *members[1:]],
        "name": [dataclasses.replace(members[0], name="renamed"), *members[1:]],
        "key": [dataclasses.replace(members[0], public_key=make_key(99).public_key), *members[1:]],
        "dropped": members[:2],
        "added": [*members, Validator("v3", make_key(98).public_key, 1)],
    }
    hashes = {name: ValidatorSet(tuple(m)).hash() for name, m in variants.items()}
    for name, digest in hashes.items():
        assert digest != base, name
    assert len(set(hashes.values())) == len(hashes)
    # the url is operational, not part of the commitment (documented in ValidatorSet.hash)
    with_url = ValidatorSet(
        (dataclasses.replace(members[0], url="http://10.0.0.1:8800"), *members[1:])
    )
    assert with_url.hash() == base


def test_validator_json_round_trip() -> None:
    v = Validator("node-0", make_key().public_key, 7, "http://127.0.0.1:8800")
    doc = json.loads(json.dumps(v.to_json()))
    assert doc == {
        "name": "node-0",
        "public_key": v.public_key.hex(),
        "power": 7,
        "url": "http://127.0.0.1:8800",
    }
    assert Validator.from_json(doc) == v


# --- vote sign bytes and votes ---------------------------------------------------------------


def test_vote_sign_bytes_exact_bytes() -> None:
    block = bytes(range(32))
    expected = (
        b"\x85"
        + b"\xa5block\xc4\x20"
        + block
        + b"\xa5chain\xa1c"
        + b"\xa6height\x05"
        + b"\xa5round\x00"
        + b"\xa4type\xa9precommit"
    )
    assert vote_sign_bytes("c", 5, 0, PRECOMMIT, block) == expected
    nil = b"\x84\xa5chain\xa1c\xa6height\x05\xa5round\x00\xa4type\xa7prevote"
    assert vote_sign_bytes("c", 5, 0, PREVOTE, None) == nil


def test_vote_sign_bytes_is_the_canonical_map() -> None:
    data = vote_sign_bytes(CHAIN_ID, 7, 2, PRECOMMIT, BLOCK)
    doc = codec.decode(data)
    assert list(doc) == ["block", "chain", "height", "round", "type"]
    assert doc == {"block": BLOCK, "chain": CHAIN_ID, "height": 7, "round": 2, "type": PRECOMMIT}
    nil = codec.decode(vote_sign_bytes(CHAIN_ID, 7, 2, PREVOTE, None))
    assert list(nil) == ["chain", "height", "round", "type"]
    assert "block" not in nil
    assert nil["type"] == PREVOTE
    assert codec.encode(doc) == data


def test_vote_sign_bytes_distinguish_every_field() -> None:
    base = (CHAIN_ID, 7, 2, PRECOMMIT, BLOCK)
    variants = [
        ("other-chain", 7, 2, PRECOMMIT, BLOCK),
        (CHAIN_ID, 8, 2, PRECOMMIT, BLOCK),
        (CHAIN_ID, 7, 3, PRECOMMIT, BLOCK),
        (CHAIN_ID, 7, 2, PREVOTE, BLOCK),
        (CHAIN_ID, 7, 2, PRECOMMIT, OTHER_BLOCK),
        (CHAIN_ID, 7, 2, PRECOMMIT, None),
    ]
    all_bytes = {vote_sign_bytes(*v) for v in [base, *variants]}
    assert len(all_bytes) == len(variants) + 1


def test_vote_wire_round_trip_and_verify(four: tuple[list, ValidatorSet]) -> None:
    keys, vs = four
    for block_hash in (BLOCK, None):
        for vote_type in (PREVOTE, PRECOMMIT):
            vote = sign_vote(keys[1], CHAIN_ID, 3, 1, block_hash, vote_type)
            wire = vote.to_wire()
            assert ("block" in wire) == (block_hash is not None)
            assert None not in wire.values()
            again = Vote.from_wire(wire_roundtrip(wire))
            assert again == vote
            again.verify(CHAIN_ID, vs)


def test_vote_verify_rejects(four: tuple[list, ValidatorSet]) -> None:
    keys, vs = four
    outsider = make_key()
    with pytest.raises(BadSignature):
        sign_vote(outsider, CHAIN_ID, 3, 1, BLOCK).verify(CHAIN_ID, vs)
    vote = sign_vote(keys[0], CHAIN_ID, 3, 1, BLOCK, PREVOTE)
    with pytest.raises(BadSignature):
        vote.verify("other-chain", vs)
    for changed in (
        dataclasses.replace(vote, type=PRECOMMIT),
        dataclasses.replace(vote, height=4),
        dataclasses.replace(vote, round=2),
        dataclasses.replace(vote, block_hash=OTHER_BLOCK),
        dataclasses.replace(vote, block_hash=None),
        dataclasses.replace(vote, validator=keys[1].public_key),
    ):
        with pytest.raises(BadSignature):
            changed.verify(CHAIN_ID, vs)


def _vote_wire() -> dict:
    key = make_key(seed=3)
    return sign_vote(key, CHAIN_ID, 3, 1, BLOCK).to_wire()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "vote"),
        ("type", 1),
        ("height", True),
        ("height", -1),
        ("height", "3"),
        ("round", False),
        ("round", -1),
        ("block", BLOCK[:31]),
        ("block", BLOCK + b"\x00"),
        ("block", BLOCK.hex()),
        ("block", None),
        ("validator", "hex"),
        ("signature", None),
    ],
)
def test_vote_from_wire_rejects_wrong_types(field: str, value: object) -> None:
    doc = _vote_wire()
    doc[field] = value
    with pytest.raises(Malformed):
        Vote.from_wire(doc)


@pytest.mark.parametrize("field", ["type", "height", "round", "validator", "signature"])
def test_vote_from_wire_rejects_missing_fields(field: str) -> None:
    doc = _vote_wire()
    del doc[field]
    with pytest.raises(Malformed):
        Vote.from_wire(doc)


@pytest.mark.parametrize("doc", [None, [], b"", "vote", 1])
def test_vote_from_wire_rejects_non_maps(doc: object) -> None:
    with pytest.raises(Malformed):
        Vote.from_wire(doc)


# --- commits ---------------------------------------------------------------------------------


def test_commit_wire_and_json_round_trips(four: tuple[list, ValidatorSet]) -> None:
    keys, vs = four
    commit = sign_commit(keys[:3], CHAIN_ID, 5, 2, BLOCK)
    assert Commit.from_wire(wire_roundtrip(commit.to_wire())) == commit
    doc = json.loads(json.dumps(commit.to_json()))
    assert doc == {
        "height": 5,
        "round": 2,
        "block_hash": BLOCK.hex(),
        "signatures": [
            {"validator": s.validator.hex(), "signature": s.signature.hex()}
            for s in commit.signatures
        ],
    }
    assert Commit.from_json(doc) == commit
    Commit.from_json(doc).verify(CHAIN_ID, vs)
    empty = Commit(0, 0, BLOCK, ())
    assert Commit.from_wire(wire_roundtrip(empty.to_wire())) == empty
    assert Commit.from_json(empty.to_json()) == empty


def _commit_wire() -> dict:
    keys = make_keys(2, seed=20)
    return sign_commit(keys, CHAIN_ID, 5, 2, BLOCK).to_wire()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height", True),
        ("height", -1),
        ("height", "5"),
        ("round", True),
        ("round", None),
        ("block", BLOCK[:31]),
        ("block", BLOCK + b"\x00"),
        ("block", BLOCK.hex()),
        ("signatures", "none"),
        ("signatures", {}),
        ("signatures", [[b"a"]]),
        ("signatures", [[b"a", b"b", b"c"]]),
        ("signatures", [["a", b"b"]]),
        ("signatures", [[b"a", None]]),
        ("signatures", [b"ab"]),
        ("signatures", [{"validator": b"a", "signature": b"b"}]),
    ],
)
def test_commit_from_wire_rejects_wrong_types(field: str, value: object) -> None:
    doc = _commit_wire()
    doc[field] = value
    with pytest.raises(Malformed):
        Commit.from_wire(doc)


@pytest.mark.parametrize("field", ["height", "round", "block", "signatures"])
def test_commit_from_wire_rejects_missing_fields(field: str) -> None:
    doc = _commit_wire()
    del doc[field]
    with pytest.raises(Malformed):
        Commit.from_wire(doc)


def _commit_json() -> dict:
    keys = make_keys(2, seed=20)
    return sign_commit(keys, CHAIN_ID, 5, 2, BLOCK).to_json()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height", None),
        ("height", "five"),
        ("height", [5]),
        ("block_hash", "zz" * 32),
        ("block_hash", 5),
        ("signatures", None),
        ("signatures", [{"validator": "00"}]),
        ("signatures", [{"validator": "xyz", "signature": "00"}]),
        ("signatures", ["00"]),
    ],
)
def test_commit_from_json_rejects_garbage(field: str, value: object) -> None:
    doc = _commit_json()
    doc[field] = value
    with pytest.raises(Malformed):
        Commit.from_json(doc)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height", True),
        ("round", False),
        ("height", -1),
        ("round", -3),
        ("height", "5"),
        ("height", 5.5),
        ("block_hash", BLOCK[:31].hex()),
        ("block_hash", (BLOCK + b"\x00").hex()),
    ],
    ids=[
        "bool-height",
        "bool-round",
        "negative-height",
        "negative-round",
        "str-height",
        "float-height",
        "31-byte-block-hash",
        "33-byte-block-hash",
    ],
)
def test_commit_from_json_is_as_strict_as_from_wire(field: str, value: object) -> None:
    """JSON commits (what `verify` reads from a node) get the same type checks as the wire:
    no bools or strings or floats as integers, no negative heights, 32-byte block hashes."""
    doc = _commit_json()
    doc[field] = value
    with pytest.raises(Malformed):
        Commit.from_json(doc)


@pytest.mark.parametrize("field", ["height", "round", "block_hash", "signatures"])
def test_commit_from_json_rejects_missing_fields(field: str) -> None:
    doc = _commit_json()
    del doc[field]
    with pytest.raises(Malformed):
        Commit.from_json(doc)


@pytest.mark.parametrize("doc", [None, [], "commit", 1])
def test_commit_parsers_reject_non_maps(doc: object) -> None:
    with pytest.raises(Malformed):
        Commit.from_wire(doc)
    with pytest.raises(Malformed):
        Commit.from_json(doc)


def _reason(exc: pytest.ExceptionInfo[VerificationFailed]) -> str:
    return exc.value.reason


def test_commit_with_more_than_two_thirds_verifies(four: tuple[list, ValidatorSet]) -> None:
    keys, vs = four
    sign_commit(keys[:3], CHAIN_ID, 5, 0, BLOCK).verify(CHAIN_ID, vs)
    sign_commit(keys, CHAIN_ID, 5, 0, BLOCK).verify(CHAIN_ID, vs)
    sign_commit(keys[::-1], CHAIN_ID, 5, 0, BLOCK).verify(CHAIN_ID, vs)
    sign_commit(keys[1:], CHAIN_ID, 5, 7, BLOCK).verify(CHAIN_ID, vs)


def test_weighted_commit_verifies(weighted: tuple[list, ValidatorSet]) -> None:
    keys, vs = weighted
    sign_commit(keys[:3], CHAIN_ID, 1, 0, BLOCK).verify(CHAIN_ID, vs)  # 5 of 6


@pytest.mark.parametrize(
    ("powers", "signers"),
    [
        ([3, 1, 1, 1], [0, 1]),  # 4 of 6: exactly 2/3
        ([3, 1, 1, 1], [0]),  # 3 of 6
        ([3, 1, 1, 1], [1, 2, 3]),  # 3 of 6
        ([1, 1, 1], [0, 1]),  # exactly 2/3
        ([1, 1, 1, 1], [0, 1]),  # 1/2
        ([1, 1, 1, 1], []),
        ([2, 1], [0]),  # exactly 2/3
    ],
)
def test_commit_without_more_than_two_thirds_is_rejected(
    powers: list[int], signers: list[int]
) -> None:
    keys, vs = make_validators(len(powers), powers)
    commit = sign_commit([keys[i] for i in signers], CHAIN_ID, 1, 0, BLOCK)
    with pytest.raises(VerificationFailed) as exc:
        commit.verify(CHAIN_ID, vs)
    assert _reason(exc) == "insufficient voting power"


def test_duplicate_signer_is_rejected(four: tuple[list, ValidatorSet]) -> None:
    keys, vs = four
    for signers in ([0, 1, 2, 2], [0, 0, 0], [0, 1, 0, 2, 3], [3, 3]):
        commit = sign_commit([keys[i] for i in signers], CHAIN_ID, 1, 0, BLOCK)
        with pytest.raises(VerificationFailed) as exc:
            commit.verify(CHAIN_ID, vs)
        assert _reason(exc) == "commit invalid", signers


def test_duplicate_signer_cannot_inflate_power(four: tuple[list, ValidatorSet]) -> None:
    keys, vs = four
    # same validator, two different valid signatures (ECDSA is randomised)
    first = sign_commit([keys[0], keys[1]], CHAIN_ID, 1, 0, BLOCK)
    second = sign_commit([keys[1]], CHAIN_ID, 1, 0, BLOCK)
    assert first.signatures[1].signature != second.signatures[0].signature
    commit = dataclasses.replace(first, signatures=first.signatures + second.signatures)
    with pytest.raises(VerificationFailed) as exc:
        commit.verify(CHAIN_ID, vs)
    assert _reason(exc) == "commit invalid"


def test_non_validator_signer_is_rejected(four: tuple[list, ValidatorSet]) -> None:
    keys, vs = four
    commit = sign_commit([*keys, make_key()], CHAIN_ID, 1, 0, BLOCK)
    with pytest.raises(VerificationFailed) as exc:
        commit.verify(CHAIN_ID, vs)
    assert _reason(exc) == "commit invalid"


@pytest.mark.parametrize(
    "signed_for",
    [
        {"chain": "other-chain"},
        {"height": 2},
        {"round": 1},
        {"block": OTHER_BLOCK},
        {"type": PREVOTE},
        {"block": None},
    ],
    ids=lambda d: next(iter(d)) + "=" + repr(next(iter(d.values())))[:12],
)
def test_signature_for_another_vote_is_rejected(
    four: tuple[list, ValidatorSet], signed_for: dict
) -> None:
    keys, vs = four
    commit = sign_commit(keys, CHAIN_ID, 1, 0, BLOCK)
    vote = {"chain": CHAIN_ID, "height": 1, "round": 0, "type": PRECOMMIT, "block": BLOCK}
    vote.update(signed_for)
    stray = keys[3].sign(
        vote_sign_bytes(vote["chain"], vote["height"], vote["round"], vote["type"], vote["block"])
    )
    bad = dataclasses.replace(
        commit, signatures=(*commit.signatures[:3], CommitSignature(keys[3].public_key, stray))
    )
    with pytest.raises(VerificationFailed) as exc:
        bad.verify(CHAIN_ID, vs)
    assert _reason(exc) == "commit invalid"


def test_commit_verified_against_other_chain_or_block_fails(
    four: tuple[list, ValidatorSet],
) -> None:
    keys, vs = four
    commit = sign_commit(keys, CHAIN_ID, 1, 0, BLOCK)
    for bad in (
        dataclasses.replace(commit, height=2),
        dataclasses.replace(commit, round=1),
        dataclasses.replace(commit, block_hash=OTHER_BLOCK),
    ):
        with pytest.raises(VerificationFailed) as exc:
            bad.verify(CHAIN_ID, vs)
        assert _reason(exc) == "commit invalid"
    with pytest.raises(VerificationFailed) as exc:
        commit.verify("other-chain", vs)
    assert _reason(exc) == "commit invalid"


@pytest.mark.parametrize("signature", [b"", bytes(64), b"\x01" * 65])
def test_garbage_or_swapped_signatures_are_rejected(
    four: tuple[list, ValidatorSet], signature: bytes
) -> None:
    keys, vs = four
    commit = sign_commit(keys, CHAIN_ID, 1, 0, BLOCK)
    bad = dataclasses.replace(
        commit, signatures=(*commit.signatures[:3], CommitSignature(keys[3].public_key, signature))
    )
    with pytest.raises(VerificationFailed) as exc:
        bad.verify(CHAIN_ID, vs)
    assert _reason(exc) == "commit invalid"
    s = commit.signatures
    swapped = dataclasses.replace(
        commit,
        signatures=(
            CommitSignature(s[0].validator, s[1].signature),
            CommitSignature(s[1].validator, s[0].signature),
            *s[2:],
        ),
    )
    with pytest.raises(VerificationFailed):
        swapped.verify(CHAIN_ID, vs)


def test_high_s_precommit_is_rejected(four: tuple[list, ValidatorSet]) -> None:
    keys, vs = four
    commit = sign_commit(keys, CHAIN_ID, 1, 0, BLOCK)
    last = commit.signatures[3]
    r, s = last.signature[:32], int.from_bytes(last.signature[32:], "big")
    high = r + (crypto.CURVE_ORDER - s).to_bytes(32, "big")
    bad = dataclasses.replace(
        commit, signatures=(*commit.signatures[:3], CommitSignature(last.validator, high))
    )
    with pytest.raises(VerificationFailed) as exc:
        bad.verify(CHAIN_ID, vs)
    assert _reason(exc) == "commit invalid"


# --- headers and blocks ----------------------------------------------------------------------


def test_header_wire_and_hash(four: tuple[list, ValidatorSet]) -> None:
    keys, vs = four
    header = make_header(vs, proposer=keys[0].public_key, height=3, tree_size=10)
    wire = header.to_wire()
    assert set(wire) == set(HEADER_FIELDS)
    data = header.encode()
    assert list(codec.decode(data)) == sorted(HEADER_FIELDS, key=str.encode)
    assert data == codec.encode(wire)
    assert header.block_hash == crypto.sha256(data)
    assert Header.decode(data) == header
    assert Header.from_wire(wire_roundtrip(wire)) == header
    assert Header.decode(data).block_hash == header.block_hash


def test_header_hash_golden_value() -> None:
    header = Header(
        chain="c",
        height=1,
        time=2,
        prev=bytes(32),
        proposer=b"\x02" + bytes(32),
        events_root=b"\x01" * 32,
        tree_size=3,
        tree_root=b"\x02" * 32,
        state_root=b"\x03" * 32,
        validators=b"\x04" * 32,
    )
    expected = (
        b"\x8a"
        + b"\xa5chain\xa1c"
        + b"\xabevents_root\xc4\x20" + b"\x01" * 32
        + b"\xa6height\x01"
        + b"\xa4prev\xc4\x20" + bytes(32)
        + b"\xa8proposer\xc4\x21\x02" + bytes(32)
        + b"\xaastate_root\xc4\x20" + b"\x03" * 32
        + b"\xa4time\x02"
        + b"\xa9tree_root\xc4\x20" + b"\x02" * 32
        + b"\xa9tree_size\x03"
        + b"\xaavalidators\xc4\x20" + b"\x04" * 32
    )  # fmt: skip
    assert header.encode() == expected
    assert header.block_hash == crypto.sha256(expected)


@pytest.mark.parametrize("name", HEADER_FIELDS)
def test_block_hash_changes_with_every_field(name: str) -> None:
    header = make_header()
    value = getattr(header, name)
    if isinstance(value, bytes):
        changed = bytes([value[0] ^ 1]) + value[1:]
    elif isinstance(value, int):
        changed = value + 1
    else:
        changed = value + "x"
    other = dataclasses.replace(header, **{name: changed})
    assert other.block_hash != header.block_hash


def test_header_to_json() -> None:
    header = make_header()
    doc = json.loads(json.dumps(header.to_json()))
    assert set(doc) == set(HEADER_FIELDS)
    for name in HEADER_FIELDS:
        value = getattr(header, name)
        if isinstance(value, bytes):
            assert doc[name] == value.hex()
        else:
            assert doc[name] == value
    # a client can rebuild the exact header (and so the block hash) from the JSON
    rebuilt = Header.from_wire(
        {
            k: bytes.fromhex(v) if k not in ("chain", "height", "time", "tree_size") else v
            for k, v in doc.items()
        }
    )
    assert rebuilt == header


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chain", 1),
        ("chain", b"test-chain"),
        ("height", True),
        ("height", -1),
        ("height", "1"),
        ("time", False),
        ("time", -5),
        ("tree_size", True),
        ("tree_size", -1),
        ("prev", b"\x00" * 31),
        ("prev", b"\x00" * 33),
        ("prev", "00" * 32),
        ("events_root", b"\x00" * 31),
        ("tree_root", b"\x00" * 31),
        ("state_root", b"\x00" * 31),
        ("validators", b"\x00" * 31),
        ("validators", None),
        ("proposer", "02" * 33),
    ],
)
def test_header_from_wire_rejects_wrong_types(field: str, value: object) -> None:
    doc = make_header().to_wire()
    doc[field] = value
    with pytest.raises(Malformed):
        Header.from_wire(doc)


@pytest.mark.parametrize("field", HEADER_FIELDS)
def test_header_from_wire_rejects_missing_fields(field: str) -> None:
    doc = make_header().to_wire()
    del doc[field]
    with pytest.raises(Malformed):
        Header.from_wire(doc)


def test_header_rejects_extra_fields_and_non_maps() -> None:
    doc = make_header().to_wire()
    for extra in ("extra", "block", "round"):
        with pytest.raises(Malformed):
            Header.from_wire({**doc, extra: 1})
    with pytest.raises(Malformed):
        Header.decode(codec.encode({**doc, "extra": b""}))
    for not_a_map in (None, [], b"", "header"):
        with pytest.raises(Malformed):
            Header.from_wire(not_a_map)


def test_header_decode_requires_canonical_bytes() -> None:
    header = make_header()
    unsorted = msgpack.packb(
        {name: getattr(header, name) for name in reversed(HEADER_FIELDS)}, use_bin_type=True
    )
    assert unsorted != header.encode()
    with pytest.raises(Malformed):
        Header.decode(unsorted)
    with pytest.raises(Malformed):
        Header.decode(header.encode() + b"\x00")
    with pytest.raises(Malformed):
        Header.decode(codec.encode([1, 2]))


def test_block_round_trip(four: tuple[list, ValidatorSet]) -> None:
    keys, vs = four
    header = make_header(vs, proposer=keys[0].public_key, tree_size=3)
    events = (b"\x82\xa4body\xc4\x01a\xa3sig\xc4\x00", b"second", b"")
    block = Block(header, events)
    assert block.block_hash == header.block_hash
    wire = block.to_wire()
    assert wire == {"header": header.encode(), "events": list(events)}
    again = Block.from_wire(wire_roundtrip(wire))
    assert again == block
    assert again.events == events
    empty = Block(header, ())
    assert Block.from_wire(wire_roundtrip(empty.to_wire())) == empty


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("header"),
        lambda d: d.pop("events"),
        lambda d: d.update(header="not bytes"),
        lambda d: d.update(header=d["header"][:-1]),
        lambda d: d.update(header=d["header"] + b"\x00"),
        lambda d: d.update(header=codec.encode({"chain": "x"})),
        lambda d: d.update(events=b"e"),
        lambda d: d.update(events=["str event"]),
        lambda d: d.update(events=[b"ok", None]),
        lambda d: d.update(events={}),
    ],
)
def test_block_from_wire_rejects(mutate: object) -> None:
    doc = Block(make_header(), (b"e1",)).to_wire()
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(Malformed):
        Block.from_wire(doc)


@pytest.mark.parametrize("doc", [None, [], b"", "block"])
def test_block_from_wire_rejects_non_maps(doc: object) -> None:
    with pytest.raises(Malformed):
        Block.from_wire(doc)


# --- checkpoints -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(four: tuple[list, ValidatorSet]) -> tuple[Header, Commit]:
    keys, vs = four
    header = make_header(vs, proposer=keys[0].public_key, height=9)
    return header, sign_commit(keys[:3], CHAIN_ID, 9, 1, header.block_hash)


def test_verify_checkpoint_accepts(
    four: tuple[list, ValidatorSet], checkpoint: tuple[Header, Commit]
) -> None:
    _, vs = four
    header, commit = checkpoint
    verify_checkpoint(header, commit, CHAIN_ID, vs)
    # and after a trip through the wire / JSON forms a verifier would read
    verify_checkpoint(
        Header.decode(header.encode()),
        Commit.from_json(json.loads(json.dumps(commit.to_json()))),
        CHAIN_ID,
        vs,
    )


def test_verify_checkpoint_rejects_wrong_chain(
    four: tuple[list, ValidatorSet], checkpoint: tuple[Header, Commit]
) -> None:
    keys, vs = four
    header, commit = checkpoint
    with pytest.raises(VerificationFailed) as exc:
        verify_checkpoint(header, commit, "other-chain", vs)
    assert _reason(exc) == "wrong chain"
    # a header of another chain, properly signed for that chain, is still not ours
    other = dataclasses.replace(header, chain="other-chain")
    other_commit = sign_commit(keys, "other-chain", 9, 0, other.block_hash)
    with pytest.raises(VerificationFailed) as exc:
        verify_checkpoint(other, other_commit, CHAIN_ID, vs)
    assert _reason(exc) == "wrong chain"


def test_verify_checkpoint_rejects_wrong_validator_set(
    four: tuple[list, ValidatorSet], checkpoint: tuple[Header, Commit]
) -> None:
    _, vs = four
    header, commit = checkpoint
    other_keys, other_vs = make_validators(4)
    with pytest.raises(VerificationFailed) as exc:
        verify_checkpoint(header, commit, CHAIN_ID, other_vs)
    assert _reason(exc) == "wrong validator set"
    # a header naming another set, signed by that set, does not verify against ours
    forged = dataclasses.replace(header, validators=other_vs.hash())
    forged_commit = sign_commit(other_keys, CHAIN_ID, 9, 0, forged.block_hash)
    with pytest.raises(VerificationFailed) as exc:
        verify_checkpoint(forged, forged_commit, CHAIN_ID, vs)
    assert _reason(exc) == "wrong validator set"
    # a header naming our set but signed by outsiders fails on the commit
    outsiders = sign_commit(other_keys, CHAIN_ID, 9, 0, header.block_hash)
    with pytest.raises(VerificationFailed) as exc:
        verify_checkpoint(header, outsiders, CHAIN_ID, vs)
    assert _reason(exc) == "commit invalid"


def test_verify_checkpoint_rejects_commit_for_another_block(
    four: tuple[list, ValidatorSet], checkpoint: tuple[Header, Commit]
) -> None:
    keys, vs = four
    header, _ = checkpoint
    other = dataclasses.replace(header, time=header.time + 1)
    for commit in (
        sign_commit(keys, CHAIN_ID, 9, 0, other.block_hash),
        sign_commit(keys, CHAIN_ID, 10, 0, header.block_hash),
        sign_commit(keys, CHAIN_ID, 8, 0, header.block_hash),
    ):
        with pytest.raises(VerificationFailed) as exc:
            verify_checkpoint(header, commit, CHAIN_ID, vs)
        assert _reason(exc) == "commit mismatch"


def test_verify_checkpoint_rejects_weak_commit(
    four: tuple[list, ValidatorSet], checkpoint: tuple[Header, Commit]
) -> None:
    keys, vs = four
    header, _ = checkpoint
    with pytest.raises(VerificationFailed) as exc:
        verify_checkpoint(
            header, sign_commit(keys[:2], CHAIN_ID, 9, 0, header.block_hash), CHAIN_ID, vs
        )
    assert _reason(exc) == "insufficient voting power"


# --- each parsing check by its own error -----------------------------------------------------


def test_a_bool_is_not_an_integer_field() -> None:
    doc = {"type": "prevote", "height": True, "round": 0, "validator": b"v", "signature": b"s"}
    with pytest.raises(Malformed, match="field 'height' has the wrong type"):
        Vote.from_wire(doc)


KEY_HEX = make_key(seed=77).public_key.hex()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"name": "v", "public_key": KEY_HEX}, "bad validator entry"),
        ({"name": "v", "power": 1}, "bad validator entry"),
        ({"name": "v", "power": 1, "public_key": "zz"}, "bad validator entry"),
        ({"name": 7, "power": 1, "public_key": KEY_HEX}, "validator name and url must be text"),
        ({"name": "v", "power": 1, "url": 7, "public_key": KEY_HEX}, "name and url must be text"),
    ],
)
def test_validator_entries_are_checked_by_name(doc: dict[str, object], message: str) -> None:
    with pytest.raises(Malformed, match=message):
        Validator.from_json(doc)


def test_a_validator_set_shows_its_validators_not_its_index() -> None:
    _, validators = make_validators(2, seed=78)
    assert "_index" not in repr(validators)


@pytest.mark.parametrize("bad", [None, 7, "zz", "abc"])
def test_commit_json_hex_fields_are_checked_by_name(bad: object) -> None:
    doc = {"height": 1, "round": 0, "block_hash": bad, "signatures": []}
    with pytest.raises(Malformed, match="expected a hex string"):
        Commit.from_json(doc)


def test_events_match_header_binds_the_events_to_the_header() -> None:
    events = (b"one", b"two", b"three")
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in events])
    header = make_header(events_root=root, tree_size=3)
    assert Block(header, events).events_match_header()
    assert not Block(header, events[::-1]).events_match_header()
    assert not Block(header, events[:2]).events_match_header()


def test_a_block_hashes_its_events_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consensus asks valid(v) at several rules per input: the events root is computed once
    per Block object, and the answer stays the same."""
    events = (b"one", b"two", b"three")
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in events])
    good = Block(make_header(events_root=root, tree_size=3), events)
    swapped = Block(good.header, events[::-1])
    hashed: list[bytes] = []
    leaf_hash = merkle.leaf_hash

    def counting(envelope: bytes) -> bytes:
        hashed.append(envelope)
        return leaf_hash(envelope)

    monkeypatch.setattr(merkle, "leaf_hash", counting)
    assert [good.events_match_header() for _ in range(3)] == [True] * 3
    assert [swapped.events_match_header() for _ in range(3)] == [False] * 3
    assert hashed == list(events) + list(events[::-1])


# --- governance fields: operator keys and the next set's hash (issue 17) -----------------------


def test_a_validators_approver_is_its_operator_key_or_else_its_node_key() -> None:
    node, operator = make_key(1).public_key, make_key(2).public_key
    assert Validator("v", node, 1).approver == node
    assert Validator("v", node, 1, operator=operator).approver == operator


def test_a_validator_with_an_operator_key_round_trips_through_json_and_its_doc() -> None:
    node, operator = make_key(1).public_key, make_key(2).public_key
    v = Validator("v", node, 3, "http://h:1", operator)
    doc = json.loads(json.dumps(v.to_json()))
    assert doc == {
        "name": "v",
        "public_key": node.hex(),
        "power": 3,
        "url": "http://h:1",
        "operator": operator.hex(),
    }
    assert Validator.from_json(doc) == v
    assert v.to_doc() == {
        "name": "v",
        "power": 3,
        "public_key": node,
        "url": "http://h:1",
        "operator": operator,
    }
    assert Validator.from_doc(v.to_doc()) == v
    plain = Validator("w", node, 1)
    assert "operator" not in plain.to_doc() and "operator" not in plain.to_json()
    assert Validator.from_doc(plain.to_doc()) == plain


def test_a_validator_set_round_trips_through_json_and_refuses_a_non_list() -> None:
    _, vs = make_validators(3, [1, 2, 3])
    members = (
        *vs.validators[:2],
        dataclasses.replace(vs.validators[2], operator=make_key(5).public_key),
    )
    vs = ValidatorSet(members)
    doc = json.loads(json.dumps(vs.to_json()))
    assert [m["name"] for m in doc] == ["v0", "v1", "v2"] and "operator" in doc[2]
    assert ValidatorSet.from_json(doc) == vs
    for bad in ({"v0": doc[0]}, doc[0], None):
        with pytest.raises(Malformed, match="a validator set is a list"):
            ValidatorSet.from_json(bad)


def test_the_set_hash_commits_to_a_members_operator_key() -> None:
    keys, vs = make_validators(2, seed=3)
    operator = make_key(77).public_key
    with_operator = ValidatorSet(
        (dataclasses.replace(vs.validators[0], operator=operator), vs.validators[1])
    )
    expected = crypto.sha256(
        codec.encode(
            [
                {"name": "v0", "operator": operator, "power": 1, "public_key": keys[0].public_key},
                {"name": "v1", "power": 1, "public_key": keys[1].public_key},
            ]
        )
    )
    assert with_operator.hash() == expected != vs.hash()


def test_a_header_names_the_next_sets_hash_only_when_it_changes() -> None:
    current, coming = crypto.sha256(b"current set"), crypto.sha256(b"coming set")
    plain = dataclasses.replace(make_header(), validators=current)
    assert plain.next_set_hash == current and NEXT_VALIDATORS not in plain.to_wire()
    changing = dataclasses.replace(plain, next_validators=coming)
    assert changing.next_set_hash == coming
    assert changing.to_wire()[NEXT_VALIDATORS] == coming
    assert Header.decode(changing.encode()) == changing
    assert changing.block_hash != plain.block_hash
    with pytest.raises(Malformed, match="only when the set changes"):
        dataclasses.replace(plain, next_validators=current)
