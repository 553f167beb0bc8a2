"""A verified dataset story for people and programs.

`story_json` turns a `VerifiedStory` (the output of `ledger.provenance.verify_bundle`) into
one JSON document (bytes as hex, times as Unix ms); `render_text` prints that same document
for a person. Names come from two sources kept apart: the genesis file (trusted) and names
a node reported (not part of the proof, marked with `*`).

Text output escapes every control character of every string in the document (metadata,
names, claims are written by others: an ANSI escape must not forge a line), and prints any
time the protocol accepts (a uint64 of ms: beyond year 9999 in ISO 8601's expanded form).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger import events, transitions
from ledger.blocks import Commit, ValidatorSet
from ledger.errors import Malformed
from ledger.genesis import Genesis
from ledger.provenance import GrantStatus, ProvenEvent, VerifiedStory
from node.cli.common import escape_text

SHORT_HEX = 12
SOURCE_GENESIS = "genesis"
SOURCE_NODE = "node"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01, proleptic Gregorian, any size
    (H. Hinnant's `civil_from_days`)."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1_460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    return year_of_era + era * 400 + (month <= 2), month, day


def iso_time(ms: int) -> str:
    """Unix milliseconds as ISO-8601 UTC, e.g. 2025-01-02T03:04:05.678Z; years beyond 9999
    (any uint64 the protocol accepts) in the expanded form +YYYYYY-MM-DD..."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        return escape_text(str(ms))
    days, rest = divmod(ms, 86_400_000)
    year, month, day = _civil_from_days(days)
    seconds, millis = divmod(rest, 1_000)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    stamp = f"{month:02d}-{day:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"
    if 0 <= year <= 9_999:
        return f"{year:04d}-{stamp}"
    return f"{'+' if year > 0 else '-'}{abs(year):06d}-{stamp}"


def escaped(value: Any) -> Any:
    """A JSON-like value with every string (keys too) passed through `escape_text`."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, Mapping):
        return {escaped(k): escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escaped(v) for v in value]
    return value


def short_hex(value: str) -> str:
    return value if len(value) <= SHORT_HEX else value[:SHORT_HEX] + "..."


def bundle_commit(bundle: Any) -> Commit | None:
    """The checkpoint commit of a (verified) bundle, or None if it cannot be read."""
    try:
        return Commit.from_json(bundle["checkpoint"]["commit"])
    except (Malformed, KeyError, TypeError):
        return None


def _transitions(doc: Any) -> list[Any]:
    """A verified document's checkpoint transitions (every one walked by the verifier)."""
    return doc["checkpoint"].get("transitions") or []


def set_changes(doc: Any) -> int:
    """How many validator-set changes lead from the genesis set to the set that signed a
    verified document's checkpoint."""
    return len(_transitions(doc))


def checkpoint_set(doc: Any, genesis: Genesis, height: int) -> tuple[ValidatorSet, int]:
    """The set that signed a verified document's checkpoint at `height`, and `set_changes`:
    the checkpoint's transitions walked again (docs/PROTOCOL.md §19.4; the verifier keeps
    only the header)."""
    steps = _transitions(doc)
    return transitions.walk(genesis, steps, height), len(steps)


def _after_changes(changes: int) -> str:
    return f"the genesis set after {changes} verified {'change' if changes == 1 else 'changes'}"


def signed_by(changes: int) -> str:
    """Who signed a checkpoint, in words: the genesis validators, or the set that `changes`
    verified changes made of them."""
    if changes == 0:
        return "the genesis validators"
    return f"the validators in force ({_after_changes(changes)})"


def genesis_names(genesis: Genesis) -> dict[bytes, str]:
    """Names the genesis file itself vouches for: validators and genesis registrars."""
    names = {key: "genesis registrar" for key in genesis.registrars}
    names.update({v.public_key: v.name for v in genesis.validators.validators})
    return names


