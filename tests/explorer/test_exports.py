"""PROV and OpenLineage exports of a verified story (node routes and CLI), the genesis file
served byte for byte with its fingerprint, the explorer's static routes, and the ingest
server's planning of OpenLineage runs; against an in-process node with a real story."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prov.model as pm
import pytest
import rdflib
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import dataset_version_dataset
from openlineage.client.serde import Serde
from typer.testing import CliRunner

from ledger import events
from ledger.genesis import Genesis
from ledger.provenance import VerifiedStory, join_pages, verify_bundle
from node.cli import app as cli_app
from node.lineage import ingest
from node.lineage import openlineage as ol
from node.server.http.explorer import CONTENT_SECURITY_POLICY
from tests.explorer.story import Story
from tests.node.conftest import RunningNode, assert_problem, running_node

PROV = rdflib.Namespace("http://www.w3.org/ns/prov#")
RELATION_CLASSES = {
    "used": pm.ProvUsage,
    "wasGeneratedBy": pm.ProvGeneration,
    "wasDerivedFrom": pm.ProvDerivation,
    "wasAttributedTo": pm.ProvAttribution,
    "wasAssociatedWith": pm.ProvAssociation,
    "wasInvalidatedBy": pm.ProvInvalidation,
}


@dataclass
class Chain:
    node: RunningNode
    story: Story
    genesis_path: Path


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with running_node(tmp_path_factory.mktemp("exports")) as node:

        def post(envelope: bytes) -> dict[str, Any]:
            response = node.submit(envelope, wait=True)
            assert response.status_code == 200, response.text
            return dict(response.json())

        story = Story(node.genesis.chain_id, node.registrar, post).record()
        yield Chain(node, story, node.cluster_dir / "node-0" / "genesis.json")


def verified(chain: Chain, name: str) -> VerifiedStory:
    bundle = chain.node.client.get(f"/v1/datasets/{chain.story.ids[name].hex()}/provenance")
    return verify_bundle(join_pages([bundle.json()]), chain.node.genesis)


def expected_relations(story: VerifiedStory) -> dict[str, int]:
    """The relation counts the mapping (PROTOCOL §16.3) gives for a story."""
    derives = [e.event.body for e in story.events if isinstance(e.event.body, events.Derive)]
    kinds = [e.event.type for e in story.events]
    owner_destroys = sum(
        1 for e in story.events if e.event.type == "destroy" and e.event.actor == story.owner
    )
    inputs = sum(len(d.inputs) for d in derives)
    return {
        "used": inputs + kinds.count("use") + kinds.count("transfer") + kinds.count("attest"),
        "wasGeneratedBy": 1 + len(story.children) + kinds.count("grant"),
        "wasDerivedFrom": inputs,
        "wasAttributedTo": 1 + len(story.children) + kinds.count("grant"),
        "wasAssociatedWith": len(story.events),
        "wasInvalidatedBy": kinds.count("revoke") + owner_destroys,
    }


def get_prov(chain: Chain, name: str, fmt: str) -> str:
    path = f"/v1/datasets/{chain.story.ids[name].hex()}/prov?format={fmt}"
    response = chain.node.client.get(path)
    assert response.status_code == 200, response.text
    return response.text


# --- PROV -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["raw", "summary", "report", "side"])
def test_prov_json_parses_with_prov_and_counts_the_story(chain: Chain, name: str) -> None:
    text = get_prov(chain, name, "json")
    document = pm.ProvDocument.deserialize(content=text, format="json")
    counts = {k: len(list(document.get_records(cls))) for k, cls in RELATION_CLASSES.items()}
    story = verified(chain, name)
    assert counts == expected_relations(story)
    activities = list(document.get_records(pm.ProvActivity))
    leaf_indexes = sorted(
        next(iter(a.get_attribute("pl:leafIndex")))
        for a in activities
        if a.get_attribute("pl:leafIndex")
    )
    assert leaf_indexes == sorted(p.leaf_index for p in story.events)
    event_ids = {next(iter(a.get_attribute("pl:eventId"))) for a in activities}
    assert event_ids == {p.event.event_id.hex() for p in story.events}
    checkpoint = [e for e in document.get_records(pm.ProvEntity) if "block:" in str(e.identifier)]
    assert len(checkpoint) == 1
    assert next(iter(checkpoint[0].get_attribute("pl:height"))) == story.checkpoint.height


def test_the_mapping_covers_every_relation_the_issue_names(chain: Chain) -> None:
    """raw has a revoke and the transfer/use/attest; side is destroyed by its owner."""
    raw = expected_relations(verified(chain, "raw"))
    side = expected_relations(verified(chain, "side"))
    assert raw["used"] == 4 and raw["wasDerivedFrom"] == 1 and raw["wasInvalidatedBy"] == 1
    assert side["wasInvalidatedBy"] == 1


def test_prov_json_round_trips_through_prov(chain: Chain) -> None:
    document = pm.ProvDocument.deserialize(
        content=get_prov(chain, "summary", "json"), format="json"
    )
    again = pm.ProvDocument.deserialize(content=document.serialize(format="json"), format="json")
    assert again == document
    assert len(list(document.get_records())) > 10


@pytest.mark.parametrize("name", ["raw", "summary"])
def test_prov_n_parses_to_the_same_document_as_prov_json(chain: Chain, name: str) -> None:
    provn = pm.ProvDocument.deserialize(content=get_prov(chain, name, "provn"), format="provn")
    provjson = pm.ProvDocument.deserialize(content=get_prov(chain, name, "json"), format="json")
    assert provn == provjson


@pytest.mark.parametrize("name", ["raw", "summary"])
def test_turtle_parses_as_prov_o(chain: Chain, name: str) -> None:
    text = get_prov(chain, name, "ttl")
    graph = rdflib.Graph().parse(data=text, format="turtle")
    story = verified(chain, name)
    counts = {k: len(list(graph.triples((None, PROV[k], None)))) for k in RELATION_CLASSES}
    expected = expected_relations(story)
    # Turtle states each (subject, predicate, object) once; the counts equal when no relation
    # repeats, as in these stories.
    assert counts == expected
    with warnings.catch_warnings():
        # prov's RDF reader calls an rdflib API that rdflib 7 deprecates; nothing of ours.
        warnings.filterwarnings("ignore", "Dataset.default_context", DeprecationWarning)
        document = pm.ProvDocument.deserialize(content=text, format="rdf", rdf_format="turtle")
    assert len(list(document.get_records(pm.ProvActivity))) == len(story.events)


def test_prov_refuses_unknown_formats_and_datasets(chain: Chain) -> None:
    raw = chain.story.ids["raw"].hex()
    assert_problem(chain.node.client.get(f"/v1/datasets/{raw}/prov?format=xml"), 400)
    assert_problem(chain.node.client.get(f"/v1/datasets/{'ab' * 32}/prov"), 404)
    assert_problem(chain.node.client.get(f"/v1/datasets/{'ab' * 32}/openlineage"), 404)
    assert_problem(chain.node.client.get("/v1/datasets/ABC/prov"), 400)


# --- OpenLineage ----------------------------------------------------------------------------


def _client_dataset(cls: type, doc: dict[str, Any]) -> Any:
    """A dataset rebuilt with openlineage-python's classes (and its version facet)."""
    version = doc["facets"]["version"]["datasetVersion"]
    facets = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version)}
    return cls(namespace=doc["namespace"], name=doc["name"], facets=facets)


