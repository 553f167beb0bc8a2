"""The in-page verifier (explorer_assets/verify.js) against the reference verifier
(ledger.provenance.verify_bundle) on real bundles of a running node, untouched and tampered,
and its canonical msgpack against ledger.codec; all run in headless Chromium."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import codec, provenance
from ledger.crypto import CURVE_ORDER, PrivateKey
from ledger.errors import LedgerError, VerificationFailed
from ledger.events import Admit, Register, Rotate
from ledger.genesis import Genesis
from ledger.governance import rotation_message
from ledger.provenance import verify_bundle
from ledger.store import Store
from node.ops.homes import init_cluster
from tests.explorer.story import Story
from tests.ledger.helpers import ChainBuilder, make_genesis, make_key
from tests.node.conftest import RunningNode, running_node

Run = Callable[[str, Any], Any]

JS_VERIFY = """async ({bundle, genesis}) => {
  const v = await import("/explorer/assets/verify.js");
  const c = await import("/explorer/assets/crypto.js");
  const g = await v.parseGenesis(new TextEncoder().encode(genesis));
  try {
    const s = await v.verifyBundle(bundle, g);
    return {ok: true,
      events: s.events.map((p) => [c.toHex(p.event.id), p.leafIndex]),
      grants: s.grants.map((x) => [c.toHex(x.event.id), x.status]),
      parents: s.parents.map(c.toHex), children: s.children.map(c.toHex),
      owner: c.toHex(s.owner), height: Number(s.checkpoint.header.height),
      signers: s.checkpoint.count};
  } catch (e) {
    return {ok: false, reason: e.reason || null, name: e.name, message: String(e.message)};
  }
}"""


@dataclass
class Chain:
    node: RunningNode
    story: Story
    genesis_text: str
    bundles: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with running_node(tmp_path_factory.mktemp("verifier")) as node:

        def post(envelope: bytes) -> dict[str, Any]:
            return _commit(node, envelope)

        story = Story(node.genesis.chain_id, node.registrar, post).record()
        bundles = {
            name: node.client.get(f"/v1/datasets/{story.ids[name].hex()}/provenance").json()
            for name in ("raw", "summary", "report", "chart", "side")
        }
        genesis_text = (node.cluster_dir / "genesis.json").read_text()
        yield Chain(node, story, genesis_text, bundles)


def _commit(node: RunningNode, envelope: bytes) -> dict[str, Any]:
    response = node.submit(envelope, wait=True)
    assert response.status_code == 200, response.text
    return dict(response.json())


def python_verdict(bundle: Any, genesis_text: str) -> dict[str, Any]:
    genesis = Genesis.from_json(json.loads(genesis_text))
    try:
        s = verify_bundle(bundle, genesis)
    except VerificationFailed as exc:
        return {"ok": False, "reason": exc.reason}
    return {
        "ok": True,
        "events": [[p.event.event_id.hex(), p.leaf_index] for p in s.events],
        "grants": [
            [
                g.event.event_id.hex(),
                "revoked" if g.revoked_by else "expired" if g.expired else "live",
            ]
            for g in s.grants
        ],
        "parents": [p.hex() for p in s.parents],
        "children": [c.hex() for c in s.children],
        "owner": s.owner.hex(),
        "height": s.checkpoint.height,
        "signers": len(bundle["checkpoint"]["commit"]["signatures"]),
    }


def js_verdict(verifier: Run, bundle: Any, genesis_text: str) -> dict[str, Any]:
    result = dict(verifier(JS_VERIFY, {"bundle": bundle, "genesis": genesis_text}))
    if not result["ok"]:
        assert result["name"] == "VerificationFailed", result  # never a crash of the verifier
        return {"ok": False, "reason": result["reason"]}
    return result


@pytest.mark.parametrize("name", ["raw", "summary", "report", "chart", "side"])
def test_real_bundles_verify_in_the_browser_as_in_python(
    verifier: Run, chain: Chain, name: str
) -> None:
    bundle = chain.bundles[name]
    expected = python_verdict(bundle, chain.genesis_text)
    assert expected["ok"], expected
    assert js_verdict(verifier, bundle, chain.genesis_text) == expected


def test_the_story_has_what_the_page_shows(verifier: Run, chain: Chain) -> None:
    raw = js_verdict(verifier, chain.bundles["raw"], chain.genesis_text)
    statuses = dict(raw["grants"])
    assert statuses[chain.story.events["grant"].event_id.hex()] == "live"
    assert statuses[chain.story.events["grant to revoke"].event_id.hex()] == "revoked"
    assert raw["children"] == [chain.story.ids["summary"].hex()]
    summary = js_verdict(verifier, chain.bundles["summary"], chain.genesis_text)
    assert summary["parents"] == [chain.story.ids["raw"].hex()]
    assert sorted(summary["children"]) == sorted(
        [chain.story.ids["report"].hex(), chain.story.ids["chart"].hex()]
    )


def _flip(hex_text: str, at: int = -1) -> str:
    chars = list(hex_text)
    chars[at] = "0" if chars[at] != "0" else "1"
    return "".join(chars)


def _set(path: tuple[Any, ...], value: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        target: Any = bundle
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value(target[path[-1]])

    return change


def _drop(index: int) -> Callable[[dict[str, Any]], None]:
    return lambda bundle: bundle["events"].pop(index)


def _swap(bundle: dict[str, Any]) -> None:
    bundle["events"][1], bundle["events"][2] = bundle["events"][2], bundle["events"][1]


def _drop_grant_proof(bundle: dict[str, Any]) -> None:
    bundle["state"]["grants"].pop(0)


# Each change must make the reference verifier fail; the page must fail with the same reason.
TAMPERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "commit signature": _set(
        ("checkpoint", "commit", "signatures", 0, "signature"), lambda s: _flip(s, 10)
    ),
    "commit without signatures": _set(("checkpoint", "commit", "signatures"), lambda s: []),
    "commit signed twice": _set(("checkpoint", "commit", "signatures"), lambda s: s + s),
    "header byte": _set(("checkpoint", "header_bytes"), lambda h: _flip(h, -3)),
    "header truncated": _set(("checkpoint", "header_bytes"), lambda h: h[:-2]),
    "header not hex": _set(("checkpoint", "header_bytes"), lambda h: "zz" + h),
    "commit hash short": _set(("checkpoint", "commit", "block_hash"), lambda h: h[:-2]),
    "audit path": _set(("events", 1, "audit_path", 0), lambda h: _flip(h)),
    "audit path padded": _set(("events", 1, "audit_path"), lambda p: [*p, "00" * 32]),
    "leaf index": _set(("events", -1, "leaf_index"), lambda i: i - 1),
    "event signature": _set(("events", 2, "envelope"), lambda e: _flip(e, -5)),
    "event truncated": _set(("events", 2, "envelope"), lambda e: e[:-2]),
    "events reordered": _swap,
    "origin left out": _drop(0),
    "a use left out": _drop(4),
    "no events": _set(("events",), lambda e: []),
    "another dataset": _set(("dataset",), lambda d: "11" * 32),
    "version": _set(("version",), lambda v: 99),
    "events not a list": _set(("events",), lambda e: {}),
    "checkpoint missing": lambda b: b.pop("checkpoint"),
    "state missing": lambda b: b.pop("state"),
    "dataset state proof": _set(("state", "dataset", "proof", "siblings", 0), lambda h: _flip(h)),
    "dataset record changed": _set(("state", "dataset", "value"), lambda v: _flip(v, -3)),
    "grant state proof": _set(("state", "grants", 0, "proof", "siblings", 0), lambda h: _flip(h)),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_bundles_fail_in_the_browser_as_in_python(
    verifier: Run, chain: Chain, tamper: str
) -> None:
    bundle = copy.deepcopy(chain.bundles["raw"])
    TAMPERS[tamper](bundle)
    expected = python_verdict(bundle, chain.genesis_text)
    assert expected["ok"] is False, tamper
    assert js_verdict(verifier, bundle, chain.genesis_text) == expected


def test_a_grant_state_proof_left_out_verifies_alike_in_both(verifier: Run, chain: Chain) -> None:
    """A grant's status follows from the complete story (docs/PROTOCOL.md §9.3), so its
    proof is optional: both verifiers accept the bundle without it, with the same grants."""
    bundle = copy.deepcopy(chain.bundles["raw"])
    _drop_grant_proof(bundle)
    expected = python_verdict(bundle, chain.genesis_text)
    assert expected["ok"] is True
    assert js_verdict(verifier, bundle, chain.genesis_text) == expected


def test_another_genesis_is_refused(verifier: Run, chain: Chain, tmp_path: Path) -> None:
    init_cluster(tmp_path / "other", 1)
    other = (tmp_path / "other" / "genesis.json").read_text()
    bundle = chain.bundles["raw"]
    assert python_verdict(bundle, other) == {"ok": False, "reason": "wrong chain"}
    assert js_verdict(verifier, bundle, other)["reason"] == "wrong chain"
    # Same chain id, other validators: the header names another validator set.
    doc = json.loads(other)
    doc["chain_id"] = chain.node.genesis.chain_id
    same_id = json.dumps(doc)
    assert python_verdict(bundle, same_id) == {"ok": False, "reason": "wrong validator set"}
    assert js_verdict(verifier, bundle, same_id)["reason"] == "wrong validator set"


# --- canonical msgpack, against ledger.codec ------------------------------------------------

JS_ROUNDTRIP = """async (items) => {
  const m = await import("/explorer/assets/msgpack.js");
  const c = await import("/explorer/assets/crypto.js");
  return items.map((hex) => {
    try { return c.toHex(m.encode(m.decode(c.fromHex(hex)))); }
    catch (e) { return e.name; }
  });
}"""

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.text(max_size=40)
    | st.binary(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=8), inner, max_size=20)
    ),
    max_leaves=30,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(values, min_size=1, max_size=10))
def test_canonical_encodings_decode_and_reencode_identically(
    verifier: Run, batch: list[Any]
) -> None:
    encoded = []
    for value in batch:
        try:
            encoded.append(codec.encode(value).hex())
        except LedgerError:
            continue  # too deep for the codec: nothing canonical to compare
    assert verifier(JS_ROUNDTRIP, encoded) == encoded


NON_CANONICAL = [
    "d005",  # 5 as int8
    "cc05",  # 5 as uint8
    "cd00ff",  # 255 as uint16
    "d9016161",  # str8 of length 1 (and a trailing byte)
    "d90161",  # str8 of length 1
    "c500020102",  # bin16 of length 2
    "dc000101",  # array16 of one item
    "82a16201a16102",  # keys out of order
    "82a16101a16102",  # duplicate key
    "cb3ff0000000000000",  # float
    "d40000",  # ext
    "0102",  # trailing bytes
    "9201",  # truncated
    "c1",  # never used
    "a1ff",  # invalid UTF-8
    "810101",  # integer key
    "91" * 9 + "01",  # nesting beyond 8 non-empty levels
    "d1ff7f",  # -129 fits int16: canonical
    "d0df",  # -33: canonical
    "91" * 8 + "90",  # an empty container at level 9: canonical
    "cf0000000100000000",  # 2^32: canonical
]


def test_non_canonical_bytes_are_refused_like_ledger_codec(verifier: Run) -> None:
    results = verifier(JS_ROUNDTRIP, NON_CANONICAL)
    for hex_text, result in zip(NON_CANONICAL, results, strict=True):
        try:
            codec.decode(bytes.fromhex(hex_text))
        except LedgerError:
            assert result == "Malformed", hex_text
        else:
            assert result == hex_text, hex_text


JS_VECTORS = """async () => {
  const v = await import("/explorer/assets/verify.js");
  const c = await import("/explorer/assets/crypto.js");
  const m = await import("/explorer/assets/msgpack.js");
  const k1 = "036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
  const k2 = "037cf27b188d034f7e8a52380304b51ac3c08969e277f21b35a60b48fc47669978";
  const genesis = {chain_id: "demo", genesis_time: 1700000000000, admission: "permissioned",
    validators: [{name: "v0", public_key: k1, power: 1, url: "http://127.0.0.1:8800"}],
    registrars: [k2]};
  const g = await v.parseGenesis(new TextEncoder().encode(JSON.stringify(genesis)));
  return {
    validators: c.toHex(g.validatorsHash),
    precommit: c.toHex(v.precommitSignBytes("c", 1, 0, new Uint8Array(32).fill(0x11))),
    example: c.toHex(m.encode(new Map([["b", 1], ["a", [true, false, null]]]))),
    big: c.toHex(m.encode(4294967296)),
    minus33: c.toHex(m.encode(-33)),
    badKey: c.decompress(c.fromHex("02" + "ff".repeat(32))) === null,
  };
}"""


def test_protocol_test_vectors(verifier: Run) -> None:
    """docs/PROTOCOL.md §2.6 and §13, computed in the page."""
    out = verifier(JS_VECTORS, None)
    assert out["validators"] == "5551f55858fbfad3e1dde23f73bb027f137abb87e852e0b69b3d49c4893addf6"
    assert out["precommit"] == (
        "85a5626c6f636bc420" + "11" * 32 + "a5636861696ea163a668656967687401a5726f756e6400"
        "a474797065a9707265636f6d6d6974"
    )
    assert out["example"] == "82a16193c3c2c0a16201"
    assert out["big"] == "cf0000000100000000"
    assert out["minus33"] == "d0df"
    assert out["badKey"] is True  # x = 2^256 - 1 is not below p


JS_MANY_KEYS = """async (items) => {
  const c = await import("/explorer/assets/crypto.js");
  const msg = new TextEncoder().encode("bound");
  let ok = 0;
  for (const [key, sig] of items) {
    await c.verify(c.fromHex(key), msg, c.fromHex(sig));
    ok += 1;
    if (c.cachedKeys() > c.MAX_CACHED_KEYS) return {ok, over: c.cachedKeys()};
  }
  return {ok, size: c.cachedKeys(), bound: c.MAX_CACHED_KEYS};
}"""


def test_the_page_caches_a_bounded_number_of_keys(verifier: Run) -> None:
    keys = [PrivateKey.generate() for _ in range(600)]
    items = [[k.public_key.hex(), k.sign(b"bound").hex()] for k in keys]
    assert verifier(JS_MANY_KEYS, items) == {"ok": 600, "size": 512, "bound": 512}


JS_BAD_SIGNATURES = """async ([key, good, high]) => {
  const c = await import("/explorer/assets/crypto.js");
  const msg = new TextEncoder().encode("bound");
  const out = [];
  for (const sig of [good, high]) {
    try { await c.verify(c.fromHex(key), msg, c.fromHex(sig)); out.push("ok"); }
    catch (e) { out.push(e.message); }
  }
  return out;
}"""


def test_high_s_twins_are_refused_in_the_page(verifier: Run) -> None:
    key = PrivateKey.generate()
    good = key.sign(b"bound")
    s = int.from_bytes(good[32:], "big")
    high = good[:32] + (CURVE_ORDER - s).to_bytes(32, "big")
    result = verifier(JS_BAD_SIGNATURES, [key.public_key.hex(), good.hex(), high.hex()])
    assert result == ["ok", "signature out of range or not low-S"]


def test_a_story_registered_by_a_rotated_in_key_verifies_alike_in_both(
    verifier: Run, tmp_path: Path
) -> None:
    """The record's owner is the identity; `state.origin_signer` proves which identity the
    origin's signer acts for (docs/PROTOCOL.md §19.3). Left out, both refuse alike."""
    keys, registrar, genesis = make_genesis(4, seed=5_170)
    old, new = make_key(seed=5_180), make_key(seed=5_181)
    dataset = bytes(range(2, 34))
    with Store(tmp_path / "rotated", genesis) as store:
        builder = ChainBuilder(store, keys)
        admit = builder.ev(registrar, Admit, subject=old.public_key, role="participant", name="o")
        builder.append([admit])
        message = rotation_message(genesis.chain_id, old.public_key, new.public_key)
        rotate = builder.ev(
            old, Rotate, subject=old.public_key, to=new.public_key, possession=new.sign(message)
        )
        builder.append([rotate])
        builder.append([builder.ev(new, Register, dataset=dataset, meta={}, open=False)])
        bundle = provenance.proof_bundle(store, dataset)
    genesis_text = json.dumps(genesis.to_json())
    expected = python_verdict(bundle, genesis_text)
    assert expected["ok"] is True
    assert js_verdict(verifier, bundle, genesis_text) == expected
    assert bundle is not None
    del bundle["state"]["origin_signer"]
    assert python_verdict(bundle, genesis_text) == {"ok": False, "reason": "no origin"}
    assert js_verdict(verifier, bundle, genesis_text) == {"ok": False, "reason": "no origin"}
