"""Hostile inputs to the command line: a node that swaps its genesis, ANSI escapes in others'
metadata, and times far in the future (docs/PROTOCOL.md §9.5, §12.7).

The node here is a small fake HTTP server: it serves whatever genesis the test gives it and
accepts events, so that the CLI's trust decisions are all that is tested.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger import crypto, events
from ledger.blocks import Block
from ledger.crypto import PrivateKey
from ledger.genesis import Genesis
from ledger.provenance import proof_bundle
from ledger.store import Store
from node.cli import app, trust
from node.cli.common import escape_text
from node.cli.story import iso_time
from tests.ledger.helpers import make_genesis, make_key, sign_commit
from tests.node.fake_http import serving_http

runner = CliRunner()


class FakeNode(BaseHTTPRequestHandler):
    genesis: dict[str, Any] = {}
    submitted: list[bytes] = []

    def _send(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v1/genesis":
            self._send(200, FakeNode.genesis)
        else:
            problem = {"type": "about:blank", "title": "Not found", "status": 404, "detail": "x"}
            self._send(404, problem)

    def do_POST(self) -> None:
        doc = json.loads(self.rfile.read(int(self.headers["content-length"])))
        envelope = bytes.fromhex(doc["envelope"])
        FakeNode.submitted.append(envelope)
        event = events.decode_envelope(envelope, verify=False)
        self._send(202, {"event_id": event.event_id.hex(), "status": "pending"})

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def fake_node() -> Iterator[str]:
    FakeNode.submitted = []
    with serving_http(FakeNode) as url:
        yield url


def serve(genesis: Genesis) -> None:
    FakeNode.genesis = genesis.to_json()


def submit(url: str, tmp_path: Path, *extra: str) -> Any:
    key = tmp_path / "k.pem"
    if not key.exists():
        make_key().save(key)
    return runner.invoke(
        app, ["submit", "register", "ab" * 32, "--key", str(key), "--node", url, *extra]
    )


def chain_of(envelope: bytes) -> str:
    return events.decode_envelope(envelope, verify=False).body.chain


def test_submit_pins_on_first_use_loudly_and_refuses_a_swapped_genesis(
    fake_node: str, tmp_path: Path
) -> None:
    _, _, first = make_genesis(1, chain_id="chain-one")
    serve(first)
    result = submit(fake_node, tmp_path)
    assert result.exit_code == 0, result.output
    assert "PINNED" in result.output and first.hash().hex() in result.output
    assert chain_of(FakeNode.submitted[-1]) == "chain-one"
    assert trust.pinned(fake_node) == first

    again = submit(fake_node, tmp_path)
    assert again.exit_code == 0 and "PINNED" not in again.output

    _, _, swapped = make_genesis(1, chain_id="chain-two")
    serve(swapped)
    refused = submit(fake_node, tmp_path)
    assert refused.exit_code == 1
    assert "HAS CHANGED" in refused.output and swapped.hash().hex() in refused.output
    assert len(FakeNode.submitted) == 2, "nothing was signed for the swapped chain"


def test_a_swap_to_the_same_chain_id_is_refused_too(fake_node: str, tmp_path: Path) -> None:
    """Same name, other validators: another chain all the same."""
    _, _, first = make_genesis(1, chain_id="same")
    serve(first)
    assert submit(fake_node, tmp_path).exit_code == 0
    _, _, impostor = make_genesis(1, chain_id="same")
    serve(impostor)
    result = submit(fake_node, tmp_path)
    assert result.exit_code == 1 and "HAS CHANGED" in result.output


def test_submit_with_a_genesis_file_signs_for_that_chain(fake_node: str, tmp_path: Path) -> None:
    _, _, mine = make_genesis(1, chain_id="mine")
    _, _, theirs = make_genesis(1, chain_id="theirs")
    serve(theirs)
    path = tmp_path / "genesis.json"
    mine.save(path)
    result = submit(fake_node, tmp_path, "--genesis", str(path))
    assert result.exit_code == 0, result.output
    assert chain_of(FakeNode.submitted[-1]) == "mine"
    assert trust.pinned(fake_node) is None


def test_verify_never_passes_on_the_checked_nodes_genesis_unless_asked(
    fake_node: str, tmp_path: Path
) -> None:
    _, _, genesis = make_genesis(1, chain_id="checked")
    serve(genesis)
    result = runner.invoke(app, ["verify", "cd" * 32, "--node", fake_node])
    assert result.exit_code == 2
    assert "PINNED" in result.output and "NOT attempted" in result.output
    # pinned now: a later run uses the pinned copy (here the node knows no such dataset)
    again = runner.invoke(app, ["verify", "cd" * 32, "--node", fake_node])
    assert "NOT attempted" not in again.output and "PINNED" not in again.output
    _, _, swapped = make_genesis(1, chain_id="checked")
    serve(swapped)
    refused = runner.invoke(app, ["verify", "cd" * 32, "--node", fake_node])
    assert refused.exit_code == 2 and "HAS CHANGED" in refused.output


def test_verify_trusting_the_node_explicitly_pins_and_goes_on(
    fake_node: str, tmp_path: Path
) -> None:
    _, _, genesis = make_genesis(1, chain_id="explicit")
    serve(genesis)
    result = runner.invoke(app, ["verify", "cd" * 32, "--node", fake_node, "--trust-node-genesis"])
    assert "NOT attempted" not in result.output
    assert trust.pinned(fake_node) == genesis


def test_an_altered_pinned_copy_is_refused(fake_node: str, tmp_path: Path) -> None:
    _, _, genesis = make_genesis(1, chain_id="altered")
    serve(genesis)
    assert submit(fake_node, tmp_path).exit_code == 0
    copy = trust.trust_dir() / "genesis" / f"{genesis.hash().hex()}.json"
    doc = json.loads(copy.read_text())
    doc["chain_id"] = "tampered"
    copy.write_text(json.dumps(doc))
    result = submit(fake_node, tmp_path)
    assert result.exit_code == 1 and "altered" in result.output


def test_node_urls_are_pinned_by_scheme_host_and_port() -> None:
    assert trust.node_key("HTTP://Node.Example:8800/v1/") == "http://node.example:8800"
    assert trust.node_key("https://node.example") == "https://node.example:443"
    assert trust.node_key("http://[::1]:8800") == "http://[::1]:8800"


# --- hostile text and times in a verified story --------------------------------------------

ANSI = "\x1b[2K\r\x1b[32mverified: everything is fine\x1b[0m"
FAR = (1 << 64) - 1


def hostile_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A real, verifiable bundle whose metadata carries ANSI escapes and a newline, with a
    grant expiring at the largest time the protocol accepts."""
    keys, registrar, genesis = make_genesis(4)
    alice, bob = make_key(), make_key()
    dataset = crypto.sha256(b"hostile")
    t0 = genesis.genesis_time + 1_000

    def signed(key: PrivateKey, cls: type[events.EventBody], t: int, **fields: Any) -> Any:
        body = cls(
            chain=genesis.chain_id, actor=key.public_key, time=t, nonce=b"\x01" * 16, **fields
        )
        return events.sign_event(key, body)

    batch = [
        signed(registrar, events.Admit, t0, subject=alice.public_key, role="participant", name="a"),
        signed(registrar, events.Admit, t0, subject=bob.public_key, role="participant", name=ANSI),
        signed(
            alice,
            events.Register,
            t0 + 1,
            dataset=dataset,
            meta={"title": ANSI, "note\nforged line": "x\u202eyz"},
            open=False,
        ),
        signed(
            alice,
            events.Grant,
            t0 + 2,
            dataset=dataset,
            to=bob.public_key,
            purposes=("analytics",),
            reshare=False,
            expires=FAR,
        ),
        signed(bob, events.Attest, t0 + 3, dataset=dataset, claim=ANSI, meta={ANSI: ANSI}),
    ]
    with Store(tmp_path / "store", genesis) as store:
        ex = store.execute(batch, 1, t0 + 10)
        assert not ex.rejected, ex.rejected
        header = ex.header(
            genesis.chain_id, store.head_hash, keys[0].public_key, genesis.validators.hash()
        )
        block = Block(header, tuple(e.envelope for e in ex.accepted))
        store.append_block(
            block, sign_commit(keys[:3], genesis.chain_id, 1, 0, header.block_hash), ex
        )
        bundle = proof_bundle(store, dataset)
    genesis_path, bundle_path = tmp_path / "genesis.json", tmp_path / "bundle.json"
    genesis.save(genesis_path)
    bundle_path.write_text(json.dumps(bundle))
    return genesis_path, bundle_path


