"""The image's entry point without Docker: node/ops/container.py and docker/entrypoint.sh make
a node home from the environment and the mounts, never replace a key or signer state, refuse
what would be unsafe, render what the manifests and the Dockerfile promise, and start the
daemon (`python -m node.server`) which becomes ready."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ledger.crypto import PrivateKey
from ledger.genesis import Genesis
from node.client.tls import certificate_key
from node.config import NodeSettings
from node.ops import container as entry
from node.ops.container import ContainerError, prepare_home
from node.ops.homes import certify_node, init_cluster, init_full_node
from node.server.tls import check_server_tls
from tests.deploy.conftest import (
    DOCKER,
    EXAMPLE,
    K8S,
    container,
    copy_tree,
    named,
    of_kind,
    pod_environ,
    render,
    without_tls,
)
from tests.node.conftest import free_port

ADVERTISE = "http://org-{i}-node-p2p:8900"
TLS_ADVERTISE = "https://org-{i}-node-p2p:8900"
ENTRYPOINT = DOCKER / "entrypoint.sh"
START_TIMEOUT_S = 30.0


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    """A 4-validator cluster directory whose genesis names the org-I peer Services."""
    cluster = tmp_path / "cluster"
    init_cluster(cluster, 4, advertise=ADVERTISE)
    return cluster


def environ_for(tmp_path: Path, chain: Path, index: int, **extra: str) -> dict[str, str]:
    return {
        "PROVLEDGER_NAME": f"org-{index}",
        "PROVLEDGER_HOME": str(tmp_path / f"home-{index}"),
        "PROVLEDGER_GENESIS": str(chain / "genesis.json"),
        "PROVLEDGER_KEY": str(chain / f"node-{index}" / "node_key.pem"),
        **extra,
    }


def test_first_start_copies_genesis_and_key_and_renders_the_config(
    tmp_path: Path, chain: Path
) -> None:
    settings = prepare_home(environ_for(tmp_path, chain, 1))
    home = tmp_path / "home-1"
    assert (home / "node_key.pem").read_bytes() == (chain / "node-1" / "node_key.pem").read_bytes()
    assert (home / "node_key.pem").stat().st_mode & 0o777 == 0o600
    assert (home / "genesis.json").read_bytes() == (chain / "genesis.json").read_bytes()
    loaded = NodeSettings.load(home)
    assert loaded == settings
    assert (loaded.name, loaded.host, loaded.port) == ("org-1", "0.0.0.0", entry.API_PORT)
    assert loaded.p2p_address == ("0.0.0.0", entry.P2P_PORT)
    assert loaded.peers == tuple(ADVERTISE.format(i=i) for i in (0, 2, 3))
    assert loaded.is_validator


def test_a_restart_keeps_key_signer_state_and_store_and_rerenders_the_config(
    tmp_path: Path, chain: Path
) -> None:
    environ = environ_for(tmp_path, chain, 0)
    prepare_home(environ)
    home = tmp_path / "home-0"
    (home / "signer_state.bin").write_bytes(b"signed state")
    (home / "data").mkdir()
    (home / "data" / "CURRENT").write_bytes(b"store")
    key_before = (home / "node_key.pem").read_bytes()
    settings = prepare_home({**environ, "PROVLEDGER_PEERS": "http://a:8900, http://b:8900/"})
    assert (home / "node_key.pem").read_bytes() == key_before
    assert (home / "signer_state.bin").read_bytes() == b"signed state"
    assert (home / "data" / "CURRENT").read_bytes() == b"store"
    assert NodeSettings.load(home).peers == settings.peers == ("http://a:8900", "http://b:8900")


def test_a_different_key_in_the_secret_is_refused_and_the_home_key_kept(
    tmp_path: Path, chain: Path
) -> None:
    prepare_home(environ_for(tmp_path, chain, 0))
    before = (tmp_path / "home-0" / "node_key.pem").read_bytes()
    other = environ_for(tmp_path, chain, 0, PROVLEDGER_KEY=str(chain / "node-1" / "node_key.pem"))
    with pytest.raises(ContainerError, match="differs from the mounted"):
        prepare_home(other)
    assert (tmp_path / "home-0" / "node_key.pem").read_bytes() == before


def test_the_secret_may_go_once_the_key_is_in_the_volume(tmp_path: Path, chain: Path) -> None:
    prepare_home(environ_for(tmp_path, chain, 0))
    gone = environ_for(tmp_path, chain, 0, PROVLEDGER_KEY=str(tmp_path / "absent.pem"))
    assert prepare_home(gone).is_validator


def test_a_home_of_another_chain_is_refused(tmp_path: Path, chain: Path) -> None:
    prepare_home(environ_for(tmp_path, chain, 0))
    init_cluster(tmp_path / "other", 4, advertise=ADVERTISE)
    other = environ_for(tmp_path, chain, 0, PROVLEDGER_GENESIS=str(tmp_path / "other/genesis.json"))
    with pytest.raises(ContainerError, match="belongs to another chain"):
        prepare_home(other)


def test_a_key_that_is_not_a_validator_is_refused_and_not_copied(
    tmp_path: Path, chain: Path
) -> None:
    stranger = tmp_path / "stranger.pem"
    PrivateKey.generate().save(stranger)
    with pytest.raises(ContainerError, match="not a genesis validator"):
        prepare_home(environ_for(tmp_path, chain, 0, PROVLEDGER_KEY=str(stranger)))
    assert not (tmp_path / "home-0").exists()  # nothing written, not even the genesis


def test_a_validator_without_its_key_is_refused_a_full_node_follows_every_validator(
    tmp_path: Path, chain: Path
) -> None:
    missing = str(tmp_path / "absent.pem")
    with pytest.raises(ContainerError, match="needs its key"):
        prepare_home(environ_for(tmp_path, chain, 0, PROVLEDGER_KEY=missing))
    full = prepare_home(
        environ_for(tmp_path, chain, 0, PROVLEDGER_KEY=missing, PROVLEDGER_ROLE="full")
    )
    assert not full.is_validator
    assert full.peers == tuple(ADVERTISE.format(i=i) for i in range(4))


def test_a_full_node_refuses_a_genesis_validators_key(tmp_path: Path, chain: Path) -> None:
    """Two pods signing with one validator key would equivocate."""
    with pytest.raises(ContainerError, match=r"PROVLEDGER_ROLE=full but the node key .* genesis"):
        prepare_home(environ_for(tmp_path, chain, 1, PROVLEDGER_ROLE="full"))
    assert not (tmp_path / "home-1").exists()
    # Nor a validator's home restarted as a full node, the Secret gone.
    prepare_home(environ_for(tmp_path, chain, 1))
    gone = str(tmp_path / "absent.pem")
    with pytest.raises(ContainerError, match=r"PROVLEDGER_ROLE=full but the node key .* genesis"):
        prepare_home(environ_for(tmp_path, chain, 1, PROVLEDGER_ROLE="full", PROVLEDGER_KEY=gone))


def test_a_full_node_serving_tls_needs_its_key(tmp_path: Path, chain: Path) -> None:
    """Its certificate is for its key: without one it could only fail at start, in a loop."""
    tls = json.dumps({"tls_cert": str(tmp_path / "tls.crt")})
    environ = environ_for(
        tmp_path, chain, 4, PROVLEDGER_ROLE="full", PROVLEDGER_KEY=str(tmp_path / "absent.pem")
    )
    with pytest.raises(ContainerError, match="a full node serving TLS needs its key"):
        prepare_home({**environ, "PROVLEDGER_SETTINGS": tls})
    assert not (tmp_path / "home-4").exists()
    assert not prepare_home(environ).is_validator  # without TLS it follows with a peer key


def test_a_joining_organisations_full_node_keeps_its_own_key_and_follows_every_validator(
    tmp_path: Path, chain: Path
) -> None:
    """A key genesis does not name: refused for a validator, kept by a full node (it votes
    once governance adds it), never replaced on restart, and the Secret may not change."""
    joining = tmp_path / "joining.pem"
    key = PrivateKey.generate()
    key.save(joining)
    environ = environ_for(
        tmp_path,
        chain,
        4,
        PROVLEDGER_KEY=str(joining),
        PROVLEDGER_ROLE="full",
        PROVLEDGER_ADVERTISE="http://org-4-node-p2p:8900",
    )
    with pytest.raises(ContainerError, match="joins by governance runs with PROVLEDGER_ROLE=full"):
        prepare_home({**environ, "PROVLEDGER_ROLE": "validator"})
    settings = prepare_home(environ)
    assert PrivateKey.load(settings.key_path).public_key == key.public_key
    assert settings.key_path.stat().st_mode & 0o777 == 0o600
    assert settings.peers == tuple(ADVERTISE.format(i=i) for i in range(4))
    joining.unlink()  # the Secret may go once the key is in the volume
    assert PrivateKey.load(prepare_home(environ).key_path).public_key == key.public_key
    PrivateKey.generate().save(joining)
    with pytest.raises(ContainerError, match="differs from the mounted"):
        prepare_home(environ)
    assert PrivateKey.load(settings.key_path).public_key == key.public_key


def test_peer_keys_come_from_provledger_peer_keys(tmp_path: Path, chain: Path) -> None:
    keys = [PrivateKey.generate().public_key.hex() for _ in range(2)]
    settings = prepare_home(
        environ_for(tmp_path, chain, 0, PROVLEDGER_PEER_KEYS=f" {keys[0]}, {keys[1].upper()} ")
    )
    assert settings.peer_keys == tuple(keys)
    assert NodeSettings.load(settings.home).peer_keys == tuple(keys)
    for bad in ("02abc", "zz" * 33, "04" + "11" * 32, keys[0][:-2]):
        with pytest.raises(ContainerError, match=r"PROVLEDGER_PEER_KEYS: .* is not a public key"):
            prepare_home(environ_for(tmp_path, chain, 0, PROVLEDGER_PEER_KEYS=bad))
    # PROVLEDGER_SETTINGS may still set them (as before the variable existed), not both.
    in_settings = json.dumps({"peer_keys": keys[:1]})
    older = prepare_home(environ_for(tmp_path, chain, 0, PROVLEDGER_SETTINGS=in_settings))
    assert older.peer_keys == tuple(keys[:1])
    both = environ_for(
        tmp_path, chain, 0, PROVLEDGER_SETTINGS=in_settings, PROVLEDGER_PEER_KEYS=keys[1]
    )
    with pytest.raises(ContainerError, match="peer keys are set twice"):
        prepare_home(both)


def test_the_start_line_names_the_role_and_warns_of_a_full_node_nobody_admits(
    tmp_path: Path, chain: Path
) -> None:
    joining = tmp_path / "joining.pem"
    key = PrivateKey.generate()
    key.save(joining)
    other = PrivateKey.generate().public_key.hex()
    environ = environ_for(
        tmp_path,
        chain,
        4,
        PROVLEDGER_ROLE="full",
        PROVLEDGER_KEY=str(joining),
        PROVLEDGER_PEER_KEYS=other,
    )
    prepared = entry.prepare(environ)
    assert prepared.describe() == (
        f"full node, key {key.public_key.hex()}: it votes once governance adds it"
    )
    (warning,) = prepared.warnings()
    assert f"this node's key {key.public_key.hex()} is not in PROVLEDGER_PEER_KEYS" in warning
    listed = {**environ, "PROVLEDGER_PEER_KEYS": f"{other} {key.public_key.hex()}"}
    assert entry.prepare(listed).warnings() == []
    keyless = {**environ, "PROVLEDGER_HOME": str(tmp_path / "keyless"), "PROVLEDGER_KEY": "/no"}
    assert entry.prepare(keyless).describe() == "full node"
    validator = entry.prepare(environ_for(tmp_path, chain, 0, PROVLEDGER_PEER_KEYS=other))
    assert validator.describe() == "validator" and validator.warnings() == []
    done = run_entrypoint(environ, "render")
    assert done.returncode == 0, done.stderr
    assert "is not in PROVLEDGER_PEER_KEYS" in done.stderr


def test_an_advertised_url_other_than_the_genesis_one_is_refused(
    tmp_path: Path, chain: Path
) -> None:
    with pytest.raises(ContainerError, match="PROVLEDGER_ADVERTISE"):
        prepare_home(environ_for(tmp_path, chain, 0, PROVLEDGER_ADVERTISE="http://elsewhere:8900"))
    ok = environ_for(tmp_path, chain, 0, PROVLEDGER_ADVERTISE=ADVERTISE.format(i=0) + "/")
    assert prepare_home(ok).is_validator


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"PROVLEDGER_NAME": " "}, "PROVLEDGER_NAME is required"),
        ({"PROVLEDGER_PORT": "80a"}, "is not a port"),
        ({"PROVLEDGER_P2P_PORT": "70000"}, "is not a port"),
        ({"PROVLEDGER_ROLE": "observer"}, "PROVLEDGER_ROLE"),
        ({"PROVLEDGER_PEERS": "node-1:8900"}, "not an http"),
        ({"PROVLEDGER_SETTINGS": "[1]"}, "JSON object"),
        ({"PROVLEDGER_SETTINGS": "{"}, "not JSON"),
        ({"PROVLEDGER_SETTINGS": '{"mempool_max_event": 1}'}, "unknown"),
        ({"PROVLEDGER_SETTINGS": '{"port": 1}'}, "set by other variables"),
    ],
)
def test_bad_environment_is_refused_before_anything_is_written(
    tmp_path: Path, chain: Path, extra: dict[str, str], message: str
) -> None:
    with pytest.raises(ContainerError, match=message):
        prepare_home(environ_for(tmp_path, chain, 0, **extra))
    assert not (tmp_path / "home-0").exists()


def test_further_settings_come_from_provledger_settings(tmp_path: Path, chain: Path) -> None:
    environ = environ_for(tmp_path, chain, 0, PROVLEDGER_SETTINGS='{"mempool_max_events": 7}')
    prepare_home(environ)
    assert NodeSettings.load(tmp_path / "home-0").mempool_max_events == 7


def run_entrypoint(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **environ}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_entrypoint_script_renders_and_reports_refusals(tmp_path: Path, chain: Path) -> None:
    done = run_entrypoint(environ_for(tmp_path, chain, 2), "render")
    assert done.returncode == 0, done.stderr
    assert "org-2 (validator)" in done.stdout
    assert NodeSettings.load(tmp_path / "home-2").name == "org-2"
    refused = run_entrypoint({**environ_for(tmp_path, chain, 3), "PROVLEDGER_NAME": ""}, "render")
    assert refused.returncode == 1
    assert "PROVLEDGER_NAME is required" in refused.stderr
    assert run_entrypoint(environ_for(tmp_path, chain, 3), "bogus").returncode == 2


def solo_environ(tmp_path: Path, tls: bool) -> tuple[dict[str, str], int]:
    """The entry point's environment for a one-validator chain on free loopback ports, and
    the API port. With `tls`, the chain is made by `cluster init --tls` and the settings are
    the TLS component's, with its mounted paths (/etc/provledger/tls) moved to the Secret's
    files in the cluster directory."""
    cluster = tmp_path / "solo"
    api, p2p = free_port(), free_port()
    scheme = "https" if tls else "http"
    init_cluster(cluster, 1, advertise=f"{scheme}://127.0.0.1:{p2p}", tls=tls)
    environ = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PROVLEDGER_NAME": "solo",
        "PROVLEDGER_HOME": str(tmp_path / "home"),
        "PROVLEDGER_GENESIS": str(cluster / "genesis.json"),
        "PROVLEDGER_KEY": str(cluster / "node-0" / "node_key.pem"),
        "PROVLEDGER_HOST": "127.0.0.1",
        "PROVLEDGER_PORT": str(api),
        "PROVLEDGER_P2P_PORT": str(p2p),
    }
    if tls:
        component = pod_environ(named(render(EXAMPLE), "StatefulSet", "org-0-node"))
        secret = {"tls.crt": cluster / "node-0" / "tls_cert.pem", "ca.crt": cluster / "ca.pem"}
        settings = json.loads(component["PROVLEDGER_SETTINGS"])
        environ["PROVLEDGER_SETTINGS"] = json.dumps(
            {name: str(secret[Path(path).name]) for name, path in settings.items()}
        )
    return environ, api


@contextlib.contextmanager
def entrypoint_process(environ: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`entrypoint.sh` (start) with `environ`, its output in `log_path`; stopped at the end."""
    log = log_path.open("w")
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT)], env=environ, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        log.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(process: subprocess.Popen[str], url: str, verify: ssl.SSLContext | bool) -> None:
    """Until `url`/readyz answers 200; fails if the process exits or after START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    status = None
    while status != 200:
        assert process.poll() is None, f"the node exited with {process.returncode}"
        assert time.monotonic() < deadline, f"/readyz never answered 200 (last {status})"
        try:
            status = httpx.get(f"{url}/readyz", timeout=2, verify=verify).status_code
        except httpx.TransportError:
            status = None
        time.sleep(0.1)


@pytest.fixture(params=[False, True], ids=["http", "tls"])
def started(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`entrypoint.sh` (start) for a one-validator chain on free loopback ports, serving
    plain HTTP or, with the TLS component's settings, HTTPS."""
    environ, api = solo_environ(tmp_path, tls=request.param)
    with entrypoint_process(environ, tmp_path / "node.out") as process:
        yield process, api


