"""The container entry point: make a node home from the environment and mounts, then run it.

`python -m node.ops.container start` (what docker/entrypoint.sh runs) prepares the home on
the node's volume and replaces itself with `python -m node.server --home HOME`;
`... render` only prepares it. In Kubernetes (docker/k8s/) the volume is the StatefulSet's
PersistentVolumeClaim and holds the store, the signer state and `node_key.pem` together;
genesis comes from a ConfigMap and the key from a Secret.

Preparing a home:

1. genesis: the mounted genesis is copied in; a home that already holds another chain's
   genesis is refused (its store belongs to that chain).
2. key: copied from the mounted Secret on first start only, written with mode 0600. A key
   already in the home is never overwritten; if the Secret holds a different key the start
   is refused, since the home's signer state belongs to the home's key. A validator
   (`PROVLEDGER_ROLE=validator`) needs a key that genesis names: a missing Secret must not
   quietly turn it into a full node, nor a wrong one make it a stranger. A full node
   (`PROVLEDGER_ROLE=full`) may have a key or not. With one, it is the node of an
   organisation that joins later: it follows, and votes from the height at which governance
   adds its key (docs/PROTOCOL.md §19), with no restart and no change to the manifest; a
   genesis validator's key is refused there, since two pods signing with one key would
   equivocate. Without one, it only follows and makes its own peer key on first start
   (`peer_key.pem`, logged), which the validators must list in their peer keys.
3. the signer state and the store are never touched.
4. `config.json` is rendered anew on every start from the environment (below), so a changed
   manifest takes effect on restart.

Environment (all optional except `PROVLEDGER_NAME`):

| variable | default | meaning |
|---|---|---|
| `PROVLEDGER_NAME` | | node name (logs, `/v1/status`) |
| `PROVLEDGER_ROLE` | `validator` | `validator`, or `full` (with a key not in genesis, or none) |
| `PROVLEDGER_HOME` | `/node` | the home (the mounted volume) |
| `PROVLEDGER_GENESIS` | `/etc/provledger/genesis/genesis.json` | mounted genesis |
| `PROVLEDGER_KEY` | `/etc/provledger/key/node_key.pem` | mounted key (a full node's optional) |
| `PROVLEDGER_HOST` | `0.0.0.0` | listen address |
| `PROVLEDGER_PORT` | `8800` | public API port |
| `PROVLEDGER_P2P_PORT` | `8900` | peer listener port (`p2p_listen` = host:port) |
| `PROVLEDGER_ADVERTISE` | | this node's peer URL; a validator's must equal its genesis URL |
| `PROVLEDGER_PEERS` | every other genesis validator | peer URLs, separated by commas or spaces |
| `PROVLEDGER_PEER_KEYS` | none | full nodes' keys (hex) let in besides validators (1) |
| `PROVLEDGER_SETTINGS` | `{}` | JSON object of further `config.json` settings |

(1) the setting `peer_keys`, which `PROVLEDGER_SETTINGS` may give instead (not both).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ledger.crypto import PrivateKey
from ledger.errors import LedgerError, Malformed
from ledger.genesis import Genesis
from node.config import NodeSettings, parse_peer_key
from node.ops.homes import local_url

DEFAULT_HOME = "/node"
DEFAULT_GENESIS = "/etc/provledger/genesis/genesis.json"
DEFAULT_KEY = "/etc/provledger/key/node_key.pem"
DEFAULT_HOST = "0.0.0.0"
API_PORT = 8800
P2P_PORT = 8900
VALIDATOR = "validator"
FULL = "full"
VARIABLES = (
    "PROVLEDGER_NAME",
    "PROVLEDGER_ROLE",
    "PROVLEDGER_HOME",
    "PROVLEDGER_GENESIS",
    "PROVLEDGER_KEY",
    "PROVLEDGER_HOST",
    "PROVLEDGER_PORT",
    "PROVLEDGER_P2P_PORT",
    "PROVLEDGER_ADVERTISE",
    "PROVLEDGER_PEERS",
    "PROVLEDGER_PEER_KEYS",
    "PROVLEDGER_SETTINGS",
)
# Settings the environment variables own: PROVLEDGER_SETTINGS may not set them too.
RENDERED = frozenset({"name", "host", "port", "peers", "p2p_listen"})


class ContainerError(Exception):
    """The environment or the mounts cannot make a safe node home; the node does not start."""


@dataclass(frozen=True)
class ContainerEnv:
    """What the entry point reads from the environment."""

    name: str
    role: str
    home: Path
    genesis: Path
    key: Path
    host: str
    port: int
    p2p_port: int
    advertise: str | None
    peers: tuple[str, ...] | None
    peer_keys: tuple[str, ...] | None
    settings: dict[str, Any]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ContainerEnv:
        name = environ.get("PROVLEDGER_NAME", "").strip()
        if not name:
            raise ContainerError("PROVLEDGER_NAME is required (the node's name)")
        peers = environ.get("PROVLEDGER_PEERS")
        advertise = environ.get("PROVLEDGER_ADVERTISE", "").strip().rstrip("/")
        role = environ.get("PROVLEDGER_ROLE", VALIDATOR)
        if role not in (VALIDATOR, FULL):
            raise ContainerError(f"PROVLEDGER_ROLE={role!r}: use {VALIDATOR} or {FULL}")
        settings = _settings(environ.get("PROVLEDGER_SETTINGS", "{}"))
        variable = environ.get("PROVLEDGER_PEER_KEYS")
        listed: list[str] | None = None if variable is None else variable.replace(",", " ").split()
        if "peer_keys" in settings:
            if listed is not None:
                raise ContainerError(
                    "peer keys are set twice, by PROVLEDGER_PEER_KEYS and in "
                    "PROVLEDGER_SETTINGS: keep one"
                )
            listed = settings.pop("peer_keys")
            if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
                raise ContainerError("PROVLEDGER_SETTINGS: peer_keys is a list of hex keys")
        return cls(
            name=name,
            role=role,
            home=Path(environ.get("PROVLEDGER_HOME", DEFAULT_HOME)),
            genesis=Path(environ.get("PROVLEDGER_GENESIS", DEFAULT_GENESIS)),
            key=Path(environ.get("PROVLEDGER_KEY", DEFAULT_KEY)),
            host=environ.get("PROVLEDGER_HOST", DEFAULT_HOST),
            port=_port(environ, "PROVLEDGER_PORT", API_PORT),
            p2p_port=_port(environ, "PROVLEDGER_P2P_PORT", P2P_PORT),
            advertise=advertise or None,
            peers=None if peers is None else _urls(peers),
            peer_keys=None if listed is None else _public_keys(listed),
            settings=settings,
        )


def _port(environ: Mapping[str, str], variable: str, default: int) -> int:
    raw = environ.get(variable, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ContainerError(f"{variable}={raw!r} is not a port (1..65535)")
    return int(raw)


def _urls(raw: str) -> tuple[str, ...]:
    urls = tuple(u.rstrip("/") for u in raw.replace(",", " ").split())
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise ContainerError(f"PROVLEDGER_PEERS: {bad[0]!r} is not an http(s) URL")
    return urls


def _public_keys(listed: Iterable[str]) -> tuple[str, ...]:
    keys = tuple(dict.fromkeys(k.lower() for k in listed))
    for key in keys:
        try:
            parse_peer_key(key)
        except Malformed as exc:
            raise ContainerError(f"PROVLEDGER_PEER_KEYS: {exc}") from None
    return keys


def _settings(raw: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ContainerError(f"PROVLEDGER_SETTINGS is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ContainerError("PROVLEDGER_SETTINGS must be a JSON object")
    known = {f.name for f in fields(NodeSettings)} - {"home", "extra"}
    unknown = sorted(set(doc) - known)
    owned = sorted(set(doc) & RENDERED)
    if unknown or owned:
        raise ContainerError(
            f"PROVLEDGER_SETTINGS: unknown {unknown} or set by other variables {owned}"
        )
    return doc


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` (mode 0600) with `data`, durably: temp file, fsync, rename, fsync dir."""
    temp = path.with_name(path.name + ".tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ContainerError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _parse_key(pem: bytes, path: Path, what: str) -> PrivateKey:
    try:
        return PrivateKey.from_pem(pem)
    except LedgerError as exc:
        raise ContainerError(f"{what} {path}: {exc}") from exc


@dataclass(frozen=True)
class _Mounted:
    """A mounted file's bytes, read once, and where in the home they go: what was checked
    is what gets written."""

    path: Path
    data: bytes


def check_genesis(env: ContainerEnv, home: NodeSettings) -> tuple[Genesis, _Mounted | None]:
    """The mounted genesis, refused if the home holds another chain's; with its bytes to
    write when the home has none yet (written by `prepare_home` once everything passed)."""
    raw = _read(env.genesis, "genesis")
    try:
        genesis = Genesis.from_json(json.loads(raw))
    except (ValueError, LedgerError) as exc:
        raise ContainerError(f"genesis {env.genesis}: {exc}") from exc
    if not home.genesis_path.exists():
        return genesis, _Mounted(home.genesis_path, raw)
    try:
        present = Genesis.load(home.genesis_path).hash()
    except LedgerError as exc:
        raise ContainerError(f"{home.genesis_path}: {exc}") from exc
    if present != genesis.hash():
        raise ContainerError(
            f"{home.home} belongs to another chain (its genesis differs from {env.genesis}); "
            "refusing to start a different chain on it"
        )
    return genesis, None


def check_key(
    env: ContainerEnv, home: NodeSettings, genesis: Genesis
) -> tuple[PrivateKey | None, _Mounted | None]:
    """The node's key: the home's, or else the Secret's (with its bytes, to copy into the home
    on first start); never a replacement for a key in the home. Refuses what is unsafe."""
    mounted = _Mounted(home.key_path, _read(env.key, "node key")) if env.key.exists() else None
    mounted_key = None if mounted is None else _parse_key(mounted.data, env.key, "node key")
    to_write = None
    if home.key_path.exists():
        key = _parse_key(_read(home.key_path, "node key"), home.key_path, "node key")
        if mounted_key is not None and mounted_key.public_key != key.public_key:
            raise ContainerError(
                f"the key in {home.key_path} differs from the mounted {env.key}; the home's "
                "signer state belongs to its own key, so it is kept and the node does not "
                "start: restore the original Secret or use a new volume"
            )
    elif mounted_key is not None:
        key, to_write = mounted_key, mounted
    elif env.role == FULL:
        if env.settings.get("tls_cert") and not env.settings.get("tls_key"):
            raise ContainerError(
                f"a full node serving TLS needs its key (the certificate is for it): none at "
                f"{env.key} (the Secret) nor in {home.home}"
            )
        return None, None
    else:
        raise ContainerError(
            f"a validator needs its key: none at {env.key} (the Secret) nor in {home.home}"
        )
    in_genesis = genesis.validators.get(key.public_key) is not None
    if env.role == VALIDATOR and not in_genesis:
        raise ContainerError(
            f"the node key {key.public_key.hex()} is not a genesis validator (a node that "
            "joins by governance runs with PROVLEDGER_ROLE=full)"
        )
    if env.role == FULL and in_genesis:
        raise ContainerError(
            f"PROVLEDGER_ROLE=full but the node key {key.public_key.hex()} is a genesis "
            "validator's: run it with PROVLEDGER_ROLE=validator (two pods signing with one "
            "key would equivocate)"
        )
    return key, to_write


def peer_urls(env: ContainerEnv, genesis: Genesis, key: PrivateKey | None) -> tuple[str, ...]:
    """The configured peers, or every genesis validator but this node."""
    own_url = None
    validator = None if key is None else genesis.validators.get(key.public_key)
    if validator is not None:
        own_url = validator.url.rstrip("/")
        if env.advertise is not None and env.advertise != own_url:
            raise ContainerError(
                f"PROVLEDGER_ADVERTISE={env.advertise} but genesis gives this validator "
                f"{own_url}: peers would not reach it"
            )
    if env.peers is not None:
        return env.peers
    own = {own_url, env.advertise} - {None}
    return tuple(
        url for url in (v.url.rstrip("/") for v in genesis.validators.validators) if url not in own
    )


def render_settings(env: ContainerEnv, peers: Sequence[str]) -> NodeSettings:
    host = f"[{env.host}]" if ":" in env.host else env.host
    further: dict[str, Any] = dict(env.settings)
    if env.peer_keys is not None:
        further["peer_keys"] = env.peer_keys
    return NodeSettings(
        home=env.home,
        name=env.name,
        host=env.host,
        port=env.port,
        peers=tuple(peers),
        p2p_listen=f"{host}:{env.p2p_port}",
        **further,
    )


@dataclass(frozen=True)
class PreparedHome:
    """A home made ready to start: its settings, the role it runs in and its key (if any)."""

    settings: NodeSettings
    role: str
    key: bytes | None

    def describe(self) -> str:
        """The node's role as the start line prints it."""
        if self.role != FULL:
            return "validator"
        if self.key is None:
            return "full node"
        return f"full node, key {self.key.hex()}: it votes once governance adds it"

    def warnings(self) -> list[str]:
        """What is allowed but likely a mistake: a full node's key missing from the peer keys
        its own manifest lists (the example overlay gives every node the same list)."""
        listed = self.settings.peer_keys
        if self.role != FULL or self.key is None or not listed or self.key.hex() in listed:
            return []
        return [
            f"this node's key {self.key.hex()} is not in PROVLEDGER_PEER_KEYS "
            f"({', '.join(listed)}): the validators answer it only if their list has it or an "
            "open add-validator proposal names it"
        ]


def prepare(environ: Mapping[str, str]) -> PreparedHome:
    """Make the node home described by `environ` (settings saved)."""
    env = ContainerEnv.from_environ(environ)
    placeholder = NodeSettings(home=env.home)
    genesis, new_genesis = check_genesis(env, placeholder)
    key, new_key = check_key(env, placeholder, genesis)
    settings = render_settings(env, peer_urls(env, genesis, key))
    # Everything passed: only now is anything written.
    env.home.mkdir(parents=True, exist_ok=True)
    for mounted in (new_genesis, new_key):
        if mounted is not None:
            _write_private(mounted.path, mounted.data)
    settings.save()
    return PreparedHome(settings, env.role, None if key is None else key.public_key)


def prepare_home(environ: Mapping[str, str]) -> NodeSettings:
    """Make the node home described by `environ`; return its settings (saved)."""
    return prepare(environ).settings


def healthy(environ: Mapping[str, str]) -> bool:
    """The image's HEALTHCHECK: the node in this container answers `/healthz`, over HTTPS when
    its home's config serves TLS. The check talks to itself on loopback and sends nothing
    secret, so it does not verify the certificate (the probes of Kubernetes do not either)."""
    home = Path(environ.get("PROVLEDGER_HOME", DEFAULT_HOME))
    try:
        settings = NodeSettings.load(home)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(
            f"{local_url(settings)}/healthz", timeout=3, context=context
        ) as response:
            return bool(response.status == 200)
    except (OSError, LedgerError, ValueError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or ["start"]
    if args == ["health"]:
        return 0 if healthy(os.environ) else 1
    if args not in (["start"], ["render"]):
        print("usage: python -m node.ops.container [start|render|health]", file=sys.stderr)
        return 2
    try:
        prepared = prepare(os.environ)
    except (ContainerError, OSError) as exc:
        print(f"provledger: cannot prepare the node home: {exc}", file=sys.stderr)
        return 1
    settings = prepared.settings
    print(
        f"provledger: {settings.name} ({prepared.describe()}) home {settings.home}, "
        f"peers {list(settings.peers)}"
    )
    for warning in prepared.warnings():
        print(f"provledger: warning: {warning}", file=sys.stderr)
    if args == ["render"]:
        return 0
    sys.stdout.flush()
    command = [sys.executable, "-m", "node.server", "--home", str(settings.home)]
    os.execv(sys.executable, command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
