"""The `provledger` command line (DESIGN.md §7): keys, clusters, nodes, events and proofs.

Exit codes: 0 success; 1 the node refused the request, could not be reached, or does not
know the dataset (and a cluster that failed to come up); 2 bad usage or bad local input
(missing key file, bad hex, bad date, a file that would be overwritten), and `verify` when
the proof does not verify.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ledger import crypto, events
from ledger.errors import LedgerError, Malformed, VerificationFailed
from ledger.genesis import Genesis
from ledger.provenance import VerifiedStory, verify_bundle
from node.client import ClientError, NodeClient, NotFound
from node.cluster import (
    ClusterError,
    ClusterExists,
    cluster_down,
    cluster_up,
    init_cluster,
    init_full_node,
    local_url,
    node_home,
)
from node.config import NodeSettings
from node.story import bundle_commit, genesis_names, render_text, story_json

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNKNOWN_DATASET = 1
EXIT_NOT_VERIFIED = 2
HASH_CHUNK = 1 << 20
MAX_NAME_LOOKUPS = 100
UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
RELATIVE_TIME = re.compile(r"\+(\d+)([smhdw])")
HEX64 = re.compile(r"[0-9a-f]{64}")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _typer(help_text: str) -> typer.Typer:
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )


app = _typer("provledger: a permissioned BFT ledger of data-circulation events.")
cluster_app = _typer("Create, start and stop a local cluster of validators.")
node_app = _typer("Create and run one node.")
submit_app = _typer("Sign an event with your key and submit it to a node.")
app.add_typer(cluster_app, name="cluster")
app.add_typer(node_app, name="node")
app.add_typer(submit_app, name="submit")


class Role(StrEnum):
    participant = events.ROLE_PARTICIPANT
    registrar = events.ROLE_REGISTRAR


# --- local input ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetRef:
    """A dataset named on the command line: its id, and the local file if one was given."""

    dataset: bytes
    path: Path | None = None
    size: int | None = None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hash_file(path: Path) -> bytes:
    """SHA-256 of a file, read in chunks; the file never leaves this machine."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.digest()


