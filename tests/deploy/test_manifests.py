"""The Kubernetes manifests of docker/k8s render with `kubectl kustomize`, validate offline
against the Kubernetes schemas (kubernetes-validate ships them), and say what an operator
expects: one StatefulSet per organisation, its volume, genesis, key, probes, Services, the
overlay's settings, and a ServiceMonitor and dashboard for the node's real metrics. The
example overlay serves TLS through components/tls (and tls-monitoring); without those
components the same overlay, like the base, is plain HTTP with nothing TLS set."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
from cloudcoil.models.prometheus_operator import v1 as prometheus_v1

from ledger.genesis import Genesis
from node.ops import container as entry
from node.ops.homes import init_cluster
from node.server.metrics import Metrics
from tests.deploy.conftest import (
    BASE,
    EXAMPLE,
    K8S,
    MONITORING,
    NODES,
    ORGS,
    REGULATOR,
    container,
    copy_tree,
    kustomize,
    named,
    of_kind,
    pod_environ,
    render,
    without_tls,
)

# The oldest Kubernetes minor still commonly run, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
CRD_KINDS = {"ServiceMonitor"}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
TLS_FILES = {"tls_cert": "tls.crt", "tls_ca": "ca.crt"}


@pytest.fixture(scope="module")
def example() -> list[dict[str, Any]]:
    return render(EXAMPLE)


def validate_all(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("directory", [BASE, MONITORING, EXAMPLE], ids=lambda p: p.name)
def test_renders_and_every_manifest_validates_against_the_kubernetes_schemas(
    directory: Path,
) -> None:
    docs = render(directory)
    assert docs
    validate_all(docs)


def test_the_validator_catches_a_broken_manifest(example: list[dict[str, Any]]) -> None:
    """Strict validation is on: a misspelt field and a wrong type are both refused."""
    statefulset = json.loads(json.dumps(named(example, "StatefulSet", "org-0-node")))
    statefulset["spec"]["replica"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_all([statefulset])
    statefulset["spec"].pop("replica")
    statefulset["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_all([statefulset])


def check_service_monitor(doc: dict[str, Any]) -> None:
    """Validate against the prometheus-operator CRD's model; unknown fields are refused too
    (the model alone ignores them, so the round trip must give the document back)."""
    model = prometheus_v1.ServiceMonitor.model_validate(doc)
    assert model.model_dump(by_alias=True, exclude_none=True) == doc


def test_the_service_monitor_validates_against_its_crd_model(example: list[dict[str, Any]]) -> None:
    (monitor,) = of_kind(example, "ServiceMonitor")
    check_service_monitor(monitor)
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(AssertionError):
        check_service_monitor(broken)
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(ValueError):
        check_service_monitor(broken)


def test_one_single_pod_statefulset_per_organisation(example: list[dict[str, Any]]) -> None:
    statefulsets = of_kind(example, "StatefulSet")
    assert sorted(s["metadata"]["name"] for s in statefulsets) == [f"{o}-node" for o in NODES]
    selectors = set()
    for org in NODES:
        spec = named(example, "StatefulSet", f"{org}-node")["spec"]
        assert spec["replicas"] == 1
        assert spec["podManagementPolicy"] == "Parallel"
        match = spec["selector"]["matchLabels"]
        assert match["provledger.dev/org"] == org
        assert match.items() <= spec["template"]["metadata"]["labels"].items()
        selectors.add(tuple(sorted(match.items())))
    assert len(selectors) == len(NODES)


def test_the_volume_holds_store_signer_state_and_key_and_secrets_are_mounted_read_only(
    example: list[dict[str, Any]],
) -> None:
    for org in NODES:
        statefulset = named(example, "StatefulSet", f"{org}-node")
        environ = pod_environ(statefulset)
        mounts = {m["name"]: m for m in container(statefulset)["volumeMounts"]}
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        home = mounts[claim["metadata"]["name"]]
        assert home["mountPath"] == environ["PROVLEDGER_HOME"] == "/node"
        assert not home.get("readOnly", False)
        volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
        assert volumes["node-key"]["secret"]["secretName"] == f"{org}-node-key"
        assert volumes["tls"]["secret"]["secretName"] == f"{org}-tls"
        for name in ("genesis", "node-key", "tls"):
            assert mounts[name]["readOnly"] is True
        assert Path(environ["PROVLEDGER_KEY"]).parent == Path(mounts["node-key"]["mountPath"])
        assert Path(environ["PROVLEDGER_GENESIS"]).parent == Path(mounts["genesis"]["mountPath"])


def test_the_overlay_sets_storage_class_size_resources_and_image(
    example: list[dict[str, Any]],
) -> None:
    for statefulset in of_kind(example, "StatefulSet"):
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["storageClassName"] == "fast-ssd"
        assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
        node = container(statefulset)
        assert node["resources"] == {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "4Gi"},
        }
        assert node["image"] == "registry.example.org/provledger:0.1.0"
    assert {d["metadata"].get("namespace") for d in example if d["kind"] != "Namespace"} == {
        "provledger"
    }


def test_genesis_comes_from_one_configmap_that_every_node_mounts(
    example: list[dict[str, Any]],
) -> None:
    (configmap,) = [c for c in of_kind(example, "ConfigMap") if "genesis.json" in c["data"]]
    assert json.loads(configmap["data"]["genesis.json"]) == json.loads(
        (EXAMPLE / "genesis.json").read_text()
    )
    for statefulset in of_kind(example, "StatefulSet"):
        volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
        assert volumes["genesis"]["configMap"]["name"] == configmap["metadata"]["name"]


def test_probes_readiness_is_caught_up_and_voting_liveness_is_healthz(
    example: list[dict[str, Any]],
) -> None:
    for statefulset in of_kind(example, "StatefulSet"):
        node = container(statefulset)
        https = {"port": "api", "scheme": "HTTPS"}
        assert node["readinessProbe"]["httpGet"] == {"path": "/readyz", **https}
        assert node["livenessProbe"]["httpGet"] == {"path": "/healthz", **https}
        assert node["startupProbe"]["httpGet"] == {"path": "/healthz", **https}


def service_reaches(service: dict[str, Any], statefulset: dict[str, Any]) -> bool:
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    return bool(service["spec"]["selector"].items() <= labels.items())


def test_each_genesis_url_is_its_organisations_peer_service(example: list[dict[str, Any]]) -> None:
    """Genesis names https://org-I-node-p2p:8900; that Service exists, reaches only org I's
    pod even before it is ready, and org I advertises exactly that URL."""
    genesis = Genesis.load(EXAMPLE / "genesis.json")
    for i, validator in enumerate(genesis.validators.validators):
        url = urlsplit(validator.url)
        assert url.scheme == "https"
        service = named(example, "Service", str(url.hostname))
        assert service["spec"]["publishNotReadyAddresses"] is True
        (port,) = service["spec"]["ports"]
        assert port["port"] == url.port == entry.P2P_PORT
        assert port["targetPort"] == "p2p"
        reached = [s for s in of_kind(example, "StatefulSet") if service_reaches(service, s)]
        assert [s["metadata"]["name"] for s in reached] == [f"org-{i}-node"]
        assert pod_environ(reached[0])["PROVLEDGER_ADVERTISE"] == validator.url


def test_api_services_and_the_service_monitor_select_the_api_port_of_each_node(
    example: list[dict[str, Any]],
) -> None:
    (monitor,) = of_kind(example, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        s for s in of_kind(example, "Service") if wanted.items() <= s["metadata"]["labels"].items()
    ]
    assert sorted(s["metadata"]["name"] for s in scraped) == [f"{o}-node-api" for o in NODES]
    for org, service in zip(
        NODES, sorted(scraped, key=lambda s: s["metadata"]["name"]), strict=True
    ):
        (port,) = service["spec"]["ports"]
        assert port["name"] == monitor["spec"]["endpoints"][0]["port"] == "api"
        assert port["port"] == entry.API_PORT and port["targetPort"] == "api"
        (target,) = [s for s in of_kind(example, "StatefulSet") if service_reaches(service, s)]
        assert target["metadata"]["name"] == f"{org}-node"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def metric_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in ("_total", "_bucket", "_count", "_sum"))
    return names


def test_the_dashboard_plots_every_topic_with_metrics_the_node_exports() -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"provledger_[a-z_]+", e)}
    assert used and used <= metric_names(), used - metric_names()
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("height", "round", "commit latency", "mempool", "peers", "evidence", "fdatasync"):
        assert topic in titles, topic
    for metric in (
        "provledger_commit_latency_seconds_bucket",
        "provledger_store_append_seconds_bucket",
        "provledger_signer_fsync_seconds_bucket",
        "provledger_block_interval_seconds_bucket",
        "provledger_consensus_wait_seconds_bucket",
        "provledger_consensus_work_seconds_bucket",
        "provledger_peer_reachable",
        "provledger_evidence",
    ):
        assert any(metric in e for e in exprs), metric
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_an_operator_can_change_the_number_of_organisations_and_the_storage_class(
    tmp_path: Path,
) -> None:
    """Copy the tree, add a fifth organisation and its genesis, change the storage class."""
    tree = copy_tree(tmp_path)
    overlay = tree / "overlays" / "example-4-orgs"
    org3 = (overlay / "org-3" / "kustomization.yaml").read_text()
    (overlay / "org-4").mkdir()
    (overlay / "org-4" / "kustomization.yaml").write_text(org3.replace("org-3", "org-4"))
    text = (overlay / "kustomization.yaml").read_text()
    text = text.replace("  - org-3\n", "  - org-3\n  - org-4\n").replace("fast-ssd", "standard")
    (overlay / "kustomization.yaml").write_text(text)
    init_cluster(tmp_path / "cluster", 5, advertise="https://org-{i}-node-p2p:8900", tls=True)
    shutil.copy(tmp_path / "cluster" / "genesis.json", overlay / "genesis.json")
    docs = render(overlay)
    validate_all(docs)
    statefulsets = of_kind(docs, "StatefulSet")
    assert len(statefulsets) == 6  # five validators and the regulator's full node
    claims = [s["spec"]["volumeClaimTemplates"][0]["spec"] for s in statefulsets]
    assert {c["storageClassName"] for c in claims} == {"standard"}
    org4 = named(docs, "StatefulSet", "org-4-node")
    assert pod_environ(org4)["PROVLEDGER_ADVERTISE"] == "https://org-4-node-p2p:8900"
    volumes = {v["name"]: v for v in org4["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "org-4-tls"


def tls_settings(statefulset: dict[str, Any]) -> dict[str, Any]:
    """The settings PROVLEDGER_SETTINGS gives the entry point (none: {})."""
    doc = json.loads(pod_environ(statefulset).get("PROVLEDGER_SETTINGS", "{}"))
    assert isinstance(doc, dict)
    return doc


def test_with_the_tls_component_each_node_serves_its_mounted_secret_over_https(
    example: list[dict[str, Any]],
) -> None:
    """Per organisation: the Secret org-N-tls is required and mounted with exactly tls.crt and
    ca.crt; the settings the entry point renders from the pod's environment name those
    files (the served key stays the node key, which peers pin); the probes speak HTTPS; the
    node advertises its https:// genesis URL."""
    genesis = Genesis.load(EXAMPLE / "genesis.json")
    for i, org in enumerate(ORGS):
        statefulset = named(example, "StatefulSet", f"{org}-node")
        node = container(statefulset)
        for probe in PROBES:
            assert node[probe]["httpGet"]["scheme"] == "HTTPS", probe
        volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
        secret = volumes["tls"]["secret"]
        assert secret["secretName"] == f"{org}-tls"
        assert secret["optional"] is False
        assert {item["key"]: item["path"] for item in secret["items"]} == {
            "tls.crt": "tls.crt",
            "ca.crt": "ca.crt",
        }
        (mount,) = [m for m in node["volumeMounts"] if m["name"] == "tls"]
        assert mount["readOnly"] is True
        mounted = Path(mount["mountPath"])
        assert tls_settings(statefulset) == {
            name: str(mounted / file) for name, file in TLS_FILES.items()
        }
        environ = pod_environ(statefulset)
        settings = entry.render_settings(entry.ContainerEnv.from_environ(environ), ())
        assert settings.tls and settings.scheme == "https"
        assert settings.tls_cert_path == mounted / "tls.crt"
        assert settings.tls_ca_path == mounted / "ca.crt"
        assert settings.tls_key == ""  # the node key (test_container.py serves with it)
        assert environ["PROVLEDGER_ADVERTISE"] == genesis.validators.validators[i].url
        assert environ["PROVLEDGER_ADVERTISE"] == f"https://{org}-node-p2p:8900"


