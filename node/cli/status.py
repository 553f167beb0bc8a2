"""`provledger status`: a node's view of the chain and its peers."""

from __future__ import annotations

import typer

from node.cli.common import (
    JsonOption,
    NodeOption,
    escape_text,
    fail_client,
    open_client,
    print_json,
)
from node.client import ClientError


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
        f"genesis      {doc.get('genesis_fingerprint', '?')} (fingerprint: SHA-256 of the file)",
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
    # Everything above came from the node: escape it before it reaches the terminal.
    typer.echo("\n".join(escape_text(line) for line in lines))
