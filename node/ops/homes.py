"""Node homes and cluster directories on disk: create them, find them.

A cluster directory holds `genesis.json`, `registrar.pem` and one home `node-I/` per
validator (key, config, genesis copy, data, `node.pid`, `node.log`); a full node's home
holds the same with a peer key (`peer_key.pem`) instead of a validator key.

Every node has two ports: the public API and the peer protocol (`p2p_listen`). A genesis
validator's `url` is its peer URL; nodes peer with each other's peer URLs, and the peer
protocol admits only the validators' keys and the full-node keys listed in `peer_keys`.

A TLS cluster (`tls=True`, docs/PROTOCOL.md §18) also holds its CA, `ca.pem` and
`ca_key.pem` (`node.ops.tls`), and every home a certificate for its node key; the validators'
URLs are then `https://`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ledger.blocks import MAX_VALIDATORS, Validator, ValidatorSet
from ledger.crypto import PrivateKey
from ledger.errors import Malformed
from ledger.genesis import OPEN, PERMISSIONED, ChainParams, Genesis
from node.clock import now_ms
from node.config import CONFIG_FILE, GENESIS_FILE, KEY_FILE, P2P_PORT_OFFSET, NodeSettings
from node.ops.tls import CA_FILE, CA_KEY_FILE, CertificateAuthority, TlsSetupError, certify_home

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


def _url(host: str, port: int, scheme: str = "http") -> str:
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def local_url(settings: NodeSettings) -> str:
    """The URL this machine uses to reach a node (a wildcard bind is reached via loopback)."""
    return _url(settings.host, settings.port, settings.scheme)


def local_peer_url(settings: NodeSettings) -> str:
    """The URL this machine uses to reach a node's peer listener."""
    return _url(*settings.p2p_address, settings.scheme)


def cluster_ca(cluster_dir: str | Path) -> Path | None:
    """The CA certificate of a TLS cluster directory (what its clients trust), if any."""
    path = Path(cluster_dir) / CA_FILE
    return path if path.is_file() else None


