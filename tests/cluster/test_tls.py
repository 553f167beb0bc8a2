"""A 4-validator cluster over TLS (docs/PROTOCOL.md §18), started once with
`provledger cluster up --tls --detach`: the CLI story and `verify` work with `--ca` (and with
SSL_CERT_FILE); a client that does not trust the CA is refused with a clear message; a peer
whose certificate is for another key than the one genesis names is refused by the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.crypto import PrivateKey
from ledger.genesis import Genesis
from node.client import ClientError, NodeClient
from node.config import LOG_FILE, NodeSettings
from node.ops.homes import node_home
from node.ops.processes import start_node, stop_nodes
from node.ops.tls import CA_FILE, CertificateAuthority, certificate_pem
from tests.cluster.harness import free_port_block, wait_for


def provledger(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"provledger {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return result


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[tuple[Path, int, str]]:
    root = tmp_path / "cluster"
    base = free_port_block(8)
    up = provledger(
        "cluster",
        "up",
        "--tls",
        "--nodes",
        "4",
        "--dir",
        str(root),
        "--base-port",
        str(base),
        "--detach",
    )
    assert f"--ca {root / CA_FILE}" in up.stdout
    try:
        yield root, base, str(root / CA_FILE)
    finally:
        provledger("cluster", "down", "--dir", str(root), check=False)


def test_a_tls_cluster_serves_clients_that_trust_its_ca_and_pins_its_peers(
    tls_cluster: tuple[Path, int, str], tmp_path: Path
) -> None:
    root, base, ca = tls_cluster
    node = f"https://127.0.0.1:{base}"
    genesis = Genesis.load(root / "genesis.json")
    assert all(v.url.startswith("https://") for v in genesis.validators.validators)

    # --- every node talks to every other over TLS --------------------------------------
    with NodeClient(node, ca=ca) as client:
        peers = wait_for(lambda: _all_reachable(client), what="node-0 to reach 3 peers over TLS")
    assert sorted(p["url"] for p in peers) == sorted(
        v.url for v in genesis.validators.validators[1:]
    )

    # --- a client that does not trust the CA is refused, clearly --------------------------
    refused = provledger("status", "--node", node, check=False)
    assert refused.returncode == 1
    assert "not trusted" in refused.stderr and "--ca" in refused.stderr
    assert "Traceback" not in refused.stderr
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(certificate_pem(CertificateAuthority.create("other").certificate))
    wrong = provledger("status", "--node", node, "--ca", str(other_ca), check=False)
    assert wrong.returncode == 1 and "not trusted" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    bad = provledger("status", "--node", node, "--ca", str(root / "genesis.json"), check=False)
    assert bad.returncode == 2 and "--ca" in bad.stderr and "Traceback" not in bad.stderr

    # --- the CLI story with --ca ----------------------------------------------------------
    registrar = str(root / "registrar.pem")
    keys = {name: tmp_path / f"{name}.pem" for name in ("provider", "analyst")}
    public = {
        name: provledger("keygen", "--out", str(path)).stdout.strip() for name, path in keys.items()
    }
    for name, pubkey in public.items():
        out = provledger(
            "admit",
            pubkey,
            "--key",
            registrar,
            "--name",
            name,
            "--node",
            node,
            "--ca",
            ca,
            "--wait",
            "--json",
        )
        assert json.loads(out.stdout)["height"] >= 1

    def submit(*args: str, key: str) -> dict[str, object]:
        out = provledger(
            "submit",
            *args,
            "--key",
            str(keys[key]),
            "--node",
            node,
            "--ca",
            ca,
            "--wait",
            "--json",
        )
        return dict(json.loads(out.stdout))

    raw = tmp_path / "weather.csv"
    raw.write_text("station,temp\nOSL,3.1\n")
    derived = tmp_path / "summary.csv"
    derived.write_text("station,mean\nOSL,3.1\n")
    submit("register", str(raw), "--title", "Weather", key="provider")
    grant = submit(
        "grant",
        str(raw),
        "--to",
        public["analyst"],
        "--purpose",
        "analytics",
        "--purpose",
        "derive",
        "--expires",
        "+30d",
        key="provider",
    )
    submit(
        "use", str(raw), "--purpose", "analytics", "--grant", str(grant["event_id"]), key="analyst"
    )
    submit("derive", str(derived), "--from", str(raw), key="analyst")
    submit("revoke", str(grant["event_id"]), key="provider")

    genesis_file = str(root / "genesis.json")
    story = provledger("verify", str(raw), "--node", node, "--ca", ca, "--genesis", genesis_file)
    assert "verified" in story.stdout and "revoked" in story.stdout.lower()
    as_json = json.loads(
        provledger(
            "verify", str(raw), "--node", node, "--ca", ca, "--genesis", genesis_file, "--json"
        ).stdout
    )
    assert [e["type"] for e in as_json["events"]] == [
        "register",
        "grant",
        "use",
        "derive",
        "revoke",
    ]
    # SSL_CERT_FILE is honoured, and another node of the cluster (by name) serves the same.
    other_node = f"https://localhost:{base + 1}"
    child = provledger(
        "verify",
        str(derived),
        "--node",
        other_node,
        "--genesis",
        genesis_file,
        env={"SSL_CERT_FILE": ca},
    )
    assert "verified" in child.stdout
    unverified = provledger(
        "verify", str(raw), "--node", node, "--genesis", genesis_file, check=False
    )
    assert unverified.returncode == 1 and "not trusted" in unverified.stderr
    assert "Traceback" not in unverified.stderr

    # --- a peer with a certificate for the wrong key is refused -------------------------------
    # node-3 comes back with a certificate from the cluster's own CA, for its host names, but
    # for another key than the node key genesis names for it: the chain and the host name
    # verify, the pin does not. node-0, restarted (so its link to node-3 is new), refuses it
    # before sending anything, and still reaches node-1 and node-2.
    home0, home3 = node_home(root, 0), node_home(root, 3)
    stop_nodes([home3])
    impostor_key = PrivateKey.generate()
    impostor_key.save(home3 / "impostor_key.pem")
    authority = CertificateAuthority.load(root)
    cert = authority.issue(impostor_key.public_key, ["localhost", "127.0.0.1"], "impostor")
    (home3 / "impostor_cert.pem").write_bytes(certificate_pem(cert))
    settings3 = NodeSettings.load(home3)
    config = json.loads(settings3.config_path.read_text())
    config.update(tls_cert="impostor_cert.pem", tls_key="impostor_key.pem")
    settings3.config_path.write_text(json.dumps(config))
    start_node(home3)
    node3 = f"https://127.0.0.1:{settings3.port}"
    with NodeClient(node3, ca=ca) as client:  # its public API verifies against the CA
        wait_for(lambda: _answers(client), what="node-3 to serve with the impostor certificate")
    stop_nodes([home0])
    log_start = (home0 / LOG_FILE).stat().st_size
    start_node(home0)
    peer3 = genesis.validators.validators[3]
    refusal = wait_for(
        lambda: _line_with(
            home0 / LOG_FILE, log_start, f"not the node key {peer3.public_key.hex()}"
        ),
        what="node-0 to refuse node-3's certificate",
    )
    assert peer3.url in refusal and impostor_key.public_key.hex() in refusal
    with NodeClient(node, ca=ca) as client:
        wait_for(
            lambda: (
                {p["url"]: p["reachable"] for p in client.status()["peers"]}
                == {v.url: v.name != "node-3" for v in genesis.validators.validators[1:]}
            ),
            what="node-0 to reach node-1 and node-2 but not node-3",
        )


def _all_reachable(client: NodeClient) -> list[dict[str, object]] | None:
    peers = client.status()["peers"]
    return peers if all(peer["reachable"] for peer in peers) else None


def _answers(client: NodeClient) -> bool:
    try:
        return bool(client.status())
    except ClientError:
        return False


def _line_with(log: Path, start: int, needle: str) -> str | None:
    with log.open("rb") as handle:
        handle.seek(start)
        for line in handle.read().decode(errors="replace").splitlines():
            if needle in line:
                return line
    return None
