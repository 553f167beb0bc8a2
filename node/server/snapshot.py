"""Snapshots (docs/PROTOCOL.md §20): a node's state at a committed height, and a new node
started from one.

A snapshot file is a framed stream (`Frames`): an 8-byte magic, then frames of
`length (4 bytes, big-endian) || canonical msgpack map`, the last one `{"end": ...}`, then the
SHA-256 of every byte before it. Its frames: the manifest (chain, genesis hash, height, the
header and the commit of that height), the Merkle log's frontier (its right border: one hash
per set bit of the tree size), and the rules-state
records (every key under `s`, whatever records the rules keep) in key order.

Installing one (`install_snapshot`) verifies before it trusts: the commit against the genesis
validators before anything is written, every record's key, the state map rebuilt from the
authenticated records against the header's `state_root`, the frontier against its
`tree_root`, and the file's checksum; the store is built in a temporary directory that
becomes the node's `data/` only when all of that holds. A refused snapshot leaves nothing.

`python -m node.server.snapshot write --home DIR --out FILE` writes one: from the store
directly when no node runs on the home, else from the running node over its own peer
listener (`GET /p2p/snapshot`, signed with the home's key; a LevelDB snapshot there).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import ssl
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from ledger import codec, transitions
from ledger.blocks import Commit, Header
from ledger.crypto import PrivateKey
from ledger.errors import Corruption, LedgerError, Malformed, VerificationFailed
from ledger.genesis import Genesis
from ledger.store import (
    STATE_PREFIX,
    ChainReader,
    SnapshotInstaller,
    Store,
    snapshot_frontier,
)
from node import homelock
from node.client.tls import client_context
from node.config import NodeSettings
from node.server.errors import Busy
from node.server.peer_auth import sign_request

SNAPSHOT_MAGIC = b"PLSNAP1\n"
FRAME_LIMIT = 16 << 20
"""The largest frame a reader accepts (a writer makes frames of about RECORDS_FRAME_BYTES)."""
RECORDS_FRAME_BYTES = 1 << 20
RECORDS_FRAME_COUNT = 4096
DIGEST_SIZE = 32
SNAPSHOT_VERSION = 1
TMP_SUFFIX = ".snapshot-tmp"

log = logging.getLogger("provledger.snapshot")


class Readable(Protocol):
    def read(self, count: int = -1, /) -> bytes: ...


class SnapshotRefused(VerificationFailed):
    """A snapshot (or backup) file that is malformed, damaged or does not verify."""

    def __init__(self, detail: str) -> None:
        super().__init__("snapshot refused", detail)


# --- framing ---------------------------------------------------------------------------------


def frame_bytes(doc: dict[str, Any]) -> bytes:
    body = codec.encode(doc)
    return len(body).to_bytes(4, "big") + body


class FrameWriter:
    """Writes a framed stream, hashing as it goes; `chunks` of it for streaming."""

    def __init__(self, magic: bytes) -> None:
        self._hash = hashlib.sha256(magic)
        self._first: bytes | None = magic
        self.frames = 0

    def frame(self, doc: dict[str, Any]) -> bytes:
        data = frame_bytes(doc)
        self._hash.update(data)
        self.frames += 1
        if self._first is not None:
            data, self._first = self._first + data, None
        return data

    def end(self, summary: dict[str, Any]) -> bytes:
        """The end frame and the checksum of everything."""
        data = self.frame({"end": summary})
        return data + self._hash.digest()


class FrameReader:
    """Reads a framed stream from `source`, hashing as it goes; `frames()` yields each frame's
    map up to the end frame, then checks the checksum (SnapshotRefused on any damage)."""

    def __init__(self, source: Readable, magic: bytes) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.size = 0
        if self._read(len(magic)) != magic:
            raise SnapshotRefused("not a file of this kind (bad magic)")

    def _read(self, count: int, hashed: bool = True) -> bytes:
        data = self._source.read(count)
        while len(data) < count:
            more = self._source.read(count - len(data))
            if not more:
                raise SnapshotRefused("the file is truncated")
            data += more
        if hashed:
            self._hash.update(data)
        self.size += len(data)
        return data

    def frames(self) -> Iterator[dict[str, Any]]:
        while True:
            length = int.from_bytes(self._read(4), "big")
            if length > FRAME_LIMIT:
                raise SnapshotRefused(f"a frame of {length} bytes is over {FRAME_LIMIT}")
            try:
                doc = codec.decode_map(self._read(length), FRAME_LIMIT)
            except Malformed as exc:
                raise SnapshotRefused(f"a damaged frame: {exc}") from exc
            if "end" in doc:
                digest = self._hash.digest()
                if self._read(DIGEST_SIZE, hashed=False) != digest:
                    raise SnapshotRefused("checksum mismatch: the file is damaged")
                if self._source.read(1):
                    raise SnapshotRefused("bytes after the checksum")
                yield doc
                return
            yield doc


def record_frames(items: Iterable[tuple[bytes, bytes]]) -> Iterator[list[list[bytes]]]:
    """Records grouped into frames of at most RECORDS_FRAME_COUNT / ~RECORDS_FRAME_BYTES."""
    batch: list[list[bytes]] = []
    size = 0
    for key, value in items:
        batch.append([key, value])
        size += len(key) + len(value) + 8
        if len(batch) >= RECORDS_FRAME_COUNT or size >= RECORDS_FRAME_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def pairs(doc: dict[str, Any], name: str) -> list[tuple[bytes, bytes]]:
    """A frame's list of [bytes, bytes] pairs, checked."""
    items = doc.get(name)
    if not isinstance(items, list) or len(items) > RECORDS_FRAME_COUNT:
        raise SnapshotRefused(f"{name} must be a list of at most {RECORDS_FRAME_COUNT} pairs")
    found = []
    for item in items:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(part, bytes) for part in item)
        ):
            raise SnapshotRefused(f"{name} must hold [key, value] byte pairs")
        found.append((item[0], item[1]))
    return found


