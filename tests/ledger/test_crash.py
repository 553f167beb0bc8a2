"""Crash consistency of the state map (docs/PROTOCOL.md §17.6): a process SIGKILLed while it
applies a block leaves a store whose state root is the header's, the map of its records,
and the root a replay from genesis computes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import events, rules, smt
from ledger.blocks import Block
from ledger.store import Store
from tests.ledger import crash_child

ROOT = Path(__file__).resolve().parents[2]


def run_child(path: Path, blocks: int, puts: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.ledger.crash_child", str(path), str(blocks), str(puts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def check_consistent(path: Path, replica_path: Path) -> int:
    _, _, genesis = crash_child.genesis_and_keys()
    with Store(path, genesis) as store:
        records = [(k, v) for k, v in store.db.iterator(prefix=b"s") if rules.is_authenticated(k)]
        assert store.state_root == smt.reference_root(records)
        header = store.header(store.height)
        assert header is not None and header.state_root == store.state_root
        with Store(replica_path, genesis) as replica:
            for height in range(1, store.height + 1):
                block = store.block(height)
                commit = store.commit(height)
                assert block is not None and commit is not None
                decoded = [events.decode_envelope(e) for e in block.events]
                execution = replica.execute(decoded, height, block.header.time)
                assert execution.matches(block.header)
                replica.append_block(Block(block.header, block.events), commit, execution)
            assert replica.state_root == store.state_root
        return store.height


# A block of crash_child.block_events writes 44 keys: 43 kills it before its last put (META).
@pytest.mark.parametrize("puts", [0, 7, 30, 43])
def test_sigkill_inside_the_block_batch(tmp_path: Path, puts: int) -> None:
    path = tmp_path / "chain"
    done = run_child(path, 3, puts)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.split() == ["2", "3", "4"]
    assert check_consistent(path, tmp_path / "replay") == 4
    # the store goes on from there (the killed block was never written)
    again = run_child(path, 2, puts)
    assert again.returncode == -signal.SIGKILL, again.stderr
    assert check_consistent(path, tmp_path / "replay2") == 6


def test_sigkill_from_outside_while_appending(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    for round_ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.crash_child", str(path), "0", "-1"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        for _ in range(3 + round_):  # a few blocks in, then killed wherever it is
            assert child.stdout.readline()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        assert check_consistent(path, tmp_path / f"replay{round_}") >= 4 + round_
