"""A node gives its C heap's free pages back to the system (node/server/heap.py): the trim
really lowers a process's anonymous memory, it runs on its interval, a C library without
`malloc_trim` starts nothing, and a running node has the task."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from pathlib import Path

import pytest

from node.server import heap
from tests.node.conftest import running_node

BLOCK_BYTES = 1024
BLOCKS = 64 * 1024
"""64 MiB of heap in 1 KiB blocks: above the fast bins, below the mmap threshold, so they
come from the heap itself and their free space coalesces there."""


def anonymous_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


def test_the_trim_interval_is_pinned() -> None:
    assert heap.HEAP_TRIM_INTERVAL_S == 10.0


def test_this_c_library_can_trim() -> None:
    assert heap.find_malloc_trim() is not None


def test_a_trim_returns_freed_heap_pages_that_malloc_kept() -> None:
    """64 MiB malloc'd and freed under a block still in use stay resident (free() returns
    only the heap's top); the trim gives most of them back."""
    trim = heap.find_malloc_trim()
    assert trim is not None
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(BLOCK_BYTES) for _ in range(BLOCKS)]
    assert all(blocks)
    for block in blocks:
        ctypes.memset(block, 0xA5, BLOCK_BYTES)
    pinned = libc.malloc(BLOCK_BYTES)  # keeps the freed space off the heap's top
    try:
        for block in blocks:
            libc.free(block)
        before = anonymous_kib()
        released = trim()
        after = anonymous_kib()
    finally:
        libc.free(pinned)
    freed_kib = BLOCKS * BLOCK_BYTES // 1024
    assert released
    assert before - after > freed_kib // 2, (before, after)


def test_periodic_trim_trims_once_per_interval() -> None:
    slept: list[float] = []
    trims: list[int] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 3:
            raise asyncio.CancelledError

    def trim() -> bool:
        trims.append(len(slept))
        return True

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(heap.periodic_trim(trim, 2.5, sleep))
    assert slept == [2.5, 2.5, 2.5, 2.5]
    assert trims == [1, 2, 3]


def test_without_malloc_trim_nothing_starts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(heap.ctypes.util, "find_library", lambda name: None)
    assert heap.find_malloc_trim() is None

    async def start() -> asyncio.Task[None] | None:
        return heap.start_periodic_trim()

    with caplog.at_level(logging.INFO, logger="provledger.node"):
        assert asyncio.run(start()) is None
    assert "no malloc_trim" in caplog.text


def test_a_running_node_trims_its_heap(tmp_path: Path) -> None:
    with running_node(tmp_path) as node:
        names = [task.get_name() for task in node.service._tasks]
    assert "heap-trim" in names