def as_client_event(doc: dict[str, Any]) -> RunEvent:
    """Our RunEvent rebuilt with openlineage-python's generated (schema 2-0-2) classes, whose
    validators check eventTime, runId and the URIs; unknown or missing fields raise."""
    return RunEvent(
        eventType=RunState(doc["eventType"]),
        eventTime=doc["eventTime"],
        run=Run(runId=doc["run"]["runId"]),
        job=Job(namespace=doc["job"]["namespace"], name=doc["job"]["name"]),
        inputs=[_client_dataset(InputDataset, d) for d in doc["inputs"]],
        outputs=[_client_dataset(OutputDataset, d) for d in doc["outputs"]],
        producer=doc["producer"],
    )


@pytest.mark.parametrize("name", ["raw", "summary", "report"])
def test_openlineage_export_matches_openlineage_python(chain: Chain, name: str) -> None:
    story = verified(chain, name)
    response = chain.node.client.get(f"/v1/datasets/{story.dataset.hex()}/openlineage")
    assert response.status_code == 200, response.text
    doc = response.json()
    runs = doc["events"]
    kinds = [p.event.type for p in story.events if p.event.type in ol.EXPORTED_TYPES]
    assert [r["run"]["facets"]["provledger"]["eventType"] for r in runs] == kinds
    for run in runs:
        client = Serde.to_dict(as_client_event(run))
        assert client["schemaURL"] == run["schemaURL"]
        for key in ("eventType", "eventTime", "producer"):
            assert client[key] == run[key]
        assert client["run"]["runId"] == run["run"]["runId"]
        for role in ("inputs", "outputs"):
            for ours, theirs in zip(run[role], client[role], strict=True):
                ours_version = dict(ours["facets"]["version"], _producer=None)
                assert ours_version == dict(theirs["facets"]["version"], _producer=None)
        facet = run["run"]["facets"]["provledger"]
        assert facet["_producer"].startswith("https://") and "#/$defs/" in facet["_schemaURL"]
        assert facet["checkpoint"]["height"] == story.checkpoint.height
    derives = [r for r in runs if r["run"]["facets"]["provledger"]["eventType"] == "derive"]
    for run in derives:
        proven = next(
            p
            for p in story.events
            if p.event.event_id.hex() == run["run"]["facets"]["provledger"]["eventId"]
        )
        body = proven.event.body
        assert isinstance(body, events.Derive)
        assert [d["name"] for d in run["inputs"]] == [i.hex() for i in body.inputs]
        assert [d["name"] for d in run["outputs"]] == [body.dataset.hex()]
        assert run["run"]["facets"]["provledger"]["leafIndex"] == proven.leaf_index


