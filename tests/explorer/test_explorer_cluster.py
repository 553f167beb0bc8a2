"""The explorer in headless Chromium against a real node process (a one-validator local
cluster), and OpenLineage ingest through openlineage-python's own client and HTTP transport.

Each page test saves a screenshot under its temporary directory."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import attr
import httpx
import pytest
import rdflib
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import DatasetFacet, dataset_version_dataset
from openlineage.client.transport.http import HttpConfig, HttpTransport
from playwright.sync_api import Browser, Page, Route

from ledger import events
from ledger.crypto import PrivateKey
from ledger.genesis import Genesis
from tests.cluster.harness import free_port_block, wait_for
from tests.explorer.story import Story, now_ms

pytestmark = [pytest.mark.cluster, pytest.mark.browser]


@dataclass
class Live:
    root: Path
    genesis: Genesis
    url: str
    story: Story
    fingerprint: str
    keys: Path


def provledger(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"provledger {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A one-validator chain started by `provledger cluster up`, with the story recorded."""
    root = tmp_path_factory.mktemp("explorer") / "cluster"
    port = free_port_block(4)
    out = provledger(
        "cluster", "up", "--nodes", "1", "--dir", str(root), "--base-port", str(port), "--detach"
    )
    try:
        fingerprint = re.search(r"genesis fingerprint ([0-9a-f]{64})", out)
        explorer = re.search(r"explorer: (http://\S+)/explorer\?genesis=([0-9a-f]{64})", out)
        assert fingerprint and explorer, out
        url = explorer.group(1)
        genesis = Genesis.load(root / "genesis.json")

        def post(envelope: bytes) -> dict[str, Any]:
            response = httpx.post(
                f"{url}/v1/events?wait=commit", json={"envelope": envelope.hex()}, timeout=40.0
            )
            assert response.status_code == 200, response.text
            return dict(response.json())

        registrar = PrivateKey.load(root / "registrar.pem")
        story = Story(genesis.chain_id, registrar, post).record()
        keys = root.parent / "keys"
        keys.mkdir()
        for name in ("provider", "analyst", "auditor"):
            getattr(story, name).save(keys / f"{name}.pem")
        assert explorer.group(2) == fingerprint.group(1)
        yield Live(root, genesis, url, story, fingerprint.group(1), keys)
    finally:
        subprocess.run(
            [sys.executable, "-m", "node.cli", "cluster", "down", "--dir", str(root)],
            capture_output=True,
            timeout=60,
        )


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def open_page(page: Page, live: Live, path: str, pin: bool = True) -> None:
    query = f"?genesis={live.fingerprint}" if pin else ""
    page.goto(f"{live.url}/explorer{path}{query}")
    page.wait_for_selector("body[data-ready]")


def verdict(page: Page) -> tuple[str | None, str]:
    first = page.locator(".verdict").first
    return first.get_attribute("data-status"), first.inner_text()


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


def test_the_genesis_fingerprint_is_that_of_the_file(live: Live) -> None:
    on_disk = (live.root / "genesis.json").read_bytes()
    assert live.fingerprint == hashlib.sha256(on_disk).hexdigest()
    assert httpx.get(f"{live.url}/v1/genesis").content == on_disk
    assert f"genesis      {live.fingerprint}" in provledger("status", "--node", live.url)


