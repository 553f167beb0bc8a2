"""The `provledger` command line without a running node: keys, input parsing, offline verify."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ledger import crypto, events
from ledger.blocks import Block
from ledger.crypto import PrivateKey
from ledger.genesis import Genesis
from ledger.provenance import proof_bundle, verify_bundle
from ledger.store import Store
from node.cli import app
from node.cli import common as cli
from node.cli.common import parse_dataset, parse_expires, parse_when
from node.cli.story import bundle_commit, story_json, story_text
from tests.ledger.helpers import make_genesis, make_key, sign_commit

runner = CliRunner()
NOW = 1_800_000_000_000


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- keygen --------------------------------------------------------------------------------


def test_keygen_writes_a_private_pem_and_prints_the_public_key(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "alice.pem"
    result = invoke("keygen", "--out", str(out))
    assert result.exit_code == 0, result.output
    printed = result.stdout.strip()
    assert len(printed) == 66 and int(printed, 16) >= 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert PrivateKey.load(out).public_key.hex() == printed
    assert out.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "alice.pem"
    assert invoke("keygen", "--out", str(out)).exit_code == 0
    before = out.read_bytes()
    result = invoke("keygen", "--out", str(out))
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.output
    assert out.read_bytes() == before


# --- dataset and time arguments ------------------------------------------------------------


def test_a_file_is_named_by_its_sha256(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    content = os.urandom(3 * cli.HASH_CHUNK + 17)
    path.write_bytes(content)
    ref = parse_dataset(str(path))
    assert ref.dataset == hashlib.sha256(content).digest()
    assert ref.path == path and ref.size == len(content)
    meta = cli.dataset_meta(ref, None)
    assert meta == {"title": "report.csv", "size": len(content), "media_type": "text/csv"}
    assert cli.dataset_meta(ref, "Q3")["title"] == "Q3"


def test_a_hex_hash_passes_through() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert parse_dataset(digest).dataset.hex() == digest
    assert parse_dataset(digest.upper()).dataset.hex() == digest
    ref = parse_dataset(digest)
    assert ref.path is None
    assert cli.dataset_meta(ref, None) == {}
    assert cli.dataset_meta(ref, "T") == {"title": "T"}


@pytest.mark.parametrize("garbage", ["nope", "abc123", "g" * 64, "a" * 63, "a" * 65])
def test_garbage_is_neither_file_nor_hash(garbage: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_dataset(garbage)


def test_garbage_dataset_on_the_command_line_exits_2(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    make_key().save(key)
    url = f"http://127.0.0.1:{free_port()}"
    for args in (
        ("submit", "destroy", "no-such-file.bin"),
        ("submit", "use", "1234", "--purpose", "x"),
        ("submit", "derive", str(tmp_path), "--from", "a" * 64),
    ):
        result = invoke(*args, "--key", str(key), "--node", url)
        assert result.exit_code == 2, result.output
        assert "64-hex" in result.output


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+30d", NOW + 30 * 86_400_000),
        ("+12h", NOW + 12 * 3_600_000),
        ("+90m", NOW + 90 * 60_000),
        ("+45s", NOW + 45_000),
        ("+2w", NOW + 14 * 86_400_000),
        ("1900000000000", 1_900_000_000_000),
        ("2030-01-31T12:00:00Z", int(datetime(2030, 1, 31, 12, tzinfo=UTC).timestamp() * 1000)),
        ("2030-01-31T12:00:00", int(datetime(2030, 1, 31, 12, tzinfo=UTC).timestamp() * 1000)),
        ("2030-01-31T14:00:00.250+02:00", 1_896_091_200_250),
        ("2030-01-31", int(datetime(2030, 1, 31, tzinfo=UTC).timestamp() * 1000)),
    ],
)
def test_expires_forms(value: str, expected: int) -> None:
    assert parse_when(value, NOW) == expected


@pytest.mark.parametrize("value", ["tomorrow", "+3y", "30d", "+d", "2030-13-01", "-5"])
def test_bad_expires_is_a_usage_error(value: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_expires(value, NOW)


def test_expires_in_the_past_is_refused() -> None:
    with pytest.raises(typer.BadParameter, match="past"):
        parse_expires("2020-01-01T00:00Z", NOW)
    assert parse_expires(None, NOW) is None


def test_bad_local_input_exits_2_before_contacting_the_node(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    make_key().save(key)
    url = f"http://127.0.0.1:{free_port()}"
    digest = "ab" * 32
    grantee = make_key().public_key.hex()
    cases: list[tuple[Sequence[str], str]] = [
        (("submit", "grant", digest, "--to", "zz", "--purpose", "p"), "public key"),
        (
            ("submit", "grant", digest, "--to", grantee, "--purpose", "p", "--expires", "soon"),
            "ISO-8601",
        ),
        (("submit", "revoke", "xyz"), "64 hex"),
        (("submit", "use", digest, "--purpose", "p", "--grant", "12"), "64 hex"),
    ]
    for args, message in cases:
        result = invoke(*args, "--key", str(key), "--node", url)
        assert result.exit_code == 2, result.output
        assert message in result.output
    missing = invoke(
        "submit", "destroy", digest, "--key", str(tmp_path / "nope.pem"), "--node", url
    )
    assert missing.exit_code == 2
    assert "cannot read key file" in missing.output


def test_submit_to_an_unreachable_node_exits_1(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    make_key().save(key)
    data = tmp_path / "data.bin"
    data.write_bytes(b"hello")
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("submit", "register", str(data), "--key", str(key), "--node", url)
    assert result.exit_code == 1, result.output
    assert "cannot reach the node" in result.output
    assert url in result.output
    result = invoke("status", "--node", url)
    assert result.exit_code == 1
    assert "cannot reach the node" in result.output


# --- offline verification against a real store ---------------------------------------------


@dataclass(frozen=True)
class Chain:
    genesis_path: Path
    bundle_path: Path
    data_path: Path
    dataset: bytes
    grant_id: bytes
    alice: PrivateKey
    bob: PrivateKey


def _event(key: PrivateKey, cls: type[events.EventBody], t: int, **fields: Any) -> Any:
    body = cls(chain="test-chain", actor=key.public_key, time=t, nonce=os.urandom(16), **fields)
    return events.sign_event(key, body)


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    keys, registrar, genesis = make_genesis(4)
    alice, bob, auditor = make_key(), make_key(), make_key()
    data_path = tmp_path / "dataset.csv"
    data_path.write_bytes(b"id,value\n1,2\n")
    dataset = crypto.sha256(data_path.read_bytes())
    child = crypto.sha256(b"derived")
    t0 = genesis.genesis_time + 1_000
    grant = _event(
        alice,
        events.Grant,
        t0 + 2,
        dataset=dataset,
        to=bob.public_key,
        purposes=("analytics", "derive"),
        reshare=False,
        expires=t0 + 10 * 86_400_000,
    )
    other_grant = _event(
        alice,
        events.Grant,
        t0 + 2,
        dataset=dataset,
        to=auditor.public_key,
        purposes=("audit",),
        reshare=False,
    )
    blocks = [
        [
            _event(registrar, events.Admit, t0, subject=k.public_key, role="participant", name=n)
            for k, n in ((alice, "alice"), (bob, "bob"), (auditor, "auditor"))
        ],
        [
            _event(
                alice,
                events.Register,
                t0 + 1,
                dataset=dataset,
                meta={"title": "sales", "size": 13},
                open=False,
            ),
            grant,
            other_grant,
            _event(bob, events.Use, t0 + 3, dataset=dataset, purpose="analytics", grant=None),
            _event(
                bob, events.Derive, t0 + 4, dataset=child, inputs=(dataset,), meta={"title": "d"}
            ),
            _event(alice, events.Revoke, t0 + 5, grant=other_grant.event_id),
            _event(auditor, events.Attest, t0 + 6, dataset=dataset, claim="audited", meta={}),
        ],
    ]
    with Store(tmp_path / "store", genesis) as store:
        for height, batch in enumerate(blocks, start=1):
            ex = store.execute(batch, height, t0 + 10 * height)
            assert not ex.rejected, ex.rejected
            header = ex.header(
                genesis.chain_id, store.head_hash, keys[0].public_key, genesis.validators.hash()
            )
            block = Block(header, tuple(e.envelope for e in ex.accepted))
            commit = sign_commit(keys[:3], genesis.chain_id, height, 0, header.block_hash)
            store.append_block(block, commit, ex)
        bundle = proof_bundle(store, dataset)
    assert bundle is not None
    genesis_path = tmp_path / "genesis.json"
    genesis.save(genesis_path)
    bundle_path = tmp_path / "bundle.json"
    bundle_path.write_text(json.dumps(bundle))
    return Chain(genesis_path, bundle_path, data_path, dataset, grant.event_id, alice, bob)


def test_verify_bundle_offline(chain: Chain) -> None:
    result = invoke(
        "verify", "--bundle", str(chain.bundle_path), "--genesis", str(chain.genesis_path)
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "verified" in out
    assert chain.dataset.hex() in out
    assert chain.grant_id.hex() in out
    assert "analytics, derive" in out
    assert "signed by 3 of 4 genesis validators (power 3 of 4): v0, v1, v2" in out
    assert "revoked by" in out
    assert "audited" in out
    assert "used to derive" in out


def test_story_names_trusted_and_reported(chain: Chain) -> None:
    bundle = json.loads(chain.bundle_path.read_text())
    genesis = Genesis.load(chain.genesis_path)
    story = verify_bundle(bundle, genesis)
    names = {chain.alice.public_key: "Alice Corp"}
    reported = {chain.bob.public_key: "bob-lab", chain.alice.public_key: "mallory"}
    text = story_text(story, genesis, bundle_commit(bundle), names, reported)
    assert f"Alice Corp ({chain.alice.public_key.hex()[:12]}...)" in text
    assert "bob-lab*" in text and "mallory" not in text
    assert "names as reported by the node" in text
    doc = story_json(story, genesis, bundle_commit(bundle), names, reported)
    assert doc["names"][chain.bob.public_key.hex()] == {"name": "bob-lab", "source": "node"}
    assert doc["names"][chain.alice.public_key.hex()]["source"] == "genesis"
    plain = story_text(story, genesis)
    assert "names as reported" not in plain
    assert "signed by more than 2/3" in plain


def test_verify_checks_the_named_dataset(chain: Chain) -> None:
    args = ("--bundle", str(chain.bundle_path), "--genesis", str(chain.genesis_path))
    assert invoke("verify", str(chain.data_path), *args).exit_code == 0
    assert invoke("verify", chain.dataset.hex(), *args).exit_code == 0
    other = invoke("verify", "cd" * 32, *args)
    assert other.exit_code == 2
    assert "verification FAILED: wrong dataset" in other.output


def test_verify_json(chain: Chain) -> None:
    result = invoke(
        "verify", "--bundle", str(chain.bundle_path), "--genesis", str(chain.genesis_path), "--json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["verified"] is True
    assert doc["dataset"] == chain.dataset.hex()
    assert doc["owner"] == chain.alice.public_key.hex()
    assert doc["origin"]["type"] == "register"
    assert doc["origin"]["meta"] == {"title": "sales", "size": 13}
    assert [e["type"] for e in doc["events"]] == [
        "register",
        "grant",
        "grant",
        "use",
        "derive",
        "revoke",
        "attest",
    ]
    live, revoked = doc["grants"]
    assert live["event_id"] == chain.grant_id.hex() and live["status"] == "live"
    assert live["to"] == chain.bob.public_key.hex()
    assert live["purposes"] == ["analytics", "derive"]
    assert isinstance(live["expires"], int)
    assert revoked["status"] == "revoked"
    assert revoked["revoked_by"]["actor"] == chain.alice.public_key.hex()
    assert doc["uses"][0]["purpose"] == "analytics"
    assert doc["lineage"]["children"][0]["dataset"] == crypto.sha256(b"derived").hex()
    assert doc["attestations"][0]["claim"] == "audited"
    assert doc["checkpoint"]["height"] == 2
    assert doc["checkpoint"]["signed_power"] == 3
    assert doc["genesis_source"] == "file"


def _tamper(path: Path) -> None:
    bundle = json.loads(path.read_text())
    envelope = bundle["events"][1]["envelope"]
    position = len(envelope) - 10
    flipped = "0" if envelope[position] != "0" else "1"
    bundle["events"][1]["envelope"] = envelope[:position] + flipped + envelope[position + 1 :]
    path.write_text(json.dumps(bundle))


def test_a_tampered_bundle_fails_with_exit_2(chain: Chain) -> None:
    _tamper(chain.bundle_path)
    result = invoke(
        "verify", "--bundle", str(chain.bundle_path), "--genesis", str(chain.genesis_path)
    )
    assert result.exit_code == 2
    assert "verification FAILED: event " in result.output
    assert "event 1" in result.output


def test_a_tampered_bundle_in_json_mode(chain: Chain) -> None:
    _tamper(chain.bundle_path)
    result = invoke(
        "verify", "--bundle", str(chain.bundle_path), "--genesis", str(chain.genesis_path), "--json"
    )
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["verified"] is False and doc["reason"].startswith("event ")


def test_a_bundle_against_another_genesis_fails(chain: Chain, tmp_path: Path) -> None:
    _, _, other = make_genesis(4)
    other_path = tmp_path / "other-genesis.json"
    other.save(other_path)
    result = invoke("verify", "--bundle", str(chain.bundle_path), "--genesis", str(other_path))
    assert result.exit_code == 2
    assert "verification FAILED" in result.output


def test_verify_usage_errors(chain: Chain, tmp_path: Path) -> None:
    assert invoke("verify", "--bundle", str(chain.bundle_path)).exit_code == 2
    assert invoke("verify", chain.dataset.hex()).exit_code == 2
    bad_genesis = tmp_path / "bad.json"
    bad_genesis.write_text("{}")
    result = invoke("verify", "--bundle", str(chain.bundle_path), "--genesis", str(bad_genesis))
    assert result.exit_code == 2
    not_json = tmp_path / "not.json"
    not_json.write_text("garbage")
    result = invoke("verify", "--bundle", str(not_json), "--genesis", str(chain.genesis_path))
    assert result.exit_code == 2
    assert "malformed bundle" in result.output


def test_verify_against_an_unreachable_node_exits_1(chain: Chain) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke(
        "verify", chain.dataset.hex(), "--node", url, "--genesis", str(chain.genesis_path)
    )
    assert result.exit_code == 1
    assert "cannot reach the node" in result.output


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "verify" in result.stdout and "submit" in result.stdout
