"""`provledger cluster init|up|down`: local clusters of validators (over TLS with `--tls`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from node.cli.common import (
    fail,
    typer_app,
)
from node.ops.cluster import cluster_down, cluster_up
from node.ops.homes import (
    ClusterError,
    ClusterExists,
    cluster_ca,
    init_cluster,
    node_home,
)
from node.ops.tls import CA_KEY_FILE

app = typer_app("Create, start and stop a local cluster of validators.")


# --- clusters and nodes --------------------------------------------------------------------

DirOption = Annotated[Path, typer.Option("--dir", metavar="DIR", help="The cluster directory.")]
TlsOption = Annotated[
    bool,
    typer.Option(
        "--tls",
        help="Serve HTTPS: make a private CA (DIR/ca.pem) and a certificate for every node's "
        "key; clients then pass --ca DIR/ca.pem.",
    ),
]


@app.command("init")
def cluster_init(
    cluster_dir: DirOption,
    nodes: Annotated[
        int, typer.Option("--nodes", min=1, metavar="N", help="Number of validators.")
    ] = 4,
    base_port: Annotated[
        int, typer.Option("--base-port", metavar="PORT", help="Port of node 0.")
    ] = 8800,
    open_: Annotated[bool, typer.Option("--open", help="Anyone may sign events.")] = False,
    advertise: Annotated[
        str | None,
        typer.Option(
            "--advertise",
            metavar="TEMPLATE",
            help="Validator URL template such as http://node-{i}:8800; nodes then listen on "
            "0.0.0.0 at --base-port (for containers).",
        ),
    ] = None,
    tls: TlsOption = False,
) -> None:
    """Write genesis, registrar key and node homes without starting anything."""
    try:
        genesis = init_cluster(cluster_dir, nodes, base_port, open_, advertise=advertise, tls=tls)
    except ClusterExists as exc:
        raise typer.BadParameter(str(exc), param_hint="'--dir'") from exc
    except ClusterError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"chain {genesis.chain_id} ({genesis.admission}) in {cluster_dir.resolve()}")
    typer.echo(f"registrar key {cluster_dir.resolve() / 'registrar.pem'}")
    for i, validator in enumerate(genesis.validators.validators):
        typer.echo(f"{validator.name}: {node_home(cluster_dir.resolve(), i)} -> {validator.url}")
    ca = cluster_ca(cluster_dir.resolve())
    if ca is not None:
        typer.echo(f"CA certificate {ca} (clients: --ca {ca}); keep {CA_KEY_FILE} off the nodes")


@app.command("up")
def cluster_up_command(
    cluster_dir: DirOption,
    nodes: Annotated[
        int | None,
        typer.Option("--nodes", min=1, metavar="N", help="Validators of a new cluster (4)."),
    ] = None,
    base_port: Annotated[
        int | None,
        typer.Option("--base-port", metavar="PORT", help="Port of node 0 of a new cluster (8800)."),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Return once every node has committed a block.")
    ] = False,
    open_: Annotated[bool, typer.Option("--open", help="A new chain admits anyone.")] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", metavar="SECONDS", help="Seconds to wait for the first block."),
    ] = 60.0,
    tls: Annotated[
        bool,
        typer.Option("--tls", help="A new cluster serves HTTPS, with its own CA (DIR/ca.pem)."),
    ] = False,
) -> None:
    """Create the cluster if needed and start every node that is not running."""
    try:
        info = cluster_up(
            cluster_dir,
            nodes,
            base_port,
            True if open_ else None,
            detach=detach,
            wait_timeout=timeout,
            echo=typer.echo,
            tls=True if tls else None,
        )
    except ClusterExists as exc:
        raise typer.BadParameter(str(exc), param_hint="'--dir'") from exc
    except ClusterError as exc:
        fail(str(exc))
    if detach:
        for member in info.nodes:
            typer.echo(f"{member.name}: {member.url}")
        typer.echo(f"stop it with: provledger cluster down --dir {info.dir}")


@app.command("down")
def cluster_down_command(cluster_dir: DirOption) -> None:
    """Stop every node of the cluster (SIGTERM, then SIGKILL after 10 s); data stays."""
    try:
        stopped = cluster_down(cluster_dir)
    except ClusterError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--dir'") from exc
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else "no node was running")
