"""Cluster and node homes on disk, and stopping processes by their pid files (no server)."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from ledger.crypto import PrivateKey
from ledger.errors import Malformed
from ledger.genesis import Genesis
from node.cli import app
from node.client.tls import certificate_key
from node.config import NodeSettings
from node.homelock import HomeLocked, acquire
from node.ops.cluster import cluster_down
from node.ops.homes import (
    ClusterError,
    ClusterExists,
    cluster_homes,
    init_cluster,
    init_full_node,
    local_peer_url,
    local_url,
)
from node.ops.processes import node_pid, node_running, port_in_use, stop_nodes
from node.server.replica import chain_consensus_config

runner = CliRunner()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_cluster_layout(tmp_path: Path) -> None:
    cluster = tmp_path / "c"
    genesis = init_cluster(cluster, 4, base_port=9100)
    assert re.fullmatch(r"provledger-[0-9a-f]{8}", genesis.chain_id)
    assert genesis.admission == "permissioned"
    assert Genesis.load(cluster / "genesis.json") == genesis
    registrar = cluster / "registrar.pem"
    assert mode(registrar) == 0o600
    assert genesis.registrars == (PrivateKey.load(registrar).public_key,)
    validators = genesis.validators.validators
    assert len(validators) == 4
    # a validator's genesis URL is its peer URL: ports base + nodes + i
    urls = [f"http://127.0.0.1:{9104 + i}" for i in range(4)]
    assert [v.url for v in validators] == urls
    assert genesis.params is not None and genesis.params == genesis.chain_params
    assert [v.name for v in validators] == [f"node-{i}" for i in range(4)]
    assert all(v.power == 1 for v in validators)
    assert cluster_homes(cluster) == [cluster / f"node-{i}" for i in range(4)]
    for i, validator in enumerate(validators):
        home = cluster / f"node-{i}"
        settings = NodeSettings.load(home)
        assert settings.name == f"node-{i}"
        assert (settings.host, settings.port) == ("127.0.0.1", 9100 + i)
        assert settings.p2p_address == ("127.0.0.1", 9104 + i)
        assert local_url(settings) == f"http://127.0.0.1:{9100 + i}"
        assert local_peer_url(settings) == urls[i]
        assert sorted(settings.peers) == sorted(u for u in urls if u != urls[i])
        assert settings.is_validator
        assert mode(settings.key_path) == 0o600
        assert PrivateKey.load(settings.key_path).public_key == validator.public_key
        assert Genesis.load(settings.genesis_path).hash() == genesis.hash()


def test_open_admission(tmp_path: Path) -> None:
    genesis = init_cluster(tmp_path / "c", 1, open_admission=True)
    assert genesis.is_open
    assert NodeSettings.load(tmp_path / "c" / "node-0").peers == ()


def test_advertise_template(tmp_path: Path) -> None:
    cluster = tmp_path / "docker"
    genesis = init_cluster(cluster, 3, advertise="http://node-{i}:8800/")
    urls = [f"http://node-{i}:8900" for i in range(3)]  # the advertised host, peer port
    assert [v.url for v in genesis.validators.validators] == urls
    for i in range(3):
        settings = NodeSettings.load(cluster / f"node-{i}")
        assert (settings.host, settings.port) == ("0.0.0.0", 8800)
        assert settings.p2p_address == ("0.0.0.0", 8900)
        assert local_url(settings) == "http://127.0.0.1:8800"
        assert sorted(settings.peers) == [u for u in urls if u != urls[i]]


@pytest.mark.parametrize("template", ["http://node:8800", "http://node-{j}:8800", "{"])
def test_advertise_template_needs_the_index(tmp_path: Path, template: str) -> None:
    with pytest.raises(ClusterError):
        init_cluster(tmp_path / "c", 2, advertise=template)
    assert not (tmp_path / "c" / "registrar.pem").exists()


@pytest.mark.parametrize(
    ("nodes", "port"), [(0, 8800), (129, 8800), (4, 65534), (4, 65529), (2, 0)]
)
def test_bad_sizes_and_ports(tmp_path: Path, nodes: int, port: int) -> None:
    with pytest.raises(ClusterError):
        init_cluster(tmp_path / "c", nodes, base_port=port)


def test_reinit_refuses_to_clobber(tmp_path: Path) -> None:
    cluster = tmp_path / "c"
    init_cluster(cluster, 2)
    keys = {p: p.read_bytes() for p in cluster.rglob("*.pem")}
    genesis = (cluster / "genesis.json").read_text()
    with pytest.raises(ClusterExists):
        init_cluster(cluster, 2)
    with pytest.raises(ClusterExists):
        init_cluster(cluster, 3, base_port=9000)
    assert {p: p.read_bytes() for p in cluster.rglob("*.pem")} == keys
    assert (cluster / "genesis.json").read_text() == genesis


def test_a_half_written_cluster_is_not_clobbered_either(tmp_path: Path) -> None:
    cluster = tmp_path / "c"
    init_cluster(cluster, 2)
    (cluster / "genesis.json").unlink()
    with pytest.raises(ClusterExists):
        init_cluster(cluster, 2)


def test_cluster_init_command(tmp_path: Path) -> None:
    cluster = tmp_path / "c"
    args = ["cluster", "init", "--nodes", "3", "--dir", str(cluster), "--base-port", "9200"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    genesis = Genesis.load(cluster / "genesis.json")
    assert genesis.chain_id in result.output
    assert "http://127.0.0.1:9205" in result.output  # node-2's peer URL
    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert "refusing to overwrite" in again.output
    assert Genesis.load(cluster / "genesis.json") == genesis


def test_cluster_init_command_with_advertise(tmp_path: Path) -> None:
    cluster = tmp_path / "c"
    template = "http://validator{i}.example:8800"
    args = ["cluster", "init", "--nodes", "2", "--dir", str(cluster), "--open"]
    result = runner.invoke(app, [*args, "--advertise", template])
    assert result.exit_code == 0, result.output
    genesis = Genesis.load(cluster / "genesis.json")
    assert genesis.is_open
    assert genesis.validators.validators[1].url == "http://validator1.example:8900"


def test_init_full_node(tmp_path: Path) -> None:
    cluster = tmp_path / "c"
    genesis = init_cluster(cluster, 2)
    home = tmp_path / "full"
    peers = ["http://127.0.0.1:8800/", "http://127.0.0.1:8801"]
    settings = init_full_node(home, cluster / "genesis.json", peers, port=8900, host="0.0.0.0")
    # Every node has a node key (issue 13): a full node votes once governance adds it.
    assert (home / "node_key.pem").exists()
    assert not (home / "peer_key.pem").exists()
    assert not any(
        v.public_key == PrivateKey.load(home / "node_key.pem").public_key
        for v in genesis.validators.validators
    )
    loaded = NodeSettings.load(home)
    assert loaded.identity_key_path == home / "node_key.pem"
    assert loaded.p2p_address == ("0.0.0.0", 9000)
    assert loaded.peers == ("http://127.0.0.1:8800", "http://127.0.0.1:8801")
    assert (loaded.port, loaded.host, loaded.name) == (8900, "0.0.0.0", "full")
    assert loaded == settings
    assert Genesis.load(home / "genesis.json") == genesis
    with pytest.raises(ClusterExists):
        init_full_node(home, cluster / "genesis.json", peers)
    with pytest.raises(ClusterError):
        init_full_node(tmp_path / "lonely", cluster / "genesis.json", [])
    with pytest.raises(ClusterError):
        init_full_node(tmp_path / "nogenesis", tmp_path / "missing.json", peers)


def test_node_init_command(tmp_path: Path) -> None:
    cluster = tmp_path / "c"
    init_cluster(cluster, 1)
    home = tmp_path / "follower"
    args = ["node", "init", "--home", str(home), "--genesis", str(cluster / "genesis.json")]
    result = runner.invoke(app, [*args, "--peer", "http://127.0.0.1:8800", "--port", "8950"])
    assert result.exit_code == 0, result.output
    assert NodeSettings.load(home).port == 8950
    node_key = PrivateKey.load(home / "node_key.pem").public_key.hex()
    assert f"its node key is {node_key}" in result.output
    assert runner.invoke(app, [*args, "--peer", "http://127.0.0.1:8800"]).exit_code == 2
    assert runner.invoke(app, args).exit_code == 2


def test_node_certify_command_gives_a_full_node_a_certificate_for_its_key(tmp_path: Path) -> None:
    """How a full node joins a TLS chain: the cluster CA certifies its node key for its own
    addresses and the host it will be proposed with, and the home serves TLS with it."""
    cluster = tmp_path / "c"
    init_cluster(cluster, 1, tls=True)
    home = tmp_path / "joining"
    init_full_node(home, cluster / "genesis.json", ["https://127.0.0.1:8900"])
    args = ["node", "certify", "--home", str(home), "--ca-dir", str(cluster)]
    result = runner.invoke(app, [*args, "--host", "org-4-node-p2p"])
    assert result.exit_code == 0, result.output
    settings = NodeSettings.load(home)
    assert settings.tls and settings.tls_key == ""
    assert (home / settings.tls_ca).read_bytes() == (cluster / "ca.pem").read_bytes()
    assert settings.tls_cert_path is not None
    certificate = x509.load_pem_x509_certificate(settings.tls_cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate((cluster / "ca.pem").read_bytes())
    certificate.verify_directly_issued_by(ca)
    key = PrivateKey.load(home / "node_key.pem").public_key
    assert certificate_key(certificate.public_bytes(serialization.Encoding.DER)) == key
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"org-4-node-p2p", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    assert f"node key {key.hex()}" in result.output


def test_node_certify_refuses_what_it_cannot_certify(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    init_cluster(plain, 1)
    home = tmp_path / "joining"
    init_full_node(home, plain / "genesis.json", ["http://127.0.0.1:8900"])
    cases = [
        (home, plain, "cannot read the cluster CA"),
        (tmp_path / "nowhere", plain, "cannot read node config"),
    ]
    tls = tmp_path / "tls"
    init_cluster(tls, 1, tls=True)
    keyless = tmp_path / "keyless"
    NodeSettings(home=keyless).save()
    cases.append((keyless, tls, "has no identity key yet"))
    tls_home = tmp_path / "tls-joining"
    init_full_node(tls_home, tls / "genesis.json", ["https://127.0.0.1:8900"])
    for host in ("https://org-4-node-p2p:8900", "org-4:8900", "a/b"):
        result = runner.invoke(
            app, ["node", "certify", "--home", str(tls_home), "--ca-dir", str(tls), "--host", host]
        )
        assert result.exit_code == 2 and "neither an IP address nor a DNS name" in result.output
    assert not NodeSettings.load(tls_home).tls
    for target, ca_dir, message in cases:
        result = runner.invoke(
            app, ["node", "certify", "--home", str(target), "--ca-dir", str(ca_dir)]
        )
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output
    assert not NodeSettings.load(home).tls and not (home / "tls_cert.pem").exists()


HOLD_LOCK = (
    "import sys, time; from node.homelock import acquire; acquire(sys.argv[1]); "
    "print('locked', flush=True); time.sleep(60)"
)


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A real process holding a node home's lock (as a daemon does), in its pid file."""
    cluster = tmp_path / "c"
    init_cluster(cluster, 2)
    home = (cluster / "node-0").resolve()
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(home)], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"locked\n"
    (home / "node.pid").write_text(f"{process.pid}\n")
    try:
        yield home, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def test_node_running_follows_the_home_lock_not_the_pid_file(
    tmp_path: Path, sleeper: tuple[Path, Any]
) -> None:
    home, process = sleeper
    assert node_running(home) and node_pid(home) == process.pid
    (home / "node.pid").unlink()
    assert node_running(home), "a removed pid file does not make the node disappear"
    other = home.parent / "node-1"
    assert not node_running(other)
    (other / "node.pid").write_text(f"{process.pid}\n")
    assert not node_running(other), "a live pid that does not hold the home is not its node"
    (other / "node.pid").write_text("garbage\n")
    assert not node_running(other)