def _with_port(url: str, port: int) -> str:
    """`url` with its port replaced (the peer URL of an advertised public URL)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit(parts._replace(netloc=f"{host}:{port}")).rstrip("/")


def _advertised(template: str, index: int, port: int) -> str:
    try:
        url = template.format(i=index, port=port)
    except (KeyError, IndexError, ValueError) as exc:
        raise ClusterError(
            f"bad --advertise template {template!r}: use {{i}} for the node index ({exc})"
        ) from exc
    return url.rstrip("/")


def _existing_cluster_files(cluster_dir: Path) -> list[Path]:
    top = (GENESIS_FILE, REGISTRAR_FILE, CA_FILE, CA_KEY_FILE)
    found = [cluster_dir / name for name in top if (cluster_dir / name).exists()]
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
    tls: bool = False,
) -> Genesis:
    """Write a new chain's genesis, registrar key and one validator home per node.

    Node I listens on `host` (default 127.0.0.1) port `base_port + I` for the public API and
    `base_port + nodes + I` for peers, and peers with every other validator. With `advertise`
    (a URL template such as "http://node-{i}:8800", the public URL), every node listens on
    `base_port` (API) and `base_port + P2P_PORT_OFFSET` (peers) on all interfaces (default
    host 0.0.0.0), as containers on their own hosts do; a validator's peer URL is the
    advertised URL with the peer port. Genesis names the default chain params explicitly.
    With `tls`, a new CA (`ca.pem`, `ca_key.pem`) certifies every node's key for its host
    names (loopback, and the advertised host), every node serves HTTPS, and the validator URLs
    are `https://` (an `--advertise` template must then be https). Refuses to overwrite an
    existing cluster's keys or genesis.
    """
    cluster_dir = Path(cluster_dir).resolve()
    if not 1 <= nodes <= MAX_VALIDATORS:
        raise ClusterError(f"a cluster has 1..{MAX_VALIDATORS} nodes, not {nodes}")
    last_port = base_port + P2P_PORT_OFFSET if advertise else base_port + 2 * nodes - 1
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
    p2p_ports = [
        base_port + P2P_PORT_OFFSET if advertise else base_port + nodes + i for i in range(nodes)
    ]
    scheme = "https" if tls else "http"
    if advertise:
        public = [_advertised(advertise, i, ports[i]) for i in range(nodes)]
        urls = [_with_port(url, p2p_ports[i]) for i, url in enumerate(public)]
        if tls and not all(url.lower().startswith("https://") for url in public):
            raise ClusterError(
                f"with TLS the --advertise template must be https://, not {advertise!r}"
            )
    else:
        urls = [f"{scheme}://127.0.0.1:{port}" for port in p2p_ports]
    if len(set(urls)) != nodes:
        raise ClusterError("every node needs its own URL: put {i} in the --advertise template")

    cluster_dir.mkdir(parents=True, exist_ok=True)
    authority = None
    if tls:
        authority = CertificateAuthority.create(f"provledger cluster CA ({cluster_dir.name})")
        try:
            authority.save(cluster_dir)
        except TlsSetupError as exc:
            raise ClusterExists(str(exc)) from exc
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
        params=ChainParams(),
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
            p2p_listen=f"{host}:{p2p_ports[i]}",
            peers=tuple(url for j, url in enumerate(urls) if j != i),
        )
        if authority is not None:
            advertised = urlsplit(urls[i]).hostname
            extra = () if advertise is None or advertised is None else (advertised,)
            settings = certify_home(
                authority, cluster_dir / CA_FILE, settings, key.public_key, extra
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
    p2p_port: int | None = None,
    key: PrivateKey | None = None,
) -> NodeSettings:
    """Write the home of a full node: it follows the chain from `peers` (their peer URLs) and
    votes only once governance makes its key a validator. Its node key (`key`, or a new one)
    is written here; the validators answer it on the peer port once its key is in their
    `peer_keys` or named by an open add-validator proposal (docs/PROTOCOL.md §19). It listens
    for peers on `p2p_port` (default `port + 100`)."""
    home = Path(home).resolve()
    if not peers:
        raise ClusterError("a full node needs at least one peer URL to follow")
    if not 1 <= port <= 65535 - P2P_PORT_OFFSET:
        raise ClusterError(f"port {port} is outside 1..{65535 - P2P_PORT_OFFSET}")
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
        p2p_listen="" if p2p_port is None else f"{host}:{p2p_port}",
    )
    settings.save()
    genesis.save(settings.genesis_path)
    (key or PrivateKey.generate()).save(settings.key_path)
    return settings


def certify_node(home: str | Path, ca_dir: str | Path, hosts: Sequence[str] = ()) -> NodeSettings:
    """Give an existing home (a full node's, typically: one that joins a TLS chain after
    `cluster init --tls`) a certificate for its identity key from the cluster CA in `ca_dir`,
    for its own addresses and `hosts` (the host of the peer URL it will be proposed with),
    and turn TLS on in its settings (saved). An existing certificate is replaced: the CA
    decides, and the key stays the same."""
    settings = load_settings(Path(home).resolve())
    if not settings.identity_key_path.exists():
        raise ClusterError(
            f"{settings.home} has no identity key yet ({settings.identity_key_path.name}): "
            "make the home with `provledger node init`"
        )
    ca = Path(ca_dir)
    try:
        authority = CertificateAuthority.load(ca)
        settings = certify_home(authority, ca / CA_FILE, settings, peer_public_key(settings), hosts)
    except TlsSetupError as exc:
        raise ClusterError(str(exc)) from exc
    settings.save()
    return settings


def peer_public_key(settings: NodeSettings) -> bytes:
    """The key a node signs its peer requests with (validator key, or full-node peer key)."""
    return PrivateKey.load(settings.identity_key_path).public_key


def allow_peer(home: str | Path, public_key: bytes) -> NodeSettings:
    """Add a full node's key to a node's `peer_keys` (takes effect when it restarts)."""
    settings = load_settings(Path(home).resolve())
    text = public_key.hex()
    if text not in settings.peer_keys:
        settings = replace(settings, peer_keys=(*settings.peer_keys, text))
        settings.save()
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
