"""What every command shares: parsing local input, options, output, errors, exit codes.

Exit codes: 0 success; 1 the node refused the request, could not be reached, or does not
know the dataset (and a cluster that failed to come up); 2 bad usage or bad local input
(missing key file, bad hex, bad date, a file that would be overwritten), and `verify` when
the proof does not verify.

Every command that talks to a node (it has a `--node` option) also takes `--ca FILE`: the CA
bundle an `https://` node's certificate must chain to (default: `$SSL_CERT_FILE`, else the
system's trust store). `typer_app` adds it to those commands, in this one place.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import mimetypes
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, get_type_hints

import typer

from ledger import crypto, events
from ledger.errors import LedgerError, Malformed
from ledger.genesis import Genesis
from node.cli import trust
from node.client import ClientError, NodeClient
from node.client.tls import CaBundleError, client_context, trusting
from node.clock import now_ms

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


Command = TypeVar("Command", bound=Callable[..., Any])

CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        metavar="FILE",
        help="CA bundle (PEM) that an https:// node's certificate must chain to; default: "
        "$SSL_CERT_FILE, else the system's trust store.",
    ),
]


def check_ca(ca: Path) -> None:
    """A --ca that cannot be used is a usage error (exit 2), before anything is sent."""
    try:
        client_context(ca)
    except CaBundleError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--ca'") from exc


def with_ca_option(command: Command) -> Callable[..., Any]:
    """`command` with a `--ca FILE` option if it has a `node` parameter: while it runs, the
    clients it makes trust that CA (`node.client.tls.trusting`)."""
    signature = inspect.signature(command, eval_str=True)
    if "node" not in signature.parameters or "ca" in signature.parameters:
        return command

    @functools.wraps(command)
    def run(*args: Any, ca: Path | None = None, **kwargs: Any) -> Any:
        if ca is not None:
            check_ca(ca)
        with trusting(ca):
            return command(*args, **kwargs)

    extra = inspect.Parameter(
        "ca", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=CaOption
    )
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), extra]
    )
    run.__annotations__ = {**get_type_hints(command, include_extras=True), "ca": CaOption}
    return run


class _App(typer.Typer):
    """A Typer whose commands that talk to a node also take `--ca`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Command], Command]:
        register = super().command(*args, **kwargs)

        def decorator(function: Command) -> Command:
            register(with_ca_option(function))
            return function

        return decorator


def typer_app(help_text: str) -> typer.Typer:
    return _App(
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )


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


def load_key(path: Path, param_hint: str = "'--key'") -> crypto.PrivateKey:
    try:
        return crypto.PrivateKey.load(path)
    except Malformed as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from exc


def load_genesis(path: Path) -> Genesis:
    try:
        return Genesis.load(path)
    except Malformed as exc:
        raise typer.BadParameter(str(exc), param_hint="'--genesis'") from exc


# --- output and errors ---------------------------------------------------------------------


# C0 controls, DEL, C1 controls (CSI is 0x9b), line and paragraph separators, and the
# bidirectional marks and overrides: none of them may reach a terminal from others' text.
_UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_text(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control character written as an escape (`\\x1b`, `\\u202e`), so
    that text from others (metadata, names, a node's answers) can neither drive the terminal
    nor forge a line of output. `keep_newlines` keeps this program's own line breaks."""
    if keep_newlines:
        return "\n".join(escape_text(line) for line in text.split("\n"))
    return _UNSAFE_TEXT.sub(_escape_char, text)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.echo(f"error: {escape_text(message, keep_newlines=True)}", err=True)
    raise typer.Exit(code)


def fail_client(exc: ClientError, doing: str) -> NoReturn:
    if exc.status == 0:
        fail(f"{doing}: {escape_text(exc.detail or exc.title)}")
    fail(f"{doing}: the node answered {escape_text(exc.describe())}")


def print_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, sort_keys=False))


def open_client(node: str) -> NodeClient:
    """A client of `node`, trusting the command's `--ca` (or SSL_CERT_FILE) for https."""
    try:
        return NodeClient(node)
    except ClientError as exc:
        hint = "'--ca' / SSL_CERT_FILE" if exc.title == "bad CA bundle" else "'--node'"
        raise typer.BadParameter(exc.detail, param_hint=hint) from exc


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
GenesisOption = Annotated[
    Path | None,
    typer.Option(
        "--genesis",
        metavar="FILE",
        help="The chain's genesis file; without it, the genesis pinned for --node (pinned on "
        "first use).",
    ),
]
MetaOption = Annotated[
    list[str] | None,
    typer.Option("--meta", metavar="KEY=VALUE", help="Extra metadata KEY=VALUE (repeatable)."),
]

Builder = Callable[[dict[str, Any]], events.EventBody]


def chain_of(client: NodeClient, node: str, genesis_file: Path | None) -> str:
    """The chain id to sign for: from --genesis, else from the genesis pinned for this node
    (pinned now, loudly, on first use); a node serving another genesis is refused."""
    if genesis_file is not None:
        return load_genesis(genesis_file).chain_id
    return trusted_genesis(client, node, EXIT_FAILED).genesis.chain_id


def trusted_genesis(client: NodeClient, node: str, refused_exit: int) -> trust.Trusted:
    """The genesis pinned for `node` (pinned now, announced, on first use); a node serving
    another genesis than the pinned one ends the command with `refused_exit`."""
    try:
        trusted, message = trust.resolve(client, node)
    except trust.TrustError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(refused_exit) from exc
    except ClientError as exc:
        fail_client(exc, f"cannot get the genesis from {node}")
    except Malformed as exc:
        fail(f"{node} served a bad genesis: {exc}")
    if message is not None:
        typer.echo(message, err=True)
    return trusted


def submit_event(
    key_path: Path,
    node: str,
    wait: bool,
    as_json: bool,
    genesis_file: Path | None,
    build: Builder,
) -> None:
    """Sign the event `build` makes (given chain, actor, time, nonce) and POST it."""
    key = load_key(key_path)
    with open_client(node) as client:
        chain_id = chain_of(client, node, genesis_file)
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
        reported = escape_text(str(result["event_id"]))
        typer.echo(f"warning: the node reported event id {reported}", err=True)
    doc: dict[str, Any] = {"event_id": event_id, "status": result.get("status", "pending")}
    if wait:
        doc["height"] = result.get("height")
        doc["leaf_index"] = result.get("leaf_index")
    if as_json:
        print_json(doc)
        return
    typer.echo(event_id)
    if wait:
        where = f"height {doc['height']}, leaf index {doc['leaf_index']}"
        typer.echo(f"committed at {escape_text(where)}")