def test_a_second_daemon_on_one_home_is_refused(sleeper: tuple[Path, Any]) -> None:
    home, process = sleeper
    with pytest.raises(HomeLocked, match=str(process.pid)):
        acquire(home)


def test_stop_nodes_terminates_and_removes_pid_files(sleeper: tuple[Path, Any]) -> None:
    home, process = sleeper
    (home / "node.pid").unlink()  # the orphan of the issue: no pid file, still running
    stopped = stop_nodes([home, home.parent / "node-1"], timeout=5)
    assert stopped == [home]
    process.wait(timeout=5)
    assert not (home / "node.pid").exists()
    assert not node_running(home)


def test_cluster_down(sleeper: tuple[Path, Any]) -> None:
    home, process = sleeper
    assert cluster_down(home.parent) == ["node-0"]
    process.wait(timeout=5)
    result = runner.invoke(app, ["cluster", "down", "--dir", str(home.parent)])
    assert result.exit_code == 0
    assert "no node was running" in result.output


def test_cluster_down_needs_a_cluster(tmp_path: Path) -> None:
    with pytest.raises(ClusterError):
        cluster_down(tmp_path)
    assert runner.invoke(app, ["cluster", "down", "--dir", str(tmp_path)]).exit_code == 2


def test_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)


def home_with(tmp_path: Path, **settings: Any) -> Path:
    """A one-node cluster's home whose config.json also holds `settings`."""
    init_cluster(tmp_path / "c", 1, base_port=9100)
    home = tmp_path / "c" / "node-0"
    doc = json.loads((home / "config.json").read_text())
    (home / "config.json").write_text(json.dumps(doc | settings))
    return home


