"""`python -m node.server --home DIR [--snapshot FILE | --snapshot-from-peers]`: run the node
daemon of one home in the foreground.

Before the node starts: a home without a store may start from a snapshot (a file, or fetched
from its peers), verified before it is used (docs/PROTOCOL.md §20); a store of an older format
is backed up into HOME/backups/ and upgraded in place, with a progress line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ledger.errors import LedgerError, Malformed
from ledger.genesis import Genesis
from node import homelock
from node.config import NodeSettings
from node.server.backup import upgrade_store
from node.server.run import run
from node.server.snapshot import install_from_file, install_from_peers


def prepare_store(settings: NodeSettings, snapshot: Path | None, from_peers: bool) -> None:
    """Start the store from a snapshot if asked (and it has none), and migrate an older one.
    Holds the home's lock meanwhile (the daemon takes it again, in this same process)."""
    try:
        homelock.acquire(settings.home)  # kept open: the process holds the home from now on
    except homelock.HomeLocked as exc:
        raise SystemExit(f"{settings.name}: {exc}") from exc
    try:
        genesis = Genesis.load(settings.genesis_path)
        header = None
        if snapshot is not None:
            header = install_from_file(settings, snapshot, genesis)
        elif from_peers:
            header = install_from_peers(settings, genesis)
        if header is not None:
            print(
                f"{settings.name}: started from a verified snapshot at height {header.height} "
                f"({header.tree_size} events)",
                file=sys.stderr,
            )
        upgrade_store(settings)
    except (LedgerError, OSError) as exc:
        raise SystemExit(f"{settings.name}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.server", description=__doc__)
    parser.add_argument("--home", required=True, help="the node's home directory")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--snapshot", type=Path, help="start a new store from this snapshot file (verified)"
    )
    source.add_argument(
        "--snapshot-from-peers",
        action="store_true",
        help="start a new store from a snapshot fetched from the configured peers (verified)",
    )
    args = parser.parse_args(argv)
    try:
        settings = NodeSettings.load(args.home)
    except Malformed as exc:
        parser.error(str(exc))
    if not settings.genesis_path.exists():
        parser.error(f"{settings.genesis_path} is missing")
    prepare_store(settings, args.snapshot, args.snapshot_from_peers)
    run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
