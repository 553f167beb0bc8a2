"""The image's entry point without Docker: node/ops/container.py and docker/entrypoint.sh make
a node home from the environment and the mounts, never replace a key or signer state, refuse
what would be unsafe, render what the manifests and the Dockerfile promise, and start the
daemon (`python -m node.server`) which becomes ready."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.crypto import PrivateKey
from node.config import NodeSettings
from node.ops import container as entry
from node.ops.container import ContainerError, prepare_home
from node.ops.homes import init_cluster
from tests.deploy.conftest import (
    DOCKER,
    EXAMPLE,
    K8S,
    container,
    named,
    of_kind,
    pod_environ,
    render,
)
from tests.node.conftest import free_port

ADVERTISE = "http://org-{i}-node-p2p:8900"
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
    assert not (tmp_path / "home-0" / "node_key.pem").exists()


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
    with pytest.raises(ContainerError, match="PROVLEDGER_ROLE=full but"):
        prepare_home(environ_for(tmp_path, chain, 1, PROVLEDGER_ROLE="full"))


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


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`entrypoint.sh` (start) for a one-validator chain on free loopback ports."""
    cluster = tmp_path / "solo"
    api, p2p = free_port(), free_port()
    init_cluster(cluster, 1, advertise=f"http://127.0.0.1:{p2p}")
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
    log = (tmp_path / "node.out").open("w")
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT)], env=environ, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process, api
    finally:
        log.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_start_execs_the_daemon_which_becomes_ready(
    started: tuple[subprocess.Popen[str], int],
) -> None:
    process, api = started
    deadline = time.monotonic() + START_TIMEOUT_S
    status = None
    while status != 200:
        assert process.poll() is None, f"the node exited with {process.returncode}"
        assert time.monotonic() < deadline, f"/readyz never answered 200 (last {status})"
        try:
            status = httpx.get(f"http://127.0.0.1:{api}/readyz", timeout=2).status_code
        except httpx.TransportError:
            status = None
        time.sleep(0.1)
    # The shell and the entry module replaced themselves: this pid is the daemon itself.
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    assert b"node.server" in cmdline, cmdline


def test_every_organisation_of_the_rendered_overlay_gets_a_home(tmp_path: Path) -> None:
    """The overlay's own pod environment, with a fresh genesis and keys: each organisation's
    entry point makes a validator home peering with the other three peer Services."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    chain = tmp_path / "cluster"
    init_cluster(chain, 4, advertise=ADVERTISE)
    overlay = tree / EXAMPLE.relative_to(K8S)
    shutil.copy(chain / "genesis.json", overlay / "genesis.json")
    docs = render(overlay)
    (configmap,) = [c for c in of_kind(docs, "ConfigMap") if "genesis.json" in c["data"]]
    for i in range(4):
        environ = pod_environ(named(docs, "StatefulSet", f"org-{i}-node"))
        mounts = tmp_path / f"mounts-{i}"
        genesis = mounts / environ["PROVLEDGER_GENESIS"].lstrip("/")
        genesis.parent.mkdir(parents=True)
        genesis.write_text(configmap["data"]["genesis.json"])
        key = mounts / environ["PROVLEDGER_KEY"].lstrip("/")
        key.parent.mkdir(parents=True)
        shutil.copy(chain / f"node-{i}" / "node_key.pem", key)
        home = mounts / environ["PROVLEDGER_HOME"].lstrip("/")
        settings = prepare_home(
            {
                **environ,
                "PROVLEDGER_GENESIS": str(genesis),
                "PROVLEDGER_KEY": str(key),
                "PROVLEDGER_HOME": str(home),
            }
        )
        assert settings.is_validator and settings.name == f"org-{i}"
        assert settings.peers == tuple(ADVERTISE.format(i=j) for j in range(4) if j != i)


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
