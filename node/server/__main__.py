"""`python -m node.server --home DIR`: run the node daemon of one home in the foreground."""

from __future__ import annotations

import argparse
import sys

from ledger.errors import Malformed
from node.config import NodeSettings
from node.server.run import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.server", description=__doc__)
    parser.add_argument("--home", required=True, help="the node's home directory")
    args = parser.parse_args(argv)
    try:
        settings = NodeSettings.load(args.home)
    except Malformed as exc:
        parser.error(str(exc))
    if not settings.genesis_path.exists():
        parser.error(f"{settings.genesis_path} is missing")
    run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
