"""`provledger node init|certify|start|snapshot|backup|restore|migrate`: one node's home, its
TLS certificate, running it, and its snapshots, backups and store upgrades (the last four run
the daemon's own tools, `python -m node.server.snapshot|backup`, as a child process: the CLI
imports no daemon code)."""

from __future__ import annotations

import os
import subprocess
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
    certify_node,
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
def node_start(
    home: HomeOption,
    snapshot: Annotated[
        Path | None,
        typer.Option(
            "--snapshot",
            metavar="FILE",
            help="A new home: start its store from this snapshot (verified first).",
        ),
    ] = None,
    snapshot_from_peers: Annotated[
        bool,
        typer.Option(
            "--snapshot-from-peers",
            help="A new home: start its store from a snapshot its peers serve (verified).",
        ),
    ] = False,
) -> None:
    """Run one node in the foreground (validator if its home holds node_key.pem)."""
    try:
        settings = NodeSettings.load(home)
    except Malformed as exc:
        raise typer.BadParameter(str(exc), param_hint="'--home'") from exc
    if not settings.genesis_path.exists():
        raise typer.BadParameter(f"{settings.genesis_path} is missing", param_hint="'--home'")
    extra: list[str] = []
    if snapshot is not None and snapshot_from_peers:
        raise typer.BadParameter("give --snapshot or --snapshot-from-peers, not both")
    if snapshot is not None:
        if not snapshot.is_file():
            raise typer.BadParameter(f"{snapshot} is not a file", param_hint="'--snapshot'")
        extra = ["--snapshot", str(snapshot.resolve())]
    elif snapshot_from_peers:
        extra = ["--snapshot-from-peers"]
    # The daemon is its own program; this process becomes it (same pid, same signals).
    os.execv(sys.executable, [*daemon_command(settings.home), *extra])


def _tool(module: str, *args: str) -> None:
    """Run one of the daemon's tools; its exit status becomes this command's."""
    code = subprocess.run([sys.executable, "-m", module, *args], check=False).returncode
    if code:
        raise typer.Exit(code)


OutOption = Annotated[
    Path, typer.Option("--out", metavar="FILE", help="The file to write (must not exist).")
]


@app.command("snapshot")
def node_snapshot(home: HomeOption, out: OutOption) -> None:
    """Write a snapshot of the home's chain at its head (online if its node runs)."""
    _tool("node.server.snapshot", "write", "--home", str(home), "--out", str(out))


@app.command("backup")
def node_backup(home: HomeOption, out: OutOption) -> None:
    """Back a home up: its whole store (one consistent read, online if its node runs), its
    keys, signer state, config and genesis."""
    _tool("node.server.backup", "backup", "--home", str(home), "--out", str(out))


@app.command("restore")
def node_restore(
    source: Annotated[
        Path, typer.Option("--from", metavar="FILE", help="A backup written by node backup.")
    ],
    home: HomeOption,
) -> None:
    """Restore a backup into a new, empty home (checked whole before anything is kept)."""
    _tool("node.server.backup", "restore", "--from", str(source), "--home", str(home))


@app.command("migrate")
def node_migrate(home: HomeOption) -> None:
    """Upgrade a stopped home's store of an older format in place (backed up first; a node
    does this itself when it starts)."""
    _tool("node.server.backup", "migrate", "--home", str(home))


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
    """Write the home of a full node: it follows and serves the chain, and votes once
    governance makes its node key a validator."""
    load_genesis(genesis_file)
    try:
        settings = init_full_node(home, genesis_file, peers, port, host)
    except ClusterExists as exc:
        raise typer.BadParameter(str(exc), param_hint="'--home'") from exc
    except ClusterError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"full node {settings.name} in {settings.home}, serving {local_url(settings)}")
    node_key = peer_public_key(settings).hex()
    typer.echo(
        f"its node key is {node_key}: the nodes it follows answer it once a validator proposes "
        f"it (provledger govern add-validator {node_key} --name NAME --url PEER_URL) or lists "
        "it in their peer_keys"
    )
    typer.echo(f"start it with: provledger node start --home {settings.home}")


@app.command("certify")
def node_certify(
    home: HomeOption,
    ca_dir: Annotated[
        Path,
        typer.Option(
            "--ca-dir",
            metavar="DIR",
            help="The directory holding the cluster CA (ca.pem, ca_key.pem): the cluster "
            "directory of `cluster init --tls`.",
        ),
    ],
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            metavar="NAME",
            help="A host name or address the certificate names besides the node's own "
            "(repeatable): the host of the peer URL it will be proposed with.",
        ),
    ] = None,
) -> None:
    """Certify a home's node key with the cluster CA and serve TLS with it: how a full node
    joins a TLS chain (the validators pin a new validator's certificate to its key)."""
    try:
        settings = certify_node(home, ca_dir, hosts or ())
    except ClusterError as exc:
        raise typer.BadParameter(str(exc)) from exc
    cert = settings.tls_cert_path
    typer.echo(
        f"{settings.name}: certificate {cert} for node key {peer_public_key(settings).hex()}"
    )
    typer.echo(f"it serves HTTPS from its next start: {local_url(settings)}")
