"""A recursive, obviously-correct transcription of RFC 9162 §2.1.1-2.1.4, for tests only.

MTH, PATH, PROOF and SUBPROOF are written exactly as the RFC defines them over the list of
entries D[n]; nothing here imports the code under test. The one concession to speed: MTH, a
pure function of its entries, remembers its recent answers (the tests ask for the same
subtrees over and over, at every past size of a log), so the slow property tests stay
within the suite's time.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1."""
    return _mth(tuple(entries))


@functools.lru_cache(maxsize=1 << 14)
def _mth(entries: tuple[bytes, ...]) -> bytes:
    n = len(entries)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + entries[0])
    k = _split(n)
    return _sha256(b"\x01" + mth(entries[:k]) + mth(entries[k:]))


def path(m: int, entries: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1: the inclusion proof of entry m."""
    n = len(entries)
    assert 0 <= m < n
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*path(m, entries[:k]), mth(entries[k:])]
    return [*path(m - k, entries[k:]), mth(entries[:k])]


def proof(m: int, entries: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1: the consistency proof from size m."""
    assert 0 < m <= len(entries)
    return subproof(m, entries, True)


def subproof(m: int, entries: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1."""
    n = len(entries)
    if m == n:
        return [] if b else [mth(entries)]
    k = _split(n)
    if m <= k:
        return [*subproof(m, entries[:k], b), mth(entries[k:])]
    return [*subproof(m - k, entries[k:], False), mth(entries[:k])]


def path_shape(m: int, n: int) -> list[str]:
    """Where each hash of PATH(m, D[n]) sits, bottom-up: "left" or "right" sibling."""
    assert 0 <= m < n
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*path_shape(m, k), "right"]
    return [*path_shape(m - k, n - k), "left"]


def proof_shape(m: int, n: int, b: bool = True) -> list[str]:
    """What each hash of SUBPROOF(m, D[n], b) is, in order: the "seed" subtree root of the
    old tree, or a "left" or "right" sibling."""
    if m == n:
        return [] if b else ["seed"]
    k = _split(n)
    if m <= k:
        return [*proof_shape(m, k, b), "right"]
    return [*proof_shape(m - k, n - k, False), "left"]