@pytest.mark.cluster  # a real daemon process: the full run only
def test_start_execs_the_daemon_which_becomes_ready(
    request: pytest.FixtureRequest, tmp_path: Path, started: tuple[subprocess.Popen[str], int]
) -> None:
    process, api = started
    tls = request.node.callspec.params["started"]
    url = f"{'https' if tls else 'http'}://127.0.0.1:{api}"
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(tmp_path / "solo" / "ca.pem")) if tls else True
    )
    wait_ready(process, url, verify)
    if tls:
        assert_served_like_the_manifests_expect(api, tmp_path / "solo" / "ca.pem")
    # The image's HEALTHCHECK (`python -m node.ops.container health`) finds it, either scheme.
    home = {"PROVLEDGER_HOME": str(tmp_path / "home")}
    assert entry.main(["health"]) == 1  # the default home (/node) holds no node here
    assert entry.healthy(home)
    # The shell and the entry module replaced themselves: this pid is the daemon itself.
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    assert b"node.server" in cmdline, cmdline


@pytest.mark.cluster  # two real daemon processes: the full run only
def test_a_joining_full_node_certified_by_the_ca_follows_over_tls_and_becomes_ready(
    tmp_path: Path,
) -> None:
    """The regulator's way (overlays/example-4-orgs/regulator): `node init` makes a full
    node's key, `node certify` its certificate from the cluster CA; the entry point starts
    it with PROVLEDGER_ROLE=full and the TLS component's settings, and the validator admits
    it through PROVLEDGER_PEER_KEYS. It follows over TLS, serves its certificate for its own
    key, and is ready though it holds a key and never votes."""
    validator, api = solo_environ(tmp_path, tls=True)
    cluster = tmp_path / "solo"
    source = tmp_path / "made"
    made = init_full_node(source, cluster / "genesis.json", [f"https://127.0.0.1:{api}"])
    key = PrivateKey.load(made.key_path).public_key
    certify_node(source, cluster)
    full_api, full_p2p = free_port(), free_port()
    full = {
        **validator,
        "PROVLEDGER_NAME": "regulator",
        "PROVLEDGER_ROLE": "full",
        "PROVLEDGER_HOME": str(tmp_path / "regulator"),
        "PROVLEDGER_KEY": str(made.key_path),
        "PROVLEDGER_PORT": str(full_api),
        "PROVLEDGER_P2P_PORT": str(full_p2p),
        # The solo genesis names port 8900 (cluster init's peer port); the validator listens
        # on a free one.
        "PROVLEDGER_PEERS": f"https://127.0.0.1:{validator['PROVLEDGER_P2P_PORT']}",
        "PROVLEDGER_SETTINGS": json.dumps(
            {"tls_cert": str(source / "tls_cert.pem"), "tls_ca": str(cluster / "ca.pem")}
        ),
    }
    validator["PROVLEDGER_PEER_KEYS"] = key.hex()
    ca = ssl.create_default_context(cafile=str(cluster / "ca.pem"))
    with (
        entrypoint_process(validator, tmp_path / "validator.out") as validator_process,
        entrypoint_process(full, tmp_path / "regulator.out") as full_process,
    ):
        wait_ready(validator_process, f"https://127.0.0.1:{api}", ca)
        wait_ready(full_process, f"https://127.0.0.1:{full_api}", ca)
        status = httpx.get(f"https://127.0.0.1:{full_api}/v1/status", verify=ca).json()
        assert status["validator"] is False and status["public_key"] == key.hex()
        assert status["height"] >= 1
        head = httpx.get(f"https://127.0.0.1:{api}/v1/status", verify=ca).json()
        assert status["genesis_fingerprint"] == head["genesis_fingerprint"]
        served = ssl.get_server_certificate(("127.0.0.1", full_api))
        assert certificate_key(ssl.PEM_cert_to_DER_cert(served)) == key


