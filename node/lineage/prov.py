"""A verified story as a W3C PROV document: PROV-JSON, PROV-N or PROV-O Turtle (PROTOCOL §16.3).

Datasets are entities, keys are agents, events are activities. Relations: `wasGeneratedBy`
(a dataset by its register or derive, a grant by its grant event), `used` (derive inputs,
use, transfer, attest), `wasDerivedFrom` (derive output from each input, with the derive as
the activity), `wasAttributedTo` (a dataset to its owner, a grant to its grantor),
`wasAssociatedWith` (every event with its signer) and `wasInvalidatedBy` (a grant by its
revoke, a dataset by its owner's destroy). Every activity carries its event id, leaf index and
the checkpoint (a `pl:Checkpoint` entity with height, tree size, tree root and block hash).

One model (`ProvDoc`) is built from the story and written out by three serializers, so the
three formats say the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ledger import events
from ledger.provenance import ProvenEvent, VerifiedStory

FORMATS = ("json", "provn", "ttl")
MEDIA_TYPES = {
    "json": "application/json",
    "provn": "text/provenance-notation; charset=utf-8",
    "ttl": "text/turtle; charset=utf-8",
}
NAMESPACES = {
    "pl": "https://provledger.dev/ns/prov#",
    "dataset": "https://provledger.dev/id/dataset/",
    "event": "https://provledger.dev/id/event/",
    "grant": "https://provledger.dev/id/grant/",
    "key": "https://provledger.dev/id/key/",
    "block": "https://provledger.dev/id/block/",
}
PROV_NS = "http://www.w3.org/ns/prov#"
XSD_NS = "http://www.w3.org/2001/XMLSchema#"


@dataclass(frozen=True)
class QName:
    """A qualified name used as an attribute value (e.g. a type or a reference)."""

    value: str


@dataclass(frozen=True)
class DateTime:
    """A time (Unix ms) as an xsd:dateTime value."""

    ms: int

    def iso(self) -> str:
        return iso_time(self.ms)


Value = str | int | QName | DateTime


@dataclass
class Element:
    kind: str  # "entity", "activity" or "agent"
    ident: str
    attrs: list[tuple[str, Value]] = field(default_factory=list)
    time: int | None = None  # activities: start = end = the event time


@dataclass(frozen=True)
class Relation:
    kind: str
    args: tuple[str | None, ...]  # the PROV-N positional arguments, None for "-"
    time: int | None = None


# PROV-JSON role names of each relation's positional arguments (time goes last, separately).
ROLES = {
    "wasGeneratedBy": ("prov:entity", "prov:activity"),
    "used": ("prov:activity", "prov:entity"),
    "wasDerivedFrom": ("prov:generatedEntity", "prov:usedEntity", "prov:activity"),
    "wasAttributedTo": ("prov:entity", "prov:agent"),
    "wasAssociatedWith": ("prov:activity", "prov:agent"),
    "wasInvalidatedBy": ("prov:entity", "prov:activity"),
}
TIMED = frozenset({"wasGeneratedBy", "used", "wasInvalidatedBy"})
RELATIONS = tuple(ROLES)


@dataclass
class ProvDoc:
    elements: dict[str, Element] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)

    def add(
        self, kind: str, ident: str, *attrs: tuple[str, Value], time: int | None = None
    ) -> None:
        element = self.elements.get(ident)
        if element is None:
            self.elements[ident] = Element(kind, ident, list(attrs), time)
        else:
            element.attrs.extend(a for a in attrs if a not in element.attrs)

    def relate(self, kind: str, *args: str | None, time: int | None = None) -> None:
        self.relations.append(Relation(kind, args, time))

    def count(self, kind: str) -> int:
        return sum(1 for r in self.relations if r.kind == kind)


def iso_time(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dataset_id(dataset: bytes) -> str:
    return f"dataset:{dataset.hex()}"


def key_id(key: bytes) -> str:
    return f"key:{key.hex()}"


def event_id(event: events.SignedEvent) -> str:
    return f"event:{event.event_id.hex()}"


# --- the model ------------------------------------------------------------------------------


def _title(meta: Mapping[str, events.MetaValue]) -> str | None:
    title = meta.get("title")
    return title if isinstance(title, str) and title else None


def _dataset(doc: ProvDoc, dataset: bytes, meta: Mapping[str, events.MetaValue] | None) -> None:
    attrs: list[tuple[str, Value]] = [
        ("prov:type", QName("pl:Dataset")),
        ("pl:sha256", dataset.hex()),
    ]
    title = _title(meta or {})
    if title:
        attrs.append(("prov:label", title))
    doc.add("entity", dataset_id(dataset), *attrs)


def _agent(doc: ProvDoc, key: bytes, names: Mapping[bytes, str]) -> str:
    attrs: list[tuple[str, Value]] = [
        ("prov:type", QName("prov:Agent")),
        ("pl:publicKey", key.hex()),
    ]
    if key in names:
        attrs.append(("prov:label", names[key]))
    doc.add("agent", key_id(key), *attrs)
    return key_id(key)


def _activity(
    doc: ProvDoc, proven: ProvenEvent, checkpoint: str, names: Mapping[bytes, str]
) -> str:
    event = proven.event
    ident = event_id(event)
    attrs: list[tuple[str, Value]] = [
        ("prov:type", QName(f"pl:{event.type.capitalize()}")),
        ("pl:eventType", event.type),
        ("pl:eventId", event.event_id.hex()),
        ("pl:leafIndex", proven.leaf_index),
        ("pl:checkpoint", QName(checkpoint)),
    ]
    body = event.body
    if isinstance(body, events.Use):
        attrs.append(("pl:purpose", body.purpose))
    if isinstance(body, events.Attest):
        attrs.append(("pl:claim", body.claim))
    if isinstance(body, events.Transfer | events.Grant):
        attrs.append(("pl:recipient", QName(_agent(doc, body.to, names))))
    if isinstance(body, events.Use | events.Transfer) and body.grant is not None:
        attrs.append(("pl:grant", QName(f"grant:{body.grant.hex()}")))
    doc.add("activity", ident, *attrs, time=body.time)
    doc.relate("wasAssociatedWith", ident, _agent(doc, event.actor, names), None)
    return ident


def _derive(doc: ProvDoc, act: str, body: events.Derive, actor: str) -> None:
    _dataset(doc, body.dataset, body.meta)
    output = dataset_id(body.dataset)
    doc.relate("wasGeneratedBy", output, act, time=body.time)
    doc.relate("wasAttributedTo", output, actor)
    for parent in body.inputs:
        _dataset(doc, parent, None)
        doc.relate("used", act, dataset_id(parent), time=body.time)
        doc.relate("wasDerivedFrom", output, dataset_id(parent), act)


def _grant(doc: ProvDoc, act: str, proven: ProvenEvent, story: VerifiedStory, actor: str) -> None:
    body = proven.event.body
    assert isinstance(body, events.Grant)
    status = next(g for g in story.grants if g.event.event_id == proven.event.event_id)
    state = "revoked" if status.revoked_by else "expired" if status.expired else "live"
    attrs: list[tuple[str, Value]] = [
        ("prov:type", QName("pl:Grant")),
        ("pl:dataset", QName(dataset_id(body.dataset))),
        ("pl:status", state),
        ("pl:reshare", "true" if body.reshare else "false"),
        *(("pl:purpose", p) for p in body.purposes),
    ]
    if body.expires is not None:
        attrs.append(("pl:expires", DateTime(body.expires)))
    ident = f"grant:{proven.event.event_id.hex()}"
    doc.add("entity", ident, *attrs)
    doc.relate("wasGeneratedBy", ident, act, time=body.time)
    doc.relate("wasAttributedTo", ident, actor)


def _checkpoint(doc: ProvDoc, story: VerifiedStory, chain_id: str) -> str:
    header = story.checkpoint
    ident = f"block:{header.block_hash.hex()}"
    doc.add(
        "entity",
        ident,
        ("prov:type", QName("pl:Checkpoint")),
        ("pl:chain", chain_id),
        ("pl:height", header.height),
        ("pl:time", DateTime(header.time)),
        ("pl:treeSize", header.tree_size),
        ("pl:treeRoot", header.tree_root.hex()),
        ("pl:blockHash", header.block_hash.hex()),
    )
    return ident


def story_document(
    story: VerifiedStory, chain_id: str, names: Mapping[bytes, str] | None = None
) -> ProvDoc:
    """The PROV model of a verified story (names: best-effort labels of keys)."""
    names = names or {}
    doc = ProvDoc()
    checkpoint = _checkpoint(doc, story, chain_id)
    origin = story.origin.body
    meta = origin.meta if isinstance(origin, events.Register | events.Derive) else None
    _dataset(doc, story.dataset, meta)
    doc.add("entity", dataset_id(story.dataset), ("pl:owner", QName(key_id(story.owner))))
    for proven in story.events:
        act = _activity(doc, proven, checkpoint, names)
        actor = key_id(proven.event.actor)
        body = proven.event.body
        if isinstance(body, events.Register):
            doc.relate("wasGeneratedBy", dataset_id(body.dataset), act, time=body.time)
            doc.relate("wasAttributedTo", dataset_id(body.dataset), actor)
        elif isinstance(body, events.Derive):
            _derive(doc, act, body, actor)
        elif isinstance(body, events.Grant):
            _grant(doc, act, proven, story, actor)
        elif isinstance(body, events.Revoke):
            doc.relate("wasInvalidatedBy", f"grant:{body.grant.hex()}", act, time=body.time)
        elif isinstance(body, events.Use | events.Transfer | events.Attest):
            doc.relate("used", act, dataset_id(body.dataset), time=body.time)
        elif isinstance(body, events.Destroy) and proven.event.actor == story.owner:
            doc.relate("wasInvalidatedBy", dataset_id(body.dataset), act, time=body.time)
        elif isinstance(body, events.Destroy):
            doc.add("activity", act, ("pl:copyOf", QName(dataset_id(body.dataset))))
    return doc


# --- PROV-JSON ------------------------------------------------------------------------------


def _json_value(value: Value) -> object:
    if isinstance(value, QName):
        return {"$": value.value, "type": "prov:QUALIFIED_NAME"}
    if isinstance(value, DateTime):
        return {"$": value.iso(), "type": "xsd:dateTime"}
    return value


def _json_attrs(attrs: list[tuple[str, Value]]) -> dict[str, object]:
    grouped: dict[str, list[object]] = {}
    for name, value in attrs:
        grouped.setdefault(name, []).append(_json_value(value))
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}


def to_prov_json(doc: ProvDoc) -> dict[str, dict[str, object]]:
    """The PROV-JSON document (W3C member submission "PROV-JSON")."""
    out: dict[str, dict[str, object]] = {"prefix": {**NAMESPACES}}
    for element in doc.elements.values():
        record = _json_attrs(element.attrs)
        if element.time is not None:
            record["prov:startTime"] = iso_time(element.time)
            record["prov:endTime"] = iso_time(element.time)
        out.setdefault(element.kind, {})[element.ident] = record
    for position, relation in enumerate(doc.relations):
        record = {
            role: arg
            for role, arg in zip(ROLES[relation.kind], relation.args, strict=False)
            if arg is not None
        }
        if relation.time is not None:
            record["prov:time"] = iso_time(relation.time)
        out.setdefault(relation.kind, {})[f"_:r{position}"] = record
    return out


# --- PROV-N ---------------------------------------------------------------------------------


def _provn_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _provn_value(value: Value) -> str:
    if isinstance(value, QName):
        return f"'{value.value}'"
    if isinstance(value, DateTime):
        return f'"{value.iso()}" %% xsd:dateTime'
    if isinstance(value, int):
        return str(value)
    return _provn_string(value)


def _provn_attrs(attrs: list[tuple[str, Value]]) -> str:
    if not attrs:
        return ""
    return ", [" + ", ".join(f"{name}={_provn_value(v)}" for name, v in attrs) + "]"


def to_provn(doc: ProvDoc) -> str:
    """The PROV-N text (W3C PROV-N)."""
    lines = ["document"]
    lines += [f"  prefix {prefix} <{uri}>" for prefix, uri in NAMESPACES.items()]
    for e in doc.elements.values():
        if e.kind == "activity":
            when = iso_time(e.time) if e.time is not None else "-"
            lines.append(f"  activity({e.ident}, {when}, {when}{_provn_attrs(e.attrs)})")
        else:
            lines.append(f"  {e.kind}({e.ident}{_provn_attrs(e.attrs)})")
    for r in doc.relations:
        args = [a if a is not None else "-" for a in r.args]
        if r.kind in TIMED:
            args.append(iso_time(r.time) if r.time is not None else "-")
        if r.kind == "wasDerivedFrom":
            args += ["-", "-"]  # generation and usage
        lines.append(f"  {r.kind}({', '.join(args)})")
    lines.append("endDocument")
    return "\n".join(lines) + "\n"


# --- PROV-O Turtle --------------------------------------------------------------------------

_TTL_PREDICATES = {
    "wasGeneratedBy": "prov:wasGeneratedBy",
    "used": "prov:used",
    "wasDerivedFrom": "prov:wasDerivedFrom",
    "wasAttributedTo": "prov:wasAttributedTo",
    "wasAssociatedWith": "prov:wasAssociatedWith",
    "wasInvalidatedBy": "prov:wasInvalidatedBy",
}
_TTL_CLASSES = {"entity": "prov:Entity", "activity": "prov:Activity", "agent": "prov:Agent"}


def _ttl_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid Turtle string


def _ttl_value(value: Value) -> str:
    if isinstance(value, QName):
        return value.value
    if isinstance(value, DateTime):
        return f'"{value.iso()}"^^xsd:dateTime'
    if isinstance(value, int):
        return str(value)
    return _ttl_string(value)


def _ttl_element(e: Element) -> list[str]:
    types = [_TTL_CLASSES[e.kind]]
    types += [v.value for n, v in e.attrs if n == "prov:type" and isinstance(v, QName)]
    parts = ["a " + ", ".join(dict.fromkeys(types))]
    if e.time is not None:
        stamp = f'"{iso_time(e.time)}"^^xsd:dateTime'
        parts += [f"prov:startedAtTime {stamp}", f"prov:endedAtTime {stamp}"]
    parts += [
        f"{'rdfs:label' if n == 'prov:label' else n} {_ttl_value(v)}"
        for n, v in e.attrs
        if n != "prov:type"
    ]
    return [f"{e.ident} " + " ;\n    ".join(parts) + " ."]


def to_turtle(doc: ProvDoc) -> str:
    """PROV-O in Turtle: elements typed by class, the starting-point relations as triples."""
    lines = [f"@prefix prov: <{PROV_NS}> .", f"@prefix xsd: <{XSD_NS}> ."]
    lines.append("@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .")
    lines += [f"@prefix {prefix}: <{uri}> ." for prefix, uri in NAMESPACES.items()]
    lines.append("")
    for element in doc.elements.values():
        lines += _ttl_element(element)
    for r in doc.relations:
        subject, obj = r.args[0], r.args[1]
        lines.append(f"{subject} {_TTL_PREDICATES[r.kind]} {obj} .")
    return "\n".join(lines) + "\n"


def render(doc: ProvDoc, fmt: str) -> str:
    """The document in `fmt` (one of FORMATS)."""
    if fmt == "json":
        return json.dumps(to_prov_json(doc), indent=2) + "\n"
    if fmt == "provn":
        return to_provn(doc)
    if fmt == "ttl":
        return to_turtle(doc)
    raise ValueError(f"unknown PROV format {fmt!r}; use one of {', '.join(FORMATS)}")
