"""`provledger suspend|reinstate|rotate`: a participant's lifecycle (docs/PROTOCOL.md §19.3).

A registrar suspends a key (it signs nothing new until reinstated) and reinstates it. A
participant rotates its key to a new one (`--key` the old key, `--new` the new one), or a
registrar rotates a lost key (`--key` the registrar's, `--subject` the lost public key): the
new key signs the rotation message to prove it is held, and the identity's grants, datasets
and copies follow it. So that a registrar never holds the participant's new private key,
`possession` signs the rotation message where the new key lives, and the registrar submits
the signature with `rotate --to NEW_PUBKEY --possession HEX`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ledger import crypto, events
from ledger.errors import BadSignature
from ledger.governance import rotation_message
from node.cli.common import (
    GenesisOption,
    JsonOption,
    KeyOption,
    NodeOption,
    WaitOption,
    chain_of,
    load_genesis,
    load_key,
    open_client,
    parse_public_key,
    print_json,
    submit_event,
)

SubjectArgument = Annotated[
    str, typer.Argument(metavar="PUBKEY", help="The participant's public key (66 hex digits).")
]
RegistrarKeyOption = Annotated[
    Path,
    typer.Option("--key", metavar="KEY.pem", help="A registrar's private key; it signs."),
]


def _subject_command(cls: type[events.Suspend] | type[events.Reinstate]) -> Callable[..., None]:
    """`provledger suspend|reinstate PUBKEY`: a registrar's event about one key."""

    def command(
        public_key: SubjectArgument,
        key: RegistrarKeyOption,
        node: NodeOption,
        wait: WaitOption = False,
        genesis: GenesisOption = None,
        as_json: JsonOption = False,
    ) -> None:
        subject = parse_public_key(public_key, "PUBKEY")
        submit_event(key, node, wait, as_json, genesis, lambda c: cls(**c, subject=subject))

    command.__name__ = cls.TYPE  # the command's name in `provledger`
    return command


suspend = _subject_command(events.Suspend)
suspend.__doc__ = """Suspend a participant's key (registrar): it signs nothing new until reinstated;
its history stays."""
reinstate = _subject_command(events.Reinstate)
reinstate.__doc__ = "Lift a suspension (registrar)."


SubjectOption = Annotated[
    str | None,
    typer.Option(
        "--subject",
        metavar="OLD_PUBKEY",
        help="The lost key to rotate, when --key is a registrar's (default: --key's own).",
    ),
]


def rotate(
    key: KeyOption,
    node: NodeOption,
    new: Annotated[
        Path | None,
        typer.Option(
            "--new", metavar="NEW.pem", help="The new private key; it proves it is held by signing."
        ),
    ] = None,
    subject: SubjectOption = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="NEW_PUBKEY",
            help="Instead of --new: the new public key, with its --possession signature.",
        ),
    ] = None,
    possession: Annotated[
        str | None,
        typer.Option(
            "--possession",
            metavar="HEX",
            help="With --to: the new key's signature of the rotation (`provledger possession`).",
        ),
    ] = None,
    wait: WaitOption = False,
    genesis: GenesisOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rotate a key to a new one: grants, datasets and copies follow; the old key is refused
    from then on. `--key` is the old key, or a registrar's with `--subject` for a lost key.
    The new key is `--new NEW.pem`, or (so that a registrar never holds it) `--to NEW_PUBKEY
    --possession HEX` from `provledger possession`."""
    signer = load_key(key)
    old = signer.public_key if subject is None else parse_public_key(subject, "'--subject'")
    if subject is not None and old == signer.public_key:
        raise typer.BadParameter(
            "--subject is --key's own key: leave --subject out to rotate your own key",
            param_hint="'--subject'",
        )
    new_key = None if new is None else load_key(new, "'--new'")
    if (new_key is None) == (to is None) or (to is None) != (possession is None):
        raise typer.BadParameter(
            "name the new key either with --new NEW.pem or with --to NEW_PUBKEY and --possession",
            param_hint="'--new' / '--to'",
        )
    target = new_key.public_key if new_key is not None else parse_public_key(str(to), "'--to'")
    proof = None if possession is None else parse_signature(possession)
    if target == old:
        raise typer.BadParameter("the new key is the key being rotated", param_hint="'--new'")

    def build(common: dict[str, Any]) -> events.EventBody:
        message = rotation_message(common["chain"], old, target)
        signature = new_key.sign(message) if new_key is not None else proof
        assert signature is not None
        try:
            crypto.verify(target, message, signature)
        except BadSignature as exc:
            raise typer.BadParameter(
                f"it is not {target.hex()}'s signature of the rotation of {old.hex()} on chain "
                f"{common['chain']!r}",
                param_hint="'--possession'",
            ) from exc
        return events.Rotate(**common, subject=old, to=target, possession=signature)

    submit_event(key, node, wait, as_json, genesis, build)


def possession(
    new: Annotated[
        Path, typer.Option("--new", metavar="NEW.pem", help="The new private key; it signs.")
    ],
    subject: Annotated[
        str, typer.Option("--subject", metavar="OLD_PUBKEY", help="The key it replaces.")
    ],
    genesis: GenesisOption = None,
    node: Annotated[
        str | None,
        typer.Option(
            "--node", metavar="URL", help="Without --genesis: the node whose chain it is."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Sign the rotation of OLD_PUBKEY to your new key, for a registrar to submit with
    `rotate --to --possession` (nothing is sent; the new private key stays with you)."""
    new_key = load_key(new, "'--new'")
    old = parse_public_key(subject, "'--subject'")
    if new_key.public_key == old:
        raise typer.BadParameter("the new key is the key being rotated", param_hint="'--new'")
    if genesis is not None:
        chain_id = load_genesis(genesis).chain_id
    elif node is not None:
        with open_client(node) as client:
            chain_id = chain_of(client, node, None)
    else:
        raise typer.BadParameter("give --genesis FILE or --node URL (the chain to sign for)")
    signature = new_key.sign(rotation_message(chain_id, old, new_key.public_key)).hex()
    if as_json:
        print_json({"subject": old.hex(), "to": new_key.public_key.hex(), "possession": signature})
        return
    typer.echo(f"new key     {new_key.public_key.hex()}")
    typer.echo(f"possession  {signature}")
    typer.echo(
        f"a registrar submits: provledger rotate --subject {old.hex()} --to "
        f"{new_key.public_key.hex()} --possession {signature} --key REGISTRAR.pem --node URL"
    )


def parse_signature(value: str) -> bytes:
    text = value.strip().lower().removeprefix("0x")
    try:
        signature = bytes.fromhex(text)
    except ValueError:
        signature = b""
    if len(signature) != crypto.SIGNATURE_SIZE:
        raise typer.BadParameter(
            f"a possession signature is {2 * crypto.SIGNATURE_SIZE} hex digits, not {value!r}",
            param_hint="'--possession'",
        )
    return signature
