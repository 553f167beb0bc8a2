"""Backups and restores of a stopped home (the online path runs in tests/cluster): the store
and the home's files come back exactly; damaged backups and non-empty homes are refused with
nothing written."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import plyvel
import pytest

from ledger import codec
from ledger.errors import LedgerError
from ledger.events import Register
from ledger.store import Store
from node.config import NodeSettings
from node.server.backup import BACKUP_MAGIC, HOME_FILES, main, restore_backup, write_backup
from node.server.snapshot import frame_bytes
from node.server.snapshot import main as snapshot_tool
from tests.ledger.helpers import ChainBuilder, make_genesis


def records_of(path: Path) -> dict[bytes, bytes]:
    db = plyvel.DB(str(path))
    try:
        return dict(db.iterator())
    finally:
        db.close()


@pytest.fixture
def home(tmp_path: Path) -> NodeSettings:
    keys, registrar, genesis = make_genesis(seed=700)
    settings = NodeSettings(home=tmp_path / "home", name="n0")
    settings.home.mkdir()
    settings.save()
    genesis.save(settings.genesis_path)
    keys[0].save(settings.key_path)
    settings.signer_state_path.write_bytes(b"signer state \x00\x01")
    (settings.home / "node.log").write_text("not backed up\n")
    with Store(settings.data_path, genesis) as store:
        chain = ChainBuilder(store, keys)
        for b in range(4):
            chain.append(
                [
                    chain.ev(registrar, Register, dataset=bytes([b, i]) * 16, meta={}, open=False)
                    for i in range(5)
                ]
            )
    return settings


def test_backup_and_restore_round_trip(home: NodeSettings, tmp_path: Path) -> None:
    out = tmp_path / "home.plbk"
    info = write_backup(home.home, out)
    assert info.height == 4 and info.store_format == 3
    assert set(info.files) == {"config.json", "genesis.json", "node_key.pem", "signer_state.bin"}
    assert set(info.files) <= set(HOME_FILES)
    target = tmp_path / "new"
    with open(out, "rb") as handle:
        restored = restore_backup(handle, target)
    assert restored.records == info.records
    assert records_of(target / "data") == records_of(home.data_path)
    for name in info.files:
        assert (target / name).read_bytes() == (home.home / name).read_bytes()
    assert (target / "node_key.pem").stat().st_mode & 0o777 == 0o600
    assert not (target / "node.log").exists()
    settings = NodeSettings.load(target)
    with Store(settings.data_path, make_genesis(seed=700)[2]) as store:
        assert store.height == 4


def test_restore_refuses_a_home_that_is_not_empty(home: NodeSettings, tmp_path: Path) -> None:
    out = tmp_path / "home.plbk"
    write_backup(home.home, out)
    with open(out, "rb") as handle, pytest.raises(LedgerError, match="not empty"):
        restore_backup(handle, home.home)
    assert (home.home / "node.log").exists()
    assert main(["restore", "--from", str(out), "--home", str(home.home)]) == 1


def test_a_damaged_backup_is_refused_and_nothing_left(home: NodeSettings, tmp_path: Path) -> None:
    out = tmp_path / "home.plbk"
    write_backup(home.home, out)
    data = out.read_bytes()
    target = tmp_path / "new"
    for position in range(0, len(data), max(1, len(data) // 61)):
        flipped = bytearray(data)
        flipped[position] ^= 0x80
        with pytest.raises(LedgerError):
            restore_backup(io.BytesIO(bytes(flipped)), target)
        assert not target.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LedgerError, match="truncated"):
        restore_backup(io.BytesIO(data[: len(data) // 2]), empty)
    assert empty.exists() and not any(empty.iterdir())


def test_backup_never_overwrites(home: NodeSettings, tmp_path: Path) -> None:
    out = tmp_path / "home.plbk"
    out.write_bytes(b"keep")
    assert main(["backup", "--home", str(home.home), "--out", str(out)]) == 1
    assert out.read_bytes() == b"keep"


def test_tls_files_named_by_the_config_travel_and_nothing_else(
    home: NodeSettings, tmp_path: Path
) -> None:
    config = json.loads(home.config_path.read_text())
    outside = tmp_path / "outside-ca.pem"
    outside.write_bytes(b"CA")
    config.update({"tls_cert": "tls/cert.pem", "tls_ca": str(outside)})
    home.config_path.write_text(json.dumps(config))
    (home.home / "tls").mkdir()
    (home.home / "tls" / "cert.pem").write_bytes(b"CERT")
    out = tmp_path / "home.plbk"
    info = write_backup(home.home, out)
    assert "tls/cert.pem" in info.files and not any("outside" in f for f in info.files)
    with open(out, "rb") as handle:
        restore_backup(handle, tmp_path / "new")
    assert (tmp_path / "new" / "tls" / "cert.pem").read_bytes() == b"CERT"
    # A forged backup naming a file outside the home is refused, with a valid checksum.
    data = out.read_bytes()
    length = int.from_bytes(data[8:12], "big")
    manifest = codec.decode_map(data[12 : 12 + length])
    manifest["files"]["../escape.pem"] = b"x"
    rest = data[12 + length : -32]
    writer_hash = hashlib.sha256(BACKUP_MAGIC + frame_bytes(manifest) + rest).digest()
    forged = BACKUP_MAGIC + frame_bytes(manifest) + rest + writer_hash
    with pytest.raises(LedgerError, match="unexpected file"):
        restore_backup(io.BytesIO(forged), tmp_path / "forged")
    assert not (tmp_path / "forged").exists() and not (tmp_path / "escape.pem").exists()


def provledger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_the_commands_on_a_stopped_home(
    home: NodeSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = tmp_path / "chain.snap"
    made = provledger("node", "snapshot", "--home", str(home.home), "--out", str(snap))
    assert made.returncode == 0, made.stderr
    assert "snapshot of height 4 (20 events" in made.stdout
    # The refusals come from the tools themselves: run in this process (the CLI only hands
    # over their exit code; each subprocess above costs a second of start-up).
    assert snapshot_tool(["write", "--home", str(home.home), "--out", str(snap)]) == 1
    assert "would be overwritten" in capsys.readouterr().err
    backup = tmp_path / "b.plbk"
    made = provledger("node", "backup", "--home", str(home.home), "--out", str(backup))
    assert made.returncode == 0 and "backup of height 4" in made.stdout, made.stderr
    restored = provledger("node", "restore", "--from", str(backup), "--home", str(tmp_path / "r"))
    assert restored.returncode == 0 and "restored height 4" in restored.stdout
    # A tool's failure is the CLI's exit code.
    missing = provledger("node", "restore", "--from", str(tmp_path / "no"), "--home", "x")
    assert missing.returncode == 1 and "no such file" in missing.stderr
    migrated = provledger("node", "migrate", "--home", str(home.home))
    assert migrated.returncode == 0 and "nothing to migrate" in migrated.stdout
    bad = provledger("node", "start", "--home", str(home.home), "--snapshot", str(tmp_path / "no"))
    assert bad.returncode == 2 and "is not a file" in bad.stderr
    # A home that has a store already: its own snapshot installs nowhere.
    assert snapshot_tool(["install", "--home", str(home.home), "--file", str(snap)]) == 1
    assert "already holds a store" in capsys.readouterr().err
