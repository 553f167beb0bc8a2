"""Mutation testing of the core modules: run each file's fast unit tests against every mutant.

    python -m mutation.run [FILE ...] [--sample N] [--seed S] [--jobs J] [--list]

The modules and the tests that guard each one are in mutation/config.toml; mutants judged
equivalent (no test can tell them apart from the original) are in mutation/equivalent.toml,
each with its reason. The score of a file is killed / (killed + survived): equivalent mutants
are left out. Exits 1 if a file scores under the threshold, 2 on a setup problem.

No file is ever written (other engineers share the working tree): a mutant lives only in a
forked child, which imports the mutated module from an in-memory AST through an import hook,
then runs pytest (-x, no cache, a Hypothesis profile without database and derandomized, so a
run is reproducible). The parent imports pytest, Hypothesis and the third-party libraries
once and forks a child per mutant, at most `jobs` at a time.

A first, unmutated run traces which tests execute each line of the file. A mutant then runs
only the tests that reach its lines (all of them if a line runs at import: constants, class
bodies, defaults); a mutant no test reaches survives without a run. A child that outlives
twice the unmutated run plus 10 s is killed and the mutant counted as killed (an endless
loop). pytest failing without a failed test (a broken plugin) stops the run without a score.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.abc
import importlib.metadata
import importlib.util
import json
import os
import random
import signal
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType, ModuleType
from typing import Any

from mutation.operators import Mutant, find_mutants, mutate

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "mutation" / "config.toml"
EQUIVALENT = ROOT / "mutation" / "equivalent.toml"

KILLED, SURVIVED, TIMEOUT, EQUIVALENT_STATUS = "killed", "survived", "timeout", "equivalent"
NOT_REACHED, ERROR = "not reached", "error"
_FAILED, _ERROR = 1, 3  # the child's exit status: a test failed; pytest failed otherwise
OUTSIDE_TESTS = "<import>"


class BaselineFailed(Exception):
    """The file's tests do not pass unmutated: no score for it."""


@dataclass
class FileConfig:
    path: str
    tests: list[str]
    module: str = ""

    def __post_init__(self) -> None:
        self.module = self.path.removesuffix(".py").replace("/", ".")


@dataclass
class FileResult:
    path: str
    total: int = 0
    killed: int = 0
    timeouts: int = 0
    equivalent: int = 0
    survivors: list[Mutant] = field(default_factory=list)
    not_reached: set[Mutant] = field(default_factory=set)
    errors: list[Mutant] = field(default_factory=list)
    skipped: bool = False
    seconds: float = 0.0

    @property
    def score(self) -> float:
        if self.skipped:
            return 0.0
        judged = self.killed + len(self.survivors)
        return 100.0 if judged == 0 else 100.0 * self.killed / judged


def load_config() -> tuple[dict[str, FileConfig], float, int]:
    doc = tomllib.loads(CONFIG.read_text())
    files = {path: FileConfig(path, list(entry["tests"])) for path, entry in doc["files"].items()}
    return files, float(doc.get("threshold", 95.0)), int(doc.get("jobs", 2))


def load_equivalent() -> dict[tuple[str, str, str, str], str]:
    doc = tomllib.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}
    known: dict[tuple[str, str, str, str], str] = {}
    for entry in doc.get("equivalent", []):
        key = (entry["file"], entry["scope"], entry["line"], entry["mutation"])
        if not entry.get("reason", "").strip():
            raise SystemExit(f"mutation/equivalent.toml: entry without a reason: {key}")
        known[key] = entry["reason"]
    return known


# --- the child: import the mutated module, run pytest -------------------------------------


class _MutantLoader(importlib.abc.Loader):
    def __init__(self, code: CodeType) -> None:
        self.code = code

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        exec(self.code, module.__dict__)


class _MutantFinder(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, path: str, code: CodeType) -> None:
        self.module, self.path, self.code = module, path, code

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module:
            return None
        return importlib.util.spec_from_file_location(
            fullname, self.path, loader=_MutantLoader(self.code)
        )