def test_with_tls_monitoring_the_service_monitor_scrapes_https_verified_by_the_ca(
    example: list[dict[str, Any]],
) -> None:
    (monitor,) = of_kind(example, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": "provledger-tls-ca", "key": "ca.crt"}},
        # A pod IP is in no certificate; every certificate `cluster init --tls` makes names
        # localhost (tests/deploy/test_container.py scrapes a node this way).
        "serverName": "localhost",
        "minVersion": "TLS13",
    }
    assert "insecureSkipVerify" not in endpoint["tlsConfig"]
    check_service_monitor(monitor)


@pytest.fixture(scope="module")
def plain_example(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(without_tls(copy_tree(tmp_path_factory.mktemp("plain"))))


@pytest.mark.parametrize("which", ["base", "overlay without the components"])
def test_without_the_tls_component_nothing_tls_is_set(
    which: str, plain_example: list[dict[str, Any]]
) -> None:
    docs = render(BASE) if which == "base" else plain_example
    validate_all(docs)
    statefulsets = of_kind(docs, "StatefulSet")
    assert len(statefulsets) == (1 if which == "base" else len(NODES))
    for statefulset in statefulsets:
        node = container(statefulset)
        for probe in PROBES:
            assert node[probe]["httpGet"].get("scheme", "HTTP") == "HTTP", probe
        environ = pod_environ(statefulset)
        assert "PROVLEDGER_SETTINGS" not in environ
        assert environ["PROVLEDGER_ADVERTISE"].startswith("http://")
        settings = entry.render_settings(entry.ContainerEnv.from_environ(environ), ())
        assert not settings.tls and settings.scheme == "http"
        assert (settings.tls_cert, settings.tls_key, settings.tls_ca) == ("", "", "")
        volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
        assert volumes["tls"]["secret"]["optional"] is True  # mounted if present, unused
        text = json.dumps(statefulset).lower()
        assert "https" not in text and "tls_" not in text
    for monitor in of_kind(docs, "ServiceMonitor"):
        (endpoint,) = monitor["spec"]["endpoints"]
        assert "scheme" not in endpoint and "tlsConfig" not in endpoint


def test_the_tls_component_refuses_a_base_whose_environment_moved(tmp_path: Path) -> None:
    """The component rewrites PROVLEDGER_ADVERTISE by position (a merge would move it before
    PROVLEDGER_ORG, which it expands); if the base's order changes the build fails instead
    of rewriting another variable."""
    tree = copy_tree(tmp_path)
    statefulset = tree / "base" / "statefulset.yaml"
    text = statefulset.read_text()
    moved = "            - name: PROVLEDGER_ROLE\n              value: validator\n"
    assert moved in text
    # PROVLEDGER_ROLE moves to the end of the list: PROVLEDGER_ADVERTISE is then 8th, not 9th.
    probe = "          startupProbe:"
    statefulset.write_text(text.replace(moved, "").replace(probe, moved + probe, 1))
    assert pod_environ(named(render(tree / "base"), "StatefulSet", "node"))
    done = kustomize(tree / EXAMPLE.relative_to(K8S))
    assert done.returncode != 0
    assert "components/tls" in done.stderr, done.stderr
    assert "env/9/name failed" in done.stderr, done.stderr


def test_the_regulator_is_a_full_node_whose_key_every_node_admits(
    example: list[dict[str, Any]],
) -> None:
    """The regulator's pod runs PROVLEDGER_ROLE=full with its own Secrets and peer Service; its
    key, which genesis does not name, is in every node's peer keys as the entry point renders
    them; the validators stay validators."""
    genesis = Genesis.load(EXAMPLE / "genesis.json")
    regulator = named(example, "StatefulSet", f"{REGULATOR}-node")
    environ = pod_environ(regulator)
    assert environ["PROVLEDGER_ROLE"] == entry.FULL
    (key,) = environ["PROVLEDGER_PEER_KEYS"].split()
    assert genesis.validators.get(bytes.fromhex(key)) is None
    volumes = {v["name"]: v for v in regulator["spec"]["template"]["spec"]["volumes"]}
    # Required: over TLS the node serves a certificate for that key.
    assert volumes["node-key"]["secret"] == {
        "secretName": f"{REGULATOR}-node-key",
        "defaultMode": 0o440,
        "optional": False,
    }
    assert volumes["tls"]["secret"]["secretName"] == f"{REGULATOR}-tls"
    assert environ["PROVLEDGER_ADVERTISE"] == f"https://{REGULATOR}-node-p2p:8900"
    service = named(example, "Service", f"{REGULATOR}-node-p2p")
    reached = [s for s in of_kind(example, "StatefulSet") if service_reaches(service, s)]
    assert reached == [regulator]
    assert container(regulator)["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for statefulset in of_kind(example, "StatefulSet"):
        node_environ = pod_environ(statefulset)
        env = entry.ContainerEnv.from_environ(node_environ)
        assert entry.render_settings(env, ()).peer_keys == (key,)
        if statefulset is not regulator:
            assert node_environ["PROVLEDGER_ROLE"] == entry.VALIDATOR


def test_the_full_node_component_refuses_a_base_whose_environment_moved(tmp_path: Path) -> None:
    """The component sets PROVLEDGER_ROLE by position; if the base's order changes, the build
    fails instead of rewriting another variable."""
    tree = copy_tree(tmp_path)
    probe = tree / "probe"  # the base with only this component
    probe.mkdir()
    (probe / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../base]\ncomponents: [../components/full-node]\n"
    )
    assert pod_environ(named(render(probe), "StatefulSet", "node"))["PROVLEDGER_ROLE"] == "full"
    statefulset = tree / "base" / "statefulset.yaml"
    text = statefulset.read_text()
    moved = "            - name: PROVLEDGER_ROLE\n              value: validator\n"
    assert moved in text
    statefulset.write_text(
        text.replace(moved, "").replace(
            "          startupProbe:", moved + "          startupProbe:", 1
        )
    )
    done = kustomize(probe)
    assert done.returncode != 0
    assert "env/2" in done.stderr, done.stderr
