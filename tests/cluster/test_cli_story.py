"""The whole CLI story against a real cluster started by `provledger cluster up --detach`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import free_port_block


def provledger(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"provledger {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "cluster"
    base = free_port_block(8)  # public and peer ports of 4 nodes
    provledger(
        "cluster", "up", "--nodes", "4", "--dir", str(root), "--base-port", str(base), "--detach"
    )
    try:
        yield root, f"http://127.0.0.1:{base}"
    finally:
        provledger("cluster", "down", "--dir", str(root), check=False)


def keygen(path: Path) -> str:
    return provledger("keygen", "--out", str(path)).stdout.strip()


def submit(*args: str, key: Path, node: str) -> dict:
    out = provledger("submit", *args, "--key", str(key), "--node", node, "--wait", "--json")
    return json.loads(out.stdout)


def test_the_whole_story_from_the_command_line(running: tuple[Path, str], tmp_path: Path) -> None:
    root, node = running
    genesis = str(root / "genesis.json")
    provider_key, analyst_key, auditor_key = (tmp_path / f"{n}.pem" for n in ("p", "a", "u"))
    provider, analyst, auditor = keygen(provider_key), keygen(analyst_key), keygen(auditor_key)
    for pubkey, name in ((provider, "Provider"), (analyst, "Analyst"), (auditor, "Auditor")):
        out = provledger(
            "admit",
            pubkey,
            "--key",
            str(root / "registrar.pem"),
            "--name",
            name,
            "--node",
            node,
            "--wait",
            "--json",
        )
        assert json.loads(out.stdout)["height"] >= 1

    raw = tmp_path / "weather.csv"
    raw.write_text("station,temp\nOSL,3.1\n")
    derived = tmp_path / "summary.csv"
    derived.write_text("station,mean\nOSL,3.1\n")
    registered = submit("register", str(raw), "--title", "Weather", key=provider_key, node=node)
    assert {"event_id", "height", "leaf_index"} <= set(registered)
    grant = submit(
        "grant",
        str(raw),
        "--to",
        analyst,
        "--purpose",
        "analytics",
        "--purpose",
        "derive",
        "--expires",
        "+30d",
        "--reshare",
        key=provider_key,
        node=node,
    )
    submit(
        "use",
        str(raw),
        "--purpose",
        "analytics",
        "--grant",
        grant["event_id"],
        key=analyst_key,
        node=node,
    )
    submit(
        "transfer",
        str(raw),
        "--to",
        auditor,
        "--grant",
        grant["event_id"],
        key=analyst_key,
        node=node,
    )
    submit("derive", str(derived), "--from", str(raw), key=analyst_key, node=node)
    submit("attest", str(raw), "--claim", "schema checked", key=auditor_key, node=node)
    submit("destroy", str(raw), key=auditor_key, node=node)
    submit("revoke", grant["event_id"], key=provider_key, node=node)

    refused = provledger(
        "submit",
        "use",
        str(raw),
        "--purpose",
        "analytics",
        "--key",
        str(analyst_key),
        "--node",
        node,
        "--wait",
        check=False,
    )
    assert refused.returncode == 1
    assert "grant" in refused.stderr.lower() or "allow" in refused.stderr.lower()

    bundle = tmp_path / "bundle.json"
    story = provledger(
        "verify", str(raw), "--node", node, "--genesis", genesis, "--save", str(bundle)
    )
    assert "verified" in story.stdout
    assert "revoked" in story.stdout.lower()
    assert "schema checked" in story.stdout
    as_json = json.loads(
        provledger("verify", str(raw), "--node", node, "--genesis", genesis, "--json").stdout
    )
    types = [e["type"] for e in as_json["events"]]
    expected = ["register", "grant", "use", "transfer", "derive", "attest", "destroy", "revoke"]
    assert types == expected
    child = provledger("verify", str(derived), "--node", node, "--genesis", genesis)
    assert child.returncode == 0 and registered["event_id"] not in child.stderr

    offline = provledger("verify", "--bundle", str(bundle), "--genesis", genesis)
    assert offline.returncode == 0 and "verified" in offline.stdout

    unknown = provledger("verify", "ab" * 32, "--node", node, "--genesis", genesis, check=False)
    assert unknown.returncode == 1

    doc = json.loads(bundle.read_text())
    envelope = doc["events"][1]["envelope"]
    flip = "0" if envelope[-3] != "0" else "1"
    doc["events"][1]["envelope"] = envelope[:-3] + flip + envelope[-2:]
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    failed = provledger("verify", "--bundle", str(tampered), "--genesis", genesis, check=False)
    assert failed.returncode == 2
    assert "FAILED" in failed.stderr or "FAILED" in failed.stdout