class _LineRecorder:
    """Which tests execute each line of one file; "<import>" for lines run outside a test
    (module and class bodies, default values: run when the module is imported)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.current = OUTSIDE_TESTS
        self.lines: dict[int, set[str]] = {}

    def trace(self, frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename != self.path:
            return None
        self.lines.setdefault(frame.f_lineno, set()).add(self.current)
        return self._line

    def _line(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line":
            self.lines.setdefault(frame.f_lineno, set()).add(self.current)
        return self._line

    def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> None:
        self.current = item.nodeid

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self.current = OUTSIDE_TESTS


class _Select:
    """Keep only the tests with these node ids (given as ids, not on the command line, where
    pytest would read some parametrized ids as something else)."""

    def __init__(self, nodeids: set[str]) -> None:
        self.nodeids = nodeids

    def pytest_collection_modifyitems(self, session: Any, config: Any, items: list[Any]) -> None:
        keep = [item for item in items if item.nodeid in self.nodeids]
        config.hook.pytest_deselected(items=[i for i in items if i.nodeid not in self.nodeids])
        items[:] = keep


class _Failures:
    """Whether a test (or the collection of a test file) failed: only that kills a mutant.
    pytest failing for any other reason (a broken plugin, a usage error) is an error."""

    def __init__(self) -> None:
        self.failed = False

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.failed = self.failed or report.failed

    def pytest_collectreport(self, report: Any) -> None:
        self.failed = self.failed or report.failed


def _die_with_parent() -> None:
    """Linux: the child is killed when the runner dies (no mutant left looping alone)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child(
    config: FileConfig, code: CodeType | None, tests: Sequence[str] | None, coverage_file: str
) -> None:
    """Runs in the forked child; never returns."""
    status = 3
    try:
        _die_with_parent()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        if code is not None:
            sys.meta_path.insert(0, _MutantFinder(config.module, str(ROOT / config.path), code))
        import pytest
        from hypothesis import settings

        settings.register_profile("mutation", database=None, derandomize=True, deadline=None)
        settings.load_profile("mutation")
        # pytest and its plugins are imported before pytest.main (in the parent, once), which
        # it reports as a warning, and the project turns warnings into errors.
        quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
        args = ["-x", "-q", "-p", "no:cacheprovider", *quiet, *config.tests]
        failures = _Failures()
        if tests is not None:
            status = int(pytest.main(args, plugins=[failures, _Select(set(tests))]))
        elif coverage_file:
            recorder = _LineRecorder(str(ROOT / config.path))
            sys.settrace(recorder.trace)
            status = int(pytest.main(args, plugins=[failures, recorder]))
            sys.settrace(None)
            lines = {str(k): sorted(v) for k, v in recorder.lines.items()}
            Path(coverage_file).write_text(json.dumps(lines))
        else:
            status = int(pytest.main(args, plugins=[failures]))
        if status != 0:
            status = _FAILED if failures.failed else _ERROR
    finally:
        os._exit(status)


def _preload() -> None:
    """Import what every child needs and never mutates, once, before forking."""
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401

    for name in ("msgpack", "ormsgpack", "cryptography.hazmat.primitives.asymmetric.ec"):
        importlib.import_module(name)
    for entry in importlib.metadata.entry_points(group="pytest11"):
        with contextlib.suppress(Exception):  # a broken plugin fails in the child, visibly
            entry.load()


@dataclass
class _Job:
    mutant: Mutant | None
    pid: int
    deadline: float


def _spawn(
    config: FileConfig, code: CodeType | None, tests: Sequence[str] | None, coverage_file: str = ""
) -> int:
    """Fork a child running the file's tests (only `tests`, node ids, if given)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(config, code, tests, coverage_file)
    return pid


def _status(wait_status: int) -> str:
    if os.WIFEXITED(wait_status):
        code = os.WEXITSTATUS(wait_status)
        if code == 0:
            return SURVIVED
        return KILLED if code == _FAILED else ERROR
    return KILLED  # the mutant crashed the interpreter


def run_baseline(config: FileConfig) -> tuple[float, dict[int, set[str]]]:
    """Run the file's tests unmutated, tracing which tests reach each of its lines."""
    with tempfile.TemporaryDirectory(prefix="provledger-mutation-") as tmp:
        coverage_file = str(Path(tmp) / "lines.json")
        started = time.monotonic()
        pid = _spawn(config, None, None, coverage_file)
        _, wait_status = os.waitpid(pid, 0)
        seconds = time.monotonic() - started
        status = _status(wait_status)
        if status != SURVIVED:
            problem = "fail" if status == KILLED else "cannot run (pytest error)"
            raise BaselineFailed(f"{config.path}: its tests {problem} without any mutation")
        lines = json.loads(Path(coverage_file).read_text())
    return seconds, {int(k): set(v) for k, v in lines.items()}