def parse_dataset(value: str, param_hint: str = "FILE_OR_HASH") -> DatasetRef:
    """A file (hashed locally with SHA-256) or a 64-hex dataset hash."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise typer.BadParameter(
            f"{value} is a directory; name a file or a 64-hex dataset hash", param_hint=param_hint
        )
    if path.is_file():
        try:
            return DatasetRef(hash_file(path), path, path.stat().st_size)
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {value}: {exc.strerror}", param_hint=param_hint
            ) from exc
    text = value.strip().lower().removeprefix("0x")
    if HEX64.fullmatch(text):
        return DatasetRef(bytes.fromhex(text))
    raise typer.BadParameter(
        f"{value!r} is neither an existing file nor a 64-hex SHA-256 dataset hash",
        param_hint=param_hint,
    )


def parse_hash(value: str, what: str, param_hint: str) -> bytes:
    text = value.strip().lower().removeprefix("0x")
    if not HEX64.fullmatch(text):
        raise typer.BadParameter(
            f"{what} must be 64 hex digits, not {value!r}", param_hint=param_hint
        )
    return bytes.fromhex(text)


def parse_public_key(value: str, param_hint: str) -> bytes:
    text = value.strip().lower().removeprefix("0x")
    try:
        return crypto.check_public_key(bytes.fromhex(text))
    except (ValueError, Malformed) as exc:
        raise typer.BadParameter(
            f"{value!r} is not a public key (66 hex digits, compressed P-256)",
            param_hint=param_hint,
        ) from exc


def parse_when(value: str, now: int) -> int:
    """`+30d` / `+12h` / `+90m` (also s, w), Unix ms digits, or ISO-8601 (UTC if no offset)."""
    text = value.strip()
    relative = RELATIVE_TIME.fullmatch(text)
    if relative:
        return now + int(relative.group(1)) * UNIT_MS[relative.group(2)]
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a time: use ISO-8601 (2030-01-31T12:00Z), "
            "+30d / +12h / +90m, or Unix milliseconds",
            param_hint="'--expires'",
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def parse_expires(value: str | None, now: int) -> int | None:
    if value is None:
        return None
    expires = parse_when(value, now)
    if expires <= now:
        raise typer.BadParameter(f"{value!r} is in the past", param_hint="'--expires'")
    return expires


def parse_meta(items: Iterable[str]) -> dict[str, events.MetaValue]:
    meta: dict[str, events.MetaValue] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'--meta'")
        meta[key] = value
    return meta


def dataset_meta(ref: DatasetRef, title: str | None, extra: Iterable[str] = ()) -> dict[str, Any]:
    """Register/derive meta: title (or the file name), size and media type of a local file."""
    meta: dict[str, events.MetaValue] = {}
    if ref.path is not None:
        media_type, _ = mimetypes.guess_type(ref.path.name)
        meta = {
            "title": title or ref.path.name,
            "size": ref.size or 0,
            "media_type": media_type or "application/octet-stream",
        }
    elif title:
        meta["title"] = title
    meta.update(parse_meta(extra))
    return meta


def load_key(path: Path) -> crypto.PrivateKey:
    try:
        return crypto.PrivateKey.load(path)
    except Malformed as exc:
        raise typer.BadParameter(str(exc), param_hint="'--key'") from exc


def load_genesis(path: Path) -> Genesis:
    try:
        return Genesis.load(path)
    except Malformed as exc:
        raise typer.BadParameter(str(exc), param_hint="'--genesis'") from exc


# --- output and errors ---------------------------------------------------------------------


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def fail_client(exc: ClientError, doing: str) -> NoReturn:
    if exc.status == 0:
        fail(f"{doing}: {exc.detail or exc.title}")
    fail(f"{doing}: the node answered {exc.describe()}")


def print_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, sort_keys=False))


def open_client(node: str) -> NodeClient:
    try:
        return NodeClient(node)
    except ClientError as exc:
        raise typer.BadParameter(exc.detail, param_hint="'--node'") from exc


# --- options shared by the event commands --------------------------------------------------

KeyOption = Annotated[
    Path,
    typer.Option(
        "--key", metavar="KEY.pem", help="Your private key (PKCS#8 PEM); it signs the event."
    ),
]
NodeOption = Annotated[
    str, typer.Option("--node", metavar="URL", help="Node URL, e.g. http://127.0.0.1:8800.")
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="Wait until the event is committed in a block.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
MetaOption = Annotated[
    list[str] | None,
    typer.Option("--meta", metavar="KEY=VALUE", help="Extra metadata KEY=VALUE (repeatable)."),
]

Builder = Callable[[dict[str, Any]], events.EventBody]


def submit_event(key_path: Path, node: str, wait: bool, as_json: bool, build: Builder) -> None:
    """Sign the event `build` makes (given chain, actor, time, nonce) and POST it."""
    key = load_key(key_path)
    with open_client(node) as client:
        try:
            chain_id = client.genesis()["chain_id"]
        except ClientError as exc:
            fail_client(exc, f"cannot get the chain id from {node}")
        except KeyError:
            fail(f"{node} returned a genesis without a chain_id")
        common = {
            "chain": chain_id,
            "actor": key.public_key,
            "time": now_ms(),
            "nonce": os.urandom(events.NONCE_SIZE),
        }
        signed = events.sign_event(key, build(common))
        try:
            events.decode_envelope(signed.envelope, chain_id=chain_id)
        except LedgerError as exc:
            fail(f"the event is not valid: {exc}", EXIT_USAGE)
        event_id = signed.event_id.hex()
        try:
            result = client.submit(signed.envelope, wait=wait)
        except ClientError as exc:
            fail_client(exc, f"event {event_id} ({signed.type}) was not accepted by {node}")
    if result.get("event_id") not in (None, event_id):
        typer.echo(f"warning: the node reported event id {result['event_id']}", err=True)
    doc: dict[str, Any] = {"event_id": event_id, "status": result.get("status", "pending")}
    if wait:
        doc["height"] = result.get("height")
        doc["leaf_index"] = result.get("leaf_index")
    if as_json:
        print_json(doc)
        return
    typer.echo(event_id)
    if wait:
        typer.echo(f"committed at height {doc['height']}, leaf index {doc['leaf_index']}")


# --- keys ----------------------------------------------------------------------------------


@app.command()
def keygen(
    out: Annotated[
        Path,
        typer.Option("--out", metavar="KEY.pem", help="Where to write the new key (PEM, 0600)."),
    ],
) -> None:
    """Create a P-256 key pair; print the public key (hex)."""
    if out.exists():
        raise typer.BadParameter(f"{out} exists; refusing to overwrite a key", param_hint="'--out'")
    key = crypto.PrivateKey.generate()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        key.save(out)
    except FileExistsError as exc:
        raise typer.BadParameter(
            f"{out} exists; refusing to overwrite", param_hint="'--out'"
        ) from exc
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write {out}: {exc.strerror}", param_hint="'--out'"
        ) from exc
    typer.echo(key.public_key.hex())


# --- clusters and nodes --------------------------------------------------------------------

DirOption = Annotated[Path, typer.Option("--dir", metavar="DIR", help="The cluster directory.")]


@cluster_app.command("init")
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
) -> None:
    """Write genesis, registrar key and node homes without starting anything."""
    try:
        genesis = init_cluster(cluster_dir, nodes, base_port, open_, advertise=advertise)
    except ClusterExists as exc:
        raise typer.BadParameter(str(exc), param_hint="'--dir'") from exc
    except ClusterError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"chain {genesis.chain_id} ({genesis.admission}) in {cluster_dir.resolve()}")
    typer.echo(f"registrar key {cluster_dir.resolve() / 'registrar.pem'}")
    for i, validator in enumerate(genesis.validators.validators):
        typer.echo(f"{validator.name}: {node_home(cluster_dir.resolve(), i)} -> {validator.url}")


@cluster_app.command("up")
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
        )
    except ClusterExists as exc:
        raise typer.BadParameter(str(exc), param_hint="'--dir'") from exc
    except ClusterError as exc:
        fail(str(exc))
    if detach:
        for member in info.nodes:
            typer.echo(f"{member.name}: {member.url}")
        typer.echo(f"stop it with: provledger cluster down --dir {info.dir}")


@cluster_app.command("down")
def cluster_down_command(cluster_dir: DirOption) -> None:
    """Stop every node of the cluster (SIGTERM, then SIGKILL after 10 s); data stays."""
    try:
        stopped = cluster_down(cluster_dir)
    except ClusterError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--dir'") from exc
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else "no node was running")


HomeOption = Annotated[
    Path, typer.Option("--home", metavar="DIR", help="The node's home directory.")
]


@node_app.command("start")
def node_start(home: HomeOption) -> None:
    """Run one node in the foreground (validator if its home holds node_key.pem)."""
    try:
        settings = NodeSettings.load(home)
    except Malformed as exc:
        raise typer.BadParameter(str(exc), param_hint="'--home'") from exc
    if not settings.genesis_path.exists():
        raise typer.BadParameter(f"{settings.genesis_path} is missing", param_hint="'--home'")
    from node.server import run

    run(settings)


@node_app.command("init")
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
    typer.echo(f"start it with: provledger node start --home {settings.home}")


# --- events --------------------------------------------------------------------------------


@app.command()
def admit(
    public_key: Annotated[str, typer.Argument(metavar="PUBKEY", help="The key to admit (hex).")],
    key: KeyOption,
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="The participant's name.")],
    node: NodeOption,
    role: Annotated[
        Role,
        typer.Option("--role", metavar="participant|registrar", help="participant or registrar."),
    ] = (Role.participant),
    wait: WaitOption = False,
    as_json: JsonOption = False,
) -> None:
    """Admit a key to a permissioned chain (signed by a registrar)."""
    subject = parse_public_key(public_key, "PUBKEY")
    submit_event(
        key,
        node,
        wait,
        as_json,
        lambda c: events.Admit(**c, subject=subject, role=role.value, name=name),
    )


DatasetArgument = Annotated[
    str, typer.Argument(metavar="FILE_OR_HASH", help="A local file (hashed here) or its hash.")
]


@submit_app.command("register")
def submit_register(
    dataset: DatasetArgument,
    key: KeyOption,
    node: NodeOption,
    title: Annotated[
        str | None, typer.Option("--title", metavar="TEXT", help="Title (default: file name).")
    ] = None,
    open_: Annotated[bool, typer.Option("--open", help="Anyone may record uses.")] = False,
    meta: MetaOption = None,
    wait: WaitOption = False,
    as_json: JsonOption = False,
) -> None:
    """Register a dataset you own: its origin."""
    ref = parse_dataset(dataset)
    info = dataset_meta(ref, title, meta or ())
    submit_event(
        key,
        node,
        wait,
        as_json,
        lambda c: events.Register(**c, dataset=ref.dataset, meta=info, open=open_),
    )


@submit_app.command("grant")
def submit_grant(
    dataset: DatasetArgument,
    to: Annotated[
        str, typer.Option("--to", metavar="PUBKEY", help="The grantee's public key (hex).")
    ],
    purposes: Annotated[
        list[str],
        typer.Option("--purpose", metavar="PURPOSE", help="Allowed purpose (repeatable)."),
    ],
    key: KeyOption,
    node: NodeOption,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            metavar="WHEN",
            help="ISO-8601 time (UTC if no offset), +30d/+12h/+90m, or ms.",
        ),
    ] = None,
    reshare: Annotated[bool, typer.Option("--reshare", help="The grantee may pass it on.")] = False,
    wait: WaitOption = False,
    as_json: JsonOption = False,
) -> None:
    """Grant a participant the use of your dataset for some purposes."""
    ref = parse_dataset(dataset)
    grantee = parse_public_key(to, "'--to'")
    until = parse_expires(expires, now_ms())
    allowed = tuple(dict.fromkeys(purposes))
    submit_event(
        key,
        node,
        wait,
        as_json,
        lambda c: events.Grant(
            **c, dataset=ref.dataset, to=grantee, purposes=allowed, reshare=reshare, expires=until
        ),
    )


def parse_grant(grant: str | None) -> bytes | None:
    """The `--grant` option: absent, or an event id."""
    return None if grant is None else parse_hash(grant, "a grant id", "'--grant'")


GrantOption = Annotated[
    str | None,
    typer.Option("--grant", metavar="GRANT_ID", help="The grant (event id) you act under."),
]


@submit_app.command("use")
def submit_use(
    dataset: DatasetArgument,
    purpose: Annotated[
        str, typer.Option("--purpose", metavar="PURPOSE", help="What the data is used for.")
    ],
    key: KeyOption,
    node: NodeOption,
    grant: GrantOption = None,
    wait: WaitOption = False,
    as_json: JsonOption = False,
) -> None:
    """Record a use of a dataset."""
    ref = parse_dataset(dataset)
    grant_id = parse_grant(grant)
    submit_event(
        key,
        node,
        wait,
        as_json,
        lambda c: events.Use(**c, dataset=ref.dataset, purpose=purpose, grant=grant_id),
    )


@submit_app.command("transfer")
def submit_transfer(
    dataset: DatasetArgument,
    to: Annotated[
        str, typer.Option("--to", metavar="PUBKEY", help="The recipient's public key (hex).")
    ],
    key: KeyOption,
    node: NodeOption,
    grant: GrantOption = None,
    wait: WaitOption = False,
    as_json: JsonOption = False,
) -> None:
    """Record the delivery of a copy to another participant."""
    ref = parse_dataset(dataset)
    recipient = parse_public_key(to, "'--to'")
    grant_id = parse_grant(grant)
    submit_event(
        key,
        node,
        wait,
        as_json,
        lambda c: events.Transfer(**c, dataset=ref.dataset, to=recipient, grant=grant_id),
    )


@submit_app.command("derive")
def submit_derive(
    output: Annotated[
        str, typer.Argument(metavar="OUTFILE", help="The derived file (hashed here) or its hash.")
    ],
    sources: Annotated[
        list[str],
        typer.Option("--from", metavar="FILE_OR_HASH", help="An input dataset (repeatable)."),
    ],
    key: KeyOption,
    node: NodeOption,
    title: Annotated[
        str | None, typer.Option("--title", metavar="TEXT", help="Title (default: file name).")
    ] = None,
    meta: MetaOption = None,
    wait: WaitOption = False,
    as_json: JsonOption = False,
) -> None:
    """Register a dataset derived from inputs you own or may use for `derive`."""
    ref = parse_dataset(output, "OUTFILE")
    inputs = tuple(dict.fromkeys(parse_dataset(s, "'--from'").dataset for s in sources))
    if ref.dataset in inputs:
        raise typer.BadParameter(
            "the output cannot be one of its own inputs", param_hint="'--from'"
        )
    info = dataset_meta(ref, title, meta or ())
    submit_event(
        key,
        node,
        wait,
        as_json,
        lambda c: events.Derive(**c, dataset=ref.dataset, inputs=inputs, meta=info),
    )


@submit_app.command("revoke")
def submit_revoke(
    grant: Annotated[str, typer.Argument(metavar="GRANT_ID", help="The grant's event id.")],
    key: KeyOption,
    node: NodeOption,
    wait: WaitOption = False,
    as_json: JsonOption = False,
) -> None:
    """Revoke a grant you made."""
    grant_id = parse_hash(grant, "a grant id", "GRANT_ID")
    submit_event(key, node, wait, as_json, lambda c: events.Revoke(**c, grant=grant_id))


@submit_app.command("destroy")
def submit_destroy(
    dataset: DatasetArgument,
    key: KeyOption,
    node: NodeOption,
    wait: WaitOption = False,
    as_json: JsonOption = False,
) -> None:
    """Record that you deleted your copy of a dataset."""
    ref = parse_dataset(dataset)
    submit_event(key, node, wait, as_json, lambda c: events.Destroy(**c, dataset=ref.dataset))


@submit_app.command("attest")
def submit_attest(
    dataset: DatasetArgument,
    claim: Annotated[
        str, typer.Option("--claim", metavar="TEXT", help="Your statement about the dataset.")
    ],
    key: KeyOption,
    node: NodeOption,
    meta: MetaOption = None,
    wait: WaitOption = False,
    as_json: JsonOption = False,
) -> None:
    """Attest something about a dataset (quality, audit, ...)."""
    ref = parse_dataset(dataset)
    info = parse_meta(meta or ())
    submit_event(
        key,
        node,
        wait,
        as_json,
        lambda c: events.Attest(**c, dataset=ref.dataset, claim=claim, meta=info),
    )


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


@app.command()
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


@app.command()
def status(node: NodeOption, as_json: JsonOption = False) -> None:
    """Show a node's view of the chain and its peers."""
    with open_client(node) as client:
        try:
            doc = client.status()
        except ClientError as exc:
            fail_client(exc, f"cannot get the status of {node}")
    if as_json:
        print_json(doc)
        return
    role = "validator" if doc.get("validator") else "full node"
    key = doc.get("public_key")
    lines = [
        f"node         {doc.get('name', '?')} ({role}{', key ' + key if key else ''})",
        f"chain        {doc.get('chain_id', '?')}",
        f"height       {doc.get('height', '?')} (round {doc.get('round', '?')})",
        f"tree         size {doc.get('tree_size', '?')}, root {doc.get('root_hash', '?')}",
        f"head block   {doc.get('block_hash', '?')}",
        f"mempool      {doc.get('mempool_size', '?')} events",
        f"catching up  {'yes' if doc.get('catching_up') else 'no'}",
    ]
    peers = doc.get("peers") or []
    lines.append(f"peers        {len(peers)}")
    for peer in peers:
        if not isinstance(peer, dict):
            continue
        reach = "reachable" if peer.get("reachable") else "unreachable"
        height = peer.get("height")
        lines.append(
            f"  {peer.get('url', '?')}  {reach}" + ("" if height is None else f", height {height}")
        )
    typer.echo("\n".join(lines))


def main() -> None:
    """Console entry point (`provledger`)."""
    app(prog_name="provledger")


if __name__ == "__main__":
    main()
