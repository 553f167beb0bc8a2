"""`provledger keygen`: make a P-256 key pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledger import crypto


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
