"""How long to hold back the answer to a failed authentication.

Pure: the clock is injected and nothing sleeps here. The server reports each failed login
with :meth:`FailedAuthThrottle.record_failure` and delays *that connection's* failure answer
(and its close) by the seconds returned. A successful login is never delayed, and nothing is
delayed before credentials are checked: a client with a stale password retrying in a loop
slows itself down, not the other clients behind the same address (a host, a NAT gateway, a
Kubernetes node).

Every failure waits at least ``failure_delay`` (Kafka's
``connection.failed.authentication.delay.ms``, 100 ms by default). On top of that, repeated
failures back off exponentially, counted both per client address (one host guessing, or
trying many user names) and per user name (many hosts guessing one user's password):

    backoff(key) = 0                                                  if failures < threshold
    backoff(key) = min(max_delay, base_delay * 2 ** (failures - threshold))   otherwise
    delay        = max(failure_delay, backoff(address), backoff(user))

Failures older than ``window`` seconds are forgotten; a success does not reset the count (or
a guesser who also holds one valid login could clear its own record). The table is bounded:
at most ``max_keys`` keys (when full, the key with the oldest last failure is dropped) and at
most as many failure times per key as it takes to reach ``max_delay``; user names are cut to
``MAX_USER_CHARS`` characters. Addresses are hosts without the port (every new connection
gets a new port).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_USER_CHARS", "FailedAuthThrottle", "ThrottleConfig"]

MAX_USER_CHARS = 256


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    failure_delay: float = 0.1  # connection.failed.authentication.delay.ms
    threshold: int = 3
    window: float = 300.0
    base_delay: float = 0.5
    # below the 30 s after which an unauthenticated SASL connection is closed, so that the
    # delayed failure answer is still sent
    max_delay: float = 15.0
    max_keys: int = 10_000

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.window <= 0 or self.base_delay < 0 or self.failure_delay < 0:
            raise ValueError("threshold >= 1, window > 0, base_delay >= 0 and failure_delay >= 0 are required")
        if self.max_delay < self.base_delay or self.max_keys < 1:
            raise ValueError("max_delay >= base_delay and max_keys >= 1 are required")

    @property
    def max_failures_kept(self) -> int:
        """Failure times worth keeping per key: beyond these the backoff is capped anyway."""
        if self.base_delay <= 0 or self.max_delay <= self.base_delay:
            return self.threshold
        return self.threshold + math.ceil(math.log2(self.max_delay / self.base_delay))


class FailedAuthThrottle:
    def __init__(
        self,
        config: ThrottleConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or ThrottleConfig()
        self._clock = clock
        # Failures are recorded where the credentials are checked, in executor threads.
        self._lock = threading.Lock()
        # key -> times of recent failures; ordered by last failure (oldest first)
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.failures_total = 0

    @staticmethod
    def _keys(address: str, user: str | None) -> list[str]:
        keys = [f"host {address}"]
        if user is not None:
            keys.append(f"user {user[:MAX_USER_CHARS]}")
        return keys

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        horizon = now - self.config.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _backoff(self, key: str, now: float) -> float:
        times = self._recent(key, now)
        excess = (0 if times is None else len(times)) - self.config.threshold
        if excess < 0:
            return 0.0
        # Cap the exponent before computing: 2 ** huge would overflow a float.
        return min(self.config.max_delay, self.config.base_delay * float(2 ** min(excess, 63)))

    def failures(self, address: str, user: str | None = None) -> int:
        """Recent failures counted for ``user`` if given, else for ``address``."""
        key = self._keys(address, user)[-1]
        with self._lock:
            times = self._recent(key, self._clock())
            return 0 if times is None else len(times)

    def delay_for(self, address: str, user: str | None = None) -> float:
        """The delay a failure from ``address`` (as ``user``) would get now, not counting it."""
        with self._lock:
            return self._delay(address, user, self._clock())

    def _delay(self, address: str, user: str | None, now: float) -> float:
        backoff = max(self._backoff(key, now) for key in self._keys(address, user))
        return max(self.config.failure_delay, backoff)

    def record_failure(self, address: str, user: str | None = None) -> float:
        """Count a failed login; returns the seconds to hold back its failure answer."""
        with self._lock:
            self.failures_total += 1  # every failed login since start (metrics)
            return self._record(address, user, self._clock())

    def _record(self, address: str, user: str | None, now: float) -> float:
        for key in self._keys(address, user):
            times = self._recent(key, now)
            if times is None:
                times = deque(maxlen=self.config.max_failures_kept)
                self._failures[key] = times
                while len(self._failures) > self.config.max_keys:
                    self._failures.popitem(last=False)
            times.append(now)
            self._failures.move_to_end(key)
        return self._delay(address, user, now)

    def __len__(self) -> int:
        return len(self._failures)