def scrape_metrics(api: int, context: ssl.SSLContext, server_name: str) -> httpx.Response:
    """GET /metrics from 127.0.0.1 (a pod's address) as `server_name`, on a new connection."""
    with httpx.Client(verify=context, timeout=5) as client:
        return client.get(
            f"https://127.0.0.1:{api}/metrics", extensions={"sni_hostname": server_name}
        )


def assert_served_like_the_manifests_expect(api: int, ca: Path) -> None:
    """A node with the TLS component's settings: the ServiceMonitor's scrape (the pod's
    address, the CA of the Secret provledger-tls-ca, server name localhost, TLS 1.3 at least)
    reads /metrics; a client that does not trust the CA, and plain HTTP, get nothing."""
    scrape = ssl.create_default_context(cafile=str(ca))
    scrape.minimum_version = ssl.TLSVersion.TLSv1_3
    metrics = scrape_metrics(api, scrape, "localhost")
    # The server name is checked: one the certificate lacks is refused.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        scrape_metrics(api, scrape, "org-9-node-p2p")
    assert metrics.status_code == 200 and "provledger_" in metrics.text
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{api}/healthz", verify=ssl.create_default_context())
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{api}/healthz", timeout=5)


def mount(mounts: Path, path: str, data: bytes) -> Path:
    """Write `data` where the pod sees `path`, moved under `mounts`."""
    target = mounts / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def pod_home(
    docs: list[dict[str, Any]], chain: Path, i: int, mounts: Path, tls_from: int | None = None
) -> tuple[dict[str, str], NodeSettings]:
    """Organisation i's pod as the kubelet makes it from the rendered manifests (paths moved
    under `mounts`): the genesis ConfigMap, its key Secret and, where the manifest requires
    the TLS Secret, its keys (tls.crt: the certificate of node `tls_from`, default i;
    ca.crt: the cluster CA) at their mount paths. Returns the pod's environment and the
    settings its entry point renders."""
    tls_home = chain / f"node-{i if tls_from is None else tls_from}"
    return pod_home_of(docs, f"org-{i}", chain / f"node-{i}", tls_home, chain, mounts)


