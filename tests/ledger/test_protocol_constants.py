"""The ledger's protocol constants, each stated as a number (docs/PROTOCOL.md, "Protocol
constants").

Nodes that disagree on any of these disagree on which bytes are valid, which hashes commit
to what, or which events a block may hold: they are consensus rules. Each test names the
value literally, never through the constant, so changing one fails here first; the
behaviour tests check the boundary itself (the last accepted and the first refused value).
"""

from __future__ import annotations

import hashlib
import os

import msgpack
import pytest

from ledger import (
    blocks,
    codec,
    crypto,
    events,
    genesis,
    governance,
    merkle,
    provenance,
    rules,
    smt,
)
from ledger.blocks import Validator, ValidatorSet
from ledger.errors import Malformed, RuleViolation, TooLarge
from ledger.events import Register, Use
from ledger.rules import BlockContext, Rules
from ledger.state import StateOverlay
from tests.ledger.helpers import ev, make_genesis, make_key, make_validators

T0 = 1_700_000_000_000


def nest(levels: int, inner: object = 0, kind: str = "list") -> object:
    value = inner
    for _ in range(levels):
        value = [value] if kind == "list" else {"k": value}
    return value


# --- the canonical codec -------------------------------------------------------------------


def test_codec_limits_are_pinned() -> None:
    """docs/PROTOCOL.md: nesting depth 8, 1 MiB default message size, 65536 items a container."""
    assert codec.MAX_DEPTH == 8
    assert codec.DEFAULT_MAX_BYTES == 1_048_576
    assert codec.MAX_ITEMS == 65_536


@pytest.mark.parametrize("kind", ["list", "map"])
def test_codec_depth_8_is_accepted_and_9_refused(kind: str) -> None:
    """docs/PROTOCOL.md: a value nested 8 containers deep encodes and decodes; 9 does not."""
    ok = nest(8, kind=kind)
    assert codec.decode(codec.encode(ok)) == ok
    too_deep = nest(9, kind=kind)
    with pytest.raises(Malformed, match="nesting deeper than 8"):
        codec.encode(too_deep)
    packed = msgpack.packb(too_deep, use_bin_type=True)
    with pytest.raises(Malformed, match="nesting deeper than 8"):
        codec.decode(packed)
    # an empty container at depth 8 holds nothing deeper
    empty = nest(8, inner=[] if kind == "list" else {}, kind=kind)
    assert codec.decode(codec.encode(empty)) == empty


def test_codec_default_size_limit_is_one_mebibyte() -> None:
    """docs/PROTOCOL.md: 1048576 bytes decode by default, 1048577 raise TooLarge."""
    # bin 32 header: 0xc6 + 4-byte length; 5 + n bytes in all
    exact = codec.encode(b"\x00" * (1_048_576 - 5))
    assert len(exact) == 1_048_576
    assert codec.decode(exact) == b"\x00" * (1_048_576 - 5)
    over = codec.encode(b"\x00" * (1_048_576 - 4))
    assert len(over) == 1_048_577
    with pytest.raises(TooLarge, match="1048577 bytes exceeds the limit of 1048576"):
        codec.decode(over)


@pytest.mark.parametrize("kind", ["list", "map"])
def test_codec_container_of_65536_items_is_accepted_and_65537_refused(kind: str) -> None:
    """docs/PROTOCOL.md: a list or map holds at most 65536 items on decode."""

    def make(n: int) -> object:
        return list(range(n)) if kind == "list" else {f"{i:06d}": 0 for i in range(n)}

    ok = make(65_536)
    assert codec.decode(codec.encode(ok), max_bytes=4 << 20) == ok
    with pytest.raises(Malformed):
        codec.decode(codec.encode(make(65_537)), max_bytes=4 << 20)


# --- hashing: Merkle tree and the one hash function -----------------------------------------


