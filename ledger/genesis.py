"""The genesis document: chain id, validators, registrars and admission mode.

Genesis is the only thing a verifier has to trust. Its canonical hash is the `prev` of
block 1, so every header chain is bound to one genesis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import codec, crypto
from ledger.blocks import Validator, ValidatorSet
from ledger.errors import Malformed

PERMISSIONED = "permissioned"
OPEN = "open"
ADMISSION_MODES = (PERMISSIONED, OPEN)
MAX_CHAIN_ID = 64


@dataclass(frozen=True)
class Genesis:
    """Everything fixed when a chain starts."""

    chain_id: str
    genesis_time: int
    validators: ValidatorSet
    registrars: tuple[bytes, ...]
    admission: str = PERMISSIONED

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
        """SHA-256 of the canonical genesis map: the `prev` of block 1."""
        return crypto.sha256(
            codec.encode(
                {
                    "admission": self.admission,
                    "chain_id": self.chain_id,
                    "genesis_time": self.genesis_time,
                    "registrars": list(self.registrars),
                    "validators": self.validators.hash(),
                }
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_time": self.genesis_time,
            "validators": [v.to_json() for v in self.validators.validators],
            "registrars": [r.hex() for r in self.registrars],
            "admission": self.admission,
        }

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
        return cls(chain_id, genesis_time, validators, registrars, admission)

    @classmethod
    def load(cls, path: str | Path) -> Genesis:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise Malformed(f"cannot read genesis file {path}: {exc}") from exc
        return cls.from_json(doc)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")
