"""Store format migrations: a store of format 2, made by the code before format 3 and shipped
as `fixtures/store_format2.tar.gz` (built by `fixtures/make_store_format2.py`), is refused
until migrated, backed up first, upgraded in place with progress, and then read and extended
by this build exactly as the old one left it."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import plyvel
import pytest

from ledger import codec
from ledger.errors import Corruption, UnsupportedFormat
from ledger.events import Register
from ledger.genesis import Genesis
from ledger.store import (
    FORMAT_VERSION,
    HEADER,
    META,
    NeedsMigration,
    Store,
    migrate_store,
    stored_format,
)
from node.config import NodeSettings
from node.server.backup import progress_line, restore_backup, upgrade_store
from tests.ledger.helpers import ChainBuilder, make_genesis

FIXTURE = Path(__file__).parent / "fixtures" / "store_format2.tar.gz"


def unpack(target: Path) -> dict[str, Any]:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(target, filter="data")
    expected: dict[str, Any] = json.loads((target / "expected.json").read_text())
    return expected


@pytest.fixture
def home(tmp_path: Path) -> tuple[NodeSettings, dict[str, Any]]:
    expected = unpack(tmp_path / "node")
    settings = NodeSettings(home=tmp_path / "node", name="old")
    settings.save()
    return settings, expected


def records_of(path: Path) -> dict[bytes, bytes]:
    db = plyvel.DB(str(path))
    try:
        return dict(db.iterator())
    finally:
        db.close()


def the_validators() -> list[Any]:
    keys, _, _ = make_genesis(seed=4242)
    return keys


def test_the_fixture_is_of_the_previous_format(home: tuple[NodeSettings, dict]) -> None:
    settings, expected = home
    assert expected["format"] == 2 == FORMAT_VERSION - 1
    assert stored_format(settings.data_path) == 2
    genesis = Genesis.load(settings.genesis_path)
    assert genesis.hash().hex() == expected["genesis_hash"]
    with pytest.raises(NeedsMigration, match="provledger node migrate") as info:
        Store(settings.data_path, genesis)
    assert info.value.version == 2


def test_an_older_store_is_backed_up_and_migrated_in_place(
    home: tuple[NodeSettings, dict], tmp_path: Path
) -> None:
    settings, expected = home
    genesis = Genesis.load(settings.genesis_path)
    before = records_of(settings.data_path)
    lines = io.StringIO()
    saved = upgrade_store(settings, progress_line("migrating", lines))
    assert saved is not None and saved.parent == settings.home / "backups"
    assert lines.getvalue().endswith(
        f"migrating: {expected['height']}/{expected['height']} blocks (100%)\n"
    )
    assert stored_format(settings.data_path) == FORMAT_VERSION
    with Store(settings.data_path, genesis) as store:
        assert (store.height, store.tree_size, store.base) == (
            expected["height"],
            expected["tree_size"],
            0,
        )
        assert store.root().hex() == expected["tree_root"]
        assert store.state_root.hex() == expected["state_root"]
        assert store.head_hash.hex() == expected["head_hash"]
        location = store.locate(bytes.fromhex(expected["use_event"]))
        assert location is not None and location.leaf_index == expected["tree_size"] - 1
        assert store.inclusion_proof(0, store.tree_size)
        # every record is kept; only the metadata changed
        after = dict(store.items(b""))
        assert {k for k in after if after[k] != before.get(k)} == {META}
        meta = codec.decode_map(after[META])
        assert (meta["format"], meta["base"]) == (FORMAT_VERSION, 0)
        # and this build goes on appending to it
        chain = ChainBuilder(store, the_validators())
        registrar_keys = make_genesis(seed=4242)[1]
        execution = chain.append(
            [chain.ev(registrar_keys, Register, dataset=b"\x77" * 32, meta={}, open=True)]
        )
        assert len(execution.accepted) == 1 and store.height == expected["height"] + 1
    # The backup taken first restores the store of format 2, untouched.
    with open(saved, "rb") as handle:
        restore_backup(handle, tmp_path / "restored")
    assert stored_format(tmp_path / "restored" / "data") == 2
    assert records_of(tmp_path / "restored" / "data") == before
    # A second start finds nothing to migrate (no second backup).
    assert upgrade_store(settings) is None
    assert len(list((settings.home / "backups").iterdir())) == 1


def test_a_damaged_old_store_is_not_migrated(home: tuple[NodeSettings, dict]) -> None:
    settings, _ = home
    genesis = Genesis.load(settings.genesis_path)
    db = plyvel.DB(str(settings.data_path))
    db.delete(HEADER + (3).to_bytes(8, "big"))
    db.close()
    with pytest.raises(Corruption, match="block 3 is incomplete; not migrated"):
        migrate_store(settings.data_path, genesis, lambda done, total: None)
    assert stored_format(settings.data_path) == 2


def test_a_store_of_another_chain_is_not_migrated(home: tuple[NodeSettings, dict]) -> None:
    settings, _ = home
    _, _, other = make_genesis(seed=1, chain_id="other")
    with pytest.raises(Corruption, match="another genesis"):
        migrate_store(settings.data_path, other, lambda done, total: None)
    assert stored_format(settings.data_path) == 2


@pytest.mark.parametrize("version", [1, 0, 99])
def test_formats_without_a_migration_are_refused(
    home: tuple[NodeSettings, dict], version: int
) -> None:
    settings, _ = home
    genesis = Genesis.load(settings.genesis_path)
    db = plyvel.DB(str(settings.data_path))
    meta = codec.decode_map(db.get(META))
    db.put(META, codec.encode({**meta, "format": version}))
    db.close()
    with pytest.raises(UnsupportedFormat) as info:
        migrate_store(settings.data_path, genesis, lambda done, total: None)
    assert not isinstance(info.value, NeedsMigration)
    assert upgrade_store(settings) is None  # the node then refuses it when it opens it
    with pytest.raises(UnsupportedFormat, match="unsupported"):
        Store(settings.data_path, genesis)


def test_a_new_store_needs_nothing(tmp_path: Path) -> None:
    assert stored_format(tmp_path / "none") is None
    settings = NodeSettings(home=tmp_path / "fresh")
    settings.home.mkdir()
    assert upgrade_store(settings) is None
    assert not (settings.home / "backups").exists()
