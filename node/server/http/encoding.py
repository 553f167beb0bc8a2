"""Request and response bodies of the HTTP API: JSON by default, msgpack on request."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ledger import codec
from ledger.errors import Malformed
from node.wire import JSON, MAX_PUBLIC_BATCH, MSGPACK

MAX_ENVELOPE_HEX = 2 * 16 * 1024


class BatchRequest(BaseModel):
    """Up to MAX_PUBLIC_BATCH signed envelopes, hex-encoded."""

    model_config = ConfigDict(extra="forbid", strict=True)
    envelopes: list[
        Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2})+$", max_length=MAX_ENVELOPE_HEX)]
    ] = Field(min_length=1, max_length=MAX_PUBLIC_BATCH)


class SubmitRequest(BaseModel):
    """A signed envelope, hex-encoded."""

    model_config = ConfigDict(extra="forbid", strict=True)
    envelope: str = Field(pattern=r"^([0-9a-fA-F]{2})+$", max_length=MAX_ENVELOPE_HEX)


def json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def wants_msgpack(request: Request) -> bool:
    return MSGPACK in request.headers.get("accept", "")


def reply(request: Request, doc: Any, status: int = 200) -> Response:
    """JSON, or msgpack when the client asked for it."""
    if wants_msgpack(request):
        return Response(codec.encode(doc), status_code=status, media_type=MSGPACK)
    return Response(json_bytes(doc), status_code=status, media_type=JSON)


def parse_submission(body: bytes, content_type: str | None) -> bytes:
    """The envelope bytes of a submit request, from JSON or msgpack; Malformed otherwise."""
    if content_type is not None and content_type.split(";")[0].strip() == MSGPACK:
        doc = codec.decode(body)
        if (
            isinstance(doc, dict)
            and set(doc) == {"envelope"}
            and isinstance(doc["envelope"], bytes)
        ):
            return doc["envelope"]
        try:
            request = SubmitRequest.model_validate(doc)
        except ValidationError as exc:
            raise Malformed(validation_detail(exc)) from exc
    else:
        try:
            request = SubmitRequest.model_validate_json(body)
        except ValidationError as exc:
            raise Malformed(validation_detail(exc)) from exc
    return from_hex(request.envelope, "envelope")


def validation_detail(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
    )


def from_hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise Malformed(f"{what} must be lowercase hex") from exc
