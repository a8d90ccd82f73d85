"""Process-wide settings of tmq's long-running commands (broker, producer, sink)."""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_gc"]

#: CPython's cyclic collector thresholds for tmq processes (the default is (700, 10, 10)).
GC_THRESHOLDS = (100_000, 10, 10)


def tune_gc() -> None:
    """Run CPython's cyclic garbage collector less often.

    The broker, the producer and the sink allocate a few tuples per record, tens of
    thousands of records a second. At the default thresholds a generation-0 collection runs
    every 700 allocations and walks every young container; in ``tmq bench e2e`` that was a
    tenth or more of the producer's and the sink's CPU. Reference counting still frees almost
    everything at once; only reference cycles wait for the collector, which still runs, every
    100,000 allocations for generation 0 (generations 1 and 2 keep their ratios).
    """
    gc.set_threshold(*GC_THRESHOLDS)
