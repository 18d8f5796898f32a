"""Plain counters that the broker's hot paths keep for the metrics endpoint.

A leaf module (it imports nothing of riverbed's), so that every layer may keep its own
counters without depending on another layer or on a metrics library. Recording is a few
integer operations on the thread that owns the counter (the event loop, or the storage
flusher thread); the metrics endpoint reads them only when scraped (``riverbed.app.metrics``)
and turns them into Prometheus metrics there. No locks: a reader copies the lists (one C-level
operation under the GIL) and tolerates a count that is one behind.
"""

from __future__ import annotations

from bisect import bisect_left

# request latency buckets (seconds): Kafka's request times span microseconds (metadata) to
# the fetch long poll (max.wait.ms, 500 ms by default) and produce timeouts (30 s)
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
# counts (records, partitions, appends covered by one fsync cycle)
SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Histogram:
    """A fixed-bucket histogram of plain ints: ``counts[i]`` observations fell in bucket i
    (``value <= bounds[i]``; the last slot is +Inf), ``total`` is their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def snapshot(self) -> tuple[list[int], float]:
        """(cumulative counts per bound, +Inf last; sum), as Prometheus exposes them."""
        counts, total = list(self.counts), self.total
        acc = 0
        for i, c in enumerate(counts):
            acc += c
            counts[i] = acc
        return counts, total

    @property
    def count(self) -> int:
        return sum(self.counts)
