"""The explorer follows governance (docs/PROTOCOL.md §19.4, §16.1): a real node (in-process
app, real consensus and LevelDB) whose validator set changes twice, its bundles, blocks and
participants' events checked in headless Chromium, untouched and forged, against the
reference verifier (ledger.provenance, ledger.transitions)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
from playwright.sync_api import Browser, Page

from ledger import codec, events, provenance, transitions
from ledger.blocks import NEXT_VALIDATORS, Header, ValidatorSet
from ledger.crypto import PrivateKey
from ledger.errors import LedgerError, Malformed, VerificationFailed
from ledger.events import (
    Approve,
    Attest,
    Grant,
    Propose,
    Register,
    Reinstate,
    Revoke,
    Rotate,
    Suspend,
    Use,
)
from ledger.genesis import Genesis
from ledger.governance import (
    ACTIVATION_DELAY,
    ADD_REGISTRAR,
    ADD_VALIDATOR,
    SET_POWER,
    Change,
    rotation_message,
)
from tests.explorer.conftest import ORIGIN, forward_to
from tests.ledger.helpers import sign_commit
from tests.node.conftest import RunningNode, running_node

Run = Callable[[str, Any], Any]
PAGE_LIMIT = 2
"""Bundle pages asked of the node in the paging tests: the story's 7 events make 4 pages."""


@dataclass
class Governed:
    node: RunningNode
    genesis: Genesis
    genesis_text: str
    fingerprint: str
    effective: list[int]
    """The heights from which the changed sets are in force (set-power, then add-validator)."""
    dataset: bytes
    signed: dict[str, events.SignedEvent]
    heights: dict[str, int]
    validator: PrivateKey
    newcomer: PrivateKey

    def bundle(self, **query: Any) -> dict[str, Any]:
        suffix = "&".join(f"{k}={v}" for k, v in query.items())
        url = f"/v1/datasets/{self.dataset.hex()}/provenance" + (f"?{suffix}" if suffix else "")
        response = self.node.client.get(url)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def pages(self, limit: int = PAGE_LIMIT) -> list[dict[str, Any]]:
        pages = [self.bundle(limit=limit)]
        height = pages[0]["checkpoint"]["header"]["height"]
        while pages[-1]["page"]["next"] is not None:
            after = pages[-1]["page"]["next"]
            pages.append(self.bundle(after=after, height=height, limit=limit))
        return pages


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Governed]:
    """One validator raises its power to 3 (the first transition), then adds a validator of
    power 1 that never runs (the second: 3 of 4 still commits alone); after that the
    newcomer proposes and the first validator approves, a key is suspended, reinstated and
    rotated, and a dataset gets a story of 7 events with two grants."""
    # Empty blocks every 200 ms, so that each change's effective height comes soon.
    with running_node(
        tmp_path_factory.mktemp("governed-explorer"), idle_block_interval_ms=200
    ) as node:
        me = PrivateKey.load(node.settings.key_path)
        signed: dict[str, events.SignedEvent] = {}
        heights: dict[str, int] = {}

        def commit(label: str, key: PrivateKey, cls: type[events.EventBody], **fields: Any) -> int:
            event = node.make._sign(key, cls, **fields)
            signed[label] = event
            heights[label] = int(node.commit(event)["height"])
            return heights[label]

        effective = []
        raise_power = Change(SET_POWER, public_key=me.public_key, power=3)
        effective.append(commit("set power", me, Propose, change=raise_power.to_map()) + 2)
        node.wait_height(effective[-1])
        newcomer = PrivateKey.generate()
        add = Change(
            ADD_VALIDATOR, public_key=newcomer.public_key, name="newcomer", url=ORIGIN, power=1
        )
        effective.append(commit("add validator", me, Propose, change=add.to_map()) + 2)
        assert ACTIVATION_DELAY == 2
        node.wait_height(effective[-1])
        registrar = PrivateKey.generate()
        more = Change(ADD_REGISTRAR, public_key=registrar.public_key).to_map()
        commit("propose registrar", newcomer, Propose, change=more)
        commit("approve", me, Approve, proposal=signed["propose registrar"].event_id)

        provider = node.admit_participant("provider")
        analyst = node.admit_participant("analyst")
        carol = node.admit_participant("carol")
        commit("suspend", node.registrar, Suspend, subject=carol.public_key)
        commit("reinstate", node.registrar, Reinstate, subject=carol.public_key)
        carol_new = PrivateKey.generate()
        possession = carol_new.sign(
            rotation_message(node.genesis.chain_id, carol.public_key, carol_new.public_key)
        )
        commit(
            "rotate",
            carol,
            Rotate,
            subject=carol.public_key,
            to=carol_new.public_key,
            possession=possession,
        )

        dataset = hashlib.sha256(os.urandom(32)).digest()
        commit("register", provider, Register, dataset=dataset, meta={"title": "Tides"}, open=False)
        commit("attest", provider, Attest, dataset=dataset, claim="checked", meta={"score": 7})
        commit(
            "grant",
            provider,
            Grant,
            dataset=dataset,
            to=analyst.public_key,
            purposes=("analytics",),
            reshare=False,
        )
        commit("use", analyst, Use, dataset=dataset, purpose="analytics")
        commit(
            "grant to revoke",
            provider,
            Grant,
            dataset=dataset,
            to=analyst.public_key,
            purposes=("audit",),
            reshare=False,
        )
        commit("revoke", provider, Revoke, grant=signed["grant to revoke"].event_id)
        commit("attest again", provider, Attest, dataset=dataset, claim="again", meta={})
        genesis_bytes = (node.cluster_dir / "genesis.json").read_bytes()
        yield Governed(
            node=node,
            genesis=node.genesis,
            genesis_text=genesis_bytes.decode(),
            fingerprint=hashlib.sha256(genesis_bytes).hexdigest(),
            effective=effective,
            dataset=dataset,
            signed=signed,
            heights=heights,
            validator=me,
            newcomer=newcomer,
        )


