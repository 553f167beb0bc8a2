"""`provledger verify`: check a dataset's story against a checkpoint, online or offline."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ledger.errors import LedgerError, Malformed, VerificationFailed
from ledger.genesis import Genesis
from ledger.provenance import VerifiedStory, verify_bundle
from node.cli.common import (
    EXIT_NOT_VERIFIED,
    EXIT_UNKNOWN_DATASET,
    MAX_NAME_LOOKUPS,
    JsonOption,
    fail,
    fail_client,
    load_genesis,
    open_client,
    parse_dataset,
    print_json,
)
from node.cli.story import bundle_commit, genesis_names, render_text, story_json
from node.client import ClientError, NodeClient, NotFound

# --- verification and status ---------------------------------------------------------------


def _not_verified(dataset: str | None, reason: str, detail: str, as_json: bool) -> NoReturn:
    if as_json:
        print_json({"verified": False, "dataset": dataset, "reason": reason, "detail": detail})
    typer.echo(f"verification FAILED: {reason}: {detail}", err=True)
    raise typer.Exit(EXIT_NOT_VERIFIED)


def _reported_names(
    client: NodeClient, story: VerifiedStory, known: Iterable[bytes]
) -> dict[bytes, str]:
    """Names the node reports for the story's keys (best effort, not proven)."""
    wanted: list[bytes] = []
    for proven in story.events:
        wanted.append(proven.event.actor)
        to = getattr(proven.event.body, "to", None)
        if isinstance(to, bytes):
            wanted.append(to)
    skip = set(known)
    names: dict[bytes, str] = {}
    for key in list(dict.fromkeys(k for k in wanted if k not in skip))[:MAX_NAME_LOOKUPS]:
        try:
            name = client.participant(key).get("name")
        except ClientError:
            continue
        if isinstance(name, str) and name:
            names[key] = name
    return names


def _read_bundle(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {path}: {exc.strerror}", param_hint="'--bundle'"
        ) from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        _not_verified(None, "malformed bundle", f"{path} is not JSON: {exc}", False)


def _fetch_bundle(client: NodeClient, node: str, dataset: bytes, save: Path | None) -> Any:
    try:
        bundle = client.provenance(dataset)
    except NotFound:
        fail(f"unknown dataset {dataset.hex()} on {node}", EXIT_UNKNOWN_DATASET)
    except ClientError as exc:
        fail_client(exc, f"cannot fetch the proof bundle from {node}")
    if save is not None:
        try:
            save.write_text(json.dumps(bundle, indent=2) + "\n")
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot write {save}: {exc.strerror}", param_hint="'--save'"
            ) from exc
    return bundle


def _node_genesis(client: NodeClient, node: str) -> Genesis:
    try:
        genesis = Genesis.from_json(client.genesis())
    except ClientError as exc:
        fail_client(exc, f"cannot fetch the genesis from {node}")
    except Malformed as exc:
        fail(f"{node} served a bad genesis: {exc}")
    typer.echo(
        f"warning: no --genesis given, so this trusts the genesis served by {node} "
        f"(chain {genesis.chain_id}); pass a genesis file from a trusted source "
        "for an independent proof",
        err=True,
    )
    return genesis


def _check_bundle(
    bundle: Any, genesis: Genesis, wanted: str | None, as_json: bool
) -> VerifiedStory:
    """verify_bundle, plus: the bundle is about the dataset the user named."""
    claimed = bundle.get("dataset") if isinstance(bundle, dict) else None
    if wanted is not None and claimed != wanted:
        _not_verified(wanted, "wrong dataset", f"the bundle is about {claimed}", as_json)
    try:
        return verify_bundle(bundle, genesis)
    except VerificationFailed as exc:
        _not_verified(claimed, exc.reason, exc.detail, as_json)
    except (LedgerError, KeyError, TypeError, ValueError, AttributeError) as exc:
        _not_verified(claimed, "malformed bundle", str(exc) or type(exc).__name__, as_json)


def verify(
    dataset: Annotated[
        str | None,
        typer.Argument(metavar="FILE_OR_HASH", help="The dataset: a local file or its hash."),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option("--node", metavar="URL", help="Node to fetch the proof bundle from."),
    ] = None,
    genesis_file: Annotated[
        Path | None, typer.Option("--genesis", metavar="FILE", help="The genesis file you trust.")
    ] = None,
    bundle_file: Annotated[
        Path | None,
        typer.Option("--bundle", metavar="BUNDLE", help="Verify a saved bundle offline."),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option("--save", metavar="BUNDLE", help="Also write the fetched bundle here."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Prove a dataset's history against a checkpoint signed by the genesis validators.

    Exit 0 verified, 1 unknown dataset (or node unreachable), 2 verification failed.
    """
    if bundle_file is not None:
        if genesis_file is None:
            raise typer.BadParameter(
                "offline verification needs the genesis", param_hint="'--genesis'"
            )
        if node is not None or save is not None:
            raise typer.BadParameter("--bundle verifies offline: drop --node and --save")
    elif dataset is None or node is None:
        raise typer.BadParameter("give FILE_OR_HASH and --node, or --bundle and --genesis")
    genesis = load_genesis(genesis_file) if genesis_file is not None else None
    ref = parse_dataset(dataset) if dataset is not None else None
    wanted = None if ref is None else ref.dataset.hex()
    reported: dict[bytes, str] = {}
    if bundle_file is not None:
        assert genesis is not None
        bundle = _read_bundle(bundle_file)
        story = _check_bundle(bundle, genesis, wanted, as_json)
    else:
        assert node is not None and ref is not None
        with open_client(node) as client:
            bundle = _fetch_bundle(client, node, ref.dataset, save)
            if genesis is None:
                genesis = _node_genesis(client, node)
            story = _check_bundle(bundle, genesis, wanted, as_json)
            reported = _reported_names(client, story, genesis_names(genesis))
    doc = story_json(story, genesis, bundle_commit(bundle), genesis_names(genesis), reported)
    doc["genesis_source"] = "file" if genesis_file is not None else "node"
    if as_json:
        print_json(doc)
    else:
        typer.echo(render_text(doc), nl=False)