def test_the_cli_exports_a_story_it_verified(live: Live, tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    raw.write_bytes(live.story.files["raw"])
    genesis = str(live.root / "genesis.json")
    text = provledger(
        "export", "prov", str(raw), "--node", live.url, "--genesis", genesis, "--format", "ttl"
    )
    graph = rdflib.Graph().parse(data=text, format="turtle")
    assert (
        len(list(graph.triples((None, rdflib.URIRef("http://www.w3.org/ns/prov#used"), None)))) == 4
    )
    doc = json.loads(
        provledger("export", "openlineage", str(raw), "--node", live.url, "--genesis", genesis)
    )
    assert doc["dataset"] == live.story.ids["raw"].hex()


def test_the_dataset_page_shows_the_story_verified(page: Page, live: Live, tmp_path: Path) -> None:
    raw = live.story.ids["raw"].hex()
    open_page(page, live, f"/datasets/{raw}")
    status, text = verdict(page)
    assert status == "verified", text
    assert "signed by 1 of 1 validators" in text
    assert "Complete" in page.inner_text("#completeness")
    assert page.inner_text("h1") == "Weather observations"
    bundle = httpx.get(f"{live.url}/v1/datasets/{raw}/provenance").json()
    types = page.eval_on_selector_all("#timeline li", "els => els.map(e => e.dataset.type)")
    assert types == [e["type"] for e in bundle["events"]]
    grants = dict(
        page.eval_on_selector_all(
            "#grants tbody tr", "rs => rs.map(r => [r.dataset.grant, r.dataset.status])"
        )
    )
    assert grants == {
        live.story.events["grant"].event_id.hex(): "live",
        live.story.events["grant to revoke"].event_id.hex(): "revoked",
    }
    assert page.inner_text("#status") == "active"
    assert "Acme Data*" in page.inner_text("main")  # a node-reported name, marked
    shoot(page, tmp_path, "dataset")


def test_a_destroyed_dataset_shows_its_status(page: Page, live: Live) -> None:
    open_page(page, live, f"/datasets/{live.story.ids['side'].hex()}")
    assert verdict(page)[0] == "verified"
    assert page.inner_text("#status") == "destroyed"


def _tamper(change: Any) -> Any:
    def handle(route: Route) -> None:
        response = route.fetch()
        bundle = response.json()
        change(bundle)
        route.fulfill(response=response, body=json.dumps(bundle))

    return handle


def _audit_path(bundle: dict[str, Any]) -> None:
    bundle["events"][1]["audit_path"][0] = "00" * 32


def _commit_signature(bundle: dict[str, Any]) -> None:
    signature = bundle["checkpoint"]["commit"]["signatures"][0]
    signature["signature"] = signature["signature"][:20] + "00" + signature["signature"][22:]


def _left_out(bundle: dict[str, Any]) -> None:
    del bundle["events"][4]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_audit_path, "inclusion proof invalid"),
        (_commit_signature, "commit invalid"),
        (_left_out, "incomplete: the node omitted events"),
    ],
)
def test_a_tampered_bundle_shows_the_failure(
    page: Page, live: Live, tmp_path: Path, change: Any, reason: str
) -> None:
    page.route("**/v1/datasets/*/provenance*", _tamper(change))
    open_page(page, live, f"/datasets/{live.story.ids['raw'].hex()}")
    status, text = verdict(page)
    assert (
        status == "failed" and page.locator(".verdict").first.get_attribute("data-reason") == reason
    )
    assert f"NOT verified: {reason}" in text
    assert page.locator("#timeline").count() == 0
    assert "Verified" not in page.inner_text("main")
    shoot(page, tmp_path, reason.split(":")[0].replace(" ", "-"))