def _base(proven: ProvenEvent) -> dict[str, Any]:
    return {
        "event_id": proven.event.event_id.hex(),
        "leaf_index": proven.leaf_index,
        "time": proven.event.body.time,
        "actor": proven.event.actor.hex(),
    }


def _optional_hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _origin(proven: ProvenEvent) -> dict[str, Any]:
    body = proven.event.body
    doc = {"type": proven.event.type, **_base(proven)}
    if isinstance(body, events.Register):
        doc["meta"] = events.to_json_value(body.meta)
        doc["open"] = body.open
    elif isinstance(body, events.Derive):
        doc["meta"] = events.to_json_value(body.meta)
        doc["inputs"] = [d.hex() for d in body.inputs]
    return doc


def _grant(status: GrantStatus, leaf_index: dict[bytes, int]) -> dict[str, Any]:
    event = status.event
    body = event.body
    assert isinstance(body, events.Grant)
    revoked: dict[str, Any] | None = None
    if status.revoked_by is not None:
        revoked = {
            "event_id": status.revoked_by.event_id.hex(),
            "leaf_index": leaf_index[status.revoked_by.event_id],
            "time": status.revoked_by.body.time,
            "actor": status.revoked_by.actor.hex(),
        }
    if revoked is not None:
        state = "revoked"
    elif status.expired:
        state = "expired"
    else:
        state = "live"
    return {
        "event_id": event.event_id.hex(),
        "leaf_index": leaf_index[event.event_id],
        "time": body.time,
        "grantor": body.actor.hex(),
        "to": body.to.hex(),
        "purposes": list(body.purposes),
        "expires": body.expires,
        "reshare": body.reshare,
        "status": state,
        "revoked_by": revoked,
    }


def _signers(validators: ValidatorSet, changes: int, commit: Commit | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "validator_count": len(validators.validators),
        "total_power": validators.total_power,
        "set_changes": changes,
    }
    if commit is None:
        return doc
    signers = []
    for entry in commit.signatures:
        member = validators.get(entry.validator)
        if member is not None:
            signers.append(
                {"public_key": member.public_key.hex(), "name": member.name, "power": member.power}
            )
    doc["signers"] = signers
    doc["signed_power"] = sum(s["power"] for s in signers)
    return doc


def story_json(
    story: VerifiedStory,
    genesis: Genesis,
    commit: Commit | None = None,
    names: Mapping[bytes, str] | None = None,
    reported_names: Mapping[bytes, str] | None = None,
    signing_set: tuple[ValidatorSet, int] | None = None,
) -> dict[str, Any]:
    """The verified story as one JSON document.

    `names` are trusted names (genesis validators and registrars are always added);
    `reported_names` are what a node said, kept apart under source "node". `signing_set` is
    the set that signed the checkpoint with its number of changes (`checkpoint_set`); the
    genesis set by default.
    """
    validators, changes = signing_set or (genesis.validators, 0)
    header = story.checkpoint
    leaf_index = {p.event.event_id: p.leaf_index for p in story.events}
    transfers, uses, destroys, attestations, children = [], [], [], [], []
    for proven in story.events[1:]:
        body = proven.event.body
        base = _base(proven)
        if isinstance(body, events.Transfer):
            transfers.append({**base, "to": body.to.hex(), "grant": _optional_hex(body.grant)})
        elif isinstance(body, events.Use):
            uses.append({**base, "purpose": body.purpose, "grant": _optional_hex(body.grant)})
        elif isinstance(body, events.Destroy):
            destroys.append(base)
        elif isinstance(body, events.Attest):
            attestations.append(
                {**base, "claim": body.claim, "meta": events.to_json_value(body.meta)}
            )
        elif isinstance(body, events.Derive) and body.dataset != story.dataset:
            children.append(
                {**base, "dataset": body.dataset.hex(), "inputs": [d.hex() for d in body.inputs]}
            )

    people: set[bytes] = set()
    for proven in story.events:
        people.add(proven.event.actor)
        to = getattr(proven.event.body, "to", None)
        if isinstance(to, bytes):
            people.add(to)
    trusted = {**genesis_names(genesis), **_set_names(validators), **(names or {})}
    directory: dict[str, dict[str, str]] = {}
    for key in sorted(people):
        if key in trusted:
            directory[key.hex()] = {"name": trusted[key], "source": SOURCE_GENESIS}
        elif reported_names and key in reported_names:
            directory[key.hex()] = {"name": reported_names[key], "source": SOURCE_NODE}

    return {
        "verified": True,
        "dataset": story.dataset.hex(),
        "chain_id": genesis.chain_id,
        "checkpoint": {
            "height": header.height,
            "time": header.time,
            "tree_size": header.tree_size,
            "root_hash": header.tree_root.hex(),
            "block_hash": header.block_hash.hex(),
            **_signers(validators, changes, commit),
        },
        "owner": story.owner.hex(),
        "status": story.status,
        "complete": {
            "events": len(story.events),
            "head": _optional_hex(story.record.get("head")),
        },
        "origin": _origin(story.events[0]),
        "grants": [_grant(g, leaf_index) for g in story.grants],
        "transfers": transfers,
        "uses": uses,
        "lineage": {"parents": [p.hex() for p in story.parents], "children": children},
        "destroys": destroys,
        "attestations": attestations,
        "events": [
            {"event_id": p.event.event_id.hex(), "type": p.event.type, "leaf_index": p.leaf_index}
            for p in story.events
        ],
        "names": directory,
    }


