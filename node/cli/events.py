"""`provledger admit` and `provledger submit ...`: sign an event and submit it."""

from __future__ import annotations

from typing import Annotated

import typer

from ledger import events
from node.cli.common import (
    GenesisOption,
    JsonOption,
    KeyOption,
    MetaOption,
    NodeOption,
    Role,
    WaitOption,
    dataset_meta,
    parse_dataset,
    parse_expires,
    parse_hash,
    parse_meta,
    parse_public_key,
    submit_event,
    typer_app,
)
from node.clock import now_ms

app = typer_app("Sign an event with your key and submit it to a node.")


# --- events --------------------------------------------------------------------------------


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
    genesis: GenesisOption = None,
    as_json: JsonOption = False,
) -> None:
    """Admit a key to a permissioned chain (signed by a registrar)."""
    subject = parse_public_key(public_key, "PUBKEY")
    submit_event(
        key,
        node,
        wait,
        as_json,
        genesis,
        lambda c: events.Admit(**c, subject=subject, role=role.value, name=name),
    )


DatasetArgument = Annotated[
    str, typer.Argument(metavar="FILE_OR_HASH", help="A local file (hashed here) or its hash.")
]


@app.command("register")
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
    genesis: GenesisOption = None,
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
        genesis,
        lambda c: events.Register(**c, dataset=ref.dataset, meta=info, open=open_),
    )


@app.command("grant")
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
    genesis: GenesisOption = None,
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
        genesis,
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


@app.command("use")
def submit_use(
    dataset: DatasetArgument,
    purpose: Annotated[
        str, typer.Option("--purpose", metavar="PURPOSE", help="What the data is used for.")
    ],
    key: KeyOption,
    node: NodeOption,
    grant: GrantOption = None,
    wait: WaitOption = False,
    genesis: GenesisOption = None,
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
        genesis,
        lambda c: events.Use(**c, dataset=ref.dataset, purpose=purpose, grant=grant_id),
    )


@app.command("transfer")
def submit_transfer(
    dataset: DatasetArgument,
    to: Annotated[
        str, typer.Option("--to", metavar="PUBKEY", help="The recipient's public key (hex).")
    ],
    key: KeyOption,
    node: NodeOption,
    grant: GrantOption = None,
    wait: WaitOption = False,
    genesis: GenesisOption = None,
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
        genesis,
        lambda c: events.Transfer(**c, dataset=ref.dataset, to=recipient, grant=grant_id),
    )


@app.command("derive")
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
    genesis: GenesisOption = None,
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
        genesis,
        lambda c: events.Derive(**c, dataset=ref.dataset, inputs=inputs, meta=info),
    )


@app.command("revoke")
def submit_revoke(
    grant: Annotated[str, typer.Argument(metavar="GRANT_ID", help="The grant's event id.")],
    key: KeyOption,
    node: NodeOption,
    wait: WaitOption = False,
    genesis: GenesisOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a grant you made."""
    grant_id = parse_hash(grant, "a grant id", "GRANT_ID")
    submit_event(key, node, wait, as_json, genesis, lambda c: events.Revoke(**c, grant=grant_id))


@app.command("destroy")
def submit_destroy(
    dataset: DatasetArgument,
    key: KeyOption,
    node: NodeOption,
    wait: WaitOption = False,
    genesis: GenesisOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record that you deleted your copy of a dataset."""
    ref = parse_dataset(dataset)
    submit_event(
        key, node, wait, as_json, genesis, lambda c: events.Destroy(**c, dataset=ref.dataset)
    )


@app.command("attest")
def submit_attest(
    dataset: DatasetArgument,
    claim: Annotated[
        str, typer.Option("--claim", metavar="TEXT", help="Your statement about the dataset.")
    ],
    key: KeyOption,
    node: NodeOption,
    meta: MetaOption = None,
    wait: WaitOption = False,
    genesis: GenesisOption = None,
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
        genesis,
        lambda c: events.Attest(**c, dataset=ref.dataset, claim=claim, meta=info),
    )