def pod_home_of(
    docs: list[dict[str, Any]], org: str, key_home: Path, tls_home: Path, chain: Path, mounts: Path
) -> tuple[dict[str, str], NodeSettings]:
    """`org`'s pod with the node key of `key_home`, the certificate of `tls_home` and the CA
    of `chain` as its Secrets (see `pod_home`)."""
    statefulset = named(docs, "StatefulSet", f"{org}-node")
    environ = pod_environ(statefulset)
    (configmap,) = [c for c in of_kind(docs, "ConfigMap") if "genesis.json" in c["data"]]
    genesis = mount(
        mounts, environ["PROVLEDGER_GENESIS"], configmap["data"]["genesis.json"].encode()
    )
    key = mount(mounts, environ["PROVLEDGER_KEY"], (key_home / "node_key.pem").read_bytes())
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    mounted = {m["name"]: m["mountPath"] for m in container(statefulset)["volumeMounts"]}
    tls_secret = volumes["tls"]["secret"]
    if not tls_secret["optional"]:
        files = {"tls.crt": tls_home / "tls_cert.pem", "ca.crt": chain / "ca.pem"}
        for item in tls_secret["items"]:
            mount(mounts, f"{mounted['tls']}/{item['path']}", files[item["key"]].read_bytes())
    settings = {
        name: str(mounts / value.lstrip("/")) if name.startswith("tls_") else value
        for name, value in json.loads(environ.get("PROVLEDGER_SETTINGS", "{}")).items()
    }
    home = mounts / environ["PROVLEDGER_HOME"].lstrip("/")
    moved = {
        **environ,
        "PROVLEDGER_GENESIS": str(genesis),
        "PROVLEDGER_KEY": str(key),
        "PROVLEDGER_HOME": str(home),
        "PROVLEDGER_SETTINGS": json.dumps(settings),
    }
    return environ, prepare_home(moved)


