"""Backups, restores and store migrations of a node home (docs/PROTOCOL.md §20).

A backup is a framed file (`node.server.snapshot.FrameWriter`) with magic `PLBACK1\\n`: a
manifest (chain, genesis hash, height, the store's format version and the home's files as
the home holds them: config.json, genesis.json, node_key.pem or peer_key.pem, the signer
state files, evidence.bin), then every key and value of the store read from ONE LevelDB
snapshot, so the copy is of one committed height even while the node appends; then the end
frame and the SHA-256 of everything before it.

`python -m node.server.backup backup --home DIR --out FILE` reads the store directly when no
node runs on the home, and otherwise asks the running node for its store over its own peer
listener (`GET /p2p/backup`, signed with the home's key). `restore --from FILE --home NEWDIR`
refuses a home that is not empty, checks the whole file before anything becomes the home, and
writes the store and the files. `migrate --home DIR` upgrades an older store in place after
backing it up; the daemon does the same when it starts (`upgrade_store`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ledger import codec
from ledger.crypto import PrivateKey
from ledger.errors import Corruption, LedgerError
from ledger.genesis import Genesis
from ledger.store import (
    FORMAT_VERSION,
    META,
    MIGRATIONS,
    LevelDB,
    Store,
    migrate_store,
    stored_format,
)
from node import homelock
from node.config import NodeSettings
from node.server.snapshot import (
    FrameReader,
    FrameWriter,
    Readable,
    SnapshotRefused,
    StreamReader,
    bounded_stream,
    own_peer_url,
    pairs,
    problem_detail,
    record_frames,
    signed_get,
    tls_verify,
    write_atomically,
)

BACKUP_MAGIC = b"PLBACK1\n"
BACKUP_VERSION = 1
HOME_FILES = (
    "config.json",
    "genesis.json",
    "node_key.pem",
    "peer_key.pem",
    "signer_state.bin",
    "signer_state.bin.alt",
    "evidence.bin",
)
"""The files of a home a backup carries (those that exist), besides the store."""
MAX_HOME_FILE = 64 << 20
BACKUPS_DIR = "backups"
"""Where the daemon keeps the backup it takes before migrating a store (under the home)."""

log = logging.getLogger("provledger.backup")


@dataclass(frozen=True)
class BackupInfo:
    height: int
    store_format: int
    records: int
    files: tuple[str, ...]
    size: int


# --- writing ---------------------------------------------------------------------------------


def _db_items(reader: Any) -> Iterator[tuple[bytes, bytes]]:
    with reader.iterator() as iterator:
        yield from iterator


def store_meta(reader: Any) -> dict[str, Any]:
    raw = reader.get(META)
    if raw is None:
        raise Corruption("the store has no metadata: nothing to back up")
    return codec.decode_map(raw)


def backup_chunks(
    meta: dict[str, Any],
    items: Iterable[tuple[bytes, bytes]],
    files: dict[str, bytes],
    chain_id: str,
    done: Callable[[int, int], None] | None = None,
) -> Iterator[bytes]:
    """A backup: the manifest (with `files`), the store's records, the end and checksum."""
    writer = FrameWriter(BACKUP_MAGIC)
    manifest = {
        "kind": "backup",
        "version": BACKUP_VERSION,
        "chain": chain_id,
        "genesis": meta["genesis"],
        "height": meta["height"],
        "store_format": meta.get("format"),
        "files": files,
    }
    yield writer.frame({k: v for k, v in manifest.items() if v is not None})
    records = 0
    for batch in record_frames(items):
        records += len(batch)
        yield writer.frame({"records": batch})
    yield writer.end({"records": records})
    if done is not None:
        done(records, writer.frames)


def serve_backup(db: LevelDB, chain_id: str) -> Iterator[bytes]:
    """The running node's store from one LevelDB snapshot, as a backup without files (the
    command that asked adds them from the home). Call on the store's thread."""
    snapshot = db.snapshot()
    meta = store_meta(snapshot)
    return bounded_stream(
        "backup", backup_chunks(meta, _db_items(snapshot), {}, chain_id), snapshot.close
    )


TLS_SETTINGS = ("tls_cert", "tls_key", "tls_ca")


def tls_files(config: dict[str, Any]) -> set[str]:
    """The files inside the home that a config's TLS settings name (relative paths)."""
    names = set()
    for setting in TLS_SETTINGS:
        value = config.get(setting)
        if isinstance(value, str) and value and _inside(value):
            names.add(Path(value).as_posix())
    return names


def _inside(name: str) -> bool:
    path = Path(name)
    return not path.is_absolute() and ".." not in path.parts and bool(path.parts)