def test_others_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    genesis_path, bundle_path = hostile_bundle(tmp_path)
    result = runner.invoke(
        app, ["verify", "--bundle", str(bundle_path), "--genesis", str(genesis_path)]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert "\\x1b[32mverified: everything is fine" in out
    assert "note\\x0aforged line" in out
    assert not any(line.startswith("forged line") for line in out.splitlines())


def test_a_grant_expiring_at_the_largest_time_is_printed(tmp_path: Path) -> None:
    genesis_path, bundle_path = hostile_bundle(tmp_path)
    result = runner.invoke(
        app, ["verify", "--bundle", str(bundle_path), "--genesis", str(genesis_path)]
    )
    assert result.exit_code == 0, result.output
    assert "+584556019-04-03T14:25:51.615Z" in result.stdout


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (253_402_300_800_000, "+010000-01-01T00:00:00.000Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (FAR, "+584556019-04-03T14:25:51.615Z"),
    ],
)
def test_any_protocol_time_prints(ms: int, text: str) -> None:
    assert iso_time(ms) == text


def test_escaping_covers_c0_c1_and_bidi() -> None:
    assert escape_text("a\x00b\x1bc\x7fd\x9be\u2028f\u202eg\u2066h") == (
        "a\\x00b\\x1bc\\x7fd\\x9be\\u2028f\\u202eg\\u2066h"
    )
    assert escape_text("l1\nl2", keep_newlines=True) == "l1\nl2"
    assert escape_text("plain ünïcode ✓") == "plain ünïcode ✓"