@pytest.mark.parametrize("listen", ["127.0.0.1:9100", "nonsense", "host:0", "host:99999"])
def test_a_bad_p2p_listen_is_refused_when_loading(tmp_path: Path, listen: str) -> None:
    home = home_with(tmp_path, p2p_listen=listen)
    with pytest.raises(Malformed):
        NodeSettings.load(home)


@pytest.mark.parametrize("interval", [-1, 501, "100", 100.0, True, None])
def test_a_bad_min_block_interval_is_refused_when_loading(tmp_path: Path, interval: Any) -> None:
    home = home_with(tmp_path, min_block_interval_ms=interval)
    with pytest.raises(Malformed, match="min_block_interval_ms must be an integer from 0 to 500"):
        NodeSettings.load(home)


@pytest.mark.parametrize("interval", [0, 250, 500])
def test_a_min_block_interval_in_range_reaches_the_consensus_config(
    tmp_path: Path, interval: int
) -> None:
    settings = NodeSettings.load(home_with(tmp_path, min_block_interval_ms=interval))
    genesis = Genesis.load(settings.genesis_path)
    config = chain_consensus_config(
        genesis, settings.idle_block_interval_ms, settings.min_block_interval_ms
    )
    assert config.min_block_interval_ms == interval
    assert config.timeout_propose_ms == genesis.chain_params.timeout_propose_ms


def test_settings_that_moved_into_genesis_are_accepted_and_ignored(tmp_path: Path) -> None:
    home = home_with(tmp_path, block_max_events=1, time_window_ms=5, timeout_vote_ms=7)
    assert NodeSettings.load(home).p2p_address == ("127.0.0.1", 9101)
