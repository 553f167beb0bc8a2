"""`provledger node init|start`: one node's home, and running it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import Malformed
from node.cli.common import (
    load_genesis,
    typer_app,
)
from node.config import NodeSettings
from node.ops.homes import (
    ClusterError,
    ClusterExists,
    init_full_node,
    local_url,
    peer_public_key,
)
from node.ops.processes import daemon_command

app = typer_app("Create and run one node.")


HomeOption = Annotated[
    Path, typer.Option("--home", metavar="DIR", help="The node's home directory.")
]


@app.command("start")
def node_start(home: HomeOption) -> None:
    """Run one node in the foreground (validator if its home holds node_key.pem)."""
    try:
        settings = NodeSettings.load(home)
    except Malformed as exc:
        raise typer.BadParameter(str(exc), param_hint="'--home'") from exc
    if not settings.genesis_path.exists():
        raise typer.BadParameter(f"{settings.genesis_path} is missing", param_hint="'--home'")
    # The daemon is its own program; this process becomes it (same pid, same signals).
    os.execv(sys.executable, daemon_command(settings.home))


@app.command("init")
def node_init(
    home: HomeOption,
    genesis_file: Annotated[
        Path, typer.Option("--genesis", metavar="FILE", help="The chain's genesis.json.")
    ],
    peers: Annotated[
        list[str], typer.Option("--peer", metavar="URL", help="A node to follow (repeatable).")
    ],
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", help="Port to serve the API on.")
    ] = 8800,
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Address to listen on.")
    ] = "127.0.0.1",
) -> None:
    """Write the home of a full node: it follows and serves the chain but does not vote."""
    load_genesis(genesis_file)
    try:
        settings = init_full_node(home, genesis_file, peers, port, host)
    except ClusterExists as exc:
        raise typer.BadParameter(str(exc), param_hint="'--home'") from exc
    except ClusterError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"full node {settings.name} in {settings.home}, serving {local_url(settings)}")
    peer_key = peer_public_key(settings).hex()
    typer.echo(f"its peer key is {peer_key}: add it to the peer_keys of the nodes it follows")
    typer.echo(f"start it with: provledger node start --home {settings.home}")