# --- the verifier in a page, against the reference verifier ----------------------------------

JS_VERIFY = """async ({bundle, pages, genesis}) => {
  const v = await import("/explorer/assets/verify.js");
  const c = await import("/explorer/assets/crypto.js");
  const g = await v.parseGenesis(new TextEncoder().encode(genesis));
  try {
    const joined = pages ? v.joinPages(pages) : bundle;
    const s = await v.verifyBundle(joined, g);
    return {ok: true,
      events: s.events.map((p) => [c.toHex(p.event.id), p.leafIndex]),
      grants: s.grants.map((x) => [c.toHex(x.event.id), x.status]),
      height: Number(s.checkpoint.header.height),
      since: s.checkpoint.setSince, transitions: s.checkpoint.transitionCount,
      validators: s.checkpoint.validatorCount, power: s.checkpoint.totalPower};
  } catch (e) {
    return {ok: false, reason: e.reason || null, name: e.name, message: String(e.message)};
  }
}"""


def python_verdict(bundle: Any, genesis: Genesis) -> dict[str, Any]:
    try:
        s = provenance.verify_bundle(bundle, genesis)
    except VerificationFailed as exc:
        return {"ok": False, "reason": exc.reason}
    steps = bundle["checkpoint"].get("transitions", [])
    signers = transitions.walk(genesis, steps, s.checkpoint.height)
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
        "height": s.checkpoint.height,
        "since": steps[-1]["height"] if steps else 0,
        "transitions": len(steps),
        "validators": len(signers.validators),
        "power": signers.total_power,
    }


def js_verdict(verifier: Run, governed: Governed, bundle: Any = None, pages: Any = None) -> Any:
    arg = {"bundle": bundle, "pages": pages, "genesis": governed.genesis_text}
    result = dict(verifier(JS_VERIFY, arg))
    if not result["ok"]:
        assert result["name"] == "VerificationFailed", result  # never a crash of the verifier
        return {"ok": False, "reason": result["reason"]}
    return result


