"""`provledger govern ...`: propose and approve changes to the consortium (docs/PROTOCOL.md
§19): validators, their power, registrars and chain parameters; and list the proposals.

Proposals and approvals are signed by a validator's approver key: its operator key if genesis
(or the change that added it) names one, else its node key (`node_key.pem` in its home). The
id a `propose` command prints is the proposal id that the others `approve`. Every argument is
checked here, before anything is signed or sent: a bad one is a usage error (exit 2).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from ledger import events
from ledger.blocks import MAX_POWER
from ledger.errors import Malformed
from ledger.genesis import ChainParams
from ledger.governance import (
    ADD_REGISTRAR,
    ADD_VALIDATOR,
    MAX_NAME,
    MAX_URL,
    PARAM_NAMES,
    REMOVE_REGISTRAR,
    REMOVE_VALIDATOR,
    SET_PARAM,
    SET_POWER,
    Change,
)
from node.cli.common import (
    GenesisOption,
    JsonOption,
    KeyOption,
    NodeOption,
    WaitOption,
    escape_text,
    fail,
    fail_client,
    open_client,
    parse_hash,
    parse_public_key,
    print_json,
    submit_event,
    typer_app,
)
from node.client import ClientError
from node.clock import now_ms

app = typer_app(
    "Change the consortium: propose and approve validator, registrar and parameter changes "
    "(signed by a validator's operator key, else its node key)."
)

PubkeyArgument = Annotated[
    str, typer.Argument(metavar="PUBKEY", help="The key the change is about (66 hex digits).")
]
PowerOption = Annotated[
    int,
    typer.Option("--power", metavar="N", help=f"Voting power, 1..{MAX_POWER}."),
]


class Status(StrEnum):
    open = "open"
    decided = "decided"
    all = "all"


def check_change(change: Change, param_hint: str) -> Change:
    """`change` as the rules will parse it; a field out of range is a usage error."""
    try:
        return Change.parse(change.to_map())
    except Malformed as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from exc


def check_power(power: int) -> int:
    if not 0 < power <= MAX_POWER:
        raise typer.BadParameter(
            f"voting power must be in 1..{MAX_POWER}, not {power}", param_hint="'--power'"
        )
    return power


def check_url(url: str) -> str:
    """The URL the validator's peers reach it at: http(s)://host[:port]."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and len(url) <= MAX_URL
        parts.port  # noqa: B018 (a port that is not a number raises)
    except ValueError:
        valid = False
    if not valid:
        raise typer.BadParameter(
            f"{url!r} is not a node URL (http:// or https://host:port, at most {MAX_URL} "
            "characters)",
            param_hint="'--url'",
        )
    return url


def propose(
    key: Path, node: str, wait: bool, as_json: bool, genesis: Path | None, change: Change
) -> None:
    """Sign and submit a `propose` event; its event id is the proposal id."""
    doc = change.to_map()
    submit_event(key, node, wait, as_json, genesis, lambda c: events.Propose(**c, change=doc))


