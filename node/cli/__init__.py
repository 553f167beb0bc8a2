"""The `provledger` command line: keys, clusters, nodes, events and proofs.

- `common`: parsing local input, shared options, output, errors and exit codes.
- `keys`: `keygen`.
- `cluster`: `cluster init|up|down`.
- `node`: `node init|start` (start runs the daemon, `python -m node.server`, in its place).
- `events`: `admit` and `submit register|grant|use|transfer|derive|revoke|destroy|attest`.
- `govern`: `govern add-validator|remove-validator|set-power|add-registrar|remove-registrar|
  set-param|approve|list`, consortium changes decided by the validators.
- `lifecycle`: `suspend`, `reinstate`, `rotate` and `possession`, a participant's key over
  its life.
- `verify`: `verify`, a dataset's complete story (or its proven absence) against a
  checkpoint, online or offline, following the bundle's pages.
- `facts`: `verify --grant ID` and `verify --participant PUBKEY`, one state fact with its proof.
- `trust`: the genesis pinned per node URL on first use (like SSH's known_hosts).
- `status`: `status` of a node.
- `story`: a verified story as JSON or as text for a person.
- `export`: `export prov|openlineage`, a verified story as W3C PROV or OpenLineage.
- `openlineage`: `openlineage serve`, OpenLineage's HTTP transport into signed events.

Talks to nodes only through `node.client`; never imports the daemon.
"""

from __future__ import annotations

from node.cli import (
    cluster,
    events,
    export,
    govern,
    keys,
    lifecycle,
    node,
    openlineage,
    status,
    verify,
)
from node.cli.common import typer_app

app = typer_app("provledger: a permissioned BFT ledger of data-circulation events.")
app.command()(keys.keygen)
app.add_typer(cluster.app, name="cluster")
app.add_typer(node.app, name="node")
app.command()(events.admit)
app.add_typer(events.app, name="submit")
app.add_typer(govern.app, name="govern")
app.command()(lifecycle.suspend)
app.command()(lifecycle.reinstate)
app.command()(lifecycle.rotate)
app.command()(lifecycle.possession)
app.command()(verify.verify)
app.command()(status.status)
app.add_typer(export.app, name="export")
app.add_typer(openlineage.app, name="openlineage")


def main() -> None:
    """Console entry point (`provledger`)."""
    app(prog_name="provledger")


__all__ = ["app", "main"]