def test_a_dataset_registered_after_two_changes_verifies_as_in_python(
    verifier: Run, governed: Governed
) -> None:
    bundle = governed.bundle()
    assert [t["height"] for t in bundle["checkpoint"]["transitions"]] == governed.effective
    expected = python_verdict(bundle, governed.genesis)
    assert expected["ok"], expected
    assert expected["since"] == governed.effective[-1]
    assert (expected["validators"], expected["power"]) == (2, 4)
    assert js_verdict(verifier, governed, bundle) == expected


def _forge_power(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"]["transitions"][0]["validators"][0]["power"] = 2


def _forge_later_set(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"]["transitions"][1]["validators"][1]["name"] = "mallory"


def _drop_first(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"]["transitions"].pop(0)


def _drop_all(bundle: dict[str, Any]) -> None:
    del bundle["checkpoint"]["transitions"]


def _swap(bundle: dict[str, Any]) -> None:
    steps = bundle["checkpoint"]["transitions"]
    steps[0], steps[1] = steps[1], steps[0]


def _repeat(bundle: dict[str, Any]) -> None:
    steps = bundle["checkpoint"]["transitions"]
    steps.insert(1, copy.deepcopy(steps[0]))


def _height(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"]["transitions"][0]["height"] += 1


def _flip(hex_text: str, at: int) -> str:
    chars = list(hex_text)
    chars[at] = "0" if chars[at] != "0" else "1"
    return "".join(chars)


def _commit_signature(bundle: dict[str, Any]) -> None:
    commit = bundle["checkpoint"]["transitions"][1]["commit"]
    commit["signatures"][0]["signature"] = _flip(commit["signatures"][0]["signature"], 10)


def _header_byte(bundle: dict[str, Any]) -> None:
    step = bundle["checkpoint"]["transitions"][0]
    step["header_bytes"] = _flip(step["header_bytes"], -3)


def _unsigned(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"]["transitions"][0]["commit"]["signatures"] = []


def _not_a_list(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"]["transitions"] = {"height": 1}


def _not_an_object(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"]["transitions"][0] = "transition"


def _bad_key(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"]["transitions"][1]["validators"][1]["public_key"] = "02" + "ff" * 32


def _too_many(bundle: dict[str, Any]) -> None:
    bundle["checkpoint"]["transitions"] = [{"not": "parsed"}] * (transitions.MAX_TRANSITIONS + 1)


def _checkpoint_is_a_transition(bundle: dict[str, Any]) -> None:
    """A transition made of the checkpoint's own header (not below the checkpoint)."""
    point = bundle["checkpoint"]
    point["transitions"].append(
        {
            "height": point["header"]["height"] + 1,
            "header_bytes": point["header_bytes"],
            "commit": point["commit"],
            "validators": point["transitions"][1]["validators"],
        }
    )


# Each change must make the reference verifier fail; the page must fail with the same reason.
TRANSITION_TAMPERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "forged set power": _forge_power,
    "forged name in the later set": _forge_later_set,
    "first transition left out": _drop_first,
    "every transition left out": _drop_all,
    "transitions swapped": _swap,
    "transition repeated": _repeat,
    "height not the header's + 1": _height,
    "transition commit signature": _commit_signature,
    "transition header byte": _header_byte,
    "transition without signatures": _unsigned,
    "transitions not a list": _not_a_list,
    "transition not an object": _not_an_object,
    "set key not on the curve": _bad_key,
    "too many transitions": _too_many,
    "transition at the checkpoint's height": _checkpoint_is_a_transition,
}


@pytest.mark.parametrize("tamper", sorted(TRANSITION_TAMPERS))
def test_forged_transitions_fail_in_the_browser_as_in_python(
    verifier: Run, governed: Governed, tamper: str
) -> None:
    bundle = copy.deepcopy(governed.bundle())
    TRANSITION_TAMPERS[tamper](bundle)
    expected = python_verdict(bundle, governed.genesis)
    assert expected["ok"] is False, tamper
    assert js_verdict(verifier, governed, bundle) == expected


def test_a_transition_from_block_one_is_refused(verifier: Run, governed: Governed) -> None:
    """No change can be decided before block 1, so none is in force before height 3: a
    header 1 naming a next set, signed by the whole genesis set, is still refused."""
    bundle = copy.deepcopy(governed.bundle())
    steps = bundle["checkpoint"]["transitions"]
    raw = governed.node.service.store.header_bytes(1)
    assert raw is not None
    new_set = ValidatorSet.from_json(steps[0]["validators"])
    forged = dataclasses.replace(Header.decode(raw), next_validators=new_set.hash())
    chain_id = governed.genesis.chain_id
    commit = sign_commit([governed.validator], chain_id, 1, 0, forged.block_hash)
    steps.insert(
        0,
        {
            "height": 2,
            "header_bytes": forged.encode().hex(),
            "commit": commit.to_json(),
            "validators": steps[0]["validators"],
        },
    )
    expected = python_verdict(bundle, governed.genesis)
    assert expected == {"ok": False, "reason": "bad validator-set transition"}
    assert js_verdict(verifier, governed, bundle) == expected


def test_the_failure_reasons_are_the_walks(verifier: Run, governed: Governed) -> None:
    """The reasons §19.4 names, one tamper each (so a wrong reason cannot hide in equality)."""
    reasons = {}
    for tamper in ("forged set power", "every transition left out", "height not the header's + 1"):
        bundle = copy.deepcopy(governed.bundle())
        TRANSITION_TAMPERS[tamper](bundle)
        reasons[tamper] = js_verdict(verifier, governed, bundle)["reason"]
    bundle = copy.deepcopy(governed.bundle())
    _too_many(bundle)
    reasons["too many"] = js_verdict(verifier, governed, bundle)["reason"]
    assert reasons == {
        "forged set power": "bad validator-set transition",
        "every transition left out": "wrong validator set",
        "height not the header's + 1": "malformed transition",
        "too many": "too many transitions",
    }


JS_WALK = """async ({genesis, steps, below}) => {
  const v = await import("/explorer/assets/verify.js");
  const g = await v.parseGenesis(new TextEncoder().encode(genesis));
  try {
    const w = await v.walkTransitions(g, steps, below);
    return {ok: true, since: w.since, count: w.count, members: w.set.validators.map((m) => m.name)};
  } catch (e) {
    return {ok: false, reason: e.reason || null, detail: e.detail || String(e)};
  }
}"""


def test_the_walk_refuses_more_than_max_transitions_before_parsing_any(
    verifier: Run, governed: Governed
) -> None:
    junk = [{"not": "parsed"}] * transitions.MAX_TRANSITIONS
    arg = {"genesis": governed.genesis_text, "below": 10}
    at_bound = verifier(JS_WALK, {**arg, "steps": junk})
    over = verifier(JS_WALK, {**arg, "steps": [*junk, {"not": "parsed"}]})
    assert at_bound["reason"] == "malformed transition"  # 4096 are parsed (and the first fails)
    assert over == {"ok": False, "reason": "too many transitions", "detail": "more than 4096"}


def test_the_walk_stops_below_the_checkpoint(verifier: Run, governed: Governed) -> None:
    steps = governed.bundle()["checkpoint"]["transitions"]
    arg = {"genesis": governed.genesis_text, "steps": steps}
    below_second = verifier(JS_WALK, {**arg, "below": governed.effective[1] - 1})
    assert below_second["reason"] == "bad validator-set transition"
    reached = verifier(JS_WALK, {**arg, "below": governed.effective[1]})
    assert reached == {
        "ok": True,
        "since": governed.effective[1],
        "count": 2,
        "members": [governed.genesis.validators.validators[0].name, "newcomer"],
    }


# --- bundles in pages ------------------------------------------------------------------------


def test_a_bundle_in_pages_with_grants_on_later_pages_verifies(
    verifier: Run, governed: Governed
) -> None:
    pages = governed.pages()
    assert len(pages) == 4
    first_events = {e["id"] for e in pages[0]["events"]}
    assert governed.signed["grant"].event_id.hex() not in first_events  # a later page's
    expected = python_verdict(provenance.join_pages(pages), governed.genesis)
    assert expected["ok"], expected
    assert dict(expected["grants"]) == {
        governed.signed["grant"].event_id.hex(): "live",
        governed.signed["grant to revoke"].event_id.hex(): "revoked",
    }
    assert js_verdict(verifier, governed, pages=pages) == expected


def test_later_pages_grant_proofs_are_joined_and_checked(verifier: Run, governed: Governed) -> None:
    """A later page's `grants` (its grants' state proofs) go into the joined `state.grants`,
    where each must verify against the checkpoint: a good one passes, a forged one fails."""
    whole = governed.bundle()
    proofs = {g["key"]: g for g in whole["state"]["grants"]}
    pages = copy.deepcopy(governed.pages())
    grant_key = "7367" + governed.signed["grant"].event_id.hex()
    assert grant_key in proofs and not pages[0]["state"]["grants"]
    holder = next(p for p in pages[1:] if governed.signed["grant"].event_id.hex() in _ids(p))
    holder["grants"] = [proofs[grant_key]]
    joined = verifier(JS_JOIN, pages)
    assert joined == [grant_key]
    assert js_verdict(verifier, governed, pages=pages)["ok"] is True
    forged = copy.deepcopy(proofs[grant_key])
    forged["proof"]["siblings"][0] = _flip(forged["proof"]["siblings"][0], -1)
    holder["grants"] = [forged]
    assert js_verdict(verifier, governed, pages=pages) == {
        "ok": False,
        "reason": "state proof invalid",
    }
    holder["grants"] = {"not": "a list"}
    assert js_verdict(verifier, governed, pages=pages) == {
        "ok": False,
        "reason": "malformed bundle",
    }


def _ids(page: dict[str, Any]) -> set[str]:
    return {e["id"] for e in page["events"]}


JS_JOIN = """async (pages) => {
  const v = await import("/explorer/assets/verify.js");
  return v.joinPages(pages).state.grants.map((g) => g.key);
}"""


def test_a_page_against_another_checkpoint_is_refused(verifier: Run, governed: Governed) -> None:
    pages = copy.deepcopy(governed.pages())
    pages[2]["checkpoint"]["header_bytes"] = pages[0]["checkpoint"]["transitions"][0][
        "header_bytes"
    ]
    with pytest.raises(VerificationFailed) as python:
        provenance.join_pages(pages)
    assert python.value.reason == "malformed bundle"
    assert js_verdict(verifier, governed, pages=pages) == {
        "ok": False,
        "reason": "malformed bundle",
    }


# --- headers, sets and events ----------------------------------------------------------------

JS_HEADER = """async (hexes) => {
  const v = await import("/explorer/assets/verify.js");
  const c = await import("/explorer/assets/crypto.js");
  return hexes.map((hex) => {
    try {
      const h = v.decodeHeader(c.fromHex(hex));
      const next = h.next_validators ? c.toHex(h.next_validators) : null;
      return {height: Number(h.height), next};
    } catch (e) { return {error: e.name}; }
  });
}"""


def _reencode(header_bytes: bytes, change: Callable[[dict[str, Any]], None]) -> str:
    doc = codec.decode(header_bytes)
    change(doc)
    return str(codec.encode(doc).hex())


def test_headers_with_next_validators_decode_as_in_python(
    verifier: Run, governed: Governed
) -> None:
    store = governed.node.service.store
    naming = governed.effective[0] - 1
    raw = store.header_bytes(naming)
    plain = store.header_bytes(naming + 1)
    assert raw is not None and plain is not None
    header = Header.decode(raw)
    assert header.next_validators is not None

    def same_as_own(doc: dict[str, Any]) -> None:
        doc[NEXT_VALIDATORS] = doc["validators"]

    def short_hash(doc: dict[str, Any]) -> None:
        doc[NEXT_VALIDATORS] = doc[NEXT_VALIDATORS][:31]

    def text_hash(doc: dict[str, Any]) -> None:
        doc[NEXT_VALIDATORS] = doc[NEXT_VALIDATORS].hex()

    def unknown_key(doc: dict[str, Any]) -> None:
        doc["next_validator"] = doc.pop(NEXT_VALIDATORS)

    bad = [_reencode(raw, f) for f in (same_as_own, short_hash, text_hash, unknown_key)]
    # Not canonical: the header map's keys packed out of order (msgpack, not ledger.codec).
    doc = codec.decode(raw)
    bad.append(msgpack.packb(dict(reversed(list(doc.items()))), use_bin_type=True).hex())
    for hex_text in bad:
        with pytest.raises(LedgerError):
            Header.decode(bytes.fromhex(hex_text))
    out = verifier(JS_HEADER, [raw.hex(), plain.hex(), *bad])
    assert out[0] == {"height": naming, "next": header.next_validators.hex()}
    assert out[1] == {"height": naming + 1, "next": None}
    assert out[2:] == [{"error": "Malformed"}] * len(bad)


JS_SET_HASH = """async (genesis) => {
  const v = await import("/explorer/assets/verify.js");
  const c = await import("/explorer/assets/crypto.js");
  try {
    const g = await v.parseGenesis(new TextEncoder().encode(genesis));
    const operators = g.validators.map((m) => (m.operator ? c.toHex(m.operator) : null));
    return {hash: c.toHex(g.validatorsHash), operators};
  } catch (e) { return {error: e.name, message: e.message}; }
}"""


def test_a_set_with_operators_hashes_as_in_python(verifier: Run, governed: Governed) -> None:
    doc = json.loads(governed.genesis_text)
    first = doc["validators"][0]
    operator = PrivateKey.generate().public_key.hex()
    second = {"name": "v1", "public_key": PrivateKey.generate().public_key.hex(), "power": 2}
    doc["validators"] = [{**first, "operator": operator}, second]
    with_operator = Genesis.from_json(doc)
    out = verifier(JS_SET_HASH, json.dumps(doc))
    assert out == {"hash": with_operator.validators.hash().hex(), "operators": [operator, None]}
    # The operator is committed: without it the hash is another (the genesis's own).
    doc["validators"] = [first, second]
    assert verifier(JS_SET_HASH, json.dumps(doc))["hash"] == (
        Genesis.from_json(doc).validators.hash().hex()
    )
    assert Genesis.from_json(doc).validators.hash() != with_operator.validators.hash()
    doc["validators"] = [{**first, "operator": "02" + "ff" * 32}]
    with pytest.raises(LedgerError):
        Genesis.from_json(doc)
    assert verifier(JS_SET_HASH, json.dumps(doc))["error"] == "Malformed"


JS_EVENTS = """async ({chain, envelopes}) => {
  const v = await import("/explorer/assets/verify.js");
  const c = await import("/explorer/assets/crypto.js");
  const out = [];
  for (const hex of envelopes) {
    try {
      const e = await v.decodeEnvelope(c.fromHex(hex), chain);
      out.push({type: e.body.type, id: c.toHex(e.id)});
    } catch (err) { out.push({error: err.name}); }
  }
  return out;
}"""


def _signed_body(key: PrivateKey, body: dict[str, Any]) -> str:
    body_bytes = codec.encode(body)
    return str(codec.encode({"body": body_bytes, "sig": key.sign(body_bytes)}).hex())


def test_governance_and_lifecycle_events_decode_as_in_python(
    verifier: Run, governed: Governed
) -> None:
    labels = [
        "set power",
        "add validator",
        "propose registrar",
        "approve",
        "suspend",
        "reinstate",
        "rotate",
    ]
    good = [governed.signed[label] for label in labels]
    base = governed.signed["set power"].body.to_map()
    change = dict(base["change"])
    common = {k: v for k, v in base.items() if k != "change"}
    bad_bodies = [
        {**base, "change": {**change, "power": 0}},
        {**base, "change": {**change, "name": "x"}},
        {**base, "change": {**change, "op": "set-everything"}},
        {**base, "change": {**change, "public_key": bytes.fromhex("02" + "ff" * 32)}},
        {**base, "change": {"op": "set-param", "name": "", "value": 1}},
        {**base, "change": {"op": "set-param", "name": "x", "value": 1 << 63}},
        {**base, "change": "set-power"},
        {**common, "type": "approve", "proposal": bytes(31)},
        {**governed.signed["rotate"].body.to_map(), "possession": bytes(63)},
        {**governed.signed["suspend"].body.to_map(), "extra": 1},
    ]
    # Each is malformed before its signature is looked at: any key signs it.
    bad = [_signed_body(governed.validator, body) for body in bad_bodies]
    for hex_text in bad:
        with pytest.raises((Malformed, LedgerError)):
            events.decode_envelope(bytes.fromhex(hex_text), chain_id=governed.genesis.chain_id)
    arg = {"chain": governed.genesis.chain_id, "envelopes": [e.envelope.hex() for e in good] + bad}
    out = verifier(JS_EVENTS, arg)
    assert out[: len(good)] == [{"type": e.type, "id": e.event_id.hex()} for e in good]
    assert out[len(good) :] == [{"error": "Malformed"}] * len(bad)


# --- pages in Chromium -----------------------------------------------------------------------


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def with_limit(path: str) -> str:
    """Ask the node for small bundle pages, so the page follows `page.next`."""
    if "/provenance" not in path:
        return path
    return f"{path}{'&' if '?' in path else '?'}limit={PAGE_LIMIT}"


def open_page(page: Page, governed: Governed, path: str) -> tuple[str | None, str, str | None]:
    page.goto(f"{ORIGIN}/explorer{path}?genesis={governed.fingerprint}")
    page.wait_for_selector("body[data-ready]")
    if not page.locator(".verdict").count():
        return None, "", None
    first = page.locator(".verdict").first
    return (
        first.get_attribute("data-status"),
        first.inner_text(),
        first.get_attribute("data-reason"),
    )


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


def test_the_dataset_page_verifies_a_story_signed_by_the_changed_set(
    page: Page, governed: Governed, tmp_path: Path
) -> None:
    seen: list[str] = []
    page.route(f"{ORIGIN}/**", forward_to(governed.node.client, rewrite=with_limit, seen=seen))
    status, text, _ = open_page(page, governed, f"/datasets/{governed.dataset.hex()}")
    assert status == "verified", text
    assert "signed by 1 of 2 validators (power 3 of 4)" in text
    assert f"of the set in force since height {governed.effective[-1]}" in text
    assert "2 validator-set transitions" in text
    provenance_asks = [p for p in seen if "/provenance" in p]
    assert len(provenance_asks) == 4  # the page followed page.next through every page
    grants = page.locator("#grants tbody tr")
    assert sorted(grants.nth(i).get_attribute("data-status") or "" for i in range(2)) == [
        "live",
        "revoked",
    ]
    assert page.locator("#timeline li").count() == 7
    shoot(page, tmp_path, "dataset")


def test_the_dataset_page_refuses_a_forged_transition(page: Page, governed: Governed) -> None:
    def forge(path: str, body: bytes) -> bytes:
        doc = json.loads(body)
        _forge_power(doc)
        return json.dumps(doc).encode()

    prefix = f"/v1/datasets/{governed.dataset.hex()}/provenance"
    page.route(f"{ORIGIN}/**", forward_to(governed.node.client, answers={prefix: forge}))
    status, text, reason = open_page(page, governed, f"/datasets/{governed.dataset.hex()}")
    assert (status, reason) == ("failed", "bad validator-set transition"), text
    assert page.locator("#timeline").count() == 0  # nothing unverified is shown


def test_the_block_page_walks_the_served_history(
    page: Page, governed: Governed, tmp_path: Path
) -> None:
    page.route(f"{ORIGIN}/**", forward_to(governed.node.client))
    height = governed.heights["rotate"]
    status, text, _ = open_page(page, governed, f"/blocks/{height}")
    assert status == "verified", text
    assert f"of the set in force since height {governed.effective[-1]}" in text
    row = page.locator("table.events tbody tr")
    assert row.get_attribute("data-type") == "rotate"
    assert row.locator(".action").inner_text().startswith("rotated carol")
    shoot(page, tmp_path, "block")
    naming = governed.effective[0] - 1
    status, text, _ = open_page(page, governed, f"/blocks/{naming}")
    assert status == "verified", text
    assert "of the pinned genesis" in text  # header `naming` is the old set's last
    assert f"in force from height {naming + 1}" in page.locator("#next-validators").inner_text()


def test_the_block_page_refuses_a_forged_history(page: Page, governed: Governed) -> None:
    def forge(path: str, body: bytes) -> bytes:
        doc = json.loads(body)
        doc["transitions"][1]["validators"][1]["power"] = 9
        return json.dumps(doc).encode()

    answers = {"/v1/validators/history": forge}
    page.route(f"{ORIGIN}/**", forward_to(governed.node.client, answers=answers))
    status, text, reason = open_page(page, governed, f"/blocks/{governed.heights['rotate']}")
    assert (status, reason) == ("failed", "bad validator-set transition"), text


def test_pages_list_governance_and_lifecycle_events(page: Page, governed: Governed) -> None:
    page.route(f"{ORIGIN}/**", forward_to(governed.node.client))
    me = governed.validator.public_key.hex()
    open_page(page, governed, f"/participants/{me}")
    page.wait_for_selector("#participant-events li")
    mine = page.locator("#participant-events li")
    kinds = [li.get_attribute("data-type") for li in mine.all()]
    assert kinds == ["propose", "propose", "approve"]
    texts = page.locator("#participant-events li .action").all_inner_texts()
    assert texts[0].startswith("proposed: set the power of validator") and texts[0].endswith("to 3")
    assert texts[1].startswith("proposed: add validator “newcomer”") and "power 1" in texts[1]
    assert texts[2].startswith("approved proposal ")
    assert all("signed ✓" in t for t in mine.all_inner_texts())

    registrar = governed.node.registrar.public_key.hex()
    open_page(page, governed, f"/participants/{registrar}")
    page.wait_for_selector("#participant-events li")
    kinds = [li.get_attribute("data-type") for li in page.locator("#participant-events li").all()]
    assert kinds == ["admit", "admit", "admit", "suspend", "reinstate"]
    texts = page.locator("#participant-events li .action").all_inner_texts()
    assert texts[3].startswith("suspended carol") and texts[4].startswith("reinstated carol")

    event = governed.signed["propose registrar"].event_id.hex()
    status, text, _ = open_page(page, governed, f"/events/{event}")
    assert status == "verified", text
    assert page.locator("#action").inner_text().startswith("proposed: make ")
    assert "newcomer" in page.locator("table.facts").inner_text()  # its name, from the walk


def test_the_chain_page_verifies_the_head_against_the_changed_set(
    page: Page, governed: Governed
) -> None:
    page.route(f"{ORIGIN}/**", forward_to(governed.node.client))
    status, text, _ = open_page(page, governed, "/chain")
    assert status == "verified", text
    assert f"of the set in force since height {governed.effective[-1]}" in text
    rows = page.locator("#validators tbody tr").all_inner_texts()
    assert len(rows) == 2
    assert "yes ✓" in rows[0] and rows[1].startswith("newcomer")  # it never signs