def tests_for(mutant: Mutant, lines: dict[int, set[str]]) -> set[str] | None:
    """The node ids of the tests that execute the mutated lines: None (all of the file's
    tests) if a line runs at import, empty if no test reaches it (the mutant then survives
    without a run)."""
    reached: set[str] = set()
    for line in range(mutant.loc[1], mutant.loc[3] + 1):
        reached |= lines.get(line, set())
    return None if OUTSIDE_TESTS in reached else reached


def run_mutants(
    config: FileConfig,
    source: str,
    mutants: list[Mutant],
    lines: dict[int, set[str]],
    jobs: int,
    timeout: float,
) -> dict[Mutant, str]:
    results: dict[Mutant, str] = {}
    queue = list(mutants)
    running: dict[int, _Job] = {}
    path = str(ROOT / config.path)
    done = 0
    while queue or running:
        while queue and len(running) < jobs:
            mutant = queue.pop(0)
            tests = tests_for(mutant, lines)
            if tests is not None and not tests:
                results[mutant] = NOT_REACHED
                done += 1
                continue
            code = compile(mutate(source, mutant), path, "exec")
            pid = _spawn(config, code, tests)
            running[pid] = _Job(mutant, pid, time.monotonic() + timeout)
        if not running:
            continue
        pid, wait_status = os.waitpid(-1, os.WNOHANG)
        if pid:
            job = running.pop(pid)
            assert job.mutant is not None
            results[job.mutant] = _status(wait_status)
            done += 1
            _progress(config.path, done, len(mutants))
            continue
        now = time.monotonic()
        for job in list(running.values()):
            if now > job.deadline:
                os.kill(job.pid, signal.SIGKILL)
                os.waitpid(job.pid, 0)
                del running[job.pid]
                assert job.mutant is not None
                results[job.mutant] = TIMEOUT
                done += 1
                _progress(config.path, done, len(mutants))
        time.sleep(0.01)
    return results