def home_files(home: Path) -> dict[str, bytes]:
    """The home's files a backup carries: HOME_FILES, and the TLS files config.json names
    inside the home."""
    files = {}
    config = json.loads((home / "config.json").read_text())
    for name in (*HOME_FILES, *sorted(tls_files(config))):
        path = home / name
        if path.is_file():
            if path.stat().st_size > MAX_HOME_FILE:
                raise Corruption(f"{path} is over {MAX_HOME_FILE} bytes: not backed up")
            files[name] = path.read_bytes()
    return files


def write_backup(home: Path, out: Path, files_too: bool = True) -> BackupInfo:
    """Back the home up into `out`: online through the running node if one runs there."""
    settings = NodeSettings.load(home)
    genesis = Genesis.load(settings.genesis_path)
    if out.exists():
        raise FileExistsError(f"{out} exists: it would be overwritten")
    counted: list[tuple[int, int]] = []
    if homelock.holder(home) is None:
        if not (settings.data_path / "CURRENT").exists():
            raise Corruption(f"{settings.data_path} holds no store: nothing to back up")
        db = Store._open(settings.data_path)
        try:
            snapshot = db.snapshot()
            try:
                meta = store_meta(snapshot)
                files = home_files(home) if files_too else {}
                chunks = backup_chunks(
                    meta, _db_items(snapshot), files, genesis.chain_id, lambda *c: counted.append(c)
                )
                size = write_atomically(out, chunks)
            finally:
                snapshot.close()
        finally:
            db.close()
        return BackupInfo(meta["height"], meta.get("format", 0), counted[0][0], tuple(files), size)
    key = PrivateKey.load(settings.identity_key_path)
    with signed_get(
        own_peer_url(settings), "/p2p/backup", key, genesis.chain_id, 3600.0, tls_verify(settings)
    ) as response:
        if response.status_code != 200:
            raise SnapshotRefused(f"the running node refused: {problem_detail(response)}")
        source = StreamReader(response.iter_bytes())
        reader = FrameReader(source, BACKUP_MAGIC)
        frames = reader.frames()
        manifest = next(frames)
        _check_manifest(manifest, genesis)
        # The store was read from one LevelDB snapshot when the request arrived; the files
        # are read now, after it: the signer state is at least as new as the store.
        files = home_files(home)

        def records() -> Iterator[tuple[bytes, bytes]]:
            for doc in frames:
                if "end" in doc:
                    return
                yield from pairs(doc, "records")

        meta = {
            "genesis": manifest["genesis"],
            "height": manifest["height"],
            "format": manifest.get("store_format"),
        }
        chunks = backup_chunks(
            meta, records(), files, genesis.chain_id, lambda *c: counted.append(c)
        )
        size = write_atomically(out, chunks)
    return BackupInfo(
        manifest["height"], manifest.get("store_format", 0), counted[0][0], tuple(files), size
    )


def _check_manifest(manifest: dict[str, Any], genesis: Genesis | None) -> None:
    if manifest.get("kind") != "backup" or manifest.get("version") != BACKUP_VERSION:
        raise SnapshotRefused(f"not a backup of version {BACKUP_VERSION}")
    if not isinstance(manifest.get("height"), int) or not isinstance(manifest.get("files"), dict):
        raise SnapshotRefused("the backup's manifest is incomplete")
    if genesis is not None and manifest.get("genesis") != genesis.hash():
        raise SnapshotRefused("the backup is of another chain (its genesis differs)")


# --- restoring -------------------------------------------------------------------------------