def overlay_with(tmp_path: Path, chain: Path, tls: bool) -> list[dict[str, Any]]:
    """The example overlay (TLS) or the same without the TLS components, with `chain`'s
    genesis, rendered."""
    tree = copy_tree(tmp_path)
    overlay = without_tls(tree) if not tls else tree / EXAMPLE.relative_to(K8S)
    shutil.copy(chain / "genesis.json", overlay / "genesis.json")
    return render(overlay)


def test_every_organisation_of_the_plain_overlay_gets_a_home(tmp_path: Path) -> None:
    """Without the TLS components, with a fresh plain genesis and keys: each organisation's
    entry point makes a validator home peering with the other three peer Services."""
    chain = tmp_path / "cluster"
    init_cluster(chain, 4, advertise=ADVERTISE)
    docs = overlay_with(tmp_path, chain, tls=False)
    for i in range(4):
        _, settings = pod_home(docs, chain, i, tmp_path / f"mounts-{i}")
        assert settings.is_validator and settings.name == f"org-{i}"
        assert settings.peers == tuple(ADVERTISE.format(i=j) for j in range(4) if j != i)
        assert not NodeSettings.load(settings.home).tls


def test_every_organisation_of_the_tls_overlay_serves_a_certificate_for_its_node_key(
    tmp_path: Path,
) -> None:
    """`cluster init --tls --advertise https://org-{i}-node-p2p:8900` and the Secrets the
    overlay documents: each organisation's home serves its mounted tls.crt with its node key
    (the pair loads, as at start), the certificate chains to ca.crt, carries the key genesis
    pins and names the peer Service its peers reach it by, and the peers are https://."""
    chain = tmp_path / "cluster"
    init_cluster(chain, 4, advertise=TLS_ADVERTISE, tls=True)
    docs = overlay_with(tmp_path, chain, tls=True)
    genesis = Genesis.load(chain / "genesis.json")
    authority = x509.load_pem_x509_certificate((chain / "ca.pem").read_bytes())
    for i in range(4):
        mounts = tmp_path / f"mounts-{i}"
        environ, rendered = pod_home(docs, chain, i, mounts)
        settings = NodeSettings.load(rendered.home)  # refuses a TLS file that is not there
        assert settings.is_validator and settings.tls and settings.scheme == "https"
        assert settings.tls_cert_path == mounts / "etc/provledger/tls/tls.crt"
        assert settings.tls_ca_path == mounts / "etc/provledger/tls/ca.crt"
        assert settings.tls_key_path == settings.home / "node_key.pem"
        check_server_tls(settings)
        certificate = x509.load_pem_x509_certificate(settings.tls_cert_path.read_bytes())
        certificate.verify_directly_issued_by(authority)
        der = certificate.public_bytes(serialization.Encoding.DER)
        assert certificate_key(der) == genesis.validators.validators[i].public_key
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        hosts = names.value.get_values_for_type(x509.DNSName)
        assert f"org-{i}-node-p2p" in hosts and "localhost" in hosts
        assert environ["PROVLEDGER_ADVERTISE"] == genesis.validators.validators[i].url
        assert settings.peers == tuple(TLS_ADVERTISE.format(i=j) for j in range(4) if j != i)
    # The regulator, made as its kustomization says (node init, node certify --host).
    made = tmp_path / "regulator"
    init_full_node(made, chain / "genesis.json", [TLS_ADVERTISE.format(i=0)])
    certify_node(made, chain, ["regulator-node-p2p"])
    environ, rendered = pod_home_of(docs, "regulator", made, made, chain, tmp_path / "mounts-r")
    settings = NodeSettings.load(rendered.home)
    check_server_tls(settings)
    key = PrivateKey.load(made / "node_key.pem").public_key
    assert PrivateKey.load(settings.key_path).public_key == key
    assert environ["PROVLEDGER_ROLE"] == "full" and genesis.validators.get(key) is None
    assert settings.tls and settings.peers == tuple(TLS_ADVERTISE.format(i=j) for j in range(4))
    assert settings.peer_keys == tuple(environ["PROVLEDGER_PEER_KEYS"].split())


