"""Giving the C heap's free pages back to the operating system, now and then.

A node's native allocations come and go in large waves: LevelDB's 16 MiB memtable is
allocated piece by piece and freed whole at every flush, a block of thousands of events is
decoded, executed and dropped, a full mempool drains. glibc's malloc keeps what it freed
inside its heap for reuse and returns memory to the system only from the heap's top, so
after a few waves the free holes in the middle stay resident and count in the node's
anonymous memory (23-30 MB of a store-filling process's 150-170). `malloc_trim(0)` gives every
free page of every arena back (madvise), which costs a couple of milliseconds on a
100 MiB heap; the pages it freed are faulted in again only if they are used again.

`periodic_trim` runs it every `HEAP_TRIM_INTERVAL_S`. Where the C library has no
`malloc_trim` (musl, macOS), there is nothing to do and nothing runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("provledger.node")

HEAP_TRIM_INTERVAL_S = 10.0
"""How often a node returns its C heap's free pages. Each trim takes ~2 ms on a 100 MiB heap,
and the pages it released that the node uses again are faulted back in: the cost grows with
the frequency. At 5 s, `scripts/bench compare` told no CPU difference beyond its rounds'
spread (HEAD 0.3% and 1.0% less, rounds within ±2.5%); at 10 s there are half as many."""

Trim = Callable[[], bool]


def find_malloc_trim() -> Trim | None:
    """`malloc_trim(0)` of this process's C library (True when it released memory), or None
    when the library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int

    def trim() -> bool:
        return bool(function(0))

    return trim


async def periodic_trim(
    trim: Trim,
    interval_s: float = HEAP_TRIM_INTERVAL_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Call `trim` every `interval_s` seconds, until cancelled."""
    while True:
        await sleep(interval_s)
        trim()


def start_periodic_trim(interval_s: float = HEAP_TRIM_INTERVAL_S) -> asyncio.Task[None] | None:
    """The trimming task, or None (logged once) where the C library cannot trim."""
    trim = find_malloc_trim()
    if trim is None:
        log.info("this C library has no malloc_trim: the heap's free pages stay in the node")
        return None
    return asyncio.create_task(periodic_trim(trim, interval_s), name="heap-trim")
