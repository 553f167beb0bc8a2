"""Errors raised by the consensus package: one root and the families callers act on."""

from __future__ import annotations


class ConsensusError(Exception):
    """Root of every error the consensus package raises."""


class SignerRefused(ConsensusError):
    """The signer will not sign: it would regress or conflict with what it signed before."""


class NoQuorum(ConsensusError):
    """A commit certificate was requested for a value without more than 2/3 of the power."""