def test_run_ids_are_uuid7_and_stable(chain: Chain) -> None:
    story = verified(chain, "raw")
    first = ol.run_id(story.events[0].event)
    assert first == ol.run_id(story.events[0].event)
    assert first[14] == "7" and first[19] in "89ab"


def test_a_wrong_run_event_is_refused_by_openlineage_python() -> None:
    """The check above can fail: openlineage-python refuses a bad time and a bad run id."""
    with pytest.raises(ValueError):
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime="yesterday",
            run=Run(runId="x"),
            job=Job(namespace="n", name="j"),
        )


# --- the CLI export, offline from a saved bundle -------------------------------------------


def test_cli_exports_a_saved_bundle_offline(chain: Chain, tmp_path: Path) -> None:
    raw = chain.story.ids["raw"].hex()
    bundle = tmp_path / "bundle.json"
    bundle.write_text(chain.node.client.get(f"/v1/datasets/{raw}/provenance").text)
    runner = CliRunner()
    out = tmp_path / "raw.provn"
    args = ["export", "prov", raw, "--bundle", str(bundle), "--genesis", str(chain.genesis_path)]
    result = runner.invoke(cli_app, [*args, "--format", "provn", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = pm.ProvDocument.deserialize(content=out.read_text(), format="provn")
    assert (
        len(list(document.get_records(pm.ProvUsage)))
        == expected_relations(verified(chain, "raw"))["used"]
    )
    result = runner.invoke(
        cli_app,
        ["export", "openlineage", "--bundle", str(bundle), "--genesis", str(chain.genesis_path)],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dataset"] == raw
    doc = json.loads(bundle.read_text())
    doc["events"][1]["audit_path"][0] = "00" * 32
    bundle.write_text(json.dumps(doc))
    result = runner.invoke(cli_app, [*args, "--out", str(tmp_path / "never.json")])
    assert result.exit_code == 2
    assert not (tmp_path / "never.json").exists()
    result = runner.invoke(
        cli_app,
        [
            "export",
            "prov",
            raw,
            "--format",
            "xml",
            "--bundle",
            str(bundle),
            "--genesis",
            str(chain.genesis_path),
        ],
    )
    assert result.exit_code == 2


# --- genesis bytes and fingerprint ----------------------------------------------------------


def test_genesis_is_served_byte_for_byte_with_its_fingerprint(chain: Chain) -> None:
    response = chain.node.client.get("/v1/genesis")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    on_disk = chain.genesis_path.read_bytes()
    assert response.content == on_disk
    status = chain.node.client.get("/v1/status").json()
    assert status["genesis_fingerprint"] == hashlib.sha256(on_disk).hexdigest()
    assert Genesis.from_json(response.json()) == chain.node.genesis


# --- the explorer's routes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/explorer",
        "/explorer/",
        "/explorer/chain",
        f"/explorer/datasets/{'ab' * 32}",
        f"/explorer/events/{'ab' * 32}",
        "/explorer/blocks/7",
        f"/explorer/participants/02{'ab' * 32}",
    ],
)
def test_explorer_pages_serve_the_app(chain: Chain, path: str) -> None:
    response = chain.node.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert b'src="/explorer/assets/app.js"' in response.content


@pytest.mark.parametrize(
    "path",
    [
        "/explorer/nowhere",
        "/explorer/datasets/xyz",
        "/explorer/blocks/0",
        "/explorer/assets/missing.js",
        "/explorer/assets/..%2Fexplorer.py",
        "/explorer/assets/.hidden.js",
    ],
)
def test_explorer_refuses_unknown_paths(chain: Chain, path: str) -> None:
    assert_problem(chain.node.client.get(path), 404)


def test_explorer_scripts_are_modules_without_any_remote_url(chain: Chain) -> None:
    from node.server.http.explorer import ASSETS

    for name, body in ASSETS.items():
        response = chain.node.client.get(f"/explorer/assets/{name}")
        assert response.status_code == 200 and response.content == body
        text = body.decode()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name
        assert "https://" not in text, name
        if name.endswith(".js"):
            assert response.headers["content-type"].startswith("text/javascript")


# --- the ingest server's plan of a run (its HTTP side runs against a cluster) ---------------


def _ol_dataset(name: str, digest: str | None, how: str = "provledger") -> dict[str, Any]:
    facets: dict[str, Any] = {}
    if digest is not None and how == "provledger":
        facets["provledger"] = {"sha256": digest}
    elif digest is not None:
        facets["version"] = {"datasetVersion": digest}
    return {"namespace": "s3://bucket", "name": name, "facets": facets}


def _run(
    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], state: str = "COMPLETE"
) -> dict[str, Any]:
    return {
        "eventType": state,
        "eventTime": "2026-01-01T00:00:00Z",
        "run": {"runId": "01900000-0000-7000-8000-000000000000"},
        "job": {"namespace": "airflow", "name": "daily"},
        "inputs": inputs,
        "outputs": outputs,
    }


