"""The one place where errors become HTTP: RFC 9457 problem documents (docs/PROTOCOL.md §10).

Every error the daemon raises — a `ledger.errors.LedgerError` or a `node.server.errors`
refusal — maps to a status, a slug and a title here, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import (
    BadSignature,
    Conflict,
    Corruption,
    Forbidden,
    LedgerError,
    Malformed,
    NotAdmitted,
    Pruned,
    RuleViolation,
    TooLarge,
    VerificationFailed,
)
from node.server.errors import (
    Busy,
    CommitTimeout,
    ConsensusStopped,
    MempoolFull,
    NodeError,
    NotCaughtUp,
    NotFound,
    NotReady,
    PeerTooMany,
    PeerUnauthorized,
    TooManyWaiters,
)
from node.wire import PROBLEM_JSON

PROBLEM_TYPE_BASE = "https://provledger.dev/problems/"


@dataclass(frozen=True)
class Problem:
    """What an error looks like on the wire."""

    status: int
    slug: str
    title: str
    detail: str = ""


# Most specific first: TooLarge is a Malformed, ProofMismatch a VerificationFailed.
_STATUS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (TooLarge, 413, "too-large", "Payload too large"),
    (Malformed, 400, "malformed", "Malformed input"),
    (BadSignature, 401, "bad-signature", "Bad signature"),
    (NotAdmitted, 403, "not-admitted", "Signer not admitted"),
    (Forbidden, 403, "forbidden", "Not allowed"),
    (Conflict, 409, "conflict", "Duplicate or conflict"),
    (RuleViolation, 422, "rule-violation", "Rule violation"),
    (VerificationFailed, 422, "verification-failed", "Verification failed"),
    (Corruption, 500, "corruption", "Storage corruption"),
    (NotFound, 404, "not-found", "Not found"),
    (Pruned, 410, "pruned", "Pruned: older history lives on archive nodes"),
    (PeerUnauthorized, 401, "peer-unauthorized", "Not an authenticated peer"),
    (PeerTooMany, 413, "too-large", "Payload too large"),
    (MempoolFull, 429, "mempool-full", "Mempool full"),
    (TooManyWaiters, 429, "too-many-waiters", "Too many clients waiting"),
    (NotCaughtUp, 503, "not-caught-up", "Node is not caught up"),
    (ConsensusStopped, 503, "consensus-stopped", "Consensus stopped"),
    (NotReady, 503, "not-ready", "Node is not ready"),
    (Busy, 503, "busy", "Busy"),
    (CommitTimeout, 504, "commit-timeout", "Not committed in time"),
)


def problem_for(exc: Exception) -> Problem:
    """Classify any error the node may answer with; anything unknown is a bare 500."""
    if isinstance(exc, LedgerError | NodeError):
        for family, status, slug, title in _STATUS:
            if isinstance(exc, family):
                return Problem(status, slug, title, str(exc))
    return Problem(500, "internal", "Internal error", "")


def problem_document(problem: Problem, instance: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail or problem.title,
    }
    if instance:
        doc["instance"] = instance
    return doc


def refusal(exc: Exception) -> dict[str, Any]:
    """How one refused envelope is reported inside a batch answer."""
    problem = problem_for(exc)
    return {"status": problem.status, "title": problem.title, "detail": problem.detail}


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    headers = {"Retry-After": "1"} if problem.status in (429, 503) else None
    return JSONResponse(
        problem_document(problem, instance),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


_HTTP_SLUGS = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    408: ("request-timeout", "Request timeout"),
    413: ("too-large", "Payload too large"),
}


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(problem_for(exc), request.url.path)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug, title = _HTTP_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem_response(Problem(exc.status_code, slug, title, detail), request.url.path)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
        for e in exc.errors()[:5]
    )
    return problem_response(Problem(400, "malformed", "Malformed input", detail), request.url.path)


def install_handlers(app: FastAPI) -> None:
    """Route every error through `problem_response`."""
    app.add_exception_handler(NodeError, _on_error)
    app.add_exception_handler(LedgerError, _on_error)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(Exception, _on_error)
