"""The genesis document: JSON form, files, hash commitments, rejection of bad documents."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from ledger import codec, crypto
from ledger.blocks import MAX_POWER, Validator, ValidatorSet
from ledger.errors import Malformed
from ledger.genesis import MAX_CHAIN_ID, OPEN, PERMISSIONED, Genesis
from tests.ledger.helpers import make_genesis, make_key


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return make_genesis(4, [1, 2, 3, 4], seed=100)[2]


def good_doc(genesis: Genesis) -> dict[str, Any]:
    return json.loads(json.dumps(genesis.to_json()))


def test_json_shape(genesis: Genesis) -> None:
    doc = good_doc(genesis)
    assert doc["chain_id"] == genesis.chain_id
    assert doc["genesis_time"] == genesis.genesis_time
    assert doc["admission"] == PERMISSIONED
    assert doc["registrars"] == [r.hex() for r in genesis.registrars]
    assert [set(v) for v in doc["validators"]] == [{"name", "public_key", "power", "url"}] * 4
    assert [v["power"] for v in doc["validators"]] == [1, 2, 3, 4]
    assert all(v["public_key"] == v["public_key"].lower() for v in doc["validators"])


@pytest.mark.parametrize("admission", [PERMISSIONED, OPEN])
def test_json_round_trip(admission: str) -> None:
    _, _, g = make_genesis(3, admission=admission)
    again = Genesis.from_json(json.loads(json.dumps(g.to_json())))
    assert again == g
    assert again.hash() == g.hash()
    assert again.is_open == (admission == OPEN)


def test_round_trip_keeps_urls_and_several_registrars() -> None:
    vs = make_genesis(2)[2].validators
    with_urls = ValidatorSet(
        tuple(
            dataclasses.replace(v, url=f"http://10.0.0.{i}:8800")
            for i, v in enumerate(vs.validators)
        )
    )
    g = Genesis("chain", 5, with_urls, (make_key().public_key, make_key().public_key), OPEN)
    assert Genesis.from_json(json.loads(json.dumps(g.to_json()))) == g


def test_optional_fields_default(genesis: Genesis) -> None:
    doc = good_doc(genesis)
    del doc["admission"]
    del doc["genesis_time"]
    for v in doc["validators"]:
        del v["url"]
    g = Genesis.from_json(doc)
    assert g.admission == PERMISSIONED
    assert not g.is_open
    assert g.genesis_time == 0
    assert all(v.url == "" for v in g.validators.validators)


def test_save_load(tmp_path: Path, genesis: Genesis) -> None:
    path = tmp_path / "genesis.json"
    genesis.save(path)
    assert json.loads(path.read_text()) == genesis.to_json()
    loaded = Genesis.load(path)
    assert loaded == genesis
    assert loaded.hash() == genesis.hash()
    assert Genesis.load(str(path)) == genesis


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"not json", b"[]", b"null", b"42", b'"genesis"', b"\xff\xfe{}"],
    ids=repr,
)
def test_load_rejects_bad_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(content)
    with pytest.raises(Malformed):
        Genesis.load(path)


def test_load_missing_file_or_directory(tmp_path: Path) -> None:
    with pytest.raises(Malformed):
        Genesis.load(tmp_path / "missing.json")
    with pytest.raises(Malformed):
        Genesis.load(tmp_path)


def test_hash_is_the_canonical_map(genesis: Genesis) -> None:
    expected = crypto.sha256(
        codec.encode(
            {
                "admission": genesis.admission,
                "chain_id": genesis.chain_id,
                "genesis_time": genesis.genesis_time,
                "registrars": list(genesis.registrars),
                "validators": genesis.validators.hash(),
            }
        )
    )
    assert genesis.hash() == expected
    assert len(genesis.hash()) == 32
    assert genesis.hash() == make_genesis(4, [1, 2, 3, 4], seed=100)[2].hash()


def _change_validator(g: Genesis, **changes: Any) -> Genesis:
    members = list(g.validators.validators)
    members[0] = dataclasses.replace(members[0], **changes)
    return dataclasses.replace(g, validators=ValidatorSet(tuple(members)))


CHANGES: dict[str, Callable[[Genesis], Genesis]] = {
    "chain_id": lambda g: dataclasses.replace(g, chain_id=g.chain_id + "-2"),
    "genesis_time": lambda g: dataclasses.replace(g, genesis_time=g.genesis_time + 1),
    "admission": lambda g: dataclasses.replace(g, admission=OPEN),
    "registrar replaced": lambda g: dataclasses.replace(g, registrars=(make_key(7).public_key,)),
    "registrar added": lambda g: dataclasses.replace(
        g, registrars=(*g.registrars, make_key(7).public_key)
    ),
    "registrars reordered": lambda g: dataclasses.replace(
        dataclasses.replace(g, registrars=(*g.registrars, make_key(7).public_key)),
        registrars=(make_key(7).public_key, *g.registrars),
    ),
    "validator power": lambda g: _change_validator(g, power=9),
    "validator name": lambda g: _change_validator(g, name="renamed"),
    "validator key": lambda g: _change_validator(g, public_key=make_key(8).public_key),
    "validator added": lambda g: dataclasses.replace(
        g,
        validators=ValidatorSet(
            (*g.validators.validators, Validator("extra", make_key(9).public_key, 1))
        ),
    ),
    "validators reordered": lambda g: dataclasses.replace(
        g, validators=ValidatorSet(tuple(reversed(g.validators.validators)))
    ),
}


@pytest.mark.parametrize("name", CHANGES.keys())
def test_hash_changes_when_any_field_changes(genesis: Genesis, name: str) -> None:
    changed = CHANGES[name](genesis)
    assert changed != genesis
    assert changed.hash() != genesis.hash()


def test_all_changes_give_distinct_hashes(genesis: Genesis) -> None:
    hashes = {fn(genesis).hash() for fn in CHANGES.values()} | {genesis.hash()}
    assert len(hashes) == len(CHANGES) + 1


def test_validator_url_is_not_committed(genesis: Genesis) -> None:
    """Documented choice (ValidatorSet.hash): urls are operational, not part of the hash."""
    moved = _change_validator(genesis, url="http://elsewhere:8800")
    assert moved.hash() == genesis.hash()


def test_constructor_rules() -> None:
    g = make_genesis(1)[2]
    vs, regs = g.validators, g.registrars
    with pytest.raises(Malformed):
        Genesis("", 0, vs, regs)
    with pytest.raises(Malformed):
        Genesis("x" * (MAX_CHAIN_ID + 1), 0, vs, regs)
    assert Genesis("x" * MAX_CHAIN_ID, 0, vs, regs).chain_id == "x" * MAX_CHAIN_ID
    with pytest.raises(Malformed):
        Genesis("c", 0, vs, ())
    with pytest.raises(Malformed):
        Genesis("c", 0, vs, regs, "closed")


def _set_validator(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["validators"][0][field] = value

    return mutate


def _del_validator(field: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        del doc["validators"][0][field]

    return mutate


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.__setitem__(field, value)


def _del(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.__delitem__(field)


UNCOMPRESSED = (
    make_key(5)
    .key.public_key()
    .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    .hex()
)

BAD_DOCS: dict[str, Callable[[dict[str, Any]], None]] = {
    # registrars
    "missing registrars": _del("registrars"),
    "empty registrars": _set("registrars", []),
    "registrars null": _set("registrars", None),
    "registrars a string": _set("registrars", "02" + "00" * 32),
    "registrar bad hex": _set("registrars", ["zz"]),
    "registrar odd hex": _set("registrars", ["02abc"]),
    "registrar 32 bytes": _set("registrars", ["00" * 32]),
    "registrar uncompressed": _set("registrars", [UNCOMPRESSED]),
    "registrar not hex str": _set("registrars", [123]),
    # admission
    "admission closed": _set("admission", "closed"),
    "admission upper case": _set("admission", "OPEN"),
    "admission null": _set("admission", None),
    "admission bool": _set("admission", True),
    "admission list": _set("admission", ["open"]),
    # chain id
    "missing chain_id": _del("chain_id"),
    "empty chain_id": _set("chain_id", ""),
    "long chain_id": _set("chain_id", "c" * (MAX_CHAIN_ID + 1)),
    "int chain_id": _set("chain_id", 5),
    "null chain_id": _set("chain_id", None),
    # genesis time
    "str genesis_time": _set("genesis_time", "0"),
    "float genesis_time": _set("genesis_time", 1.5),
    "null genesis_time": _set("genesis_time", None),
    # validators
    "missing validators": _del("validators"),
    "empty validators": _set("validators", []),
    "validators null": _set("validators", None),
    "validators an object": _set("validators", {"a": 1}),
    "validator entry a string": _set("validators", ["v0"]),
    "duplicate validators": lambda d: d["validators"].append(dict(d["validators"][0])),
    "bad key hex": _set_validator("public_key", "not hex"),
    "odd key hex": _set_validator("public_key", "02abc"),
    "key 32 bytes": _set_validator("public_key", "00" * 32),
    "key uncompressed": _set_validator("public_key", UNCOMPRESSED),
    "key prefix 04": _set_validator("public_key", "04" + "11" * 32),
    "key int": _set_validator("public_key", 2),
    "missing key": _del_validator("public_key"),
    "power 0": _set_validator("power", 0),
    "power negative": _set_validator("power", -1),
    "power too large": _set_validator("power", MAX_POWER + 1),
    "bool power": _set_validator("power", True),
    "float power": _set_validator("power", 1.0),
    "str power": _set_validator("power", "1"),
    "null power": _set_validator("power", None),
    "missing power": _del_validator("power"),
    "missing name": _del_validator("name"),
    "int name": _set_validator("name", 1),
    "null url": _set_validator("url", None),
    "int url": _set_validator("url", 8800),
}


@pytest.mark.parametrize("name", BAD_DOCS.keys())
def test_from_json_rejects_bad_documents(genesis: Genesis, name: str) -> None:
    doc = good_doc(genesis)
    BAD_DOCS[name](doc)
    with pytest.raises(Malformed):
        Genesis.from_json(doc)


@pytest.mark.parametrize("doc", [None, [], "genesis", 1, True])
def test_from_json_rejects_non_objects(doc: Any) -> None:
    with pytest.raises(Malformed):
        Genesis.from_json(doc)


def test_power_boundaries_accepted(genesis: Genesis) -> None:
    doc = good_doc(genesis)
    doc["validators"][0]["power"] = MAX_POWER
    doc["validators"][1]["power"] = 1
    g = Genesis.from_json(doc)
    assert [v.power for v in g.validators.validators][:2] == [MAX_POWER, 1]


@pytest.mark.parametrize(
    "value", [True, False, 2**64, -(2**63) - 1], ids=["true", "false", "2**64", "below-int64"]
)
def test_from_json_rejects_genesis_time_that_is_not_a_wire_integer(
    genesis: Genesis, value: Any
) -> None:
    """`genesis_time` is an integer of Unix ms (PROTOCOL §8.1): a JSON bool is not one, and a value
    outside the 64-bit range cannot be hashed, so both must be refused when the file is read
    (not later, when `hash()` is first called)."""
    doc = good_doc(genesis)
    doc["genesis_time"] = value
    with pytest.raises(Malformed):
        Genesis.from_json(doc)
