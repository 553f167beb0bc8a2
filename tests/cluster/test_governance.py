"""Governance on a real cluster (issue 13): a full node joins the validator set, carries the
chain when an original validator dies, the dead one is removed and follows as a full node,
and a bundle signed by the new set verifies offline from the original genesis file alone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ledger import crypto
from tests.cluster.harness import LocalCluster, wait_for


def provledger(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"provledger {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}"
        )
    return result


def signed(cluster: LocalCluster, signer: int, node: int, *args: str) -> dict[str, Any]:
    """Run a signing command with validator `signer`'s node key against node `node`."""
    out = provledger(
        *args,
        "--key",
        str(cluster.homes[signer] / "node_key.pem"),
        "--node",
        cluster.urls[node],
        "--wait",
        "--json",
    )
    return json.loads(out.stdout)


def validator_keys(cluster: LocalCluster, index: int) -> list[str]:
    doc = cluster.get(index, "/v1/validators")
    assert doc is not None
    return [v["public_key"] for v in doc["validators"]]


def test_a_full_node_joins_carries_the_chain_and_a_removed_validator_follows(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    # A fifth organisation starts a full node the validators were never told of.
    joiner_key = crypto.PrivateKey.generate()
    fifth = cluster.add_full_node(key=joiner_key)
    cluster.start(fifth)
    status = wait_for(lambda: cluster.get(fifth, "/v1/status"), what="the full node's status")
    assert status["public_key"] == joiner_key.public_key.hex()
    assert status["validator"] is False
    joiner = joiner_key.public_key.hex()
    joiner_peer_url = f"http://127.0.0.1:{cluster.base_port + 2 * cluster.nodes + 1}"

    # Validator 0 proposes it; 1 and 2 approve: 3 of 4 is more than 2/3.
    proposal = signed(
        cluster,
        0,
        0,
        "govern",
        "add-validator",
        joiner,
        "--name",
        "org-e",
        "--url",
        joiner_peer_url,
    )
    proposal_id = proposal["event_id"]
    listed = json.loads(provledger("govern", "list", "--node", cluster.urls[1], "--json").stdout)
    assert [p["id"] for p in listed["proposals"]] == [proposal_id]
    assert listed["proposals"][0]["approved_power"] == 1
    signed(cluster, 1, 1, "govern", "approve", proposal_id)
    decided = signed(cluster, 2, 2, "govern", "approve", proposal_id)
    effective = decided["height"] + 2
    for index in range(5):
        cluster.wait_height(index, effective + 1, timeout=90)
    assert joiner in validator_keys(cluster, 0)
    assert wait_for(lambda: (cluster.get(fifth, "/v1/status") or {}).get("validator"), 30)

    # Kill an original validator: 4 of 5 alive can commit only if the fifth votes.
    cluster.signal(3, signal.SIGKILL)
    key, admit = cluster.admit_event("after the kill")
    response = cluster.submit(0, admit)
    assert response.status_code == 200, response.text
    committed_at = response.json()["height"]
    commit = cluster.get(0, f"/v1/blocks/{committed_at}")
    assert commit is not None
    signers = {s["validator"] for s in commit["commit"]["signatures"]}
    assert joiner in signers

    # Remove the dead validator: 4 approvals of 5 (the fifth approves with its node key).
    dead = validator_keys(cluster, 0)[3]
    removal = signed(cluster, 0, 0, "govern", "remove-validator", dead)["event_id"]
    for signer in (1, 2):
        signed(cluster, signer, signer, "govern", "approve", removal)
    out = provledger(
        "govern",
        "approve",
        removal,
        "--key",
        str(cluster.homes[fifth] / "node_key.pem"),
        "--node",
        cluster.urls[fifth],
        "--wait",
        "--json",
    )
    removed_at = json.loads(out.stdout)["height"] + 2
    cluster.wait_height(0, removed_at + 1, timeout=90)
    assert dead not in validator_keys(cluster, 0)

    # The removed validator restarts and follows as a full node.
    cluster.start(3)
    head = cluster.height(0)
    cluster.wait_height(3, head, timeout=90)
    status3 = cluster.get(3, "/v1/status")
    assert status3 is not None and status3["validator"] is False

    # A bundle whose checkpoint the new set signed verifies from the original genesis alone.
    dataset = tmp_path / "data.csv"
    dataset.write_text("a,b\n1,2\n")
    provider_key = tmp_path / "provider.pem"
    key.save(provider_key)
    provledger(
        "submit",
        "register",
        str(dataset),
        "--key",
        str(provider_key),
        "--node",
        cluster.urls[1],
        "--wait",
        "--json",
    )
    bundle_path = tmp_path / "bundle.json"
    genesis = str(cluster.root / "genesis.json")
    provledger(
        "verify",
        str(dataset),
        "--node",
        cluster.urls[1],
        "--genesis",
        genesis,
        "--save",
        str(bundle_path),
    )
    bundle = json.loads(bundle_path.read_text())
    steps = bundle["checkpoint"]["transitions"]
    assert [s["height"] for s in steps] == [effective, removed_at]
    ok = provledger("verify", "--bundle", str(bundle_path), "--genesis", genesis)
    assert ok.returncode == 0

    # One forged transition (another set where the old set signed this one) fails: exit 2.
    forged = json.loads(json.dumps(bundle))
    forged["checkpoint"]["transitions"][1]["validators"][0]["power"] = 5
    forged_path = tmp_path / "forged.json"
    forged_path.write_text(json.dumps(forged))
    bad = provledger("verify", "--bundle", str(forged_path), "--genesis", genesis, check=False)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "transition" in bad.stdout + bad.stderr

    # The history the verifiers cache.
    history = cluster.get(0, "/v1/validators/history")
    assert history is not None
    assert [t["height"] for t in history["transitions"]] == [effective, removed_at]
