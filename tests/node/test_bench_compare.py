"""`scripts/bench compare --against REV` (issue 16): two clusters, this tree's and REV's,
under the same load at the same time. Its arithmetic, its refusals (no such revision, a
tree whose commands would import other packages) and, with real nodes, a whole comparison
of HEAD with itself that loses nothing and leaves no worktree or node behind. Behaviour
only, never timings."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from node.bench import cluster, compare
from node.bench import ledger as bench


def figure(cpu: float) -> dict[str, float]:
    return {"cpu_ms_per_event": cpu}


def test_the_summary_is_revs_cpu_over_this_trees_per_round() -> None:
    rounds = [
        [figure(0.25), figure(0.30)],
        [figure(0.20), figure(0.22)],
        [figure(0.40), figure(0.38)],
    ]
    summary = compare.summarize(rounds)
    assert summary == {"cpu_ratios": [1.2, 1.1, 0.95], "median": 1.1, "low": 0.95, "high": 1.2}
    assert compare.verdict(summary, "v1") == (
        "v1 spends 10.0% more CPU per event than this tree (median of 3 rounds; 0.950 to 1.200)"
    )
    cheaper = compare.summarize([[figure(0.5), figure(0.4)]])
    assert compare.verdict(cheaper, "v2").startswith("v2 spends 20.0% less CPU per event")


def test_the_parser_takes_the_modules_modes_and_refuses_empty_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = bench.build_parser()
    assert bench.COMPARE_MODES == compare.MODES == cluster.LOAD_MODES == ("single", "batch", "rate")
    args = parser.parse_args(["compare", "--against", "main"])
    assert (args.mode, args.events, args.rounds, args.clients) == ("single", 10_000, 3, None)
    assert compare.DEFAULT_CLIENTS["single"] == 16  # --single's 32 connections, shared
    assert compare.DEFAULT_CLIENTS["batch"] == cluster.CLIENT_CONNECTIONS == 4
    for bad in (["--events", "0"], ["--rounds", "-1"], ["--mode", "fast"]):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(["compare", "--against", "main", *bad])
        assert exited.value.code == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["compare"])  # --against is required
    assert "--against" in capsys.readouterr().err


def test_an_unknown_revision_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = compare.repository_root()
    with pytest.raises(compare.CompareError, match="not a commit of this repository"):
        compare.resolve_revision(root, "no-such-revision-0f3a")
    assert bench.main(["compare", "--against", "no-such-revision-0f3a"]) == 2
    err = capsys.readouterr().err
    assert "scripts/bench compare: 'no-such-revision-0f3a' is not a commit" in err
    assert "[bench] starting" not in err
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    )
    assert compare.resolve_revision(root, "HEAD") == head.stdout.strip()


def test_a_tree_whose_commands_import_other_packages_is_refused(tmp_path: Path) -> None:
    # An empty directory holds no packages: its commands would import this checkout's
    # (the editable install), and the comparison would measure this tree twice.
    stranger = compare.Side("stranger", tmp_path, tmp_path / "cluster", 0)
    with pytest.raises(compare.CompareError, match="stranger: its commands import"):
        compare.check_imports(stranger)
    compare.check_imports(compare.Side("this tree", compare.repository_root(), tmp_path, 0))


def test_a_busy_port_is_refused_before_the_cluster_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        side = compare.Side("this tree", compare.repository_root(), tmp_path / "cluster", port)
        with pytest.raises(compare.CompareError, match=f"this tree: port {port} is in use"):
            compare.start(side)
    assert not (tmp_path / "cluster").exists()


def _worktrees(root: Path) -> str:
    listed = subprocess.run(
        ["git", "worktree", "list"], cwd=root, capture_output=True, text=True, check=True
    )
    return listed.stdout


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.cluster
def test_head_against_itself_loses_nothing_and_cleans_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.cluster.harness import free_port_block

    base = free_port_block(compare.SECOND_CLUSTER_PORT_OFFSET + 104)
    root = compare.repository_root()
    said: list[str] = []
    load = cluster.Load("batch", events=300, clients=2, batch=50, rate=0.0)
    results = compare.compare("HEAD", load, rounds=1, base_port=base, say=said.append)
    (pair,) = results["rounds"]
    for side in pair:
        assert side["statuses"] == {"202": 300}
        assert (side["committed"], side["lost"], side["duplicated"]) == (300, 0, 0)
        assert side["cpu_ms_per_event"] > 0
        assert len(side["cpu_ms_per_event_per_node"]) == compare.VALIDATORS
    (ratio,) = results["summary"]["cpu_ratios"]
    assert ratio == round(pair[1]["cpu_ms_per_event"] / pair[0]["cpu_ms_per_event"], 3)
    assert said[:2] == [
        f"starting this tree's cluster on port {base}",
        f"starting HEAD's cluster on port {base + compare.SECOND_CLUSTER_PORT_OFFSET}",
    ]
    assert "provledger-compare-" not in _worktrees(root)
    offset = compare.SECOND_CLUSTER_PORT_OFFSET
    for port in (base, base + 3, base + offset, base + offset + 3):
        assert _port_free(port), f"a node still listens on {port}"
    compare.print_compare(results)
    out = capsys.readouterr().out
    assert "this tree vs HEAD" in out and "HEAD / this tree, CPU per event:" in out
    assert "not comparable" not in out
    pair[1]["lost"] = 1
    compare.print_compare(results)
    assert "events were lost or duplicated" in capsys.readouterr().out
