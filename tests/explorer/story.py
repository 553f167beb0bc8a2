"""A dataset story with every kind of event and a lineage, submitted through any `post`
callable (an in-process TestClient or real HTTP), for the explorer and export tests.

    raw --derive--> summary --derive--> report <--derive-- (side, another input)
                                 \\--derive--> chart

`raw` has: register, a live grant (analytics, derive), a revoked grant, an expired-soon
grant is not possible (expires must be in the future), a use, a transfer, an attestation and
the derive of `summary`; `summary` is derived by the analyst and destroyed by nobody.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ledger import events
from ledger.crypto import PrivateKey

Post = Callable[[bytes], dict[str, Any]]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Story:
    chain_id: str
    registrar: PrivateKey
    post: Post
    provider: PrivateKey = field(default_factory=PrivateKey.generate)
    analyst: PrivateKey = field(default_factory=PrivateKey.generate)
    auditor: PrivateKey = field(default_factory=PrivateKey.generate)
    files: dict[str, bytes] = field(default_factory=dict)
    ids: dict[str, bytes] = field(default_factory=dict)
    events: dict[str, events.SignedEvent] = field(default_factory=dict)

    def sign(self, label: str, key: PrivateKey, cls: type[events.EventBody], **fields: Any) -> None:
        body = cls(
            chain=self.chain_id,
            actor=key.public_key,
            time=now_ms(),
            nonce=os.urandom(events.NONCE_SIZE),
            **fields,
        )
        signed = events.sign_event(key, body)
        self.post(signed.envelope)
        self.events[label] = signed

    def dataset(self, name: str, text: str) -> bytes:
        data = f"{text}\n{os.urandom(8).hex()}\n".encode()
        self.files[name] = data
        self.ids[name] = hashlib.sha256(data).digest()
        return self.ids[name]

    def record(self) -> Story:
        for key, name in (
            (self.provider, "Acme Data"),
            (self.analyst, "Northwind"),
            (self.auditor, "Audit Co"),
        ):
            self.sign(
                f"admit {name}",
                self.registrar,
                events.Admit,
                subject=key.public_key,
                role="participant",
                name=name,
            )
        raw = self.dataset("raw", "station,temp\nOSL,3.1")
        side = self.dataset("side", "station,lat\nOSL,59.9")
        self.sign(
            "register raw",
            self.provider,
            events.Register,
            dataset=raw,
            meta={"title": "Weather observations", "size": 42},
            open=False,
        )
        self.sign(
            "register side",
            self.analyst,
            events.Register,
            dataset=side,
            meta={"title": "Stations"},
            open=False,
        )
        self.sign(
            "grant",
            self.provider,
            events.Grant,
            dataset=raw,
            to=self.analyst.public_key,
            purposes=("analytics", "derive"),
            reshare=False,
            expires=now_ms() + 86_400_000,
        )
        self.sign(
            "grant to revoke",
            self.provider,
            events.Grant,
            dataset=raw,
            to=self.auditor.public_key,
            purposes=("audit",),
            reshare=False,
        )
        self.sign("use", self.analyst, events.Use, dataset=raw, purpose="analytics")
        self.sign(
            "transfer", self.provider, events.Transfer, dataset=raw, to=self.auditor.public_key
        )
        self.sign(
            "revoke", self.provider, events.Revoke, grant=self.events["grant to revoke"].event_id
        )
        self.sign(
            "attest",
            self.auditor,
            events.Attest,
            dataset=raw,
            claim="quality-checked",
            meta={"score": 9},
        )
        summary = self.dataset("summary", "station,mean\nOSL,3.1")
        self.sign(
            "derive summary",
            self.analyst,
            events.Derive,
            dataset=summary,
            inputs=(raw,),
            meta={"title": "Weather summary"},
        )
        report = self.dataset("report", "report")
        self.sign(
            "derive report",
            self.analyst,
            events.Derive,
            dataset=report,
            inputs=(summary, side),
            meta={"title": "Quarterly report"},
        )
        chart = self.dataset("chart", "chart")
        self.sign(
            "derive chart",
            self.analyst,
            events.Derive,
            dataset=chart,
            inputs=(summary,),
            meta={"title": "Chart"},
        )
        self.sign("destroy copy", self.auditor, events.Destroy, dataset=raw)
        self.sign("destroy side", self.analyst, events.Destroy, dataset=side)
        return self
