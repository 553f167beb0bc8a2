"""The one place where errors become HTTP: RFC 9457 problem documents with DESIGN.md §6 codes."""

from __future__ import annotations

from typing import Any

from fastapi import Request
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
    RuleViolation,
    TooLarge,
    VerificationFailed,
)

PROBLEM_TYPE_BASE = "https://provledger.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class NodeProblem(Exception):
    """A node-level refusal that is not a ledger error (mempool full, not caught up, ...)."""

    def __init__(self, status: int, slug: str, title: str, detail: str = "") -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail


def mempool_full(detail: str) -> NodeProblem:
    return NodeProblem(429, "mempool-full", "Mempool full", detail)


def not_caught_up(detail: str) -> NodeProblem:
    return NodeProblem(503, "not-caught-up", "Node is not caught up", detail)


def not_found(what: str) -> NodeProblem:
    return NodeProblem(404, "not-found", "Not found", what)


def commit_timeout(detail: str) -> NodeProblem:
    return NodeProblem(504, "commit-timeout", "Not committed in time", detail)


# Most specific first: TooLarge is a Malformed, ProofMismatch a VerificationFailed.
_LEDGER_STATUS: tuple[tuple[type[LedgerError], int, str, str], ...] = (
    (TooLarge, 413, "too-large", "Payload too large"),
    (Malformed, 400, "malformed", "Malformed input"),
    (BadSignature, 401, "bad-signature", "Bad signature"),
    (NotAdmitted, 403, "not-admitted", "Signer not admitted"),
    (Forbidden, 403, "forbidden", "Not allowed"),
    (Conflict, 409, "conflict", "Duplicate or conflict"),
    (RuleViolation, 422, "rule-violation", "Rule violation"),
    (VerificationFailed, 422, "verification-failed", "Verification failed"),
    (Corruption, 500, "corruption", "Storage corruption"),
)


def problem_for(exc: Exception) -> NodeProblem:
    """Classify any error the node may answer with."""
    if isinstance(exc, NodeProblem):
        return exc
    if isinstance(exc, LedgerError):
        for family, status, slug, title in _LEDGER_STATUS:
            if isinstance(exc, family):
                return NodeProblem(status, slug, title, str(exc))
    return NodeProblem(500, "internal", "Internal error", "")


def problem_document(problem: NodeProblem, instance: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail or problem.title,
    }
    if instance:
        doc["instance"] = instance
    return doc


def problem_response(problem: NodeProblem, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    headers = {"Retry-After": "1"} if problem.status in (429, 503) else None
    return JSONResponse(
        problem_document(problem, instance),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def install_handlers(app: Any) -> None:
    """Route every error through `problem_response`."""

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(problem_for(exc), request)

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
            exc.status_code, "http-error"
        )
        title = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}.get(
            exc.status_code, "HTTP error"
        )
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem_response(NodeProblem(exc.status_code, slug, title, detail), request)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors[:5]
        )
        return problem_response(NodeProblem(400, "malformed", "Malformed input", detail), request)

    app.add_exception_handler(NodeProblem, on_error)
    app.add_exception_handler(LedgerError, on_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_error)
