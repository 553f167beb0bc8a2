"""`provledger openlineage serve`: receive OpenLineage's HTTP transport and record each
completed run as provledger events signed with an organisation's key (docs/PROTOCOL.md §16.5).

The server is `node.lineage.ingest.IngestApp`, a raw ASGI callable run by uvicorn in this
process: it needs neither the daemon (which the CLI may not import) nor FastAPI, and it talks
to the node only through its public API (`node.client`).
"""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from node.cli.common import KeyOption, NodeOption, load_key, open_client, typer_app
from node.lineage.ingest import LINEAGE_PATH, IngestApp

app = typer_app("Bridge OpenLineage (Airflow, Spark, dbt, ...) to provledger.")


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{value!r} is not HOST:PORT", param_hint="'--listen'")
    return host.strip("[]") or "127.0.0.1", int(port)


@app.command("serve")
def serve(
    key: KeyOption,
    node: NodeOption,
    listen: Annotated[
        str, typer.Option("--listen", metavar="HOST:PORT", help="Where to accept OpenLineage.")
    ] = "127.0.0.1:5000",
    purpose: Annotated[
        str,
        typer.Option(
            "--purpose",
            metavar="PURPOSE",
            help="Purpose of the `use` of each input (a run's provledger facet may override it).",
        ),
    ] = "analytics",
) -> None:
    """Accept OpenLineage RunEvents at POST /api/v1/lineage and record them as signed events."""
    signer = load_key(key)
    host, port = parse_listen(listen)
    open_client(node).close()  # a bad URL is a usage error now, not at the first run
    typer.echo(f"OpenLineage endpoint http://{host}:{port}{LINEAGE_PATH} -> {node}")
    typer.echo(f"signing as {signer.public_key.hex()}")
    uvicorn.run(IngestApp(signer, node, purpose), host=host, port=port, log_level="info")
