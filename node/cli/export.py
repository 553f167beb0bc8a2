"""`provledger export prov|openlineage`: a dataset's verified story as W3C PROV or as
OpenLineage RunEvents (docs/PROTOCOL.md §16.3, §16.4).

The story is verified first, exactly as `provledger verify` does (online against a node with
`--genesis`, or offline with `--bundle` and `--genesis`); the export is written from the proven
story only. A story that does not verify exits 2 and writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ledger.genesis import Genesis
from ledger.provenance import VerifiedStory
from node.cli.common import fail, load_genesis, open_client, parse_dataset, typer_app
from node.cli.story import genesis_names
from node.cli.verify import (
    check_bundle,
    fetch_bundle,
    node_genesis,
    read_bundle,
    reported_names,
)
from node.lineage import openlineage, prov

app = typer_app("Export a dataset's verified story as W3C PROV or OpenLineage.")

DatasetArg = Annotated[
    str | None,
    typer.Argument(metavar="FILE_OR_HASH", help="The dataset: a local file or its hash."),
]
NodeOpt = Annotated[
    str | None, typer.Option("--node", metavar="URL", help="Node to fetch the proof bundle from.")
]
GenesisOpt = Annotated[
    Path | None, typer.Option("--genesis", metavar="FILE", help="The genesis file you trust.")
]
BundleOpt = Annotated[
    Path | None, typer.Option("--bundle", metavar="BUNDLE", help="Export a saved bundle offline.")
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", metavar="FILE", help="Write here instead of stdout.")
]


def _verified(
    dataset: str | None, node: str | None, genesis_file: Path | None, bundle_file: Path | None
) -> tuple[VerifiedStory, Genesis, dict[bytes, str]]:
    """The story, verified like `provledger verify` does, with the names of its keys."""
    if bundle_file is not None:
        if genesis_file is None or node is not None:
            raise typer.BadParameter("--bundle exports offline: give --genesis, not --node")
    elif dataset is None or node is None:
        raise typer.BadParameter("give FILE_OR_HASH and --node, or --bundle and --genesis")
    genesis = load_genesis(genesis_file) if genesis_file is not None else None
    wanted = None if dataset is None else parse_dataset(dataset).dataset.hex()
    names = {}
    if bundle_file is not None:
        assert genesis is not None
        story = check_bundle(read_bundle(bundle_file), genesis, wanted, False)
    else:
        assert node is not None and wanted is not None
        with open_client(node) as client:
            if genesis is None:
                genesis = node_genesis(client, node)
            bundle = fetch_bundle(client, node, bytes.fromhex(wanted), None, genesis, False)
            story = check_bundle(bundle, genesis, wanted, False)
            names = reported_names(client, story, genesis_names(genesis))
    return story, genesis, {**names, **genesis_names(genesis)}


def _write(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}", 2)


@app.command("prov")
def export_prov(
    dataset: DatasetArg = None,
    node: NodeOpt = None,
    genesis_file: GenesisOpt = None,
    bundle_file: BundleOpt = None,
    fmt: Annotated[
        str,
        typer.Option("--format", metavar="FORMAT", help="json (PROV-JSON), provn or ttl (PROV-O)."),
    ] = "json",
    out: OutOpt = None,
) -> None:
    """The verified story as W3C PROV: datasets are entities, keys agents, events activities."""
    if fmt not in prov.FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(prov.FORMATS)}", param_hint="'--format'")
    story, genesis, names = _verified(dataset, node, genesis_file, bundle_file)
    _write(prov.render(prov.story_document(story, genesis.chain_id, names), fmt), out)


@app.command("openlineage")
def export_openlineage(
    dataset: DatasetArg = None,
    node: NodeOpt = None,
    genesis_file: GenesisOpt = None,
    bundle_file: BundleOpt = None,
    out: OutOpt = None,
) -> None:
    """The verified story as OpenLineage RunEvents (register, derive and use events)."""
    story, genesis, _ = _verified(dataset, node, genesis_file, bundle_file)
    doc: dict[str, Any] = openlineage.export_document(story, genesis.chain_id)
    _write(json.dumps(doc, indent=2) + "\n", out)