@app.command("add-validator")
def add_validator(
    public_key: PubkeyArgument,
    name: Annotated[
        str, typer.Option("--name", metavar="NAME", help=f"The validator's name (1..{MAX_NAME}).")
    ],
    url: Annotated[
        str,
        typer.Option(
            "--url",
            metavar="URL",
            help="Its peer URL, where the other validators reach it (the API port + 100, e.g. "
            "http://host:8900).",
        ),
    ],
    key: KeyOption,
    node: NodeOption,
    power: PowerOption = 1,
    wait: WaitOption = False,
    genesis: GenesisOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose a new validator (a node's key: `provledger status` shows it); prints the
    proposal id."""
    change = Change(
        ADD_VALIDATOR,
        public_key=parse_public_key(public_key, "PUBKEY"),
        name=name,
        url=check_url(url),
        power=check_power(power),
    )
    propose(key, node, wait, as_json, genesis, check_change(change, "'--name'"))


@app.command("set-power")
def set_power(
    public_key: PubkeyArgument,
    power: Annotated[int, typer.Option("--power", metavar="N", help=f"New power, 1..{MAX_POWER}.")],
    key: KeyOption,
    node: NodeOption,
    wait: WaitOption = False,
    genesis: GenesisOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose a validator's new voting power."""
    change = Change(
        SET_POWER, public_key=parse_public_key(public_key, "PUBKEY"), power=check_power(power)
    )
    propose(key, node, wait, as_json, genesis, change)


def _key_change_command(name: str, op: str, summary: str) -> None:
    """Register `provledger govern NAME PUBKEY`: propose `op` about one key."""

    def command(
        public_key: PubkeyArgument,
        key: KeyOption,
        node: NodeOption,
        wait: WaitOption = False,
        genesis: GenesisOption = None,
        as_json: JsonOption = False,
    ) -> None:
        change = Change(op, public_key=parse_public_key(public_key, "PUBKEY"))
        propose(key, node, wait, as_json, genesis, change)

    command.__doc__ = summary
    app.command(name)(command)


for _name, _op, _summary in (
    (
        "remove-validator",
        REMOVE_VALIDATOR,
        "Propose removing a validator (it keeps following the chain as a full node).",
    ),
    (
        "add-registrar",
        ADD_REGISTRAR,
        "Propose making a key a registrar (it may admit, suspend, reinstate and rotate).",
    ),
    ("remove-registrar", REMOVE_REGISTRAR, "Propose that a key stops being a registrar."),
):
    _key_change_command(_name, _op, _summary)


@app.command("set-param")
def set_param(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="A genesis parameter, e.g. time_window_ms.")
    ],
    value: Annotated[int, typer.Argument(metavar="VALUE", help="Its new value (an integer).")],
    key: KeyOption,
    node: NodeOption,
    wait: WaitOption = False,
    genesis: GenesisOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose a new value for a chain parameter that genesis holds (`params`)."""
    if name not in PARAM_NAMES:
        raise typer.BadParameter(
            f"{name!r} is not a chain parameter; one of {', '.join(sorted(PARAM_NAMES))}",
            param_hint="NAME",
        )
    try:
        ChainParams(**{name: value})
    except Malformed as exc:
        raise typer.BadParameter(str(exc), param_hint="VALUE") from exc
    propose(key, node, wait, as_json, genesis, Change(SET_PARAM, name=name, value=value))


@app.command("approve")
def approve(
    proposal: Annotated[
        str,
        typer.Argument(metavar="PROPOSAL_ID", help="The proposal (its propose event id, hex)."),
    ],
    key: KeyOption,
    node: NodeOption,
    wait: WaitOption = False,
    genesis: GenesisOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve an open proposal; it is decided once its approvers hold more than 2/3 of the
    voting power, and in force two blocks later."""
    proposal_id = parse_hash(proposal, "a proposal id", "PROPOSAL_ID")
    submit_event(
        key, node, wait, as_json, genesis, lambda c: events.Approve(**c, proposal=proposal_id)
    )


@app.command("list")
def list_proposals(
    node: NodeOption,
    status: Annotated[
        Status,
        typer.Option("--status", metavar="open|decided|all", help="Which proposals to list."),
    ] = Status.open,
    as_json: JsonOption = False,
) -> None:
    """List proposals (open ones by default) and the power that has approved them."""
    with open_client(node) as client:
        try:
            doc = client.governance_proposals(status.value)
        except ClientError as exc:
            fail_client(exc, f"cannot list the proposals of {node}")
    proposals = doc.get("proposals")
    if not isinstance(proposals, list) or not all(isinstance(p, dict) for p in proposals):
        fail(f"{node} answered a malformed proposal list")
    if as_json:
        print_json(doc)
        return
    typer.echo(proposals_text(doc, proposals, now_ms()), nl=False)


def proposals_text(doc: dict[str, Any], proposals: list[dict[str, Any]], now: int) -> str:
    """The proposals for a person: id, status and approved power, then the change; every
    line escaped (it is the node's text)."""
    total = doc.get("total_power")
    needed = 2 * total // 3 + 1 if isinstance(total, int) and total > 0 else None
    lines = [
        f"height {doc.get('height', '?')}: {len(proposals)} proposal(s); total power {total}"
        + ("" if needed is None else f", more than 2/3 is {needed}")
    ]
    for item in proposals:
        state = str(item.get("status", "?"))
        expires = item.get("expires")
        if state == "open" and isinstance(expires, int) and expires <= now:
            state = "expired"
        if state == "decided":
            state = f"decided, in force from height {item.get('effective', '?')}"
        approvals = item.get("approvals")
        approvers = approvals if isinstance(approvals, list) else []
        lines += [
            "",
            f"{item.get('id', '?')}  {state}",
            f"  change     {change_text(item.get('change'))}",
            f"  approved   power {item.get('approved_power', '?')} of {total}, by "
            f"{len(approvers)} validator(s)",
            f"  proposer   {item.get('proposer', '?')} at height {item.get('height', '?')}",
            f"  expires    {time_text(expires)}",
        ]
        lines += [f"    {approver}" for approver in approvers]
    if doc.get("truncated"):
        lines += ["", "(the node listed only part of its proposals)"]
    return "\n".join(escape_text(line) for line in lines) + "\n"


def change_text(change: Any) -> str:
    if not isinstance(change, dict):
        return "?"
    fields = " ".join(f"{k}={v}" for k, v in change.items() if k != "op")
    return f"{change.get('op', '?')} {fields}".strip()


def time_text(ms: Any) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "?"
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return str(ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
