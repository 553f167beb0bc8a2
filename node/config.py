"""Node settings and the on-disk layout of a node's home directory.

A home holds `config.json` (these settings), `genesis.json`, the validator key
`node_key.pem` (absent for a full node that only follows; a full node has `peer_key.pem`
instead, its identity on the peer protocol), the signer's last-signed state
`signer_state.bin`, the LevelDB store under `data/` and the evidence file `evidence.bin`.

The node serves its public API on `host:port` and the peer protocol on `p2p_listen`
(docs/PROTOCOL.md §15), both over HTTPS when `tls_cert` names a certificate (§18): its key is
`tls_key`, by default the node's identity key, and `tls_ca` is the CA bundle peers'
certificates are verified against. Plain HTTP is for loopback development:
`plain_http_warnings` says which listeners are bound in clear text elsewhere.

Block limits, the event time window and the consensus timeouts are not node settings: they
are the chain's, in genesis (§8.6); the old names are still accepted in `config.json` and
ignored.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ledger.crypto import check_public_key
from ledger.errors import Malformed


def parse_peer_key(text: str) -> bytes:
    """One entry of `peer_keys`: a compressed P-256 public key in hex; Malformed if not."""
    try:
        return check_public_key(bytes.fromhex(text))
    except (ValueError, Malformed) as exc:
        raise Malformed(
            f"peer_keys: {text!r} is not a public key (66 hex digits, compressed)"
        ) from exc


CONFIG_FILE = "config.json"
GENESIS_FILE = "genesis.json"
KEY_FILE = "node_key.pem"
SIGNER_STATE_FILE = "signer_state.bin"
DATA_DIR = "data"
PID_FILE = "node.pid"
LOG_FILE = "node.log"
PEER_KEY_FILE = "peer_key.pem"
EVIDENCE_FILE = "evidence.bin"
# Without `p2p_listen`, the peer protocol listens on the API host at this offset from `port`.
P2P_PORT_OFFSET = 100
# The largest `min_block_interval_ms` a node accepts: it delays every loaded height, and must
# stay well under the propose timeout (1 s by default) so that peers do not give up on it.
MAX_MIN_BLOCK_INTERVAL_MS = 500
# Settings that moved into genesis params (docs/PROTOCOL.md §8.6): accepted, ignored.
RETIRED_SETTINGS = frozenset(
    {
        "block_max_events",
        "block_max_bytes",
        "time_window_ms",
        "timeout_propose_ms",
        "timeout_propose_delta_ms",
        "timeout_vote_ms",
        "timeout_vote_delta_ms",
    }
)


@dataclass(frozen=True)
class NodeSettings:
    """Everything one node needs to run; loaded from `HOME/config.json`."""

    home: Path
    name: str = "node"
    host: str = "127.0.0.1"
    port: int = 8800
    peers: tuple[str, ...] = ()
    # "HOST:PORT" of the peer protocol ("" = the API host, port + P2P_PORT_OFFSET).
    p2p_listen: str = ""
    # Public keys (hex) of full nodes allowed on the peer protocol besides the validators.
    peer_keys: tuple[str, ...] = ()
    mempool_max_events: int = 50_000
    mempool_max_bytes: int = 64 * 1024 * 1024
    idle_block_interval_ms: int = 5_000
    # A height that begins with events pending waits this long before its first round, so
    # that under load its block gathers what arrives meanwhile (docs/PROTOCOL.md §7.9).
    min_block_interval_ms: int = 100
    gossip_interval_ms: int = 20
    retransmit_interval_ms: int = 500
    sync_interval_ms: int = 500
    max_body_bytes: int = 1 << 20
    peer_queue_limit: int = 10_000
    # Concurrent requests (and connections) each listener serves; beyond, 503 at once.
    max_public_requests: int = 256
    max_peer_requests: int = 256
    # Seconds a client may take to send a request's headers, and its body.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    # Benchmarks only (`scripts/bench cluster` sets it on every node of its own throwaway
    # cluster): the node keeps no state map and its headers carry an empty state_root. A
    # chain must not mix nodes with and without it (their headers disagree); a store built
    # with the map refuses to open without it.
    bench_without_state_map: bool = False
    # TLS (docs/PROTOCOL.md §18); paths relative to the home. With `tls_cert` (a PEM
    # certificate, chain after it), both listeners serve HTTPS with `tls_key` (default: the
    # identity key, node_key.pem or peer_key.pem). `tls_ca`: the PEM CA bundle that `https://`
    # peers' certificates must chain to ("" = a genesis validator is pinned to its key only).
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE

    @property
    def genesis_path(self) -> Path:
        return self.home / GENESIS_FILE

    @property
    def key_path(self) -> Path:
        return self.home / KEY_FILE

    @property
    def signer_state_path(self) -> Path:
        return self.home / SIGNER_STATE_FILE

    @property
    def data_path(self) -> Path:
        return self.home / DATA_DIR

    @property
    def pid_path(self) -> Path:
        return self.home / PID_FILE

    @property
    def log_path(self) -> Path:
        return self.home / LOG_FILE

    @property
    def peer_key_path(self) -> Path:
        return self.home / PEER_KEY_FILE

    @property
    def identity_key_path(self) -> Path:
        """The key this node signs its peer requests with: the validator key, or a full
        node's peer key."""
        return self.key_path if self.is_validator else self.peer_key_path

    @property
    def evidence_path(self) -> Path:
        return self.home / EVIDENCE_FILE

    @property
    def is_validator(self) -> bool:
        """Whether the home holds a node key: such a node votes at every height whose
        validator set names its key (a full node made by `node init` has one too)."""
        return self.key_path.exists()

    @property
    def tls(self) -> bool:
        """Whether both listeners serve HTTPS."""
        return bool(self.tls_cert)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def tls_cert_path(self) -> Path | None:
        return self.home / self.tls_cert if self.tls_cert else None

    @property
    def tls_key_path(self) -> Path | None:
        """The private key of the served certificate (default: the identity key)."""
        if not self.tls:
            return None
        return self.home / self.tls_key if self.tls_key else self.identity_key_path

    @property
    def tls_ca_path(self) -> Path | None:
        return self.home / self.tls_ca if self.tls_ca else None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def p2p_address(self) -> tuple[str, int]:
        """(host, port) of the peer listener."""
        if not self.p2p_listen:
            return self.host, self.port + P2P_PORT_OFFSET
        host, sep, port = self.p2p_listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise Malformed(f"p2p_listen {self.p2p_listen!r} is not HOST:PORT")
        return host.strip("[]") or self.host, int(port)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("home")
        doc["peers"] = list(self.peers)
        doc["peer_keys"] = list(self.peer_keys)
        return doc

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, home: str | Path, **overrides: Any) -> NodeSettings:
        home = Path(home).resolve()
        path = home / CONFIG_FILE
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise Malformed(f"cannot read node config {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise Malformed(f"{path}: the node config is a JSON object")
        known = {f.name for f in fields(cls)} - {"home"}
        unknown = set(doc) - known - RETIRED_SETTINGS
        if unknown:
            raise Malformed(f"{path}: unknown settings {sorted(unknown)}")
        doc = {k: v for k, v in doc.items() if k in known}
        doc["peers"] = tuple(doc.get("peers", ()))
        doc["peer_keys"] = tuple(doc.get("peer_keys", ()))
        settings = replace(cls(home=home, **doc), **overrides)
        interval = settings.min_block_interval_ms
        if type(interval) is not int or not 0 <= interval <= MAX_MIN_BLOCK_INTERVAL_MS:
            raise Malformed(
                f"{path}: min_block_interval_ms must be an integer from 0 to "
                f"{MAX_MIN_BLOCK_INTERVAL_MS}, not {interval!r}"
            )
        if settings.p2p_address[1] == settings.port:
            raise Malformed(f"{path}: p2p_listen must name another port than the API's")
        settings.check_tls_files()
        return settings

    def check_tls_files(self) -> None:
        """Refuse TLS settings that cannot work: a key without a certificate, a missing file."""
        if self.tls_key and not self.tls_cert:
            raise Malformed(f"{self.config_path}: tls_key is set but tls_cert is not")
        names = (("tls_cert", self.tls_cert_path), ("tls_ca", self.tls_ca_path))
        for name, file in names:
            if file is not None and not file.is_file():
                raise Malformed(f"{self.config_path}: {name} {file} is not a file")
        if self.tls_key and self.tls_key_path is not None and not self.tls_key_path.is_file():
            raise Malformed(f"{self.config_path}: tls_key {self.tls_key_path} is not a file")


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is this machine only: 127.0.0.0/8, ::1,
    localhost. A wildcard (0.0.0.0, ::) is not: it listens on every interface."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_http_warnings(settings: NodeSettings) -> list[str]:
    """One warning per listener that serves plain HTTP on an address other than loopback."""
    if settings.tls:
        return []
    listeners = (("public API", (settings.host, settings.port)), ("peer", settings.p2p_address))
    return [
        f"the {what} listener serves plain HTTP on {host or '*'}:{port}, which is not loopback: "
        "anyone on the path can read and alter its traffic; set tls_cert (PROTOCOL §18)"
        for what, (host, port) in listeners
        if not is_loopback(host)
    ]
