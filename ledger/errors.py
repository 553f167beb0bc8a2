"""The ledger's exception hierarchy: one root, typed families that callers map to outcomes.

Only `node/` turns these into HTTP statuses; the families say what went wrong, not how to
report it. A broken internal invariant is an `assert`, never one of these.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises on bad input or bad data."""


class Malformed(LedgerError):
    """Bytes or fields that do not parse or do not follow the canonical form."""


class TooLarge(Malformed):
    """An input beyond a configured size limit."""


class BadSignature(LedgerError):
    """A signature that does not verify, is high-S, or is not 64 bytes (unauthorised)."""


class NotAdmitted(LedgerError):
    """The signer is not an admitted participant of a permissioned chain (forbidden)."""


class Forbidden(LedgerError):
    """The signer is admitted but not allowed to do this (forbidden)."""


class Conflict(LedgerError):
    """A duplicate or a clash with what is already on the chain."""


class RuleViolation(LedgerError):
    """Well-formed and signed, but the event breaks a rule of the current state."""


class Corruption(LedgerError):
    """Stored data that is missing, inconsistent, or cannot be opened."""


class UnsupportedFormat(Corruption):
    """A store written by a build with another storage format."""


class Pruned(LedgerError):
    """History this store does not hold: it started from a snapshot (docs/PROTOCOL.md §20)."""


class VerificationFailed(LedgerError):
    """A proof, commit or bundle that does not verify; `reason` names what failed."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ProofMismatch(VerificationFailed):
    """A Merkle proof whose recomputed root or shape does not match what was claimed."""

    def __init__(self, detail: str) -> None:
        super().__init__("merkle proof mismatch", detail)