def test_a_tls_secret_with_another_organisations_certificate_stops_the_node(
    tmp_path: Path,
) -> None:
    chain = tmp_path / "cluster"
    init_cluster(chain, 4, advertise=TLS_ADVERTISE, tls=True)
    docs = overlay_with(tmp_path, chain, tls=True)
    _, rendered = pod_home(docs, chain, 0, tmp_path / "mounts", tls_from=1)
    with pytest.raises(SystemExit, match="cannot serve TLS"):
        check_server_tls(NodeSettings.load(rendered.home))


@pytest.mark.parametrize(("tls_overlay", "tls_genesis"), [(True, False), (False, True)])
def test_an_overlay_and_a_genesis_that_disagree_on_tls_are_refused(
    tmp_path: Path, tls_overlay: bool, tls_genesis: bool
) -> None:
    """The component on with an http:// genesis, or off with an https:// one: the entry
    point refuses to start (peers would not reach the node) and writes no key."""
    chain = tmp_path / "cluster"
    init_cluster(chain, 4, advertise=TLS_ADVERTISE if tls_genesis else ADVERTISE, tls=tls_genesis)
    docs = overlay_with(tmp_path, chain, tls=tls_overlay)
    if not tls_genesis:  # a TLS Secret made some other way: the refusal comes before its use
        for made in (chain / "node-2" / "tls_cert.pem", chain / "ca.pem"):
            made.write_bytes(b"not read")
    with pytest.raises(ContainerError, match=r"PROVLEDGER_ADVERTISE=.* but genesis gives"):
        pod_home(docs, chain, 2, tmp_path / "mounts")
    assert not (tmp_path / "mounts" / "node" / "config.json").exists()


