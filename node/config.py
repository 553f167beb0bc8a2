"""Node settings and the on-disk layout of a node's home directory.

A home holds `config.json` (these settings), `genesis.json`, the validator key
`node_key.pem` (absent for a full node that only follows), the signer's last-signed state
`signer_state.bin`, and the LevelDB store under `data/`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ledger.errors import Malformed

CONFIG_FILE = "config.json"
GENESIS_FILE = "genesis.json"
KEY_FILE = "node_key.pem"
SIGNER_STATE_FILE = "signer_state.bin"
DATA_DIR = "data"
PID_FILE = "node.pid"
LOG_FILE = "node.log"


@dataclass(frozen=True)
class NodeSettings:
    """Everything one node needs to run; loaded from `HOME/config.json`."""

    home: Path
    name: str = "node"
    host: str = "127.0.0.1"
    port: int = 8800
    peers: tuple[str, ...] = ()
    mempool_max_events: int = 50_000
    mempool_max_bytes: int = 64 * 1024 * 1024
    block_max_events: int = 4_000
    block_max_bytes: int = 8 * 1024 * 1024
    idle_block_interval_ms: int = 5_000
    timeout_propose_ms: int = 1_000
    timeout_propose_delta_ms: int = 500
    timeout_vote_ms: int = 500
    timeout_vote_delta_ms: int = 500
    gossip_interval_ms: int = 20
    retransmit_interval_ms: int = 500
    sync_interval_ms: int = 500
    time_window_ms: int = 10 * 60 * 1000
    max_body_bytes: int = 1 << 20
    peer_queue_limit: int = 10_000
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
    def is_validator(self) -> bool:
        return self.key_path.exists()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("home")
        doc["peers"] = list(self.peers)
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
        known = {f.name for f in fields(cls)} - {"home"}
        unknown = set(doc) - known
        if unknown:
            raise Malformed(f"{path}: unknown settings {sorted(unknown)}")
        doc["peers"] = tuple(doc.get("peers", ()))
        return replace(cls(home=home, **doc), **overrides)
