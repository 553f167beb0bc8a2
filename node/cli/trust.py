"""Which genesis the command line trusts: the one the user gave, or the one pinned on first
use — like SSH's known_hosts (docs/PROTOCOL.md §12.7).

A genesis is the only thing a verifier trusts (§8.5), so a command never takes it from the
node it talks to without saying so. With `--genesis FILE` that file is the chain. Without it,
the first contact with a node URL pins the genesis that node serves: its copy is kept under
the trust directory, keyed by the node's URL, and the pinning is announced on stderr with the
genesis hash (§8.4) to compare out of band. Later commands use the pinned copy, and refuse a
node that serves another genesis: loudly, whatever it claims.

The trust directory is `$PROVLEDGER_TRUST_DIR`, else `~/.provledger/trust`. It holds
`known_genesis.json` (`{url: {"chain_id", "genesis_hash", "pinned_at"}}`), `genesis/`
with one `<genesis hash>.json` per pinned chain, and `transitions/<genesis hash>.json`: the
validator-set transitions (docs/PROTOCOL.md §19.4) of that chain that a verification walked
from genesis, so that a bundle which leaves them out still verifies.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ledger.errors import Malformed
from ledger.genesis import Genesis
from node.client import ClientError, NodeClient

TRUST_ENV = "PROVLEDGER_TRUST_DIR"
KNOWN_FILE = "known_genesis.json"
GENESIS_DIR = "genesis"
TRANSITIONS_DIR = "transitions"

Source = Literal["file", "pinned", "first-use"]


class TrustError(Exception):
    """The node serves a genesis other than the pinned one, or the pins cannot be used."""


@dataclass(frozen=True)
class Trusted:
    """The genesis a command uses, and where it came from."""

    genesis: Genesis
    source: Source


def trust_dir() -> Path:
    configured = os.environ.get(TRUST_ENV)
    return Path(configured) if configured else Path.home() / ".provledger" / "trust"


def node_key(url: str) -> str:
    """A node URL as pins are keyed: scheme://host:port, lower case, no path."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _read_known(root: Path) -> dict[str, Any]:
    path = root / KNOWN_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise TrustError(f"cannot read the pinned geneses in {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise TrustError(f"{path} is not a JSON object")
    return doc


def pinned(url: str) -> Genesis | None:
    """The genesis pinned for this node URL, if any."""
    root = trust_dir()
    entry = _read_known(root).get(node_key(url))
    if entry is None:
        return None
    try:
        genesis = Genesis.load(root / GENESIS_DIR / f"{entry['genesis_hash']}.json")
    except (Malformed, KeyError, TypeError) as exc:
        raise TrustError(f"the genesis pinned for {node_key(url)} cannot be read: {exc}") from exc
    if genesis.hash().hex() != entry["genesis_hash"]:
        raise TrustError(f"the genesis file pinned for {node_key(url)} was altered")
    return genesis


def pin(url: str, genesis: Genesis) -> Path:
    """Pin `genesis` for this node URL (written atomically); returns the copy's path."""
    root = trust_dir()
    digest = genesis.hash().hex()
    (root / GENESIS_DIR).mkdir(parents=True, exist_ok=True)
    copy = root / GENESIS_DIR / f"{digest}.json"
    genesis.save(copy)
    known = _read_known(root)
    known[node_key(url)] = {
        "chain_id": genesis.chain_id,
        "genesis_hash": digest,
        "pinned_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    temporary = root / f"{KNOWN_FILE}.tmp"
    temporary.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    temporary.replace(root / KNOWN_FILE)
    return copy


def cached_transitions(genesis: Genesis) -> list[Any]:
    """The transitions of this chain a past verification walked (checked again when used)."""
    path = trust_dir() / TRANSITIONS_DIR / f"{genesis.hash().hex()}.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return doc if isinstance(doc, list) else []


def remember_transitions(genesis: Genesis, steps: list[Any]) -> None:
    """Keep `steps` (verified, from genesis on) if they reach further than the cached ones."""
    if len(steps) <= len(cached_transitions(genesis)):
        return
    root = trust_dir() / TRANSITIONS_DIR
    root.mkdir(parents=True, exist_ok=True)
    temporary = root / f"{genesis.hash().hex()}.json.tmp"
    temporary.write_text(json.dumps(steps) + "\n")
    temporary.replace(root / f"{genesis.hash().hex()}.json")


def served(client: NodeClient) -> Genesis:
    """The genesis a node serves (raises ClientError, Malformed)."""
    return Genesis.from_json(client.genesis())


def changed_message(url: str, pinned_genesis: Genesis, other: Genesis) -> str:
    return (
        f"@@@ THE GENESIS SERVED BY {node_key(url)} HAS CHANGED @@@\n"
        f"pinned:  chain {pinned_genesis.chain_id}, genesis hash {pinned_genesis.hash().hex()}\n"
        f"served:  chain {other.chain_id}, genesis hash {other.hash().hex()}\n"
        "This node now claims another chain. Refusing to use it. If the change is expected, "
        f"remove its entry from {trust_dir() / KNOWN_FILE} or pass --genesis FILE."
    )


def pinned_message(url: str, genesis: Genesis, copy: Path) -> str:
    return (
        f"note: PINNED the genesis served by {node_key(url)} on first use: chain "
        f"{genesis.chain_id}, genesis hash {genesis.hash().hex()} (kept in {copy}).\n"
        "Compare this hash with one from a trusted source; from now on a node at this URL "
        "serving any other genesis is refused."
    )


def resolve(client: NodeClient, url: str) -> tuple[Trusted, str | None]:
    """The pinned genesis (checked against what the node serves now), or, on first use, the
    served one, pinned. Returns it with the message to print (None when nothing new);
    raises TrustError on a changed genesis, ClientError/Malformed if it cannot be fetched
    on first use."""
    known = pinned(url)
    if known is not None:
        try:
            now = served(client)
        except (ClientError, Malformed):
            return Trusted(known, "pinned"), None  # the pin is what counts
        if now.hash() != known.hash():
            raise TrustError(changed_message(url, known, now))
        return Trusted(known, "pinned"), None
    genesis = served(client)
    copy = pin(url, genesis)
    return Trusted(genesis, "first-use"), pinned_message(url, genesis, copy)


__all__ = [
    "TRUST_ENV",
    "TrustError",
    "Trusted",
    "node_key",
    "pin",
    "pinned",
    "resolve",
    "served",
    "trust_dir",
]
