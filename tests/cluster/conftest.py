"""Fixtures for multi-process cluster tests: real uvicorn nodes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.cli.trust import TRUST_ENV
from tests.cluster.harness import LocalCluster

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this folder starts real node processes: mark it `cluster`."""
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(autouse=True)
def private_trust_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI runs pin geneses under this test's directory, never under the user's home."""
    monkeypatch.setenv(TRUST_ENV, str(tmp_path / "trust"))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path / "cluster", nodes=4)
    local.start()
    try:
        local.wait_all_started()
        yield local
    finally:
        local.stop()
