"""Fixtures for multi-process cluster tests: real uvicorn nodes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import LocalCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path / "cluster", nodes=4)
    local.start()
    try:
        local.wait_all_started()
        yield local
    finally:
        local.stop()
