"""What the server counts for the metrics endpoint: request times per API key (Kafka's
RequestMetrics: TotalTimeMs, LocalTimeMs, RemoteTimeMs) and connections per listener.

The server reads the API key from the first two bytes of a request frame (framing, not the
message body). Times are the event loop's clock:

- local: the handler's synchronous part (decode, the work done on the loop, encode);
- remote: for a request answered later, from the end of that part until its answer is ready
  (waiting for an fsync, a fetch long poll, a group rebalance: Kafka's purgatory);
- total: from the frame's dispatch until its answer is handed to the transport (including
  waiting behind earlier answers on the same connection, which go out in request order).

Requests are dispatched as soon as their frame is complete, so there is no request queue
(Kafka's RequestQueueTimeMs) to measure.
"""

from __future__ import annotations

from riverbed.stats import Histogram

MAX_KEYS = 128


class ApiTimes:
    """The three request-time histograms of one API key."""

    __slots__ = ("local", "remote", "total")

    def __init__(self) -> None:
        self.total = Histogram()
        self.local = Histogram()
        self.remote = Histogram()


class RequestStats:
    __slots__ = ("apis",)

    def __init__(self) -> None:
        self.apis: dict[int, ApiTimes] = {}

    def _new(self, key: int) -> ApiTimes:
        # a frame's first two bytes are an API key except in the raw SASL tokens of
        # SaslHandshake v0: any number then, so the table is capped (-1: other)
        if len(self.apis) >= MAX_KEYS:
            key = -1
        times = self.apis.get(key)
        if times is None:
            times = self.apis[key] = ApiTimes()
        return times

    def answered(self, key: int, total: float, local: float, remote: float | None) -> None:
        """One request of API ``key`` done (``remote`` None: answered synchronously)."""
        times = self.apis.get(key) or self._new(key)
        times.total.observe(total)
        times.local.observe(local)
        if remote is not None:
            times.remote.observe(remote)