def _progress(path: str, done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\r{path}: {done}/{total}", end="", file=sys.stderr, flush=True)


# --- the report ----------------------------------------------------------------------------


def print_table(results: list[FileResult], threshold: float) -> None:
    header = (
        f"{'file':<26} {'mutants':>7} {'killed':>7} {'survived':>8} {'equiv':>6} "
        f"{'score':>7} {'time':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        flag = "" if r.score >= threshold else "  < threshold"
        if r.skipped:
            print(f"{r.path:<26} {r.total:>7}  not run: its tests fail without a mutation")
            continue
        print(
            f"{r.path:<26} {r.total:>7} {r.killed:>7} {len(r.survivors):>8} {r.equivalent:>6} "
            f"{r.score:>6.1f}% {r.seconds:>5.0f}s{flag}"
        )
    killed = sum(r.killed for r in results)
    survived = sum(len(r.survivors) for r in results)
    total = 100.0 if killed + survived == 0 else 100.0 * killed / (killed + survived)
    print("-" * len(header))
    print(
        f"{'all':<26} {sum(r.total for r in results):>7} {killed:>7} {survived:>8} "
        f"{sum(r.equivalent for r in results):>6} {total:>6.1f}%"
    )


def print_survivors(results: list[FileResult]) -> None:
    survivors = [(m, m in r.not_reached) for r in results for m in r.survivors]
    if not survivors:
        return
    print(f"\nsurvivors ({len(survivors)}): no test fails with these changes")
    for m, not_reached in survivors:
        note = "  (no test reaches this line)" if not_reached else ""
        print(f"  {m.file}:{m.lineno} [{m.scope}] {m.mutation}{note}")
        print(f"      {m.line}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutate", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", help="files of mutation/config.toml (default: all)")
    parser.add_argument("--sample", type=int, default=0, help="at most N mutants per file")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.add_argument("--jobs", type=int, default=0, help="children at once (config: jobs)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list each file's survivors when it is done"
    )
    parser.add_argument(
        "--check-equivalent",
        action="store_true",
        help="run the listed equivalent mutants too and report any that a test kills",
    )
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    configs, threshold, default_jobs = load_config()
    jobs = args.jobs or default_jobs
    equivalent = load_equivalent()
    unknown = [f for f in args.files if f not in configs]
    if unknown:
        parser.error(f"not in mutation/config.toml: {', '.join(unknown)}")
    selected = [configs[f] for f in (args.files or configs)]

    matched: set[tuple[str, str, str, str]] = set()
    plans: list[tuple[FileConfig, str, list[Mutant]]] = []
    for config in selected:
        source = (ROOT / config.path).read_text()
        mutants = find_mutants(config.path, source)
        matched.update(m.key for m in mutants if m.key in equivalent)
        if args.sample and len(mutants) > args.sample:
            mutants = sorted(
                random.Random(f"{args.seed}:{config.path}").sample(mutants, args.sample),
                key=lambda m: (m.lineno, m.loc, m.variant),
            )
        plans.append((config, source, mutants))
    stale = [k for k in equivalent if k[0] in configs and k not in matched]
    if args.list:
        for _, _, mutants in plans:
            for m in mutants:
                tag = " (equivalent)" if m.key in equivalent else ""
                print(f"{m.file}:{m.lineno} [{m.scope}] {m.mutation}{tag}")
        return 0

    _preload()
    results: list[FileResult] = []
    surprising: list[Mutant] = []
    for config, source, mutants in plans:
        started = time.monotonic()
        result = FileResult(config.path, total=len(mutants))
        try:
            baseline, lines = run_baseline(config)
        except BaselineFailed as exc:
            print(f"{exc}: not scored", flush=True)
            result.skipped = True
            results.append(result)
            continue
        to_run = [m for m in mutants if args.check_equivalent or m.key not in equivalent]
        outcome = run_mutants(config, source, to_run, lines, jobs, timeout=2 * baseline + 10)
        for m in mutants:
            status = outcome.get(m, EQUIVALENT_STATUS)
            if m.key in equivalent:
                result.equivalent += 1
                if status in (KILLED, TIMEOUT):
                    surprising.append(m)
            elif status == ERROR:
                result.errors.append(m)
            elif status in (SURVIVED, NOT_REACHED):
                result.survivors.append(m)
                if status == NOT_REACHED:
                    result.not_reached.add(m)
            else:
                result.killed += 1
                result.timeouts += status == TIMEOUT
        result.seconds = time.monotonic() - started
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(
            f"{config.path}: {result.total} mutants, {len(result.survivors)} survived, "
            f"{result.score:.1f}% in {result.seconds:.0f}s",
            flush=True,
        )
        if args.verbose:
            print_survivors([result])
        results.append(result)
        if result.errors:
            print(f"pytest failed without a failing test on {len(result.errors)} mutants:")
            for m in result.errors:
                print(f"  {m.file}:{m.lineno} [{m.scope}] {m.mutation}")
            print("the environment is broken (a plugin, the venv?): no score, fix and rerun")
            return 2

    sampled = f", sample {args.sample} per file, seed {args.seed}" if args.sample else ""
    print(f"\nmutation score over non-equivalent mutants (threshold {threshold:.0f}%{sampled})")
    print_table(results, threshold)
    print_survivors(results)
    if surprising:
        print("\nlisted as equivalent but killed by a test (remove from equivalent.toml):")
        for m in surprising:
            print(f"  {m.file}:{m.lineno} [{m.scope}] {m.mutation}")
    if stale and not args.sample and not args.files:
        print("\nentries of equivalent.toml that match no mutant any more (update or remove):")
        for key in stale:
            print(f"  {key[0]} [{key[1]}] {key[3]}: {key[2]}")
    return 0 if all(r.score >= threshold for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