# --- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotInfo:
    height: int
    tree_size: int
    records: int
    size: int


def snapshot_chunks(
    reader: ChainReader, done: Callable[[SnapshotInfo], None] | None = None
) -> Iterator[bytes]:
    """The snapshot of `reader`'s head (a ChainView, or a Store nobody appends to), in
    chunks of about one frame each."""
    height = reader.height
    header = reader.header_bytes(height) if height else None
    commit = reader.commit(height) if height else None
    if header is None or commit is None:
        raise Corruption("no committed height to snapshot (the chain has no block yet)")
    writer = FrameWriter(SNAPSHOT_MAGIC)
    size = 0
    manifest = {
        "kind": "snapshot",
        "version": SNAPSHOT_VERSION,
        "chain": reader.genesis.chain_id,
        "genesis": reader.genesis.hash(),
        "height": height,
        "tree_size": reader.tree_size,
        "header": header,
        "commit": commit.to_wire(),
    }
    steps = transitions.transitions_json(reader, height)
    if steps:
        manifest["transitions"] = steps
    chunk = writer.frame(manifest)
    size += len(chunk)
    yield chunk
    chunk = writer.frame({"frontier": snapshot_frontier(reader)})
    size += len(chunk)
    yield chunk
    records = 0
    for batch in record_frames(reader.items(STATE_PREFIX)):
        records += len(batch)
        chunk = writer.frame({"records": batch})
        size += len(chunk)
        yield chunk
    chunk = writer.end({"records": records, "frames": writer.frames + 1})
    size += len(chunk)
    yield chunk
    if done is not None:
        done(SnapshotInfo(height, reader.tree_size, records, size))


def write_atomically(out: Path, chunks: Iterable[bytes]) -> int:
    """Write `chunks` to `out` through a temporary file, fsync'd, then renamed into place."""
    if out.exists():
        raise FileExistsError(f"{out} exists: it would be overwritten")
    partial = out.with_name(out.name + ".partial")
    size = 0
    try:
        with open(partial, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, out)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return size


def write_snapshot_of_store(store_path: Path, genesis: Genesis, out: Path) -> SnapshotInfo:
    """The snapshot of a stopped node's store."""
    infos: list[SnapshotInfo] = []
    with Store(store_path, genesis) as store, store.view() as view:
        write_atomically(out, snapshot_chunks(view, infos.append))
    return infos[0]


# --- installing ------------------------------------------------------------------------------