def restore_backup(source: Readable, home: Path) -> BackupInfo:
    """Restore a backup into the empty (or new) directory `home`. The store is written to a
    temporary directory and the files kept in memory until the checksum has been checked;
    on any error nothing is left in `home`."""
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise Corruption(f"{home} is not empty: restore only into a new home")
    created = not home.exists()
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / "data.restoring"
    db: LevelDB | None = None
    try:
        reader = FrameReader(source, BACKUP_MAGIC)
        frames = reader.frames()
        manifest = next(frames)
        _check_manifest(manifest, None)
        files = manifest["files"]
        if not isinstance(files.get("config.json"), bytes) or "genesis.json" not in files:
            raise SnapshotRefused("the backup lacks the home's genesis.json or config.json")
        try:
            config = json.loads(files["config.json"])
        except ValueError as exc:
            raise SnapshotRefused(f"the backup's config.json is unreadable: {exc}") from exc
        allowed = {*HOME_FILES, *tls_files(config if isinstance(config, dict) else {})}
        for name, content in files.items():
            if name not in allowed or not isinstance(content, bytes):
                raise SnapshotRefused(f"the backup carries an unexpected file {name!r}")
        db = Store._open(tmp)
        records = 0
        for doc in frames:
            if "end" in doc:
                end = doc["end"]
                if not isinstance(end, dict) or end.get("records") != records:
                    raise SnapshotRefused("the end frame does not count the records read")
                break
            batch_items = pairs(doc, "records")
            with db.write_batch() as batch:
                for key, value in batch_items:
                    batch.put(key, value)
            records += len(batch_items)
        else:
            raise SnapshotRefused("no end frame")
        meta = db.get(META)
        if meta is None:
            raise SnapshotRefused("the backup holds no store metadata")
        db.put(META, meta, sync=True)  # one synced write: everything before it is on disk
        db.close()
        try:
            genesis = Genesis.from_json(json.loads(files["genesis.json"]))
        except (ValueError, LedgerError) as exc:
            raise SnapshotRefused(f"the backup's genesis.json is unreadable: {exc}") from exc
        if genesis.hash() != manifest["genesis"]:
            raise SnapshotRefused("the backup's genesis.json is not its store's genesis")
        for name, content in files.items():
            path = home / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            if name.endswith(".pem"):
                path.chmod(0o600)
        os.replace(tmp, home / "data")
    except BaseException:
        if db is not None and not db.closed:
            db.close()
        if created:
            shutil.rmtree(home, ignore_errors=True)
        else:
            for child in list(home.iterdir()):
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return BackupInfo(
        manifest["height"], manifest.get("store_format", 0), records, tuple(files), reader.size
    )


# --- migrations --------------------------------------------------------------------------------


def progress_line(prefix: str, stream: Any = None) -> Callable[[int, int], None]:
    """A plain progress line on stderr, redrawn at most every 1% (and at the end)."""
    out = stream if stream is not None else sys.stderr
    last = [-1]

    def report(done: int, total: int) -> None:
        percent = 100 if total == 0 else done * 100 // total
        if percent == last[0] and done != total:
            return
        last[0] = percent
        end = "\n" if done >= total else ""
        print(f"\r{prefix}: {done}/{total} blocks ({percent}%)", end=end, file=out, flush=True)

    return report


def upgrade_store(
    settings: NodeSettings, progress: Callable[[int, int], None] | None = None
) -> Path | None:
    """If the home's store is of an older format that a migration upgrades: back it up into
    HOME/backups/, then migrate it in place. Returns the backup's path (None: nothing to do).
    The caller must hold the home (no node running on it)."""
    version = stored_format(settings.data_path)
    if version is None or version == FORMAT_VERSION or version not in MIGRATIONS:
        return None
    genesis = Genesis.load(settings.genesis_path)
    backups = settings.home / BACKUPS_DIR
    backups.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = backups / f"store-format-{version}-{stamp}.plbk"
    log.info("store format %s: backing it up into %s before migrating it", version, out)
    write_backup(settings.home, out, files_too=True)
    report = progress or progress_line(f"migrating {settings.data_path} from format {version}")
    migrate_store(settings.data_path, genesis, report)
    log.info("store migrated to format %s (the backup is %s)", FORMAT_VERSION, out)
    return out


# --- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.server.backup")
    commands = parser.add_subparsers(dest="command", required=True)
    backup = commands.add_parser("backup", help="back a home up (online if a node runs on it)")
    backup.add_argument("--home", required=True, type=Path)
    backup.add_argument("--out", required=True, type=Path)
    restore = commands.add_parser("restore", help="restore a backup into a new home")
    restore.add_argument("--from", dest="source", required=True, type=Path)
    restore.add_argument("--home", required=True, type=Path)
    migrate = commands.add_parser("migrate", help="upgrade a stopped home's store in place")
    migrate.add_argument("--home", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "backup":
            info = write_backup(args.home, args.out)
            print(
                f"backup of height {info.height} (store format {info.store_format}, "
                f"{info.records} records, files: {', '.join(info.files) or 'none'}; "
                f"{info.size} bytes) written to {args.out}"
            )
        elif args.command == "restore":
            if not args.source.is_file():
                raise SnapshotRefused(f"cannot read {args.source}: no such file")
            with open(args.source, "rb") as handle:
                info = restore_backup(handle, args.home)
            print(
                f"restored height {info.height} into {args.home} "
                f"(files: {', '.join(info.files)}); start it with: provledger node start "
                f"--home {args.home}"
            )
        else:
            settings = NodeSettings.load(args.home)
            with homelock.held(settings.home):
                saved = upgrade_store(settings)
            if saved is None:
                print(f"{settings.data_path} is of format {FORMAT_VERSION}: nothing to migrate")
            else:
                print(f"migrated to format {FORMAT_VERSION}; the old store is backed up in {saved}")
    except (LedgerError, OSError, httpx.HTTPError, homelock.HomeLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