def _drop(page: Page, name: str, data: bytes) -> None:
    handle = page.evaluate_handle(
        """([name, bytes]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], name));
            return dt;
        }""",
        [name, list(data)],
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": handle})


def test_dropping_a_file_finds_its_dataset(page: Page, live: Live, tmp_path: Path) -> None:
    open_page(page, live, "")
    shoot(page, tmp_path, "search")
    summary = live.story.ids["summary"].hex()
    _drop(page, "summary.csv", live.story.files["summary"])
    page.wait_for_url(f"**/explorer/datasets/{summary}*")
    page.wait_for_selector("body[data-ready]")
    assert verdict(page)[0] == "verified"
    open_page(page, live, "")
    _drop(page, "unknown.csv", b"nobody registered this")
    page.wait_for_selector("[data-status=unknown-file]")
    assert "not a registered dataset" in page.inner_text("#search-result")


def test_choosing_a_file_and_pasting_a_hash_find_their_pages(
    page: Page, live: Live, tmp_path: Path
) -> None:
    open_page(page, live, "")
    raw = live.story.ids["raw"].hex()
    path = tmp_path / "raw.csv"
    path.write_bytes(live.story.files["raw"])
    page.set_input_files("#dataset-file", str(path))
    page.wait_for_url(f"**/explorer/datasets/{raw}*")
    open_page(page, live, "")
    event_id = live.story.events["use"].event_id.hex()
    page.fill("#search", event_id)
    page.press("#search", "Enter")
    page.wait_for_url(f"**/explorer/events/{event_id}*")
    page.wait_for_selector("body[data-ready]")
    assert verdict(page)[0] == "verified"
    open_page(page, live, "")
    key = live.story.analyst.public_key.hex()
    page.fill("#search", key)
    page.press("#search", "Enter")
    page.wait_for_url(f"**/explorer/participants/{key}*")


def graph(page: Page) -> tuple[set[str], set[tuple[str, str]]]:
    page.wait_for_selector("#lineage[data-state=ready]")
    nodes = page.eval_on_selector_all("#lineage .node", "ns => ns.map(n => n.dataset.dataset)")
    edges = page.eval_on_selector_all(
        "#lineage .edge", "es => es.map(e => [e.dataset.from, e.dataset.to])"
    )
    return set(nodes), {(a, b) for a, b in edges}


def test_the_lineage_graph_has_the_right_nodes_and_edges(
    page: Page, live: Live, tmp_path: Path
) -> None:
    ids = {name: value.hex() for name, value in live.story.ids.items()}
    open_page(page, live, f"/datasets/{ids['report']}")
    nodes, edges = graph(page)
    assert nodes == {ids["raw"], ids["summary"], ids["side"], ids["report"]}
    assert edges == {
        (ids["raw"], ids["summary"]),
        (ids["summary"], ids["report"]),
        (ids["side"], ids["report"]),
    }
    assert page.locator("#lineage .node[data-verified=false]").count() == 0
    shoot(page, tmp_path, "lineage-report")
    page.select_option("#depth", "1")
    page.wait_for_selector("#lineage[data-state=ready]")
    nodes, edges = graph(page)
    assert nodes == {ids["summary"], ids["side"], ids["report"]}
    assert edges == {(ids["summary"], ids["report"]), (ids["side"], ids["report"])}
    open_page(page, live, f"/datasets/{ids['summary']}")
    nodes, edges = graph(page)
    assert nodes == {ids["raw"], ids["summary"], ids["report"], ids["chart"]}
    assert edges == {
        (ids["raw"], ids["summary"]),
        (ids["summary"], ids["report"]),
        (ids["summary"], ids["chart"]),
    }
    page.click(f"#lineage .node[data-dataset='{ids['chart']}']")
    page.wait_for_url(f"**/explorer/datasets/{ids['chart']}*")
    page.wait_for_selector("body[data-ready]")
    assert page.inner_text("h1") == "Chart"


def test_without_a_pinned_genesis_nothing_is_verified(
    page: Page, live: Live, tmp_path: Path
) -> None:
    raw = live.story.ids["raw"].hex()
    open_page(page, live, f"/datasets/{raw}", pin=False)
    assert verdict(page)[0] == "unpinned"
    assert "Verified" not in page.inner_text("main")
    shoot(page, tmp_path, "unpinned")
    page.goto(f"{live.url}/explorer/datasets/{raw}?genesis={'0' * 64}")
    page.wait_for_selector("body[data-ready]")
    assert verdict(page)[0] == "unpinned"
    assert "another chain or another genesis file" in page.inner_text("[data-problem]")
    page.fill("#genesis-fingerprint", live.fingerprint)
    page.click("#pin-fingerprint")
    page.wait_for_url(f"**genesis={live.fingerprint}*")
    page.wait_for_selector("body[data-ready]")
    assert verdict(page)[0] == "verified"
    open_page(page, live, f"/datasets/{raw}", pin=False)  # remembered for this chain
    assert verdict(page)[0] == "verified"
    assert "remembered" in page.inner_text("#trust")


def test_pinning_by_pasting_the_genesis_file(page: Page, live: Live) -> None:
    open_page(page, live, "/chain", pin=False)
    assert verdict(page)[0] == "unpinned"
    page.fill("#genesis-text", (live.root / "genesis.json").read_text())
    page.click("#pin-pasted")
    page.wait_for_url(f"**genesis={live.fingerprint}*")
    page.wait_for_selector("body[data-ready]")
    assert verdict(page)[0] == "verified"


def test_chain_block_event_and_participant_pages(page: Page, live: Live, tmp_path: Path) -> None:
    open_page(page, live, "/chain")
    status, text = verdict(page)
    assert status == "verified" and "Checkpoint verified" in text
    assert page.locator("#validators tbody tr").count() == 1
    assert "yes ✓" in page.inner_text("#validators")
    assert page.locator("#blocks tbody tr").count() >= 1
    shoot(page, tmp_path, "chain")
    event_id = live.story.events["derive summary"].event_id.hex()
    height = httpx.get(f"{live.url}/v1/events/{event_id}").json()["height"]
    open_page(page, live, f"/blocks/{height}")
    assert verdict(page)[0] == "verified"
    assert event_id[:16] in page.inner_text("main")
    shoot(page, tmp_path, "block")
    open_page(page, live, f"/events/{event_id}")
    status, text = verdict(page)
    assert status == "verified" and "included at leaf" in text
    assert page.inner_text("h1") == "Event: derive"
    shoot(page, tmp_path, "event")
    key = live.story.analyst.public_key.hex()
    open_page(page, live, f"/participants/{key}")
    items = page.locator("#participant-events li")
    assert items.count() >= 5
    assert items.first.inner_text().endswith("signed ✓")
    shoot(page, tmp_path, "participant")


def test_a_tampered_block_is_refused(page: Page, live: Live) -> None:
    def swap_events(route: Route) -> None:
        response = route.fetch()
        block = response.json()
        block["events"] = block["events"][:-1]
        route.fulfill(response=response, body=json.dumps(block))

    event_id = live.story.events["derive summary"].event_id.hex()
    height = httpx.get(f"{live.url}/v1/events/{event_id}").json()["height"]
    page.route("**/v1/blocks/*", swap_events)
    open_page(page, live, f"/blocks/{height}")
    assert verdict(page)[0] == "failed"
    assert page.locator(".verdict").first.get_attribute("data-reason") == "events mismatch"


# --- OpenLineage ingest through the real openlineage-python client --------------------------


@attr.define
class ProvledgerDatasetFacet(DatasetFacet):
    """The `provledger` dataset facet naming a dataset by its SHA-256."""

    sha256: str
    _additional_skip_redact: ClassVar[list[str]] = ["sha256"]

    @staticmethod
    def _get_schema() -> str:
        return "https://provledger.dev/spec/facets/1-0-0/ProvledgerDatasetFacet.json#/$defs/ProvledgerDatasetFacet"


@pytest.fixture(scope="module")
def ingest_url(live: Live) -> Iterator[str]:
    port = free_port_block(1)
    log = (live.root.parent / "ingest.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node.cli",
            "openlineage",
            "serve",
            "--key",
            str(live.keys / "analyst.pem"),
            "--node",
            live.url,
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(healthy, 60, "the OpenLineage ingest server")
        except AssertionError:
            raise AssertionError((live.root.parent / "ingest.log").read_text()) from None
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def lineage_client(url: str) -> OpenLineageClient:
    return OpenLineageClient(transport=HttpTransport(HttpConfig(url=url, timeout=60.0)))


def run_event(inputs: list[InputDataset], outputs: list[OutputDataset]) -> RunEvent:
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="airflow://etl", name="weather_summary"),
        inputs=inputs,
        outputs=outputs,
        producer="https://example.test/airflow",
    )