def dockerfile() -> dict[str, Any]:
    """The final stage's instructions of docker/Dockerfile (continuation lines joined)."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    stages = re.split(r"^FROM .*$", text, flags=re.M)
    final: dict[str, Any] = {"COPY": [], "ENV": {}}
    for line in stages[-1].splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "COPY":
            final["COPY"].append(rest.split())
        elif word == "ENV":
            final["ENV"].update(item.split("=", 1) for item in rest.split())
        elif word in ("USER", "EXPOSE", "VOLUME", "ENTRYPOINT", "CMD", "WORKDIR"):
            final[word] = rest
    return final


def test_the_dockerfile_agrees_with_the_manifests_and_the_package() -> None:
    image = dockerfile()
    statefulset = named(render(K8S / "base"), "StatefulSet", "node")
    pod = statefulset["spec"]["template"]["spec"]
    node = container(statefulset)
    environ = pod_environ(statefulset)
    # Non-root, the same uid on both sides.
    assert image["USER"] == str(pod["securityContext"]["runAsUser"]) == "10001"
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The ports the image exposes are the container's ports and the entry point's defaults.
    ports = {p["name"]: p["containerPort"] for p in node["ports"]}
    assert ports == {"api": entry.API_PORT, "p2p": entry.P2P_PORT}
    assert sorted(int(p) for p in image["EXPOSE"].split()) == sorted(ports.values())
    assert environ["PROVLEDGER_PORT"] == str(ports["api"])
    assert environ["PROVLEDGER_P2P_PORT"] == str(ports["p2p"])
    # The home volume.
    assert json.loads(image["VOLUME"]) == [image["ENV"]["PROVLEDGER_HOME"]] == [entry.DEFAULT_HOME]
    # The entry point is the script, copied from the repository; args select `start`.
    (entrypoint,) = json.loads(image["ENTRYPOINT"])
    (copied,) = [c for c in image["COPY"] if c[-1] == entrypoint]
    assert copied[-2] == "docker/entrypoint.sh" and ENTRYPOINT.exists()
    assert json.loads(image["CMD"]) == node["args"] == ["start"]
    assert "node.ops.container" in ENTRYPOINT.read_text()
    # Every variable the manifest sets is one the entry point reads.
    assert set(environ) - {"PROVLEDGER_ORG"} <= set(entry.VARIABLES)
    assert environ["PROVLEDGER_GENESIS"] == entry.DEFAULT_GENESIS
    assert environ["PROVLEDGER_KEY"] == entry.DEFAULT_KEY


def test_the_build_stage_copies_every_package_setuptools_finds() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    pyproject = (DOCKER.parent / "pyproject.toml").read_text()
    include = re.search(r"\[tool\.setuptools\.packages\.find\]\s*include = \[(.*?)\]", pyproject)
    assert include is not None
    packages = [p.strip().strip('"').rstrip("*") for p in include.group(1).split(",")]
    for package in packages:
        assert re.search(rf"^COPY {package} {package}$", text, flags=re.M), package
        assert (DOCKER.parent / package / "__init__.py").exists()
