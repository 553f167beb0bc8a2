"""`provledger verify`: check a dataset's story against a checkpoint, online or offline."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ledger.errors import LedgerError, VerificationFailed
from ledger.genesis import Genesis
from ledger.provenance import VerifiedStory, join_pages, verify_bundle, verify_state
from node.cli import trust
from node.cli.common import (
    EXIT_NOT_VERIFIED,
    EXIT_UNKNOWN_DATASET,
    MAX_NAME_LOOKUPS,
    JsonOption,
    escape_text,
    fail_client,
    load_genesis,
    open_client,
    parse_dataset,
    parse_hash,
    parse_public_key,
    print_json,
    trusted_genesis,
)
from node.cli.facts import check_fact
from node.cli.story import (
    bundle_commit,
    checkpoint_set,
    genesis_names,
    render_text,
    set_changes,
    signed_by,
    story_json,
)
from node.client import ClientError, NodeClient, NotFound

# --- verification and status ---------------------------------------------------------------


def _not_verified(dataset: str | None, reason: str, detail: str, as_json: bool) -> NoReturn:
    if as_json:
        print_json({"verified": False, "dataset": dataset, "reason": reason, "detail": detail})
    typer.echo(escape_text(f"verification FAILED: {reason}: {detail}"), err=True)
    raise typer.Exit(EXIT_NOT_VERIFIED)


def reported_names(
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


def read_bundle(path: Path) -> Any:
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


MAX_BUNDLE_PAGES = 100_000


def _absent(
    client: NodeClient, node: str, dataset: bytes, genesis: Genesis, as_json: bool
) -> NoReturn:
    """The node says it does not know the dataset: prove it, or refuse the answer."""
    name = dataset.hex()
    unproven = "unknown without proof"
    try:
        answer = client.state("dataset", dataset)
        state = verify_state(answer, genesis, "dataset", dataset)
    except ClientError as exc:
        _not_verified(name, unproven, f"{node} gave no absence proof ({exc.describe()})", as_json)
    except VerificationFailed as exc:
        _not_verified(name, unproven, f"{node}'s absence proof: {exc}", as_json)
    except (LedgerError, KeyError, TypeError, ValueError, AttributeError) as exc:
        _not_verified(name, unproven, f"{node}'s absence proof is malformed: {exc}", as_json)
    height = state.checkpoint.height
    if state.record is not None:
        _not_verified(
            name,
            "hidden dataset",
            f"{node} answered unknown, but the dataset is registered at height {height}",
            as_json,
        )
    changes = set_changes(answer)
    if as_json:
        print_json(
            {
                "verified": True,
                "dataset": name,
                "absent": True,
                "height": height,
                "set_changes": changes,
            }
        )
    else:
        typer.echo(
            f"dataset {name}: proven absent at height {height} (a non-membership proof "
            f"against the state root of a checkpoint signed by {signed_by(changes)})"
        )
    raise typer.Exit(EXIT_UNKNOWN_DATASET)


def _pages(client: NodeClient, dataset: bytes, first: Any, as_json: bool) -> list[Any]:
    """The first page and every page after it (`page.next`), against its checkpoint."""
    pages = [first]
    try:
        height = first["checkpoint"]["header"]["height"]
        following = first["page"]["next"]
    except (KeyError, TypeError):
        return pages
    while following is not None:
        last = pages[-1]["page"]["after"] if len(pages) > 1 else -1
        if type(following) is not int or following <= last or len(pages) >= MAX_BUNDLE_PAGES:
            _not_verified(dataset.hex(), "malformed bundle", "pages do not move forward", as_json)
        page = client.provenance(dataset, after=following, height=height)
        pages.append(page)
        try:
            following = page["page"]["next"]
        except (KeyError, TypeError):
            following = None
    return pages


def fetch_bundle(
    client: NodeClient,
    node: str,
    dataset: bytes,
    save: Path | None,
    genesis: Genesis,
    as_json: bool,
) -> Any:
    try:
        pages = _pages(client, dataset, client.provenance(dataset), as_json)
    except NotFound:
        _absent(client, node, dataset, genesis, as_json)
    except ClientError as exc:
        fail_client(exc, f"cannot fetch the proof bundle from {node}")
    try:
        bundle = join_pages(pages)
    except VerificationFailed as exc:
        _not_verified(dataset.hex(), exc.reason, exc.detail, as_json)
    if save is not None:
        try:
            save.write_text(json.dumps(bundle, indent=2) + "\n")
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot write {save}: {exc.strerror}", param_hint="'--save'"
            ) from exc
    return bundle


# Set by `verify --trust-node-genesis`: the user accepts, this once, a genesis that the node
# under check serves on first contact (it is pinned either way).
_TRUST_NODE = {"first_use": False}
_SOURCE = {"genesis": "file"}


def node_genesis(client: NodeClient, node: str) -> Genesis:
    """Without --genesis: the genesis pinned for this node (refusing a changed one), or on
    first use the one it serves, pinned — which verifies nothing unless the user said
    --trust-node-genesis: the command stops there and asks for a trusted genesis."""
    trusted = trusted_genesis(client, node, EXIT_NOT_VERIFIED)
    _SOURCE["genesis"] = trusted.source
    if trusted.source == "first-use" and not _TRUST_NODE["first_use"]:
        typer.echo(
            "verification NOT attempted: the only genesis at hand is the one the node under "
            "check just served. Pass --genesis FILE from a trusted source, or check the "
            "hash above and run again (the pinned genesis is used), or pass "
            "--trust-node-genesis to accept it now.",
            err=True,
        )
        raise typer.Exit(EXIT_NOT_VERIFIED)
    return trusted.genesis


def check_bundle(bundle: Any, genesis: Genesis, wanted: str | None, as_json: bool) -> VerifiedStory:
    """verify_bundle, plus: the bundle is about the dataset the user named."""
    claimed = bundle.get("dataset") if isinstance(bundle, dict) else None
    if wanted is not None and claimed != wanted:
        _not_verified(wanted, "wrong dataset", f"the bundle is about {claimed}", as_json)
    try:
        with_cached_transitions(bundle, genesis)
        story = verify_bundle(bundle, genesis)
    except VerificationFailed as exc:
        _not_verified(claimed, exc.reason, exc.detail, as_json)
    except (LedgerError, KeyError, TypeError, ValueError, AttributeError) as exc:
        _not_verified(claimed, "malformed bundle", str(exc) or type(exc).__name__, as_json)
    trust.remember_transitions(genesis, bundle["checkpoint"].get("transitions", []))
    return story


def with_cached_transitions(doc: Any, genesis: Genesis) -> None:
    """A checkpoint that carries no validator-set transitions gets the cached ones below its
    height (they are walked from genesis like any others, docs/PROTOCOL.md §19.4)."""
    point = doc.get("checkpoint") if isinstance(doc, dict) else None
    if not isinstance(point, dict) or "transitions" in point:
        return
    header = point.get("header")
    height = header.get("height") if isinstance(header, dict) else None
    if not isinstance(height, int):
        return
    steps = [s for s in trust.cached_transitions(genesis) if _below(s, height)]
    if steps:
        point["transitions"] = steps


def _below(step: Any, height: int) -> bool:
    return (
        isinstance(step, dict) and isinstance(step.get("height"), int) and step["height"] <= height
    )


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
    grant: Annotated[
        str | None,
        typer.Option("--grant", metavar="ID", help="Prove instead whether this grant is live."),
    ] = None,
    participant: Annotated[
        str | None,
        typer.Option(
            "--participant", metavar="PUBKEY", help="Prove instead whether this key is admitted."
        ),
    ] = None,
    trust_node_genesis: Annotated[
        bool,
        typer.Option(
            "--trust-node-genesis",
            help="On first contact with --node, accept (and pin) the genesis it serves.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Prove a dataset's complete history against a checkpoint signed by the genesis
    validators, or (--grant, --participant) one fact of the state.

    Exit 0 verified (the whole story; the fact holds), 1 unknown dataset proven absent (the
    fact is proven not to hold; node unreachable), 2 verification failed (an incomplete
    story, an unknown answer without an absence proof).
    """
    _TRUST_NODE["first_use"] = trust_node_genesis
    _SOURCE["genesis"] = "file"
    if grant is not None or participant is not None:
        if dataset is not None or (grant is not None and participant is not None):
            raise typer.BadParameter("--grant and --participant each stand alone")
        kind, ident = (
            ("grant", parse_hash(grant, "a grant id", "'--grant'"))
            if grant is not None
            else ("participant", parse_public_key(participant or "", "'--participant'"))
        )
        check_fact(
            kind,
            ident,
            node=node,
            genesis_file=genesis_file,
            bundle_file=bundle_file,
            save=save,
            as_json=as_json,
            node_genesis=node_genesis,
        )
        return
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
        bundle = read_bundle(bundle_file)
        story = check_bundle(bundle, genesis, wanted, as_json)
    else:
        assert node is not None and ref is not None
        with open_client(node) as client:
            if genesis is None:
                genesis = node_genesis(client, node)
            bundle = fetch_bundle(client, node, ref.dataset, save, genesis, as_json)
            story = check_bundle(bundle, genesis, wanted, as_json)
            reported = reported_names(client, story, genesis_names(genesis))
    doc = story_json(
        story,
        genesis,
        bundle_commit(bundle),
        genesis_names(genesis),
        reported,
        checkpoint_set(bundle, genesis, story.checkpoint.height),
    )
    doc["genesis_source"] = _SOURCE["genesis"]
    if as_json:
        print_json(doc)
    else:
        typer.echo(render_text(doc), nl=False)
