"""The genesis document: chain id, validators, registrars, admission mode and the chain's
consensus parameters.

Genesis is the only thing a verifier has to trust. Its canonical hash is the `prev` of
block 1, so every header chain is bound to one genesis. The consensus parameters (block
limits, the event time window, proposer-based timestamp bounds, timeouts) live here rather
than in each node's settings, so that every validator judges a block by the chain and the
block alone (docs/PROTOCOL.md §8.6).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ledger import codec, crypto
from ledger.blocks import Validator, ValidatorSet
from ledger.errors import Malformed

PERMISSIONED = "permissioned"
OPEN = "open"
ADMISSION_MODES = (PERMISSIONED, OPEN)
MAX_CHAIN_ID = 64
# Bounds of the parameters themselves: a block must fit a peer message (16 MiB) with its
# framing, and its event list a canonical array (65536 items).
MAX_BLOCK_EVENTS = 65_536
MAX_BLOCK_BYTES = 12 << 20
MAX_PARAM_MS = 24 * 3_600_000


@dataclass(frozen=True)
class ChainParams:
    """Consensus parameters every validator of a chain shares (docs/PROTOCOL.md §8.6)."""

    block_max_events: int = 4_000
    block_max_bytes: int = 8 << 20
    time_window_ms: int = 600_000
    time_precision_ms: int = 1_000
    message_delay_ms: int = 5_000
    timeout_propose_ms: int = 1_000
    timeout_propose_delta_ms: int = 500
    timeout_vote_ms: int = 500
    timeout_vote_delta_ms: int = 500

    def __post_init__(self) -> None:
        limits = {"block_max_events": MAX_BLOCK_EVENTS, "block_max_bytes": MAX_BLOCK_BYTES}
        for name, value in asdict(self).items():
            high = limits.get(name, MAX_PARAM_MS)
            low = 0 if name.endswith("_delta_ms") else 1
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise Malformed(f"params.{name} must be an integer in {low}..{high}")

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> ChainParams:
        """Missing keys take their defaults; an unknown key is refused (a typo would
        otherwise silently change the chain)."""
        if not isinstance(doc, dict):
            raise Malformed("genesis params is a JSON object")
        unknown = set(doc) - {f.name for f in fields(cls)}
        if unknown:
            raise Malformed(f"unknown genesis params {sorted(unknown)}")
        return cls(**doc)


DEFAULT_PARAMS = ChainParams()


@dataclass(frozen=True)
class Genesis:
    """Everything fixed when a chain starts."""

    chain_id: str
    genesis_time: int
    validators: ValidatorSet
    registrars: tuple[bytes, ...]
    admission: str = PERMISSIONED
    params: ChainParams | None = None

    @property
    def chain_params(self) -> ChainParams:
        """The chain's consensus parameters (the defaults when genesis names none)."""
        return self.params if self.params is not None else DEFAULT_PARAMS

    def __post_init__(self) -> None:
        if not 0 < len(self.chain_id) <= MAX_CHAIN_ID:
            raise Malformed(f"chain_id must be 1..{MAX_CHAIN_ID} characters")
        if self.admission not in ADMISSION_MODES:
            raise Malformed(f"admission must be one of {ADMISSION_MODES}")
        if not self.registrars:
            raise Malformed("genesis names at least one registrar")

    @property
    def is_open(self) -> bool:
        return self.admission == OPEN

    def hash(self) -> bytes:
        """SHA-256 of the canonical genesis map: the `prev` of block 1. A genesis that names
        its params commits to all of them; one without keeps the hash it always had."""
        doc: dict[str, Any] = {
            "admission": self.admission,
            "chain_id": self.chain_id,
            "genesis_time": self.genesis_time,
            "registrars": list(self.registrars),
            "validators": self.validators.hash(),
        }
        if self.params is not None:
            doc["params"] = self.params.to_json()
        return crypto.sha256(codec.encode(doc))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "chain_id": self.chain_id,
            "genesis_time": self.genesis_time,
            "validators": [v.to_json() for v in self.validators.validators],
            "registrars": [r.hex() for r in self.registrars],
            "admission": self.admission,
        }
        if self.params is not None:
            doc["params"] = self.params.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Genesis:
        if not isinstance(doc, dict):
            raise Malformed("genesis is a JSON object")
        try:
            validators = ValidatorSet(tuple(Validator.from_json(v) for v in doc["validators"]))
            registrars = tuple(crypto.check_public_key(bytes.fromhex(r)) for r in doc["registrars"])
            chain_id = doc["chain_id"]
            genesis_time = doc.get("genesis_time", 0)
            admission = doc.get("admission", PERMISSIONED)
            params = ChainParams.from_json(doc["params"]) if "params" in doc else None
        except (KeyError, TypeError, ValueError) as exc:
            raise Malformed(f"bad genesis document: {exc}") from exc
        if not isinstance(chain_id, str):
            raise Malformed("genesis chain_id is text")
        if (
            not isinstance(genesis_time, int)
            or isinstance(genesis_time, bool)
            or not 0 <= genesis_time < 1 << 63
        ):
            raise Malformed("genesis_time is a non-negative 64-bit integer (Unix ms)")
        return cls(chain_id, genesis_time, validators, registrars, admission, params)

    @classmethod
    def load(cls, path: str | Path) -> Genesis:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise Malformed(f"cannot read genesis file {path}: {exc}") from exc
        return cls.from_json(doc)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")
