"""A node whose consensus task dies says so and asks to be stopped, instead of serving reads
as if it still followed the chain; `provledger node start` then exits non-zero."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from consensus import core as cc
from tests.node.conftest import running_node


def test_a_failing_consensus_input_reaches_on_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[BaseException] = []
    with running_node(tmp_path) as node:
        node.service.on_fatal = failures.append

        def broken(item: Any) -> list[Any]:
            raise RuntimeError("disk on fire")

        node.service.core.handle = broken  # type: ignore[method-assign]
        node.service.put(cc.Tick(now=node.service.clock()))
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [str(f) for f in failures] == ["disk on fire"]
    assert "this node stops deciding" in caplog.text