def _set_names(validators: ValidatorSet) -> dict[bytes, str]:
    """The names a verified validator set gives its members (a changed set's newcomers)."""
    return {v.public_key: v.name for v in validators.validators}


def story_text(
    story: VerifiedStory,
    genesis: Genesis,
    commit: Commit | None = None,
    names: Mapping[bytes, str] | None = None,
    reported_names: Mapping[bytes, str] | None = None,
    signing_set: tuple[ValidatorSet, int] | None = None,
) -> str:
    """The verified story as text for a person (see `render_text`)."""
    return render_text(story_json(story, genesis, commit, names, reported_names, signing_set))


def _meta_text(meta: Mapping[str, Any]) -> str:
    parts = []
    if "title" in meta:
        parts.append(f'"{meta["title"]}"')
    parts += [f"{key}={value}" for key, value in meta.items() if key != "title"]
    return ", ".join(parts)


def render_text(doc: Mapping[str, Any]) -> str:
    """Render a `story_json` document as readable lines (every string escaped first)."""
    doc = escaped(doc)
    directory: Mapping[str, Mapping[str, str]] = doc["names"]
    reported_used = False

    def who(key: str) -> str:
        nonlocal reported_used
        entry = directory.get(key)
        if entry is None:
            return short_hex(key)
        star = ""
        if entry["source"] == SOURCE_NODE:
            reported_used = True
            star = "*"
        return f"{entry['name']}{star} ({short_hex(key)})"

    def at(item: Mapping[str, Any]) -> str:
        return f"at {iso_time(item['time'])}, leaf {item['leaf_index']}"

    point = doc["checkpoint"]
    lines = [f"dataset {doc['dataset']}", f"chain {doc['chain_id']}"]
    lines.append(
        f"verified against the checkpoint at height {point['height']} "
        f"(tree size {point['tree_size']}, root {point['root_hash']}, "
        f"block time {iso_time(point['time'])})"
    )
    changes = point.get("set_changes", 0)
    whose = "genesis validators" if changes == 0 else "validators in force"
    if "signers" in point:
        signer_names = ", ".join(s["name"] for s in point["signers"])
        lines.append(
            f"  signed by {len(point['signers'])} of {point['validator_count']} {whose} "
            f"(power {point['signed_power']} of {point['total_power']}): {signer_names}"
        )
    else:
        lines.append(f"  signed by more than 2/3 of the power of {signed_by(changes)}")
    if changes:
        lines.append(f"  ({_after_changes(changes)}, walked from the genesis file)")
    complete = doc.get("complete")
    if complete is not None:
        count = complete["events"]
        these = f"these {count} events are" if count != 1 else "this 1 event is"
        lines.append(
            f"complete: {these} the dataset's whole committed history (its commitment is "
            "proven against the checkpoint's state root)"
        )

    origin = doc["origin"]
    lines += ["", "origin"]
    if origin["type"] == "register":
        lines.append(f"  registered by {who(origin['actor'])} {at(origin)}")
    else:
        count = len(origin["inputs"])
        lines.append(f"  derived by {who(origin['actor'])} from {count} input(s) {at(origin)}")
    lines.append(f"  event {origin['event_id']}")
    if origin.get("meta"):
        lines.append(f"  meta: {_meta_text(origin['meta'])}")
    if "open" in origin:
        lines.append(f"  open to any use: {'yes' if origin['open'] else 'no'}")
    lines.append(f"  owner: {who(doc['owner'])}")
    if "status" in doc:
        lines.append(f"  status at the checkpoint: {doc['status']}")

    lines += ["", f"grants ({len(doc['grants'])})"]
    for grant in doc["grants"]:
        expires = "never" if grant["expires"] is None else iso_time(grant["expires"])
        lines.append(f"  - grant {grant['event_id']}")
        lines.append(
            f"    {who(grant['grantor'])} -> {who(grant['to'])}: "
            f"purposes {', '.join(grant['purposes'])}"
        )
        lines.append(f"    expires {expires}; reshare {'yes' if grant['reshare'] else 'no'}")
        lines.append(f"    granted {at(grant)}")
        revoked = grant["revoked_by"]
        if revoked is not None:
            lines.append(
                f"    revoked by {who(revoked['actor'])} {at(revoked)} "
                f"(event {short_hex(revoked['event_id'])})"
            )
        elif grant["status"] == "expired":
            lines.append(f"    expired at {expires}")
        else:
            lines.append("    live at the checkpoint (its state is proven)")

    lines += ["", f"transfers ({len(doc['transfers'])})"]
    for item in doc["transfers"]:
        via = f" under grant {short_hex(item['grant'])}" if item["grant"] else ""
        lines.append(f"  - {who(item['actor'])} -> {who(item['to'])}{via} {at(item)}")

    lines += ["", f"uses ({len(doc['uses'])})"]
    for item in doc["uses"]:
        if item["grant"]:
            basis = f"under grant {short_hex(item['grant'])}"
        elif item["actor"] == doc["owner"]:
            basis = "as owner"
        else:
            basis = "without naming a grant"
        lines.append(f"  - {who(item['actor'])} for {item['purpose']!r} {basis} {at(item)}")

    lineage = doc["lineage"]
    lines += ["", "lineage"]
    if lineage["parents"]:
        lines.append("  derived from:")
        lines += [f"    {parent}" for parent in lineage["parents"]]
    else:
        lines.append("  derived from: nothing (registered directly)")
    if lineage["children"]:
        lines.append("  used to derive:")
        for child in lineage["children"]:
            lines.append(f"    {child['dataset']} by {who(child['actor'])} {at(child)}")
    else:
        lines.append("  used to derive: nothing")

    lines += ["", f"destroys ({len(doc['destroys'])})"]
    for item in doc["destroys"]:
        lines.append(f"  - {who(item['actor'])} destroyed their copy {at(item)}")

    lines += ["", f"attestations ({len(doc['attestations'])})"]
    for item in doc["attestations"]:
        meta = f" [{_meta_text(item['meta'])}]" if item["meta"] else ""
        lines.append(f"  - {who(item['actor'])}: {item['claim']!r}{meta} {at(item)}")

    if reported_used:
        lines += ["", "* names as reported by the node; they are not part of the proof"]
    return "\n".join(lines) + "\n"