def by_version(name: str, digest: bytes) -> InputDataset:
    facet = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=digest.hex())
    return InputDataset(namespace="s3://lake", name=name, facets={"version": facet})


def by_facet(name: str, digest: bytes) -> OutputDataset:
    return OutputDataset(
        namespace="s3://lake",
        name=name,
        facets={"provledger": ProvledgerDatasetFacet(sha256=digest.hex())},
    )


def test_a_completed_run_is_recorded_as_signed_events(live: Live, ingest_url: str) -> None:
    raw = live.story.ids["raw"]
    output = bytes.fromhex(uuid.uuid4().hex * 2)
    event = run_event(
        [by_version("weather.csv", raw)], [by_facet("weather_by_month.parquet", output)]
    )
    lineage_client(ingest_url).emit(event)
    summary = httpx.get(f"{live.url}/v1/datasets/{output.hex()}").json()
    assert summary["parents"] == [raw.hex()]
    assert summary["owner"] == live.story.analyst.public_key.hex()
    exported = httpx.get(f"{live.url}/v1/datasets/{output.hex()}/openlineage").json()["events"][0]
    assert exported["run"]["runId"] == event.run.runId
    assert (exported["job"]["namespace"], exported["job"]["name"]) == (
        "airflow://etl",
        "weather_summary",
    )
    assert [d["name"] for d in exported["inputs"]] == [raw.hex()]
    uses = httpx.get(f"{live.url}/v1/datasets/{raw.hex()}/provenance").json()["events"]
    assert any(
        e["type"] == "use"
        and e["actor"] == live.story.analyst.public_key.hex()
        and e["leaf_index"] > 0
        for e in uses
    )


