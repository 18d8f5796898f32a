"""Slowing down repeated failed authentications from one client address.

Pure: the clock is injected and nothing sleeps here. The server asks :meth:`delay_for` how long
to wait before it processes a new authentication attempt (and before it answers a failure),
and reports outcomes with :meth:`record_failure` / :meth:`record_success`.

Rule: failures older than ``window`` seconds are forgotten. Fewer than ``threshold`` recent
failures cost nothing; at ``threshold`` the delay is ``base_delay`` and each further failure
doubles it, up to ``max_delay``:

    delay = 0                                                         if failures < threshold
    delay = min(max_delay, base_delay * 2 ** (failures - threshold))  otherwise

A success clears the address. The table is bounded (``max_addresses``): when full, the entry
with the oldest last failure is dropped, so a flood of spoofed addresses cannot grow memory
without limit. Key by host only (no port): every new connection gets a new port.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FailedAuthThrottle", "ThrottleConfig"]


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    threshold: int = 3
    window: float = 300.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_addresses: int = 10_000

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.window <= 0 or self.base_delay < 0:
            raise ValueError("threshold >= 1, window > 0 and base_delay >= 0 are required")
        if self.max_delay < self.base_delay or self.max_addresses < 1:
            raise ValueError("max_delay >= base_delay and max_addresses >= 1 are required")


class FailedAuthThrottle:
    def __init__(
        self,
        config: ThrottleConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or ThrottleConfig()
        self._clock = clock
        # address -> times of recent failures; ordered by last failure (oldest first)
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        horizon = now - self.config.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def failures(self, address: str) -> int:
        """Failures from ``address`` within the window."""
        times = self._recent(address, self._clock())
        return 0 if times is None else len(times)

    def delay_for(self, address: str) -> float:
        """Seconds to wait before handling the next attempt from ``address`` (0.0: none)."""
        excess = self.failures(address) - self.config.threshold
        if excess < 0:
            return 0.0
        # Cap the exponent before computing: 2 ** huge would overflow a float.
        exponent = min(excess, 63)
        return min(self.config.max_delay, self.config.base_delay * float(2**exponent))

    def record_failure(self, address: str) -> float:
        """Count a failed authentication; returns the delay now due for that address."""
        now = self._clock()
        times = self._recent(address, now)
        if times is None:
            times = deque()
            self._failures[address] = times
            while len(self._failures) > self.config.max_addresses:
                self._failures.popitem(last=False)
        times.append(now)
        # Keep memory per address bounded: beyond this many the delay is capped anyway.
        while len(times) > self.config.threshold + 64:
            times.popleft()
        self._failures.move_to_end(address)
        return self.delay_for(address)

    def record_success(self, address: str) -> None:
        self._failures.pop(address, None)

    def __len__(self) -> int:
        return len(self._failures)
