"""`provledger verify` across validator-set changes (docs/PROTOCOL.md §19.4): a bundle whose
checkpoint a changed set signed verifies offline from the original genesis file, the walked
transitions are cached next to the pinned genesis, and a bundle that leaves them out then
verifies from the cache (and fails without it)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger import provenance
from ledger.events import Approve, Propose, Register
from ledger.governance import ADD_VALIDATOR, Change
from ledger.store import Store
from node.cli import app
from node.cli.trust import TRANSITIONS_DIR, trust_dir
from tests.ledger.helpers import ChainBuilder, make_genesis, make_key

DATASET = bytes(range(1, 33))
runner = CliRunner()


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("governed")
    keys, registrar, genesis = make_genesis(4, seed=9_100)
    joiner = make_key(seed=9_150)
    with Store(root / "store", genesis) as store:
        builder = ChainBuilder(store, [*keys, joiner])
        change = Change(ADD_VALIDATOR, public_key=joiner.public_key, name="e", url="", power=1)
        propose = builder.ev(keys[0], Propose, change=change.to_map())
        builder.append([propose])
        builder.append([builder.ev(k, Approve, proposal=propose.event_id) for k in keys[1:3]])
        builder.append([])
        builder.append([builder.ev(registrar, Register, dataset=DATASET, meta={}, open=True)])
        bundle = provenance.proof_bundle(store, DATASET)
    genesis_path = root / "genesis.json"
    genesis.save(genesis_path)
    yield {"bundle": bundle, "genesis": genesis_path, "root": root}


def verify(bundle: dict[str, Any], genesis: Path, path: Path) -> Any:
    path.write_text(json.dumps(bundle))
    return runner.invoke(app, ["verify", "--bundle", str(path), "--genesis", str(genesis)])


def test_a_bundle_without_its_transitions_verifies_only_once_they_are_cached(
    governed: dict[str, Any], tmp_path: Path
) -> None:
    bundle = governed["bundle"]
    assert [t["height"] for t in bundle["checkpoint"]["transitions"]] == [4]
    bare = copy.deepcopy(bundle)
    del bare["checkpoint"]["transitions"]
    failed = verify(bare, governed["genesis"], tmp_path / "bare.json")
    assert failed.exit_code == 2, failed.output
    assert "wrong validator set" in failed.output
    assert not (trust_dir() / TRANSITIONS_DIR).exists()

    ok = verify(bundle, governed["genesis"], tmp_path / "whole.json")
    assert ok.exit_code == 0, ok.output
    cached = list((trust_dir() / TRANSITIONS_DIR).glob("*.json"))
    assert len(cached) == 1
    assert json.loads(cached[0].read_text()) == bundle["checkpoint"]["transitions"]

    again = verify(bare, governed["genesis"], tmp_path / "bare.json")
    assert again.exit_code == 0, again.output


def test_a_forged_cached_transition_is_walked_like_any_other(
    governed: dict[str, Any], tmp_path: Path
) -> None:
    bundle = governed["bundle"]
    assert verify(bundle, governed["genesis"], tmp_path / "whole.json").exit_code == 0
    (cached,) = (trust_dir() / TRANSITIONS_DIR).glob("*.json")
    steps = json.loads(cached.read_text())
    steps[0]["validators"][0]["power"] = 9
    cached.write_text(json.dumps(steps))
    bare = copy.deepcopy(bundle)
    del bare["checkpoint"]["transitions"]
    failed = verify(bare, governed["genesis"], tmp_path / "bare.json")
    assert failed.exit_code == 2
    assert "bad validator-set transition" in failed.output


def test_the_story_names_the_changed_set_that_signed_it(
    governed: dict[str, Any], tmp_path: Path
) -> None:
    """The checkpoint is signed by the 5 members of the set after the change (the joiner
    "e" among them), not by the 4 genesis validators: the text and the JSON say so."""
    text = verify(governed["bundle"], governed["genesis"], tmp_path / "whole.json")
    assert text.exit_code == 0, text.output
    signed_line = next(line for line in text.output.splitlines() if "signed by" in line)
    assert signed_line.startswith("  signed by 5 of 5 validators in force (power 5 of 5): ")
    assert signed_line.endswith(", e")
    assert "the genesis set after 1 verified change" in text.output
    assert "genesis validators" not in text.output

    path = tmp_path / "whole.json"
    as_json = runner.invoke(
        app, ["verify", "--bundle", str(path), "--genesis", str(governed["genesis"]), "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    point = json.loads(as_json.output)["checkpoint"]
    assert (point["set_changes"], point["validator_count"], point["total_power"]) == (1, 5, 5)
    assert [s["name"] for s in point["signers"]][-1] == "e"
    assert point["signed_power"] == 5