def test_a_run_using_a_dataset_without_a_grant_is_refused_to_the_client(
    live: Live, ingest_url: str
) -> None:
    private = bytes.fromhex(uuid.uuid4().hex * 2)
    body = events.Register(
        chain=live.genesis.chain_id,
        actor=live.story.provider.public_key,
        time=now_ms(),
        nonce=uuid.uuid4().bytes,
        dataset=private,
        meta={"title": "private"},
        open=False,
    )
    signed = events.sign_event(live.story.provider, body)
    assert (
        httpx.post(
            f"{live.url}/v1/events?wait=commit",
            json={"envelope": signed.envelope.hex()},
            timeout=40,
        ).status_code
        == 200
    )
    output = bytes.fromhex(uuid.uuid4().hex * 2)
    with pytest.raises(requests.HTTPError) as refused:
        lineage_client(ingest_url).emit(
            run_event([by_version("private.csv", private)], [by_facet("out", output)])
        )
    response = refused.value.response
    assert response.status_code == 403
    problem = response.json()
    assert problem["refused"]["type"] == "use" and problem["recorded"] == []
    assert "refused the use" in problem["detail"]
    assert httpx.get(f"{live.url}/v1/datasets/{output.hex()}").status_code == 404


def test_a_run_without_hashes_is_refused_with_how_to_name_them(live: Live, ingest_url: str) -> None:
    nameless = InputDataset(namespace="s3://lake", name="weather.csv")
    with pytest.raises(requests.HTTPError) as refused:
        lineage_client(ingest_url).emit(run_event([nameless], []))
    response = refused.value.response
    assert response.status_code == 400
    assert "datasetVersion" in response.json()["detail"]
    started = run_event([nameless], [])
    started.eventType = RunState.START
    lineage_client(ingest_url).emit(started)  # a START records nothing and is accepted
