"""Benchmarks: `python -m node.bench ledger` measures the LevelDB ledger at growing sizes.

For each size N the ledger benchmark fills a fresh store with N events (mostly `register`
events of distinct random datasets, plus one target dataset with exactly 10 events spread
evenly over the whole log), timing only the appends: `Store.execute`, the header, a commit
signed by 3 of 4 validators and the synced atomic `Store.append_block`. It then times
inclusion-proof generation and verification, the target dataset's provenance query, and its
proof bundle generation and offline verification, and reports disk and memory use.

The state map (docs/PROTOCOL.md §17): each size is also appended to a store without the map
(`Store(state_map=False)`, same events, same run), so the append rate with the map is
reported against the rate without it; the map's update time per event is measured inside
`Store.execute`; state proofs of random registered datasets (and of absent ones) are timed
(generation, verification) and sized (msgpack and JSON bytes). On a shared machine wall
time swings with other load, so appends are also measured in this process's CPU time
(LevelDB's compaction threads included) and proof generation in thread CPU time.

Every event is signed by the bench itself before timing starts and kept as the `SignedEvent`
that `sign_event` returns, so the timed section neither decodes nor re-verifies envelopes
(a node checks signatures when it admits an event to its mempool, not when it executes a
block). Events signed once for the largest size are reused, as prefixes, for smaller ones.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import codec, merkle, provenance, smt
from ledger.blocks import (
    PRECOMMIT,
    Block,
    Commit,
    CommitSignature,
    Validator,
    ValidatorSet,
    vote_sign_bytes,
)
from ledger.crypto import PrivateKey
from ledger.events import Attest, EventBody, Register, SignedEvent, Use, sign_event
from ledger.genesis import OPEN, Genesis
from ledger.rules import dataset_key
from ledger.store import Store

CHAIN_ID = "bench"
GENESIS_TIME = 1_700_000_000_000
EVENT_TIME = GENESIS_TIME + 1_000
VALIDATORS = 4
FILLER_KEYS = 8
TARGET_EVENTS = 10
PROOF_SAMPLES = 1_000
HISTORY_RUNS = 200
ROUNDS = 10
POOL_THRESHOLD = 20_000
SIGN_CHUNK = 10_000
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
DEFAULT_BLOCK_EVENTS = 2_000

_signer: dict[str, Any] = {}


def _init_signer(pems: Sequence[bytes]) -> None:
    keys = [PrivateKey.from_pem(pem) for pem in pems]
    _signer["keys"] = [(key, key.public_key) for key in keys]


def _sign_fillers(span: tuple[int, int]) -> list[SignedEvent]:
    """Sign `register` events start..start+count, each of a fresh random dataset."""
    start, count = span
    keys = _signer["keys"]
    signed = []
    for i in range(start, start + count):
        key, public = keys[i % len(keys)]
        body = Register(
            chain=CHAIN_ID,
            actor=public,
            time=EVENT_TIME,
            nonce=os.urandom(16),
            dataset=os.urandom(32),
            meta={"title": f"dataset {i}", "size": i},
            open=True,
        )
        signed.append(sign_event(key, body))
    return signed


def bench_register(key: PrivateKey, chain_id: str, time_ms: int, title: str) -> SignedEvent:
    """A `register` of a fresh random dataset, signed by `key`: the event the cluster
    benchmarks submit and the ledger floor times."""
    body = Register(
        chain=chain_id,
        actor=key.public_key,
        time=time_ms,
        nonce=os.urandom(16),
        dataset=os.urandom(32),
        meta={"title": title},
        open=False,
    )
    return sign_event(key, body)


def sign_fillers(count: int) -> list[SignedEvent]:
    """`count` signed filler events by a handful of keys, on 2 processes when it pays off."""
    pems = [PrivateKey.generate().to_pem() for _ in range(FILLER_KEYS)]
    spans = [(s, min(SIGN_CHUNK, count - s)) for s in range(0, count, SIGN_CHUNK)]
    signed: list[SignedEvent] = []
    if count < POOL_THRESHOLD:
        _init_signer(pems)
        for span in spans:
            signed.extend(_sign_fillers(span))
        return signed
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(2, initializer=_init_signer, initargs=(pems,)) as pool:
        for chunk in pool.imap(_sign_fillers, spans):
            signed.extend(chunk)
    return signed


def sign_target() -> tuple[bytes, list[SignedEvent]]:
    """The target dataset and its 10 events: a register, then attest and use by its owner."""
    owner = PrivateKey.generate()
    dataset = os.urandom(32)
    common: dict[str, Any] = {
        "chain": CHAIN_ID,
        "actor": owner.public_key,
        "time": EVENT_TIME,
        "dataset": dataset,
    }
    bodies: list[EventBody] = [
        Register(nonce=os.urandom(16), meta={"title": "target"}, open=True, **common)
    ]
    for j in range(1, TARGET_EVENTS):
        if j % 2:
            bodies.append(
                Attest(nonce=os.urandom(16), claim=f"audit {j}", meta={"round": j}, **common)
            )
        else:
            bodies.append(Use(nonce=os.urandom(16), purpose=f"analysis {j}", **common))
    return dataset, [sign_event(owner, body) for body in bodies]


def interleave(fillers: Sequence[SignedEvent], target: Sequence[SignedEvent]) -> list[SignedEvent]:
    """Fillers with target event j at leaf j * N / len(target), N the total length."""
    total = len(fillers) + len(target)
    at = {j * total // len(target): event for j, event in enumerate(target)}
    log: list[SignedEvent] = []
    source = iter(fillers)
    for leaf in range(total):
        log.append(at[leaf] if leaf in at else next(source))
    return log


def make_genesis() -> tuple[list[PrivateKey], Genesis]:
    """Open-admission genesis with one registrar and 4 validators of power 1."""
    keys = [PrivateKey.generate() for _ in range(VALIDATORS)]
    validators = ValidatorSet(
        tuple(Validator(f"v{i}", key.public_key, 1) for i, key in enumerate(keys))
    )
    registrar = PrivateKey.generate()
    genesis = Genesis(CHAIN_ID, GENESIS_TIME, validators, (registrar.public_key,), OPEN)
    return keys, genesis


def sign_commit(keys: Sequence[PrivateKey], height: int, block_hash: bytes) -> Commit:
    """Precommits for `block_hash` by the first quorum (more than 2/3) of `keys`."""
    message = vote_sign_bytes(CHAIN_ID, height, 0, PRECOMMIT, block_hash)
    quorum = keys[: len(keys) * 2 // 3 + 1]
    return Commit(
        height, 0, block_hash, tuple(CommitSignature(k.public_key, k.sign(message)) for k in quorum)
    )


def fill(
    store: Store, keys: Sequence[PrivateKey], log: Sequence[SignedEvent], block_events: int
) -> dict[str, float]:
    """Append `log` in blocks; return seconds spent executing, sealing and appending."""
    proposer = keys[0].public_key
    validators_hash = store.genesis.validators.hash()
    spent = {"execute_s": 0.0, "seal_s": 0.0, "append_block_s": 0.0}
    for start in range(0, len(log), block_events):
        t0 = time.perf_counter()
        height = store.height + 1
        execution = store.execute(log[start : start + block_events], height, EVENT_TIME + height)
        t1 = time.perf_counter()
        if execution.rejected:
            _, error = execution.rejected[0]
            raise RuntimeError(f"bench event rejected at height {height}: {error}")
        header = execution.header(CHAIN_ID, store.head_hash, proposer, validators_hash)
        block = Block(header, tuple(e.envelope for e in execution.accepted))
        commit = sign_commit(keys, height, header.block_hash)
        t2 = time.perf_counter()
        store.append_block(block, commit, execution)
        t3 = time.perf_counter()
        spent["execute_s"] += t1 - t0
        spent["seal_s"] += t2 - t1
        spent["append_block_s"] += t3 - t2
    return spent


def time_map_updates(store: Store) -> list[float]:
    """Make `store` add the time its state-map updates take to the returned cell."""
    spent = [0.0]
    update = store._map_update

    def timed(writes: dict[bytes, bytes]) -> smt.MapUpdate:
        t0 = time.perf_counter()
        try:
            return update(writes)
        finally:
            spent[0] += time.perf_counter() - t0

    store._map_update = timed  # type: ignore[method-assign]
    return spent


def _p99(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


@dataclass
class Subject:
    """One filled store under measurement and the samples (seconds) taken on it so far."""

    store: Store
    genesis: Genesis
    dataset: bytes
    registered: list[bytes] = field(default_factory=list)
    """Datasets on this store whose state proofs are sampled."""
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def measure_round(subject: Subject, rng: random.Random, proofs: int, queries: int) -> None:
    """Take one round of samples: `proofs` inclusion proofs of random leaves (generated and
    verified), `queries` history queries and `queries // 4 + 1` bundles (built and verified)."""
    store, dataset, samples = subject.store, subject.dataset, subject.samples
    size = store.tree_size
    root = store.root()
    clock = time.perf_counter
    for _ in range(proofs):
        leaf = rng.randrange(size)
        leaf_hash = merkle.leaf_hash(store.envelope(leaf))
        t0 = clock()
        proof = store.inclusion_proof(leaf, size)
        t1 = clock()
        merkle.verify_inclusion(leaf_hash, leaf, size, proof, root)
        t2 = clock()
        samples["proof_gen"].append(t1 - t0)
        samples["proof_verify"].append(t2 - t1)
        samples["proof_hashes"].append(len(proof))
    for _ in range(queries):
        t0 = clock()
        provenance.history(store, dataset)
        samples["history"].append(clock() - t0)
    state_root = store.state_root
    for _ in range(proofs):
        present = rng.random() < 0.5
        key = dataset_key(rng.choice(subject.registered) if present else rng.randbytes(32))
        c0 = time.thread_time()
        t0 = clock()
        value, state_proof = store.state_proof(key)
        t1 = clock()
        c1 = time.thread_time()
        smt.verify(state_root, key, value, state_proof)
        t2 = clock()
        assert (value is not None) == present
        samples["state_gen"].append(t1 - t0)
        samples["state_gen_cpu"].append(c1 - c0)
        samples["state_verify"].append(t2 - t1)
        samples["state_siblings"].append(len(state_proof.siblings))
        samples["state_bytes"].append(len(codec.encode(state_proof.to_wire())))
        samples["state_json_bytes"].append(len(json.dumps(state_proof.to_json())))
    for _ in range(queries // 4 + 1):
        t0 = clock()
        bundle = provenance.proof_bundle(store, dataset)
        t1 = clock()
        provenance.verify_bundle(bundle, subject.genesis)
        t2 = clock()
        samples["bundle_gen"].append(t1 - t0)
        samples["bundle_verify"].append(t2 - t1)


def summarize(subject: Subject) -> dict[str, Any]:
    """Means, medians and p99s of the samples (µs for proofs, ms for queries and bundles),
    and what the target dataset's history and bundle contain."""
    samples = subject.samples
    found = provenance.history(subject.store, subject.dataset)
    bundle = provenance.proof_bundle(subject.store, subject.dataset)
    story = provenance.verify_bundle(bundle, subject.genesis)
    figures: dict[str, Any] = {}
    for name, scale, unit in (
        ("proof_gen", 1e6, "us"),
        ("proof_verify", 1e6, "us"),
        ("state_gen", 1e6, "us"),
        ("state_gen_cpu", 1e6, "us"),
        ("state_verify", 1e6, "us"),
        ("history", 1e3, "ms"),
        ("bundle_gen", 1e3, "ms"),
        ("bundle_verify", 1e3, "ms"),
    ):
        values = samples[name]
        figures[f"{name}_mean_{unit}"] = statistics.fmean(values) * scale
        figures[f"{name}_median_{unit}"] = statistics.median(values) * scale
        figures[f"{name}_p99_{unit}"] = _p99(values) * scale
        figures[f"{name}_samples"] = len(values)
    figures["proof_hashes_mean"] = statistics.fmean(samples["proof_hashes"])
    figures["state_siblings_mean"] = statistics.fmean(samples["state_siblings"])
    figures["state_bytes_mean"] = statistics.fmean(samples["state_bytes"])
    figures["state_bytes_max"] = max(samples["state_bytes"])
    figures["state_json_bytes_mean"] = statistics.fmean(samples["state_json_bytes"])
    figures["history_events"] = len(found)
    figures["history_leaves"] = [doc["leaf_index"] for doc in found]
    figures["bundle_events"] = len(story.events)
    figures["bundle_bytes"] = len(json.dumps(bundle))
    return figures


