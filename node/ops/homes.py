"""Node homes and cluster directories on disk: create them, find them.

A cluster directory holds `genesis.json`, `registrar.pem` and one home `node-I/` per
validator (key, config, genesis copy, data, `node.pid`, `node.log`); a full node's home
holds the same without a key.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from ledger.blocks import MAX_VALIDATORS, Validator, ValidatorSet
from ledger.crypto import PrivateKey
from ledger.errors import Malformed
from ledger.genesis import OPEN, PERMISSIONED, Genesis
from node.clock import now_ms
from node.config import CONFIG_FILE, GENESIS_FILE, KEY_FILE, NodeSettings

REGISTRAR_FILE = "registrar.pem"
NODE_PREFIX = "node-"
DEFAULT_NODES = 4
DEFAULT_BASE_PORT = 8800
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class ClusterError(Exception):
    """A cluster or node home that cannot be created, started or reached."""


class ClusterExists(ClusterError):
    """The directory already holds keys or a genesis that would be overwritten."""


def node_home(cluster_dir: str | Path, index: int) -> Path:
    return Path(cluster_dir) / f"{NODE_PREFIX}{index}"


def local_url(settings: NodeSettings) -> str:
    """The URL this machine uses to reach a node (a wildcard bind is reached via loopback)."""
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _advertised(template: str, index: int, port: int) -> str:
    try:
        url = template.format(i=index, port=port)
    except (KeyError, IndexError, ValueError) as exc:
        raise ClusterError(
            f"bad --advertise template {template!r}: use {{i}} for the node index ({exc})"
        ) from exc
    return url.rstrip("/")


def _existing_cluster_files(cluster_dir: Path) -> list[Path]:
    found = [p for p in (cluster_dir / GENESIS_FILE, cluster_dir / REGISTRAR_FILE) if p.exists()]
    if cluster_dir.is_dir():
        for home in sorted(cluster_dir.glob(f"{NODE_PREFIX}*")):
            found += [p for p in (home / KEY_FILE, home / CONFIG_FILE) if p.exists()]
    return found


def init_cluster(
    cluster_dir: str | Path,
    nodes: int,
    base_port: int = DEFAULT_BASE_PORT,
    open_admission: bool = False,
    host: str | None = None,
    advertise: str | None = None,
) -> Genesis:
    """Write a new chain's genesis, registrar key and one validator home per node.

    Node I listens on `host` (default 127.0.0.1) port `base_port + I` and peers with every
    other validator. With `advertise` (a URL template such as "http://node-{i}:8800"), the
    validators' URLs come from the template and every node listens on `base_port` on all
    interfaces (default host 0.0.0.0), as containers on their own hosts do. Refuses to
    overwrite an existing cluster's keys or genesis.
    """
    cluster_dir = Path(cluster_dir).resolve()
    if not 1 <= nodes <= MAX_VALIDATORS:
        raise ClusterError(f"a cluster has 1..{MAX_VALIDATORS} nodes, not {nodes}")
    last_port = base_port if advertise else base_port + nodes - 1
    if base_port < 1 or last_port > 65535:
        raise ClusterError(f"ports {base_port}..{last_port} are outside 1..65535")
    existing = _existing_cluster_files(cluster_dir)
    if existing:
        raise ClusterExists(
            f"{cluster_dir} already holds a cluster ({existing[0].name} exists); "
            "refusing to overwrite its keys: choose another directory or remove it"
        )
    if host is None:
        host = "0.0.0.0" if advertise else "127.0.0.1"
    ports = [base_port if advertise else base_port + i for i in range(nodes)]
    if advertise:
        urls = [_advertised(advertise, i, ports[i]) for i in range(nodes)]
    else:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
    if len(set(urls)) != nodes:
        raise ClusterError("every node needs its own URL: put {i} in the --advertise template")

    cluster_dir.mkdir(parents=True, exist_ok=True)
    registrar = PrivateKey.generate()
    registrar.save(cluster_dir / REGISTRAR_FILE)
    keys = [PrivateKey.generate() for _ in range(nodes)]
    validators = ValidatorSet(
        tuple(
            Validator(name=f"{NODE_PREFIX}{i}", public_key=key.public_key, power=1, url=urls[i])
            for i, key in enumerate(keys)
        )
    )
    genesis = Genesis(
        chain_id=f"provledger-{secrets.token_hex(4)}",
        genesis_time=now_ms(),
        validators=validators,
        registrars=(registrar.public_key,),
        admission=OPEN if open_admission else PERMISSIONED,
    )
    for i, key in enumerate(keys):
        home = node_home(cluster_dir, i)
        home.mkdir(parents=True, exist_ok=True)
        key.save(home / KEY_FILE)
        settings = NodeSettings(
            home=home,
            name=f"{NODE_PREFIX}{i}",
            host=host,
            port=ports[i],
            peers=tuple(url for j, url in enumerate(urls) if j != i),
        )
        settings.save()
        genesis.save(settings.genesis_path)
    genesis.save(cluster_dir / GENESIS_FILE)
    return genesis


def init_full_node(
    home: str | Path,
    genesis_path: str | Path,
    peers: Sequence[str],
    port: int = DEFAULT_BASE_PORT,
    host: str = "127.0.0.1",
    name: str | None = None,
) -> NodeSettings:
    """Write the home of a full node: it follows the chain from `peers` but does not vote."""
    home = Path(home).resolve()
    if not peers:
        raise ClusterError("a full node needs at least one peer URL to follow")
    if not 1 <= port <= 65535:
        raise ClusterError(f"port {port} is outside 1..65535")
    try:
        genesis = Genesis.load(genesis_path)
    except Malformed as exc:
        raise ClusterError(str(exc)) from exc
    existing = [p for p in (home / CONFIG_FILE, home / GENESIS_FILE, home / KEY_FILE) if p.exists()]
    if existing:
        raise ClusterExists(f"{home} is already a node home ({existing[0].name} exists)")
    settings = NodeSettings(
        home=home,
        name=name or home.name,
        host=host,
        port=port,
        peers=tuple(peer.rstrip("/") for peer in peers),
    )
    settings.save()
    genesis.save(settings.genesis_path)
    return settings


def load_settings(home: Path) -> NodeSettings:
    try:
        return NodeSettings.load(home)
    except Malformed as exc:
        raise ClusterError(str(exc)) from exc


def cluster_homes(cluster_dir: str | Path) -> list[Path]:
    """The node homes of a cluster directory (`node-I/` with a config), in index order."""
    cluster_dir = Path(cluster_dir).resolve()
    homes = []
    for path in cluster_dir.glob(f"{NODE_PREFIX}*"):
        suffix = path.name.removeprefix(NODE_PREFIX)
        if suffix.isdigit() and (path / CONFIG_FILE).exists():
            homes.append((int(suffix), path))
    return [path for _, path in sorted(homes)]