def test_a_run_is_planned_from_hashes_in_either_facet() -> None:
    a, b = "aa" * 32, "BB" * 32
    plan = ingest.plan_run(
        _run([_ol_dataset("in", a)], [_ol_dataset("out", b, "version")]), "analytics"
    )
    assert plan is not None
    assert [d.hex() for d, _, _ in plan.inputs] == [a]
    assert [d.hex() for d, _, _ in plan.outputs] == [b.lower()]
    assert plan.purpose == "analytics" and plan.job_name == "daily"


def test_a_dataset_without_a_hash_is_refused_with_how_to_add_one() -> None:
    with pytest.raises(ingest.IngestError) as refused:
        ingest.plan_run(_run([_ol_dataset("in", None)], []), "analytics")
    assert refused.value.status == 400
    assert "datasetVersion" in refused.value.detail and '"provledger"' in refused.value.detail
    with pytest.raises(ingest.IngestError):
        ingest.plan_run(_run([_ol_dataset("in", "ab" * 31)], []), "analytics")


def test_runs_that_are_not_complete_record_nothing() -> None:
    assert ingest.plan_run(_run([_ol_dataset("in", "aa" * 32)], [], "START"), "x") is None
    assert ingest.plan_run({"eventTime": "t", "dataset": {}}, "x") is None


def test_malformed_runs_are_refused() -> None:
    a = _ol_dataset("a", "aa" * 32)
    for bad in ([], _run([a], [a]), _run([a, a], [])):
        with pytest.raises(ingest.IngestError) as refused:
            ingest.plan_run(bad, "analytics")
        assert refused.value.status == 400
    too_many = [_ol_dataset(f"d{i}", f"{i:064x}") for i in range(ingest.MAX_DATASETS + 1)]
    with pytest.raises(ingest.IngestError):
        ingest.plan_run(_run(too_many, []), "analytics")


def test_a_run_becomes_uses_then_derives_or_registers() -> None:
    key = ingest.crypto.PrivateKey.generate()
    a, b, c = ("aa" * 32, "bb" * 32, "cc" * 32)
    plan = ingest.plan_run(
        _run([_ol_dataset("a", a), _ol_dataset("b", b)], [_ol_dataset("c", c)]), "analytics"
    )
    assert plan is not None
    bodies = ingest.build_bodies(plan, "chain", key.public_key)
    assert [type(x).__name__ for x in bodies] == ["Use", "Use", "Derive"]
    derive = bodies[-1]
    assert isinstance(derive, events.Derive)
    assert [i.hex() for i in derive.inputs] == [a, b]
    assert derive.meta[ol.META_RUN_ID] == plan.run_id
    alone = ingest.plan_run(_run([], [_ol_dataset("c", c)]), "analytics")
    assert alone is not None
    assert [type(x).__name__ for x in ingest.build_bodies(alone, "chain", key.public_key)] == [
        "Register"
    ]


def test_every_explorer_file_is_package_data() -> None:
    """A non-editable install ships what the node serves: pyproject's package-data globs
    cover every file of explorer_assets/, and the node serves every one of them."""
    import fnmatch
    import tomllib

    from node.server.http.explorer import ASSET_DIR, ASSETS

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    patterns = globs["node.server.http"]
    files = sorted(
        p.name for p in (root / "node" / "server" / "http" / ASSET_DIR).iterdir() if p.is_file()
    )
    for name in files:
        assert any(fnmatch.fnmatch(f"{ASSET_DIR}/{name}", pattern) for pattern in patterns), name
    assert sorted(ASSETS) == files
