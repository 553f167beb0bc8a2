"""The one wall clock of the node package: milliseconds since the Unix epoch.

The pure cores (`ledger`, `consensus`) never read a clock; everything in `node` that needs the
time asks this module, so tests and the simulator know the single place time enters.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Wall-clock time in whole milliseconds since 1970-01-01T00:00:00Z."""
    return time.time_ns() // 1_000_000
