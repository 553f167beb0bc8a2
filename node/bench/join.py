"""`python -m node.bench.join --events N`: how long a fresh node takes to become useful (its
store at the chain's head, ready to serve reads and follow on), by replay and by snapshot.

It builds a chain of N `register` events (blocks of 2,000, commits by 3 of 4 validators) in
a node home on a real store, then measures:

- **replay**: a new store re-runs every block as block sync does, minus HTTP: the commit
  checked against the genesis validators, every envelope decoded and its signature verified,
  the block executed, its roots compared with the header, the block appended;
- **snapshot**: `python -m node.server.snapshot write` on the old home (what the serving
  node spends), then `python -m node.server.snapshot install` into a new home (what the new
  node spends: verify the commit, load the records, rebuild the state map, check the roots),
  both as the real commands, in child processes.

The store of each is compared with the old one (height, roots, head). Figures only: nothing
here is a test. The bench never imports the daemon (the snapshot runs as its commands do).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ledger.blocks import verify_checkpoint
from ledger.events import decode_envelope
from ledger.store import Store
from node.bench.ledger import fill, make_genesis, sign_fillers
from node.config import NodeSettings

BLOCK_EVENTS = 2_000


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def replay(source: Store, target: Store) -> None:
    """Re-run every block of `source` into the empty `target`, as block sync does."""
    genesis = target.genesis
    for height in range(1, source.height + 1):
        block = source.block(height)
        commit = source.commit(height)
        assert block is not None and commit is not None, "the source holds every block"
        header = block.header
        verify_checkpoint(header, commit, genesis.chain_id, genesis.validators)
        assert header.prev == target.head_hash, "blocks follow each other"
        candidates = [decode_envelope(envelope, verify=True) for envelope in block.events]
        execution = target.execute(candidates, height, header.time)
        if not execution.matches(header) or execution.rejected:
            raise RuntimeError(f"replayed block {height} does not match its header")
        target.append_block(block, commit, execution)


def _tool(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "node.server.snapshot", *args], check=True)
    return time.perf_counter() - started


def bench_join(events: int, workdir: Path) -> dict[str, float | int]:
    keys, genesis = make_genesis()
    homes = {}
    for name in ("old", "replayed", "snapshotted"):
        settings = NodeSettings(home=workdir / name, name=name)
        settings.save()
        genesis.save(settings.genesis_path)
        homes[name] = settings
    started = time.perf_counter()
    log = sign_fillers(events)
    with Store(homes["old"].data_path, genesis) as old:
        fill(old, keys, log, BLOCK_EVENTS)
        reference = (old.height, old.tree_size, old.root(), old.state_root, old.head_hash)
    del log
    built = time.perf_counter() - started
    print(f"built {events} events in {built:.1f} s", file=sys.stderr, flush=True)

    started = time.perf_counter()
    with (
        Store(homes["old"].data_path, genesis) as old,
        Store(homes["replayed"].data_path, genesis) as new,
    ):
        replay(old, new)
        assert (new.height, new.tree_size, new.root(), new.state_root, new.head_hash) == reference
    replay_s = time.perf_counter() - started
    print(f"replay {replay_s:.1f} s", file=sys.stderr, flush=True)

    snapshot = workdir / "snapshot.bin"
    write_s = _tool("write", "--home", str(homes["old"].home), "--out", str(snapshot))
    install_s = _tool("install", "--home", str(homes["snapshotted"].home), "--file", str(snapshot))
    with Store(homes["snapshotted"].data_path, genesis) as new:
        assert (new.height, new.tree_size, new.root(), new.state_root, new.head_hash) == reference
    return {
        "events": events,
        "blocks": reference[0],
        "store_bytes": _dir_bytes(homes["old"].data_path),
        "replay_s": replay_s,
        "snapshot_write_s": write_s,
        "snapshot_install_s": install_s,
        "snapshot_bytes": snapshot.stat().st_size,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.bench.join", description=__doc__)
    parser.add_argument("--events", type=int, action="append", help="chain size (repeatable)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    args = parser.parse_args(argv)
    sizes = args.events or [100_000]
    print("| events | replay | snapshot write | snapshot install | snapshot file | store |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        workdir = Path(tempfile.mkdtemp(prefix=f"join-{size}-", dir=args.dir))
        try:
            r = bench_join(size, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(
            f"| {r['events']:,} | {r['replay_s']:.1f} s | {r['snapshot_write_s']:.1f} s | "
            f"{r['snapshot_install_s']:.1f} s | {int(r['snapshot_bytes']) / 1e6:.1f} MB | "
            f"{int(r['store_bytes']) / 1e6:.0f} MB |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
