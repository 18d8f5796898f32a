"""Bounded in-memory state: a seen-id window (replay protection and idempotency) and token
buckets (rate limits). Both evict the oldest entries past their capacity."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any


class SeenWindow:
    """The last `capacity` event ids and what became of them. ``claim(id)`` returns None when the
    id is new (the caller must then ``done`` or ``forget`` it), else the first delivery's future,
    which resolves to its result (so a retry arriving while the first is in flight waits for it)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, asyncio.Future[Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def claim(self, event_id: str, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Future[Any] | None:
        """`loop`: the running loop, if the caller has it at hand (saves a lookup per call)."""
        fut = self._ids.get(event_id)
        if fut is not None:
            self._ids.move_to_end(event_id)
            return fut
        self._ids[event_id] = (loop or asyncio.get_running_loop()).create_future()
        while len(self._ids) > self.capacity:
            _, old = self._ids.popitem(last=False)
            if not old.done():
                old.cancel()
        return None

    def done(self, event_id: str, result: Any) -> None:
        fut = self._ids.get(event_id)
        if fut is not None and not fut.done():
            fut.set_result(result)

    def remember(self, event_id: str, result: Any) -> None:
        """Mark an id seen without a delivery (ids read back from the topic at start)."""
        if event_id in self._ids:
            return
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(result)
        self._ids[event_id] = fut
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def forget(self, event_id: str, exc: BaseException) -> None:
        """The first delivery failed: waiters get `exc`, and a later retry may try again."""
        fut = self._ids.pop(event_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody waited


class RateLimiter:
    """A token bucket per client (``rate`` tokens/s, ``burst`` deep), for at most ``clients``
    clients (the least recently seen are forgotten)."""

    def __init__(self, rate: float, burst: int, clients: int = 10_000) -> None:
        self.rate, self.burst, self.clients = rate, max(1, burst), clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, now: float | None = None) -> float:
        """0.0 if allowed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.clients:
            self._buckets.popitem(last=False)
        return wait
