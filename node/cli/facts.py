"""`provledger verify --grant ID` and `--participant PUBKEY`: one fact of the state, proven.

The node answers `GET /v1/state/{kind}/{id}` with the record (or its absence) and its proof
against the latest checkpoint's `state_root`; `ledger.provenance.verify_state` checks it
against the genesis validators. Exit 0 when the fact holds (the grant is live; the key is
admitted and active), 1 when it is proven not to (revoked, expired, absent, not admitted),
2 when the answer does not verify.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import typer

from ledger.errors import LedgerError, VerificationFailed
from ledger.genesis import Genesis
from ledger.provenance import VerifiedState, verify_state
from node.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_VERIFIED,
    fail_client,
    load_genesis,
    open_client,
    print_json,
)
from node.cli.story import iso_time, set_changes, signed_by
from node.client import ClientError, NodeClient

NodeGenesis = Callable[[NodeClient, str], Genesis]


def _refuse(kind: str, ident: bytes, reason: str, detail: str, as_json: bool) -> NoReturn:
    if as_json:
        print_json(
            {"verified": False, "kind": kind, "id": ident.hex(), "reason": reason, "detail": detail}
        )
    typer.echo(f"verification FAILED: {reason}: {detail}", err=True)
    raise typer.Exit(EXIT_NOT_VERIFIED)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {path}: {exc.strerror}", param_hint="'--bundle'"
        ) from exc
    except ValueError:
        return None


def _save(doc: Any, save: Path) -> None:
    try:
        save.write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write {save}: {exc.strerror}", param_hint="'--save'"
        ) from exc


def grant_fact(state: VerifiedState) -> tuple[bool, str, dict[str, Any]]:
    """Whether the grant is live at the checkpoint, a sentence saying why, and JSON fields."""
    record = state.record
    point = state.checkpoint
    if record is None:
        return False, f"proven absent at height {point.height}: no such grant", {"status": "absent"}
    base = {
        "dataset": record["dataset"].hex(),
        "grantor": record["grantor"].hex(),
        "to": record["to"].hex(),
        "purposes": list(record["purposes"]),
        "reshare": record["reshare"],
        "expires": record.get("expires"),
    }
    terms = f"on dataset {base['dataset']} to {base['to']} for {', '.join(base['purposes'])}"
    if "revoked" in record:
        revoke = record["revoked"].hex()
        return (
            False,
            f"revoked (by event {revoke}) {terms}",
            {
                **base,
                "status": "revoked",
                "revoked_by": revoke,
            },
        )
    expires = record.get("expires")
    if isinstance(expires, int) and expires <= point.time:
        return False, f"expired at {iso_time(expires)} {terms}", {**base, "status": "expired"}
    until = "never expires" if expires is None else f"expires {iso_time(expires)}"
    return True, f"live at the checkpoint {terms}; {until}", {**base, "status": "live"}


def participant_fact(state: VerifiedState, genesis: Genesis) -> tuple[bool, str, dict[str, Any]]:
    """Whether the key is admitted and active at the checkpoint, and why."""
    record = state.record
    key = state.ident
    if key in genesis.registrars:
        return True, "a genesis registrar (the genesis file admits it)", {"status": "registrar"}
    if record is None:
        if genesis.is_open:
            return True, "no participant record; this chain is open to any key", {"status": "open"}
        return (
            False,
            f"not admitted: proven absent at height {state.checkpoint.height}",
            {"status": "absent"},
        )
    status = record.get("status", "active")
    doc = {"name": record["name"], "role": record["role"], "status": status}
    holds = status == "active"
    verb = "admitted" if holds else f"admitted but {status}"
    return holds, f"{verb} as {record['role']} {record['name']!r}", doc


def check_fact(
    kind: str,
    ident: bytes,
    *,
    node: str | None,
    genesis_file: Path | None,
    bundle_file: Path | None,
    save: Path | None,
    as_json: bool,
    node_genesis: NodeGenesis,
) -> None:
    """Fetch (or read) the state answer for `kind` `ident`, verify it, report, exit."""
    if bundle_file is not None:
        if genesis_file is None:
            raise typer.BadParameter(
                "offline verification needs the genesis", param_hint="'--genesis'"
            )
        doc = _read(bundle_file)
        genesis = load_genesis(genesis_file)
    else:
        if node is None:
            raise typer.BadParameter("give --node, or --bundle and --genesis")
        with open_client(node) as client:
            try:
                doc = client.state(kind, ident)
            except ClientError as exc:
                fail_client(exc, f"cannot fetch the {kind}'s state from {node}")
            if save is not None:
                _save(doc, save)
            genesis = load_genesis(genesis_file) if genesis_file else node_genesis(client, node)
    try:
        state = verify_state(doc, genesis, kind, ident)
    except VerificationFailed as exc:
        _refuse(kind, ident, exc.reason, exc.detail, as_json)
    except (LedgerError, KeyError, TypeError, ValueError, AttributeError) as exc:
        _refuse(kind, ident, "malformed state answer", str(exc) or type(exc).__name__, as_json)
    if kind == "grant":
        holds, sentence, fields = grant_fact(state)
    else:
        holds, sentence, fields = participant_fact(state, genesis)
    point = state.checkpoint
    changes = set_changes(doc)
    if as_json:
        print_json(
            {
                "verified": True,
                "kind": kind,
                "id": ident.hex(),
                "holds": holds,
                **fields,
                "checkpoint": {"height": point.height, "time": point.time, "set_changes": changes},
                "genesis_source": "file" if genesis_file is not None else "node",
            }
        )
    else:
        typer.echo(f"{kind} {ident.hex()}")
        typer.echo(f"  {sentence}")
        typer.echo(
            f"  proven against the state root of the checkpoint at height {point.height} "
            f"({iso_time(point.time)}), signed by {signed_by(changes)}"
        )
    if not holds:
        raise typer.Exit(EXIT_FAILED)