def test_merkle_constants_and_domain_tags_are_pinned() -> None:
    """docs/PROTOCOL.md: SHA-256, 32-byte hashes, leaf prefix 0x00, node prefix 0x01 (RFC 9162)."""
    assert merkle.HASH_SIZE == 32
    assert blocks.HASH_SIZE == 32
    assert (
        merkle.EMPTY_ROOT.hex()
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        merkle.leaf_hash(b"").hex()
        == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    left, right = b"\x00" * 32, b"\x11" * 32
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert (
        merkle.node_hash(left, right).hex()
        == "a7b6a88afe611b23a8bb9836e3cd13ba706cb05d6de647d92bf05bb0aace72ee"
    )
    assert crypto.sha256(b"abc") == hashlib.sha256(b"abc").digest()


# --- keys and signatures ---------------------------------------------------------------------


def test_crypto_constants_are_pinned() -> None:
    """docs/PROTOCOL.md: P-256, 33-byte compressed keys, 64-byte r||s low-S signatures."""
    assert crypto.PUBLIC_KEY_SIZE == 33
    assert crypto.SIGNATURE_SIZE == 64
    assert crypto.CURVE_ORDER == (
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    )
    assert crypto.HALF_ORDER == (0x7FFFFFFF800000007FFFFFFFFFFFFFFFDE737D56D38BCF4279DCE5617E3192A8)
    key = make_key(seed=1)
    assert len(key.public_key) == 33
    assert len(key.sign(b"m")) == 64


# --- events ----------------------------------------------------------------------------------


def test_event_constants_are_pinned() -> None:
    """docs/PROTOCOL.md: event format version 1 and the size limits of an event's fields."""
    assert events.VERSION == 1
    assert events.NONCE_SIZE == 16
    assert events.DATASET_ID_SIZE == 32
    assert events.EVENT_ID_SIZE == 32
    assert events.MAX_ENVELOPE_BYTES == 16_384
    assert events.MAX_TEXT == 1024
    assert events.MAX_META_ENTRIES == 32
    assert events.MAX_LIST == 64
    assert events.ROLE_PARTICIPANT == "participant"
    assert events.ROLE_REGISTRAR == "registrar"
    assert events.ROLES == ("participant", "registrar")
    assert events.DERIVE_PURPOSE == "derive"


def test_event_type_names_are_pinned() -> None:
    """docs/PROTOCOL.md §3.4, §19.1: the fourteen event types and their wire names."""
    assert sorted(events.EVENT_TYPES) == sorted(
        [
            "admit",
            "register",
            "grant",
            "revoke",
            "transfer",
            "use",
            "derive",
            "destroy",
            "attest",
            "propose",
            "approve",
            "suspend",
            "reinstate",
            "rotate",
        ]
    )


def _register(key: crypto.PrivateKey, meta: dict[str, object]) -> events.SignedEvent:
    return ev(key, Register, time=T0, dataset=os.urandom(32), open=False, meta=meta)


def test_event_text_of_1024_characters_is_accepted_and_1025_refused() -> None:
    """docs/PROTOCOL.md: text (and bytes) values hold at most 1024 characters."""
    key = make_key(seed=11)
    event = _register(key, {"k": "x" * 1024})
    assert events.decode_envelope(event.envelope).body.meta == {"k": "x" * 1024}
    with pytest.raises(Malformed, match="longer than 1024"):
        events.decode_envelope(_register(key, {"k": "x" * 1025}).envelope)


def test_event_meta_of_32_entries_is_accepted_and_33_refused() -> None:
    """docs/PROTOCOL.md: an event's meta map holds at most 32 entries."""
    key = make_key(seed=12)
    ok = {f"k{i:02d}": i for i in range(32)}
    assert events.decode_envelope(_register(key, ok).envelope).body.meta == ok
    with pytest.raises(Malformed, match="more than 32 entries"):
        events.decode_envelope(_register(key, {f"k{i:02d}": i for i in range(33)}).envelope)


def test_envelope_of_16384_bytes_is_the_limit() -> None:
    """docs/PROTOCOL.md: an envelope is at most 16384 bytes."""
    key = make_key(seed=13)
    event = _register(key, {})
    assert events.decode_envelope(event.envelope, max_bytes=len(event.envelope))
    with pytest.raises(TooLarge):
        events.decode_envelope(event.envelope, max_bytes=len(event.envelope) - 1)
    with pytest.raises(TooLarge, match="exceeds 16384"):
        events.decode_envelope(b"\x00" * 16_385)


# --- the rules -------------------------------------------------------------------------------


def test_rules_time_window_is_ten_minutes() -> None:
    """docs/PROTOCOL.md: an event's time is within 600000 ms (10 minutes) of the block time."""
    assert rules.DEFAULT_TIME_WINDOW_MS == 600_000
    _, _, chain = make_genesis(seed=700)
    assert Rules(chain).time_window_ms == 600_000


@pytest.mark.parametrize(
    ("delta", "accepted"),
    [(600_000, True), (-600_000, True), (600_001, False), (-600_001, False)],
)
def test_rules_time_window_boundary(delta: int, accepted: bool) -> None:
    """docs/PROTOCOL.md: exactly 600000 ms either side is accepted, 600001 ms is refused."""
    _, registrar, chain = make_genesis(seed=700)
    state = StateOverlay({}.get)
    event = ev(
        registrar,
        Register,
        time=T0 + delta,
        chain=chain.chain_id,
        dataset=os.urandom(32),
        open=False,
        meta={},
    )
    ctx = BlockContext(height=1, time=T0, leaf_index=0)
    if accepted:
        Rules(chain).apply(state, event, ctx)
    else:
        with pytest.raises(RuleViolation, match="outside ±600000 ms"):
            Rules(chain).apply(state, event, ctx)


def test_rules_state_layout_is_pinned() -> None:
    """docs/PROTOCOL.md: the state keys' prefixes and record values, which the state root hashes."""
    assert rules.PARTICIPANT == b"sp"
    assert rules.DATASET == b"sd"
    assert rules.GRANT == b"sg"
    assert rules.GRANTS_OF == b"sG"
    assert rules.HOLDER == b"sh"
    assert rules.EVENT == b"se"
    assert rules.GRANT_SLOT == b"sI"
    assert rules.SIGNED == b"sa"
    assert {
        b"sp",
        b"sd",
        b"sg",
        b"sh",
        b"sa",
        b"sP",
        b"sV",
        b"sC",
        b"sR",
        b"sT",
    } == rules.AUTHENTICATED
    assert rules.PROPOSAL == b"sP"
    assert rules.VALIDATOR_SCHEDULE == b"sV"
    assert rules.PARAMS_SCHEDULE == b"sC"
    assert rules.REGISTRAR_SCHEDULE == b"sR"
    assert rules.TRANSITION == b"sT"
    assert rules.proposal_key(b"P") == b"sPP"
    assert rules.registrar_schedule_key(b"K") == b"sRK"
    assert rules.transition_key(258) == b"sT\x00\x00\x00\x00\x00\x00\x01\x02"
    assert rules.HISTORY_PREFIX == b"\x04"
    assert bytes(32) == rules.EMPTY_HISTORY
    assert rules.grant_slot_key(b"D", b"K", 258) == b"sIDK\x00\x00\x01\x02"
    assert rules.signed_key(b"K") == b"saK"
    assert rules.STATUS_ACTIVE == "active"
    assert rules.STATUS_DESTROYED == "destroyed"
    assert rules.participant_key(b"K") == b"spK"
    assert rules.dataset_key(b"D") == b"sdD"
    assert rules.grant_key(b"G") == b"sgG"
    assert rules.grants_of_key(b"D", b"K") == b"sGDK"
    assert rules.holder_key(b"D", b"K") == b"shDK"
    assert rules.event_key(b"E") == b"seE"
    assert rules.encode_location(3, 300) == bytes.fromhex("9203cd012c")


def test_rules_apply_writes_exactly_these_records() -> None:
    """docs/PROTOCOL.md: what registering a dataset writes (key prefix and canonical record)."""
    _, registrar, chain = make_genesis(seed=701)
    state = StateOverlay({}.get)
    dataset = b"\x42" * 32
    event = ev(
        registrar,
        Register,
        time=T0,
        chain=chain.chain_id,
        dataset=dataset,
        open=True,
        meta={"m": 1},
    )
    Rules(chain).apply(state, event, BlockContext(height=5, time=T0, leaf_index=7))
    assert {b"sd" + dataset, b"se" + event.event_id} <= set(state.writes)
    assert state.writes[b"se" + event.event_id] == bytes.fromhex("920507")
    expected = {
        "owner": registrar.public_key,
        "origin": event.event_id,
        "open": True,
        "status": "active",
        "height": 5,
        "meta": {"m": 1},
        "counts": {"register": 1},
    }
    record = codec.decode(state.writes[b"sd" + dataset])
    assert {name: record.get(name) for name in expected} == expected
    use = ev(registrar, Use, time=T0, chain=chain.chain_id, dataset=dataset, purpose="p")
    Rules(chain).apply(state, use, BlockContext(height=5, time=T0, leaf_index=8))
    assert codec.decode(state.writes[b"sd" + dataset])["counts"] == {"register": 1, "use": 1}


def test_governance_constants_are_pinned() -> None:
    """docs/PROTOCOL.md §19.2: a decided change is in force from h + 2; a proposal can be
    approved for 7 days (604,800,000 ms) after its block time; the change ops."""
    assert governance.ACTIVATION_DELAY == 2
    assert governance.PROPOSAL_TTL_MS == 604_800_000
    assert governance.MAX_NAME == 64
    assert governance.MAX_URL == 256
    assert sorted(governance.CHANGE_FIELDS) == [
        "add-registrar",
        "add-validator",
        "remove-registrar",
        "remove-validator",
        "set-param",
        "set-power",
    ]
    assert rules.PROPOSAL_OPEN == "open"
    assert rules.PROPOSAL_DECIDED == "decided"
    assert rules.PARTICIPANT_SUSPENDED == "suspended"
    assert rules.PARTICIPANT_ROTATED == "rotated"


# --- blocks, votes and validator sets --------------------------------------------------------


def test_block_constants_are_pinned() -> None:
    """docs/PROTOCOL.md: vote types, validator-set bounds and the header's fields."""
    assert blocks.PREVOTE == "prevote"
    assert blocks.PRECOMMIT == "precommit"
    assert blocks.VOTE_TYPES == ("prevote", "precommit")
    assert blocks.MAX_VALIDATORS == 128
    assert blocks.MAX_POWER == 65_536
    assert blocks.HEADER_FIELDS == (
        "chain",
        "events_root",
        "height",
        "prev",
        "proposer",
        "state_root",
        "time",
        "tree_root",
        "tree_size",
        "validators",
    )


def test_vote_sign_bytes_are_pinned() -> None:
    """docs/PROTOCOL.md: the exact bytes a validator signs for a nil prevote and a precommit."""
    assert blocks.vote_sign_bytes("c", 1, 0, "prevote", None) == bytes.fromhex(
        "84a5636861696ea163a668656967687401a5726f756e6400a474797065a7707265766f7465"
    )
    assert blocks.vote_sign_bytes("c", 1, 0, "precommit", b"\xaa" * 32) == bytes.fromhex(
        "85a5626c6f636bc420" + "aa" * 32 + "a5636861696ea163a668656967687401a5726f756e6400"
        "a474797065a9707265636f6d6d6974"
    )


def test_validator_set_of_128_is_accepted_and_129_refused() -> None:
    """docs/PROTOCOL.md: a validator set has 1 to 128 members."""
    keys = [make_key(seed=2000 + i).public_key for i in range(129)]
    members = [Validator(f"v{i}", k, 1) for i, k in enumerate(keys)]
    assert len(ValidatorSet(tuple(members[:128])).validators) == 128
    with pytest.raises(Malformed, match=r"1\.\.128"):
        ValidatorSet(tuple(members))
    with pytest.raises(Malformed):
        ValidatorSet(())


@pytest.mark.parametrize(("power", "accepted"), [(1, True), (65_536, True), (0, False)])
def test_validator_power_range(power: int, accepted: bool) -> None:
    """docs/PROTOCOL.md: a validator's power is an integer in 1..65536."""
    doc = {"name": "v", "public_key": make_key(seed=3000).public_key.hex(), "power": power}
    if accepted:
        assert Validator.from_json(doc).power == power
    else:
        with pytest.raises(Malformed, match=r"1\.\.65536"):
            Validator.from_json(doc)
    with pytest.raises(Malformed, match=r"1\.\.65536"):
        Validator.from_json({**doc, "power": 65_537})


@pytest.mark.parametrize(
    ("powers", "votes", "quorum", "one_third"),
    [
        ([1, 1, 1, 1], 3, True, True),
        ([1, 1, 1, 1], 2, False, True),
        ([1, 1, 1, 1], 1, False, False),
        ([1, 1, 1], 3, True, True),
        ([1, 1, 1], 2, False, True),
        ([1, 1, 1], 1, False, False),
        ([3, 3, 3], 7, True, True),
        ([3, 3, 3], 6, False, True),
        ([3, 3, 3], 4, False, True),
        ([3, 3, 3], 3, False, False),
    ],
)
def test_quorum_is_more_than_two_thirds_and_f_plus_one_more_than_one_third(
    powers: list[int], votes: int, quorum: bool, one_third: bool
) -> None:
    """docs/PROTOCOL.md: a quorum is strictly more than 2/3 of the power, f+1 more than 1/3."""
    _, validators = make_validators(len(powers), powers, seed=4000)
    assert validators.has_quorum(votes) is quorum
    assert validators.exceeds_one_third(votes) is one_third


# --- genesis and proof bundles ---------------------------------------------------------------


def test_genesis_constants_are_pinned() -> None:
    """docs/PROTOCOL.md: admission modes and the chain id's length (1..64)."""
    assert genesis.PERMISSIONED == "permissioned"
    assert genesis.OPEN == "open"
    assert genesis.ADMISSION_MODES == ("permissioned", "open")
    assert genesis.MAX_CHAIN_ID == 64
    make_genesis(chain_id="c" * 64, seed=5000)
    with pytest.raises(Malformed, match=r"1\.\.64"):
        make_genesis(chain_id="c" * 65, seed=5000)


def test_provenance_constants_are_pinned() -> None:
    """docs/PROTOCOL.md: proof bundle format version 2; lineage walks at most 16 steps."""
    assert provenance.BUNDLE_VERSION == 2
    assert provenance.MAX_LINEAGE_DEPTH == 16
    assert provenance.MAX_PAGE_BYTES == 262_144
    assert provenance.MAX_PAGE_EVENTS == 256
    assert set(provenance.STATE_KINDS) == {"participant", "dataset", "grant", "commitment"}


def test_state_answer_kinds_and_id_sizes_are_pinned() -> None:
    """docs/PROTOCOL.md §10, §11: `/v1/state/{kind}/{id}` kinds, their key prefixes and id
    sizes (a participant or a signer's commitment by its 33-byte key, a dataset or a grant
    by its 32-byte id)."""
    assert provenance.STATE_KINDS == {
        "participant": (b"sp", 33),
        "dataset": (b"sd", 32),
        "grant": (b"sg", 32),
        "commitment": (b"sa", 33),
    }
    assert provenance.INCOMPLETE == "incomplete: the node omitted events"


def test_grant_scan_is_64_newest_grants() -> None:
    """docs/PROTOCOL.md §4.4: an event naming no grant is judged by the pair's 64 newest."""
    assert rules.MAX_GRANT_SCAN == 64


def test_history_commitment_step_is_pinned() -> None:
    """docs/PROTOCOL.md §4.6: head' = SHA-256(0x04 || head || leaf_index as 8 bytes big-endian
    || leaf_hash), starting from 32 zero bytes."""
    leaf = bytes(range(32))
    step = rules.next_history(bytes(32), 7, leaf)
    assert step == hashlib.sha256(b"\x04" + bytes(32) + bytes(7) + b"\x07" + leaf).digest()
    assert step.hex() == "de8dabcea3daf0b1ae7eb0d73fb5754777702babebdafc1f7429004d0d9acef0"
    last = rules.next_history(bytes(32), 2**64 - 1, leaf)
    assert last.hex() == "c3f51d64fa2ea066a40a320a4e6997826643743fed82737bd4c52e2c16b2b32c"


def test_state_map_constants_are_pinned() -> None:
    """docs/PROTOCOL.md §17.2: empty = 32 zero bytes, leaf 0x02, node 0x03, 256-bit paths."""
    assert bytes(32) == smt.EMPTY
    assert smt.LEAF_PREFIX == b"\x02"
    assert smt.NODE_PREFIX == b"\x03"
    assert smt.KEY_BITS == 256
    assert smt.HASH_SIZE == 32


def test_state_map_hashes_are_pinned() -> None:
    """docs/PROTOCOL.md §17.2: path = SHA-256(key), leaf = SHA-256(0x02 || path || value hash),
    node = SHA-256(0x03 || left || right), stated as bytes."""
    a, b = bytes(range(32)), bytes(range(32, 64))
    assert smt.key_path(b"k0").hex() == (
        "d1a5ac9a015fac2ef7b341673635512a1511f41fe37d111b267f039eec5d4f58"
    )
    assert smt.value_hash(b"k0") == hashlib.sha256(b"k0").digest()
    assert smt.leaf_hash(a, b) == hashlib.sha256(b"\x02" + a + b).digest()
    assert smt.leaf_hash(a, b).hex() == (
        "c453a4ab32db51eead97fb03afc87244de9455de960e90e3dd3ae91e30a7586e"
    )
    assert smt.node_hash(a, b) == hashlib.sha256(b"\x03" + a + b).digest()
    assert smt.node_hash(a, b).hex() == (
        "a18e7e934c932badded438e56cf87a8b65fc7e5f481f81be2a25c47a111728e5"
    )


def test_state_map_storage_layout_is_pinned() -> None:
    """docs/PROTOCOL.md §17.6 [node-local]: tiles of 4 levels under keys b"m" || t || p
    (ceil(t / 8) bytes), the root's entry under b"m", 96-byte leaf entries."""
    assert smt.TILE_HEIGHT == 4
    assert smt.LEAF_ENTRY_SIZE == 96
    assert smt.TILE_KEY_PREFIX == b"m"
    assert smt.ROOT_KEY == b"m"
    assert smt.tile_key((0, 0)) == b"m\x00"
    assert smt.tile_key((4, 0xA)) == b"m\x04\x0a"
    assert smt.tile_key((8, 0xAB)) == b"m\x08\xab"
    assert smt.tile_key((12, 0xABC)) == b"m\x0c\x0a\xbc"
    assert smt.encode_tile({2: b"x"}) == bytes.fromhex("8102c40178")