def install_snapshot(source: Readable, data_path: Path, genesis: Genesis) -> Header:
    """Verify the snapshot read from `source` and make it the store at `data_path` (which
    must not exist, or be empty). Raises SnapshotRefused / VerificationFailed; on any error
    nothing is left at `data_path`."""
    if data_path.exists() and any(data_path.iterdir()):
        raise Corruption(f"{data_path} already holds a store: a snapshot starts a new one only")
    tmp = data_path.with_name(data_path.name + TMP_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    installer: SnapshotInstaller | None = None
    try:
        reader = FrameReader(source, SNAPSHOT_MAGIC)
        frames = reader.frames()
        manifest = next(frames)
        header, commit = _check_manifest(manifest, genesis)
        # The set that signs the snapshot's height, proven from genesis through the
        # validator-set transitions the snapshot carries (none: the genesis set).
        steps = manifest.get("transitions", [])
        if not isinstance(steps, list):
            raise SnapshotRefused("transitions must be a list")
        signers = transitions.walk(genesis, steps, header.height)
        history = [(bytes.fromhex(s["header_bytes"]), transitions.parse(s).commit) for s in steps]
        installer = SnapshotInstaller(tmp, genesis, header, commit, signers, history)
        frontier = next(frames).get("frontier")
        if not isinstance(frontier, list):
            raise SnapshotRefused("the second frame must hold the Merkle log's frontier")
        installer.set_frontier(frontier)
        for doc in frames:
            if "end" in doc:
                end = doc["end"]
                if not isinstance(end, dict) or end.get("records") != installer.records:
                    raise SnapshotRefused("the end frame does not count the records read")
                break
            installer.add_records(pairs(doc, "records"))
        else:
            raise SnapshotRefused("no end frame")
        installer.finish()
    except BaseException:
        if installer is not None:
            installer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if data_path.exists():
        data_path.rmdir()
    os.replace(tmp, data_path)
    return header


def _check_manifest(manifest: dict[str, Any], genesis: Genesis) -> tuple[Header, Commit]:
    if manifest.get("kind") != "snapshot" or manifest.get("version") != SNAPSHOT_VERSION:
        raise SnapshotRefused(f"not a snapshot of version {SNAPSHOT_VERSION}")
    if manifest.get("genesis") != genesis.hash() or manifest.get("chain") != genesis.chain_id:
        raise SnapshotRefused("the snapshot is of another chain (its genesis differs)")
    try:
        header_bytes = manifest.get("header")
        if not isinstance(header_bytes, bytes):
            raise Malformed("no header")
        header = Header.decode(header_bytes)
        commit = Commit.from_wire(manifest.get("commit"))
    except LedgerError as exc:
        raise SnapshotRefused(f"unreadable header or commit: {exc}") from exc
    if manifest.get("height") != header.height or manifest.get("tree_size") != header.tree_size:
        raise SnapshotRefused("the manifest does not match its header")
    return header, commit


def install_from_file(settings: NodeSettings, file: Path, genesis: Genesis) -> Header | None:
    """Start the home's store from the snapshot `file`, unless it has a store already (then
    None: the snapshot is not needed, and not read)."""
    if store_exists(settings):
        log.warning("%s already has a store: --snapshot %s is not used", settings.home, file)
        return None
    if not file.is_file():
        raise SnapshotRefused(f"cannot read {file}: no such file")
    with open(file, "rb") as handle:
        return install_snapshot(handle, settings.data_path, genesis)


def store_exists(settings: NodeSettings) -> bool:
    return (settings.data_path / "CURRENT").exists()


# --- from a peer -----------------------------------------------------------------------------


class StreamReader:
    """A file-like reader over an httpx response's byte stream."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, count: int = -1) -> bytes:
        while count < 0 or len(self._buffer) < count:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if count < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data


def tls_verify(settings: NodeSettings) -> ssl.SSLContext | bool:
    """How this home's tools check an `https://` peer or its own listener: against the
    home's CA bundle if it has one; else not at all. What they fetch is verified by itself (a
    snapshot against the genesis validators' commit and its roots; a backup by its
    checksum, from the home's own node on loopback), not by the connection."""
    ca = settings.tls_ca_path
    return client_context(ca) if ca is not None else False


def signed_get(
    url: str,
    path: str,
    key: PrivateKey,
    chain_id: str,
    timeout: float = 30.0,
    verify: ssl.SSLContext | bool = True,
) -> contextlib.AbstractContextManager[httpx.Response]:
    """A streamed GET of a peer route, signed with `key` (docs/PROTOCOL.md §15)."""
    headers = sign_request(key, chain_id, "GET", path, b"", time.time_ns() // 1_000_000)
    client = httpx.Client(base_url=url, timeout=timeout, verify=verify)

    @contextlib.contextmanager
    def stream() -> Iterator[httpx.Response]:
        with client, client.stream("GET", path, headers=headers) as response:
            yield response

    return stream()


def problem_detail(response: httpx.Response) -> str:
    response.read()
    try:
        doc = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    detail = doc.get("detail") if isinstance(doc, dict) else None
    return f"HTTP {response.status_code}: {detail}" if detail else f"HTTP {response.status_code}"


def install_from_peers(settings: NodeSettings, genesis: Genesis) -> Header | None:
    """Start the home's store from a snapshot fetched from the first configured peer that
    serves one that verifies (None: the home already has a store)."""
    if store_exists(settings):
        log.warning("%s already has a store: no snapshot fetched", settings.home)
        return None
    key = PrivateKey.load(settings.identity_key_path)
    failures = []
    for peer in settings.peers:
        try:
            with signed_get(
                peer, "/p2p/snapshot", key, genesis.chain_id, 600.0, tls_verify(settings)
            ) as response:
                if response.status_code != 200:
                    failures.append(f"{peer}: {problem_detail(response)}")
                    continue
                source = StreamReader(response.iter_bytes())
                return install_snapshot(source, settings.data_path, genesis)
        except (httpx.HTTPError, OSError, LedgerError) as exc:
            failures.append(f"{peer}: {exc}")
    raise SnapshotRefused("no peer served a snapshot that verifies: " + "; ".join(failures))


# --- serving (GET /p2p/snapshot, GET /p2p/backup) ---------------------------------------------

MAX_STREAMS = 1
"""Snapshots (and, separately, backups) a node streams at once; another request gets 503."""

_streaming: dict[str, int] = {}


def bounded_stream(
    kind: str, chunks: Iterator[bytes], close: Callable[[], None]
) -> Iterator[bytes]:
    """`chunks`, counted against MAX_STREAMS of `kind` (Busy when none is free); `close` runs
    when the stream ends, fails or is abandoned."""
    if _streaming.get(kind, 0) >= MAX_STREAMS:
        close()
        raise Busy(f"this node already serves a {kind}; retry later")
    _streaming[kind] = _streaming.get(kind, 0) + 1

    def stream() -> Iterator[bytes]:
        try:
            yield from chunks
        finally:
            _streaming[kind] -= 1
            close()

    return stream()


def serve_snapshot(store: Store) -> Iterator[bytes]:
    """The snapshot of the store's current head, read from a LevelDB snapshot (the node keeps
    appending meanwhile). Call on the store's thread; iterate on any one thread."""
    view = store.view()
    return bounded_stream("snapshot", snapshot_chunks(view), view.close)


# --- command line ------------------------------------------------------------------------------


def own_peer_url(settings: NodeSettings) -> str:
    """The URL of the home's own peer listener (a wildcard address is reached on loopback)."""
    host, port = settings.p2p_address
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{settings.scheme}://{host}:{port}"


def write_from_home(home: Path, out: Path) -> SnapshotInfo:
    """A snapshot of the home's chain: from the store when no node runs there, else from the
    running node (its peer listener, signed with the home's own key)."""
    settings = NodeSettings.load(home)
    genesis = Genesis.load(settings.genesis_path)
    if out.exists():
        raise FileExistsError(f"{out} exists: it would be overwritten")
    if homelock.holder(home) is None:
        return write_snapshot_of_store(settings.data_path, genesis, out)
    key = PrivateKey.load(settings.identity_key_path)
    with signed_get(
        own_peer_url(settings), "/p2p/snapshot", key, genesis.chain_id, 600.0, tls_verify(settings)
    ) as response:
        if response.status_code != 200:
            raise SnapshotRefused(f"the running node refused: {problem_detail(response)}")
        write_atomically(out, response.iter_bytes())
    with open(out, "rb") as handle:  # check what was written, and describe it
        return describe(handle, genesis)


def describe(source: Readable, genesis: Genesis) -> SnapshotInfo:
    """Read a whole snapshot file, checking its checksum and manifest (not its roots)."""
    reader = FrameReader(source, SNAPSHOT_MAGIC)
    frames = reader.frames()
    header, _ = _check_manifest(next(frames), genesis)
    records = 0
    for doc in frames:
        if "end" in doc:
            break
        if "records" in doc:
            records += len(pairs(doc, "records"))
    return SnapshotInfo(header.height, header.tree_size, records, reader.size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.server.snapshot")
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="write a snapshot of a home's chain")
    write.add_argument("--home", required=True, type=Path)
    write.add_argument("--out", required=True, type=Path)
    install = commands.add_parser(
        "install", help="start a stopped home's new store from a snapshot file (verified)"
    )
    install.add_argument("--home", required=True, type=Path)
    install.add_argument("--file", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            info = write_from_home(args.home, args.out)
            print(
                f"snapshot of height {info.height} ({info.tree_size} events, {info.records} "
                f"state records, {info.size} bytes) written to {args.out}"
            )
            return 0
        settings = NodeSettings.load(args.home)
        genesis = Genesis.load(settings.genesis_path)
        with homelock.held(settings.home):
            if store_exists(settings):
                raise Corruption(f"{settings.data_path} already holds a store")
            header = install_from_file(settings, args.file, genesis)
        assert header is not None, "the store did not exist"
        print(f"store started from the snapshot at height {header.height} in {settings.data_path}")
        return 0
    except (LedgerError, OSError, httpx.HTTPError, homelock.HomeLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