def bench_ledger(
    sizes: Sequence[int] = DEFAULT_SIZES,
    block_events: int = DEFAULT_BLOCK_EVENTS,
    workdir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the ledger benchmark for each size; one dict of figures per size, in order.

    Every store is built first, each timed alone. The stores then stay open and are measured
    in interleaved rounds, so that load from other processes on the machine (and LevelDB's
    background compaction) falls on every size alike. An untimed warm-up round comes first,
    so that LevelDB has its table files open as it would in a running node.
    """
    if not sizes or min(sizes) <= TARGET_EVENTS or block_events < 1:
        raise ValueError(f"sizes must exceed {TARGET_EVENTS} and block_events must be positive")
    say = progress or (lambda _message: None)
    t0 = time.perf_counter()
    fillers = sign_fillers(max(sizes) - TARGET_EVENTS)
    dataset, target = sign_target()
    signing_s = time.perf_counter() - t0
    signing_rss_mb = _peak_rss_mb()
    say(f"signed {len(fillers) + len(target):,} events in {signing_s:.1f} s")
    rng = random.Random(20_240_601)
    results: list[dict[str, Any]] = []
    subjects: list[Subject] = []
    with (
        tempfile.TemporaryDirectory(prefix="provledger-bench-", dir=workdir) as scratch,
        ExitStack() as stores,
    ):
        for size in sizes:
            log = interleave(fillers[: size - TARGET_EVENTS], target)
            keys, genesis = make_genesis()
            with Store(Path(scratch) / f"plain-{size}", genesis, state_map=False) as plain:
                cpu = time.process_time()
                plain_s = sum(fill(plain, keys, log, block_events).values())
                plain_cpu_s = time.process_time() - cpu
            say(f"{size:,} events without the state map in {plain_s:.1f} s")
            keys, genesis = make_genesis()
            store = stores.enter_context(Store(Path(scratch) / f"ledger-{size}", genesis))
            map_s = time_map_updates(store)
            cpu = time.process_time()
            spent = fill(store, keys, log, block_events)
            append_cpu_s = time.process_time() - cpu
            append_s = sum(spent.values())
            say(f"{size:,} events appended in {append_s:.1f} s ({size / append_s:,.0f}/s)")
            registered = [e.body.dataset for e in log[:: max(1, size // 1_000)]]  # type: ignore[attr-defined]
            subjects.append(Subject(store, genesis, dataset, registered))
            results.append(
                {
                    "plain_append_rate_eps": size / plain_s,
                    "map_drop_pct": 100 * (1 - plain_s / append_s),
                    "plain_append_cpu_s": plain_cpu_s,
                    "append_cpu_s": append_cpu_s,
                    "map_drop_cpu_pct": 100 * (1 - plain_cpu_s / append_cpu_s),
                    "map_update_us_per_event": map_s[0] / size * 1e6,
                    "map_keys": size + FILLER_KEYS + 1,
                    "size": size,
                    "block_events": block_events,
                    "blocks": store.height,
                    "sign_s": signing_s,
                    "sign_peak_rss_mb": signing_rss_mb,
                    "append_total_s": append_s,
                    **spent,
                    "append_rate_eps": size / append_s,
                    "peak_rss_mb": _peak_rss_mb(),
                    "peak_rss_children_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN),
                }
            )
        del fillers
        for subject in subjects:
            measure_round(subject, rng, PROOF_SAMPLES // ROUNDS, HISTORY_RUNS // ROUNDS)
            subject.samples.clear()
        for _ in range(ROUNDS):
            for subject in subjects:
                measure_round(subject, rng, PROOF_SAMPLES // ROUNDS, HISTORY_RUNS // ROUNDS)
        say("measured proofs and provenance queries")
        for result, subject in zip(results, subjects, strict=True):
            result.update(summarize(subject))
        stores.close()
        for result in results:
            result["store_bytes"] = _dir_bytes(Path(scratch) / f"ledger-{result['size']}")
    return results


ROWS: tuple[tuple[str, str, str], ...] = (
    ("append rate (events/s)", "append_rate_eps", "{:,.0f}"),
    ("  same without the state map", "plain_append_rate_eps", "{:,.0f}"),
    ("  drop due to the map (%)", "map_drop_pct", "{:.1f}"),
    ("  map update per event (us)", "map_update_us_per_event", "{:.1f}"),
    ("  append CPU, with / without map (s)", "append_cpu_pair", "{}"),
    ("  drop due to the map, by CPU (%)", "map_drop_cpu_pct", "{:.1f}"),
    ("  append total (s)", "append_total_s", "{:.1f}"),
    ("  execute (s)", "execute_s", "{:.1f}"),
    ("  header+commit (s)", "seal_s", "{:.2f}"),
    ("  append_block (s)", "append_block_s", "{:.1f}"),
    ("inclusion proof gen mean (us)", "proof_gen_mean_us", "{:.1f}"),
    ("inclusion proof gen median (us)", "proof_gen_median_us", "{:.1f}"),
    ("inclusion proof gen p99 (us)", "proof_gen_p99_us", "{:.1f}"),
    ("inclusion proof verify mean (us)", "proof_verify_mean_us", "{:.1f}"),
    ("inclusion proof verify p99 (us)", "proof_verify_p99_us", "{:.1f}"),
    ("audit path length (hashes)", "proof_hashes_mean", "{:.1f}"),
    ("state proof gen mean (us)", "state_gen_mean_us", "{:.1f}"),
    ("state proof gen p99 (us)", "state_gen_p99_us", "{:.1f}"),
    ("state proof gen p99, thread CPU (us)", "state_gen_cpu_p99_us", "{:.1f}"),
    ("state proof verify mean (us)", "state_verify_mean_us", "{:.1f}"),
    ("state proof verify p99 (us)", "state_verify_p99_us", "{:.1f}"),
    ("state proof siblings (mean)", "state_siblings_mean", "{:.1f}"),
    ("state proof bytes, msgpack (mean)", "state_bytes_mean", "{:.0f}"),
    ("state proof bytes, msgpack (max)", "state_bytes_max", "{:.0f}"),
    ("state proof bytes, JSON (mean)", "state_json_bytes_mean", "{:.0f}"),
    ("history, 10 events, mean (ms)", "history_mean_ms", "{:.3f}"),
    ("history, 10 events, median (ms)", "history_median_ms", "{:.3f}"),
    ("history, 10 events, p99 (ms)", "history_p99_ms", "{:.3f}"),
    ("proof_bundle gen mean (ms)", "bundle_gen_mean_ms", "{:.3f}"),
    ("verify_bundle mean (ms)", "bundle_verify_mean_ms", "{:.3f}"),
    ("store on disk (MB)", "store_mb", "{:.1f}"),
    ("peak RSS after build (MB)", "peak_rss_mb", "{:.0f}"),
)
RATIO_KEYS = (
    "proof_gen_mean_us",
    "proof_gen_median_us",
    "proof_gen_p99_us",
    "proof_verify_mean_us",
    "proof_verify_p99_us",
    "state_gen_mean_us",
    "state_verify_mean_us",
    "history_mean_ms",
    "history_median_ms",
    "history_p99_ms",
    "bundle_gen_mean_ms",
    "bundle_verify_mean_ms",
)


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Figures as rows, sizes as columns, plus a ratio column largest vs smallest size."""
    rows = [
        {
            **r,
            "store_mb": r["store_bytes"] / 1e6,
            "append_cpu_pair": f"{r['append_cpu_s']:.1f} / {r['plain_append_cpu_s']:.1f}",
        }
        for r in results
    ]
    ratio_head = "last/first" if len(rows) > 1 else ""
    header = ["N", *(f"{r['size']:,}" for r in rows), ratio_head]
    lines = [header]
    for label, key, fmt in ROWS:
        ratio = ""
        if key in RATIO_KEYS and len(rows) > 1 and rows[0][key] > 0:
            ratio = f"{rows[-1][key] / rows[0][key]:.2f}x"
        lines.append([label, *(fmt.format(r[key]) for r in rows), ratio])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of sizes: {text}") from exc
    if not sizes or min(sizes) <= TARGET_EVENTS:
        raise argparse.ArgumentTypeError(f"every size must exceed {TARGET_EVENTS}")
    return sizes


def _run_ledger(args: argparse.Namespace) -> int:
    def say(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    results = bench_ledger(args.sizes, args.block_events, args.workdir, say)
    print(format_table(results))
    print(
        f"\n{os.cpu_count()} CPUs, blocks of {args.block_events:,} events, "
        f"queries in {ROUNDS} interleaved rounds: {PROOF_SAMPLES:,} random leaves, "
        f"history x{HISTORY_RUNS}, bundles x{results[0]['bundle_gen_samples']}; "
        f"peak RSS after signing {results[0]['sign_peak_rss_mb']:.0f} MB; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"ledger": results}, indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/bench", description="provledger benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    ledger = commands.add_parser("ledger", help="append, proof and provenance figures by size")
    ledger.add_argument(
        "--sizes",
        type=_sizes,
        default=DEFAULT_SIZES,
        help="comma-separated event counts (default 10000,100000,1000000)",
    )
    ledger.add_argument("--block-events", type=int, default=DEFAULT_BLOCK_EVENTS)
    ledger.add_argument("--workdir", help="where the temporary stores go (default: system temp)")
    ledger.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    ledger.set_defaults(run=_run_ledger)
    cluster = commands.add_parser(
        "cluster", help="committed events/s, latency, CPU and memory of a 4-validator cluster"
    )
    _add_load_options(
        cluster, 20_000, "concurrent submitters (default 4; --single: connections, default 32)"
    )
    cluster.add_argument(
        "--rss-at",
        default="",
        help="comma-separated committed-event counts at which to sample each node's memory",
    )
    cluster.add_argument(
        "--pace",
        type=_positive_rate,
        metavar="EVENTS_PER_S",
        help="offer the saturation run's events at most this fast (below the sustained rate, "
        "the --rss-at samples find the mempools near empty)",
    )
    cluster.add_argument(
        "--no-map-compare",
        action="store_true",
        help="skip the second cluster without the state map (bench-only setting)",
    )
    cluster.add_argument(
        "--single",
        action="store_true",
        help="one JSON POST /v1/events per event over --clients keep-alive connections "
        "(with wrk's HTTP bound, an open-loop latency run at --rate and, in the same run, "
        "batches of --batch)",
    )
    cluster.add_argument(
        "--rate",
        type=float,
        default=1_000.0,
        help="--single: events/s of the open-loop submit-to-commit latency run",
    )
    cluster.add_argument(
        "--profile",
        metavar="DIR",
        help="--single: record every node with py-spy during the flood; summary printed",
    )
    cluster.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    cluster.set_defaults(run=_run_cluster)
    _add_compare(commands)
    scale = commands.add_parser(
        "scale", help="one participant's grants and attests: execution per event, bundle pages"
    )
    scale.add_argument("--grants", type=int, default=50_000)
    scale.add_argument("--attests", type=int, default=100_000)
    scale.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    scale.set_defaults(run=_run_scale)
    return parser


def _positive_rate(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive rate")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count")
    return value


def _add_load_options(parser: argparse.ArgumentParser, events: int, clients_help: str) -> None:
    """The options `cluster` and `compare` share: how much load, from how many clients."""
    parser.add_argument("--events", type=_positive, default=events)
    parser.add_argument("--clients", type=_positive, default=None, help=clients_help)
    parser.add_argument("--batch", type=_positive, default=100, help="envelopes per request")
    parser.add_argument("--base-port", type=int, default=18800)


COMPARE_MODES = ("single", "batch", "rate")
"""`compare --mode`: node.bench.cluster.LOAD_MODES (a test holds them equal), named here
because that module imports this one."""


def _add_compare(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="this working tree's nodes beside another revision's, the same load on both at "
        "the same time: CPU per event and its ratio",
    )
    compare.add_argument("--against", required=True, metavar="REV", help="a git revision")
    compare.add_argument("--mode", choices=COMPARE_MODES, default="single")
    _add_load_options(
        compare,
        10_000,
        "per cluster: connections (single, default 16) or batch submitters (batch, 4)",
    )
    compare.add_argument("--rounds", type=_positive, default=3)
    compare.add_argument(
        "--rate", type=float, default=250.0, help="rate mode: events/s into each cluster"
    )
    compare.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    compare.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    """`compare`; a revision or tree it cannot run prints why and exits 2."""
    from node.bench import cluster, compare

    clients = args.clients or compare.DEFAULT_CLIENTS[args.mode]
    load = cluster.Load(args.mode, args.events, clients, args.batch, args.rate)
    try:
        results = compare.compare(
            args.against,
            load,
            args.rounds,
            args.base_port,
            lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True),
        )
    except compare.CompareError as exc:
        print(f"scripts/bench compare: {exc}", file=sys.stderr)
        return 2
    compare.print_compare(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"compare": results}, indent=2) + "\n")
    return 0


