"""`provledger govern ...`, `suspend`, `reinstate` and `rotate` (docs/PROTOCOL.md §19).

Against a fake node (a real HTTP server on loopback that records what it is sent): each
command's signed event is decoded and checked field by field; bad arguments end with a clear
message and exit 2 before anything is sent; the node's refusals end with exit 1; `govern
list` formats and escapes the node's answer. The last test runs the commands against a real
one-node cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ledger import crypto, events, governance
from ledger.crypto import PrivateKey
from ledger.events import SignedEvent
from ledger.genesis import Genesis
from ledger.governance import Change
from node.cli.govern import proposals_text
from node.cli.trust import TRUST_ENV
from tests.cluster.harness import free_port_block
from tests.ledger.helpers import make_genesis, make_key
from tests.node.fake_http import send, serving_http
from tests.node.test_cli import invoke

NOW = 1_800_000_000_000


@dataclass
class FakeNode:
    """What the fake node was sent, and what it answers."""

    url: str = ""
    envelopes: list[bytes] = field(default_factory=list)
    queries: list[dict[str, list[str]]] = field(default_factory=list)
    proposals: dict[str, Any] = field(default_factory=dict)
    refuse: tuple[int, str] | None = None

    def only_event(self, chain_id: str) -> SignedEvent:
        assert len(self.envelopes) == 1, self.envelopes
        return events.decode_envelope(self.envelopes[0], chain_id=chain_id)


def handler_for(fake: FakeNode) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if self.path.startswith("/v1/events") and fake.refuse is None:
                envelope = bytes.fromhex(body["envelope"])
                fake.envelopes.append(envelope)
                event_id = events.decode_envelope(envelope, verify=False).event_id.hex()
                answer: dict[str, Any] = {"event_id": event_id, "status": "pending"}
                if "wait=commit" in self.path:
                    answer.update(status="committed", height=7, leaf_index=12)
                send(self, 202, json.dumps(answer).encode(), "application/json")
                return
            status, detail = fake.refuse or (404, "no such route")
            problem = {"type": "about:blank", "title": "Forbidden", "status": status}
            send(
                self,
                status,
                json.dumps({**problem, "detail": detail}).encode(),
                "application/problem+json",
            )

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/v1/governance/proposals":
                fake.queries.append(parse_qs(parts.query))
                send(self, 200, json.dumps(fake.proposals).encode(), "application/json")
                return
            send(self, 404, b'{"title": "Not Found", "status": 404}', "application/problem+json")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class Setup:
    fake: FakeNode
    genesis: Genesis
    genesis_file: Path
    validator: Path
    registrar: Path
    alice: PrivateKey
    alice_file: Path
    tmp: Path

    def run(self, *args: str, key: Path | None = None) -> Any:
        return invoke(
            *args,
            "--key",
            str(key or self.validator),
            "--node",
            self.fake.url,
            "--genesis",
            str(self.genesis_file),
        )

    def event(self) -> SignedEvent:
        return self.fake.only_event(self.genesis.chain_id)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    keys, registrar, genesis = make_genesis(seed=8_100)
    genesis_file = tmp_path / "genesis.json"
    genesis.save(genesis_file)
    validator, registrar_file, alice_file = (tmp_path / f"{n}.pem" for n in ("v0", "reg", "alice"))
    keys[0].save(validator)
    registrar.save(registrar_file)
    alice = make_key(seed=8_200)
    alice.save(alice_file)
    fake = FakeNode()
    with serving_http(handler_for(fake)) as url:
        fake.url = url
        yield Setup(
            fake, genesis, genesis_file, validator, registrar_file, alice, alice_file, tmp_path
        )


def pubkey(seed: int) -> str:
    return make_key(seed=seed).public_key.hex()


# --- each command's event -----------------------------------------------------------------------


def test_add_validator_proposes_the_change_and_prints_the_proposal_id(setup: Setup) -> None:
    newcomer = pubkey(8_300)
    result = setup.run(
        "govern",
        "add-validator",
        newcomer,
        "--name",
        "exchange",
        "--url",
        "http://10.0.0.5:8800",
        "--power",
        "3",
    )
    assert result.exit_code == 0, result.output
    signed = setup.event()
    assert result.stdout.strip() == signed.event_id.hex()  # the proposal id
    assert isinstance(signed.body, events.Propose)
    assert signed.body.actor == PrivateKey.load(setup.validator).public_key
    assert Change.parse(signed.body.change) == Change(
        governance.ADD_VALIDATOR,
        public_key=bytes.fromhex(newcomer),
        name="exchange",
        url="http://10.0.0.5:8800",
        power=3,
    )


def test_add_validator_power_defaults_to_1(setup: Setup) -> None:
    result = setup.run(
        "govern", "add-validator", pubkey(8_301), "--name", "n", "--url", "https://n.example:8800"
    )
    assert result.exit_code == 0, result.output
    assert Change.parse(setup.event().body.change).power == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("remove-validator", "PK"), Change(governance.REMOVE_VALIDATOR, public_key=b"PK")),
        (
            ("set-power", "PK", "--power", "9"),
            Change(governance.SET_POWER, public_key=b"PK", power=9),
        ),
        (("add-registrar", "PK"), Change(governance.ADD_REGISTRAR, public_key=b"PK")),
        (("remove-registrar", "PK"), Change(governance.REMOVE_REGISTRAR, public_key=b"PK")),
        (
            ("set-param", "time_window_ms", "30000"),
            Change(governance.SET_PARAM, name="time_window_ms", value=30_000),
        ),
    ],
)
def test_each_change_command_proposes_its_change(
    setup: Setup, args: tuple[str, ...], expected: Change
) -> None:
    subject = make_key(seed=8_302).public_key
    result = setup.run("govern", *(subject.hex() if a == "PK" else a for a in args))
    assert result.exit_code == 0, result.output
    signed = setup.event()
    assert isinstance(signed.body, events.Propose)
    if expected.public_key:  # b"PK" stands for the subject's key
        expected = replace(expected, public_key=subject)
    assert Change.parse(signed.body.change) == expected
    assert result.stdout.strip() == signed.event_id.hex()


def test_approve_names_the_proposal(setup: Setup) -> None:
    proposal = crypto.sha256(b"a proposal")
    result = setup.run("govern", "approve", "0x" + proposal.hex().upper())
    assert result.exit_code == 0, result.output
    signed = setup.event()
    assert isinstance(signed.body, events.Approve)
    assert signed.body.proposal == proposal


def test_wait_and_json_output(setup: Setup) -> None:
    result = invoke(
        "govern", "approve", crypto.sha256(b"p").hex(), "--key", str(setup.validator),
        "--node", setup.fake.url, "--genesis", str(setup.genesis_file), "--wait", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc == {
        "event_id": setup.event().event_id.hex(),
        "status": "committed",
        "height": 7,
        "leaf_index": 12,
    }


def test_suspend_and_reinstate_name_the_subject(setup: Setup) -> None:
    for command, cls in (("suspend", events.Suspend), ("reinstate", events.Reinstate)):
        setup.fake.envelopes.clear()
        result = setup.run(command, setup.alice.public_key.hex(), key=setup.registrar)
        assert result.exit_code == 0, result.output
        signed = setup.event()
        assert isinstance(signed.body, cls)
        assert signed.body.subject == setup.alice.public_key
        assert signed.body.actor == PrivateKey.load(setup.registrar).public_key


def test_rotate_signs_with_the_old_key_and_proves_the_new_one(setup: Setup) -> None:
    new = make_key(seed=8_303)
    new_file = setup.tmp / "new.pem"
    new.save(new_file)
    result = setup.run("rotate", "--new", str(new_file), key=setup.alice_file)
    assert result.exit_code == 0, result.output
    signed = setup.event()
    body = signed.body
    assert isinstance(body, events.Rotate)
    assert body.actor == body.subject == setup.alice.public_key
    assert body.to == new.public_key
    message = governance.rotation_message(
        setup.genesis.chain_id, setup.alice.public_key, new.public_key
    )
    crypto.verify(new.public_key, message, body.possession)


def test_a_registrar_rotates_a_lost_key_with_subject(setup: Setup) -> None:
    new = make_key(seed=8_304)
    new_file = setup.tmp / "new.pem"
    new.save(new_file)
    lost = setup.alice.public_key.hex()
    result = setup.run("rotate", "--new", str(new_file), "--subject", lost, key=setup.registrar)
    assert result.exit_code == 0, result.output
    body = setup.event().body
    assert isinstance(body, events.Rotate)
    assert body.actor == PrivateKey.load(setup.registrar).public_key
    assert body.subject == setup.alice.public_key and body.to == new.public_key
    message = governance.rotation_message(
        setup.genesis.chain_id, setup.alice.public_key, new.public_key
    )
    crypto.verify(new.public_key, message, body.possession)


def test_a_registrar_rotates_with_a_possession_signed_elsewhere(setup: Setup) -> None:
    """The participant signs the rotation where its new key lives (`possession`, nothing
    sent); the registrar submits it with `--to` and `--possession`, never holding the key."""
    new = make_key(seed=8_308)
    new_file = setup.tmp / "new.pem"
    new.save(new_file)
    lost = setup.alice.public_key.hex()
    signed = invoke(
        "possession", "--new", str(new_file), "--subject", lost,
        "--genesis", str(setup.genesis_file), "--json",
    )  # fmt: skip
    assert signed.exit_code == 0, signed.output
    doc = json.loads(signed.stdout)
    assert doc["subject"] == lost and doc["to"] == new.public_key.hex()
    assert setup.fake.envelopes == []
    text = invoke(
        "possession",
        "--new",
        str(new_file),
        "--subject",
        lost,
        "--genesis",
        str(setup.genesis_file),
    )
    assert text.exit_code == 0 and "provledger rotate --subject" in text.stdout
    result = setup.run(
        "rotate",
        "--subject",
        lost,
        "--to",
        doc["to"],
        "--possession",
        doc["possession"],
        key=setup.registrar,
    )
    assert result.exit_code == 0, result.output
    body = setup.event().body
    assert isinstance(body, events.Rotate)
    assert (body.subject, body.to, body.possession.hex()) == (
        setup.alice.public_key,
        new.public_key,
        doc["possession"],
    )


def test_a_possession_that_does_not_verify_is_refused_before_sending(setup: Setup) -> None:
    new = make_key(seed=8_309)
    lost = setup.alice.public_key
    wrong_chain = new.sign(governance.rotation_message("other-chain", lost, new.public_key))
    result = setup.run(
        "rotate",
        "--subject",
        lost.hex(),
        "--to",
        new.public_key.hex(),
        "--possession",
        wrong_chain.hex(),
        key=setup.registrar,
    )
    assert result.exit_code == 2, result.output
    assert "signature of the rotation" in " ".join(result.output.split())
    assert setup.fake.envelopes == []


# --- bad input: a clear message, exit 2, nothing sent ---------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("govern", "remove-validator", "abc"), "is not a public key"),
        (("govern", "add-registrar", "02" + "00" * 31), "is not a public key"),
        (("govern", "approve", "1234"), "a proposal id must be 64 hex digits"),
        (("govern", "approve", "zz" * 32), "a proposal id must be 64 hex digits"),
        (("govern", "set-power", "KEY", "--power", "0"), "voting power must be in 1..65536"),
        (("govern", "set-power", "KEY", "--power", "65537"), "voting power must be in 1..65536"),
        (
            ("govern", "add-validator", "KEY", "--name", "n", "--url", "ftp://x"),
            "is not a node URL",
        ),
        (
            ("govern", "add-validator", "KEY", "--name", "n", "--url", "localhost:8800"),
            "is not a node URL",
        ),
        (
            ("govern", "add-validator", "KEY", "--name", "n", "--url", "http://x:port"),
            "is not a node URL",
        ),
        (
            ("govern", "add-validator", "KEY", "--name", "n", "--url", "http://[::1"),
            "is not a node URL",
        ),
        (
            ("govern", "add-validator", "KEY", "--name", "x" * 65, "--url", "http://x:1"),
            "change name must be text",
        ),
        (("govern", "set-param", "no_such", "5"), "is not a chain parameter"),
        (
            ("govern", "set-param", "time_window_ms", "0"),
            "params.time_window_ms must be an integer",
        ),
        (("govern", "set-param", "time_window_ms", "ten"), "Invalid value for 'VALUE'"),
        (("suspend", "nope"), "is not a public key"),
        (("rotate", "--new", "NEW", "--subject", "bad"), "is not a public key"),
        (("rotate", "--new", "missing.pem"), "cannot read key file"),
        (("rotate", "--new", "SELF"), "the new key is the key being rotated"),
        (("rotate", "--new", "NEW", "--subject", "SELFKEY"), "leave --subject out"),
        (("rotate",), "either with --new NEW.pem or with --to"),
        (("rotate", "--new", "NEW", "--to", "KEY", "--possession", "00" * 64), "either with --new"),
        (("rotate", "--to", "KEY"), "either with --new NEW.pem or with --to"),
        (
            ("rotate", "--to", "KEY", "--possession", "abcd"),
            "a possession signature is 128 hex digits",
        ),
        (("rotate", "--to", "bad", "--possession", "00" * 64), "is not a public key"),
        (("possession", "--new", "NEW", "--subject", "KEY"), "give --genesis FILE or --node URL"),
    ],
)
def test_bad_arguments_exit_2_before_anything_is_sent(
    setup: Setup, args: tuple[str, ...], message: str
) -> None:
    new_file = setup.tmp / "new.pem"
    make_key(seed=8_305).save(new_file)
    replaced = {
        "KEY": pubkey(8_306),
        "NEW": str(new_file),
        "SELF": str(setup.validator),
        "SELFKEY": PrivateKey.load(setup.validator).public_key.hex(),
        "missing.pem": str(setup.tmp / "missing.pem"),
    }
    given = [replaced.get(a, a) for a in args]
    result = invoke(*given) if args[0] == "possession" else setup.run(*given)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert setup.fake.envelopes == []


def test_a_refusal_by_the_node_exits_1_with_its_reason(setup: Setup) -> None:
    setup.fake.refuse = (403, "only a validator of the current set may propose")
    result = setup.run("govern", "remove-validator", pubkey(8_307))
    assert result.exit_code == 1
    assert "HTTP 403" in result.output and "only a validator of the current set" in result.output


# --- govern list ----------------------------------------------------------------------------------


def proposal_doc(**overrides: Any) -> dict[str, Any]:
    doc = {
        "id": "ab" * 32,
        "change": {
            "op": "add-validator",
            "name": "exchange",
            "power": 1,
            "public_key": "02" + "11" * 32,
            "url": "http://x:8800",
        },
        "proposer": "03" + "22" * 32,
        "height": 5,
        "expires": NOW + 86_400_000,
        "approvals": ["03" + "22" * 32, "02" + "33" * 32],
        "approved_power": 2,
        "status": "open",
    }
    doc.update(overrides)
    return doc


def test_list_json_passes_the_nodes_document_through(setup: Setup) -> None:
    setup.fake.proposals = {
        "height": 9,
        "total_power": 4,
        "proposals": [proposal_doc()],
        "truncated": False,
    }
    result = invoke("govern", "list", "--node", setup.fake.url, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == setup.fake.proposals
    assert setup.fake.queries == [{"status": ["open"]}]
    result = invoke("govern", "list", "--node", setup.fake.url, "--status", "all")
    assert result.exit_code == 0, result.output
    assert setup.fake.queries[-1] == {"status": ["all"]}
    assert invoke("govern", "list", "--node", setup.fake.url, "--status", "bogus").exit_code == 2


def test_list_text_shows_the_approved_power_against_the_quorum(setup: Setup) -> None:
    setup.fake.proposals = {
        "height": 9,
        "total_power": 4,
        "proposals": [
            proposal_doc(),
            proposal_doc(id="cd" * 32, status="decided", effective=11, approved_power=3),
        ],
        "truncated": True,
    }
    result = invoke("govern", "list", "--node", setup.fake.url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "height 9: 2 proposal(s); total power 4, more than 2/3 is 3" in out
    assert f"{'ab' * 32}  open" in out
    assert "approved   power 2 of 4, by 2 validator(s)" in out
    assert "add-validator name=exchange power=1" in out
    assert f"{'cd' * 32}  decided, in force from height 11" in out
    assert "only part of its proposals" in out


def test_list_marks_expired_proposals_and_escapes_the_nodes_text() -> None:
    doc = {"height": 1, "total_power": 1, "proposals": [], "truncated": False}
    hostile = proposal_doc(
        expires=NOW - 1, change={"op": "set-param", "name": "x\x1b[2Jevil", "value": 1}
    )
    text = proposals_text(doc, [hostile], NOW)
    assert f"{'ab' * 32}  expired" in text
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert proposals_text(doc, [proposal_doc(expires=NOW)], NOW).count("expired") == 1
    assert "  open" in proposals_text(doc, [proposal_doc(expires=NOW + 1)], NOW)


def test_list_refuses_a_malformed_answer(setup: Setup) -> None:
    setup.fake.proposals = {"height": 1, "proposals": "nope"}
    result = invoke("govern", "list", "--node", setup.fake.url)
    assert result.exit_code == 1
    assert "malformed proposal list" in result.output


# --- against a real node ---------------------------------------------------------------------


def provledger(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"provledger {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


@pytest.mark.cluster
def test_the_commands_against_a_real_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One validator (power 1) decides alone: a parameter change is decided as it is proposed
    and listed as decided; adding a validator is refused by the one-step limit (1 of 2 is no
    quorum); a suspended participant is refused with 403; after rotation the old key is too."""
    monkeypatch.setenv(TRUST_ENV, str(tmp_path / "trust"))
    root = tmp_path / "cluster"
    base = free_port_block(2)
    provledger(
        "cluster", "up", "--nodes", "1", "--dir", str(root), "--base-port", str(base), "--detach"
    )
    node = f"http://127.0.0.1:{base}"
    try:
        common = ("--node", node, "--genesis", str(root / "genesis.json"))
        validator = str(root / "node-0" / "node_key.pem")
        registrar = str(root / "registrar.pem")

        def run(*args: str, key: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            return provledger(*args, "--key", key, *common, check=check)

        out = run(
            "govern", "set-param", "timeout_vote_ms", "700", "--wait", "--json", key=validator
        )
        committed = json.loads(out.stdout)
        listed = json.loads(
            provledger("govern", "list", "--node", node, "--status", "decided", "--json").stdout
        )
        [decided] = listed["proposals"]
        assert decided["id"] == committed["event_id"]
        assert decided["effective"] == committed["height"] + 2
        assert decided["change"] == {"name": "timeout_vote_ms", "op": "set-param", "value": 700}
        refused = run(
            "govern",
            "add-validator",
            pubkey(8_400),
            "--name",
            "n",
            "--url",
            "http://127.0.0.1:1",
            key=validator,
            check=False,
        )
        assert refused.returncode == 1
        assert "too much power in one step" in refused.stderr

        alice_file, new_file = tmp_path / "alice.pem", tmp_path / "alice2.pem"
        alice = provledger("keygen", "--out", str(alice_file)).stdout.strip()
        provledger("keygen", "--out", str(new_file))
        run("admit", alice, "--name", "Alice", "--wait", key=registrar)
        run("suspend", alice, "--wait", key=registrar)
        dataset = "ab" * 32
        refused = run("submit", "register", dataset, "--wait", key=str(alice_file), check=False)
        assert refused.returncode == 1
        assert "HTTP 403" in refused.stderr and "suspended" in refused.stderr
        run("reinstate", alice, "--wait", key=registrar)
        run("rotate", "--new", str(new_file), "--wait", key=str(alice_file))
        refused = run("submit", "register", dataset, "--wait", key=str(alice_file), check=False)
        assert refused.returncode == 1
        assert "HTTP 403" in refused.stderr and "rotated" in refused.stderr
        run("submit", "register", dataset, "--wait", key=str(new_file))

        # a lost key: the new key signs where it lives; the registrar submits the rotation
        bob_file, bob_new_file = tmp_path / "bob.pem", tmp_path / "bob2.pem"
        bob = provledger("keygen", "--out", str(bob_file)).stdout.strip()
        bob_new = provledger("keygen", "--out", str(bob_new_file)).stdout.strip()
        run("admit", bob, "--name", "Bob", "--wait", key=registrar)
        signed = provledger(
            "possession", "--new", str(bob_new_file), "--subject", bob, "--node", node, "--json"
        )
        proof = json.loads(signed.stdout)
        assert proof["to"] == bob_new
        rotate = ("rotate", "--subject", bob, "--to", bob_new, "--possession", proof["possession"])
        run(*rotate, "--wait", key=registrar)
        run("submit", "register", "cd" * 32, "--wait", key=str(bob_new_file))
    finally:
        provledger("cluster", "down", "--dir", str(root), check=False)
