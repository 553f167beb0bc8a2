"""`provledger verify` against a node that may hide things (docs/PROTOCOL.md §9.5): complete
stories over pages, proven absence, a node that hides a page or a dataset, and one state fact
(`--grant`, `--participant`). The node is a real HTTP server in a thread that answers from a
real store, honestly or not."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from ledger import crypto, provenance
from ledger.genesis import Genesis
from ledger.store import Store
from tests.node.fake_http import send, serving_http
from tests.node.test_cli import Chain, chain, invoke  # noqa: F401 - `chain` is a fixture

PAGE_BYTES = 3_000


class FakeNode:
    """Answers the verify calls from `store`; `lie` picks how it misbehaves."""

    def __init__(self, store: Store, genesis: Genesis) -> None:
        self.store = store
        self.genesis = genesis
        self.lie: str | None = None
        self.lock = threading.Lock()

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        with self.lock:
            if parts == ["v1", "genesis"]:
                return 200, self.genesis.to_json()
            if parts[:2] == ["v1", "datasets"] and parts[3:] == ["provenance"]:
                return self.bundle(bytes.fromhex(parts[2]), query)
            if parts[:2] == ["v1", "state"] and self.lie != "no-proofs":
                answer = provenance.state_answer(self.store, parts[2], bytes.fromhex(parts[3]))
                return 200, answer
            return 404, {"title": "Not found", "detail": path}

    def bundle(self, dataset: bytes, query: dict[str, list[str]]) -> tuple[int, Any]:
        if self.lie in ("unknown", "no-proofs"):
            return 404, {"title": "Not found", "detail": "no registered dataset"}
        after = int(query.get("after", ["-1"])[0])
        height = int(query["height"][0]) if "height" in query else None
        page = provenance.proof_bundle(
            self.store, dataset, after=after, height=height, max_bytes=PAGE_BYTES
        )
        if page is None:
            return 404, {"title": "Not found", "detail": "no registered dataset"}
        if self.lie == "skip-page" and after < 0 and page["page"]["next"] is not None:
            # the second page is never served: the first one points past it
            second = provenance.proof_bundle(
                self.store,
                dataset,
                after=page["page"]["next"],
                height=page["checkpoint"]["header"]["height"],
                max_bytes=PAGE_BYTES,
            )
            assert second is not None
            page["page"]["next"] = second["events"][-1]["leaf_index"]
        return 200, page


@pytest.fixture
def fake(chain: Chain, tmp_path: Path) -> Iterator[tuple[FakeNode, str]]:  # noqa: F811
    genesis = Genesis.load(chain.genesis_path)
    store = Store(tmp_path / "store", genesis)
    node = FakeNode(store, genesis)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            status, doc = node.answer(url.path, parse_qs(url.query))
            kind = "application/json" if status == 200 else "application/problem+json"
            send(self, status, json.dumps(doc).encode(), kind)

        def log_message(self, *args: Any) -> None:
            pass

    try:
        with serving_http(Handler) as url:
            yield node, url
    finally:
        store.close()


def verify(chain: Chain, url: str, *args: str) -> Any:  # noqa: F811
    return invoke("verify", *args, "--node", url, "--genesis", str(chain.genesis_path))


def test_verify_follows_the_pages_and_saves_the_whole_story(
    chain: Chain,  # noqa: F811
    fake: tuple[FakeNode, str],
    tmp_path: Path,
) -> None:
    node, url = fake
    first = provenance.proof_bundle(node.store, chain.dataset, max_bytes=PAGE_BYTES)
    assert first is not None and first["page"]["next"] is not None  # more than one page
    saved = tmp_path / "whole.json"
    result = verify(chain, url, chain.dataset.hex(), "--save", str(saved))
    assert result.exit_code == 0, result.output
    assert "complete: these 7 events are the dataset's whole committed history" in result.stdout
    assert "status at the checkpoint: active" in result.stdout
    bundle = json.loads(saved.read_text())
    assert len(bundle["events"]) == 7 and bundle["page"]["next"] is None
    offline = invoke("verify", "--bundle", str(saved), "--genesis", str(chain.genesis_path))
    assert offline.exit_code == 0, offline.output


def test_a_node_that_skips_a_page_fails_with_exit_2(
    chain: Chain,  # noqa: F811
    fake: tuple[FakeNode, str],
) -> None:
    node, url = fake
    node.lie = "skip-page"
    result = verify(chain, url, chain.dataset.hex())
    assert result.exit_code == 2, result.output
    assert "verification FAILED: incomplete: the node omitted events" in result.output


def test_a_saved_bundle_with_an_event_dropped_fails(chain: Chain) -> None:  # noqa: F811
    bundle = json.loads(chain.bundle_path.read_text())
    use = next(e for e in bundle["events"] if e["type"] == "use")
    bundle["events"].remove(use)
    chain.bundle_path.write_text(json.dumps(bundle))
    result = invoke(
        "verify", "--bundle", str(chain.bundle_path), "--genesis", str(chain.genesis_path)
    )
    assert result.exit_code == 2
    assert "incomplete: the node omitted events" in result.output


def test_an_unknown_dataset_is_proven_absent(
    chain: Chain,  # noqa: F811
    fake: tuple[FakeNode, str],
) -> None:
    _, url = fake
    unknown = crypto.sha256(b"never registered")
    result = verify(chain, url, unknown.hex())
    assert result.exit_code == 1, result.output
    assert f"dataset {unknown.hex()}: proven absent at height 2" in result.stdout
    as_json = verify(chain, url, unknown.hex(), "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == {
        "verified": True,
        "dataset": unknown.hex(),
        "absent": True,
        "height": 2,
        "set_changes": 0,
    }


def test_a_node_hiding_a_dataset_is_caught(
    chain: Chain,  # noqa: F811
    fake: tuple[FakeNode, str],
) -> None:
    node, url = fake
    node.lie = "unknown"
    result = verify(chain, url, chain.dataset.hex())
    assert result.exit_code == 2, result.output
    assert "verification FAILED: hidden dataset" in result.output
    node.lie = "no-proofs"
    result = verify(chain, url, chain.dataset.hex())
    assert result.exit_code == 2, result.output
    assert "verification FAILED: unknown without proof" in result.output


def test_verify_grant(chain: Chain, fake: tuple[FakeNode, str], tmp_path: Path) -> None:  # noqa: F811
    _, url = fake
    saved = tmp_path / "grant.json"
    result = verify(chain, url, "--grant", chain.grant_id.hex(), "--save", str(saved))
    assert result.exit_code == 0, result.output
    assert "live at the checkpoint" in result.stdout
    assert "analytics, derive" in result.stdout
    offline = invoke(
        "verify",
        "--grant",
        chain.grant_id.hex(),
        "--bundle",
        str(saved),
        "--genesis",
        str(chain.genesis_path),
        "--json",
    )
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.stdout)["status"] == "live"
    # the revoked grant of the fixture: proven, and not live
    revoked = next(
        e["grant"]
        for e in json.loads(chain.bundle_path.read_text())["events"]
        if e["type"] == "revoke"
    )
    result = verify(chain, url, "--grant", revoked)
    assert result.exit_code == 1, result.output
    assert "revoked" in result.stdout
    result = verify(chain, url, "--grant", "ab" * 32)
    assert result.exit_code == 1
    assert "proven absent at height 2" in result.stdout
    # a tampered answer does not verify
    doc = json.loads(saved.read_text())
    doc["value"] = doc["value"][:-2] + ("00" if doc["value"][-2:] != "00" else "01")
    saved.write_text(json.dumps(doc))
    tampered = invoke(
        "verify",
        "--grant",
        chain.grant_id.hex(),
        "--bundle",
        str(saved),
        "--genesis",
        str(chain.genesis_path),
    )
    assert tampered.exit_code == 2
    assert "verification FAILED" in tampered.output


def test_verify_participant(chain: Chain, fake: tuple[FakeNode, str]) -> None:  # noqa: F811
    _, url = fake
    result = verify(chain, url, "--participant", chain.bob.public_key.hex())
    assert result.exit_code == 0, result.output
    assert "admitted as participant 'bob'" in result.stdout
    stranger = crypto.PrivateKey.generate().public_key
    result = verify(chain, url, "--participant", stranger.hex(), "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["holds"] is False and doc["status"] == "absent" and doc["verified"] is True
    usage = invoke("verify", "--participant", "nothex", "--node", url)
    assert usage.exit_code == 2