def _run_scale(args: argparse.Namespace) -> int:
    from node.bench import scale

    results = scale.bench_scale(
        args.grants, args.attests, lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True)
    )
    scale.print_scale(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"scale": results}, indent=2) + "\n")
    return 0


def _run_cluster(args: argparse.Namespace) -> int:
    from node.bench import cluster

    if args.single:
        if args.pace is not None:
            print(
                "scripts/bench cluster: --pace paces the batch run, not --single", file=sys.stderr
            )
            return 2
        return _run_single(args)
    rss_at = tuple(int(x) for x in args.rss_at.split(",") if x)
    results = cluster.bench_cluster(
        args.events,
        args.clients or cluster.CLIENT_CONNECTIONS,
        args.batch,
        base_port=args.base_port,
        rss_at=rss_at,
        compare_map=not args.no_map_compare,
        pace=args.pace,
    )
    cluster.print_cluster(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"cluster": results}, indent=2) + "\n")
    return 0


def _run_single(args: argparse.Namespace) -> int:
    """`cluster --single`; exits 3 when the load client took more CPU than its bound (the
    figure may then measure the client, not the nodes)."""
    from node.bench import cluster, profile

    clients = args.clients or cluster.SINGLE_CLIENTS
    results = cluster.bench_single(
        args.events,
        clients,
        base_port=args.base_port,
        rate=args.rate,
        batch=args.batch,
        profile_dir=args.profile,
    )
    cluster.print_single(results)
    for phase in ("single", "batched"):
        paths = results[phase].get("profiles", [])
        if paths:
            summaries = [profile.summarize(Path(path).read_text()) for path in paths]
            print(f"\nprofile of every node, {phase} submissions ({Path(paths[0]).parent}):")
            print(profile.format_summary(profile.merge(summaries)))
    if args.json:
        Path(args.json).write_text(json.dumps({"cluster": results}, indent=2) + "\n")
    return 0 if results["single"]["client"]["ok"] else 3


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
