"""Window definitions with Kafka Streams' semantics.

A time window covers ``[start, end)`` in milliseconds of event time. Tumbling windows are
hopping windows whose advance equals their size. A record with timestamp ``t`` belongs to
every window with ``start <= t < start + size`` whose start is a multiple of the advance (and
not negative). A window *closes* when ``end + grace <= stream time``; a record for a closed
window is late.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

K = TypeVar("K")


def to_ms(d: int | float | timedelta) -> int:
    """Milliseconds from an int (already ms) or a timedelta."""
    if isinstance(d, timedelta):
        return int(d.total_seconds() * 1000)
    return int(d)


@dataclass(frozen=True, slots=True, order=True)
class Window:
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Windowed(Generic[K]):
    """A key of a windowed aggregation: the record key and its window."""

    key: K
    window: Window


# Kafka Streams' default grace when none is given used to be 24 h; since 3.0 callers must say.
# riverbed's default is no grace (``ofSizeWithNoGrace``), the explicit and predictable choice.
DEFAULT_RETENTION_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TimeWindows:
    """Tumbling (``advance == size``) or hopping (``advance < size``) windows."""

    size_ms: int
    advance_ms: int
    grace_ms: int = 0

    @staticmethod
    def of(size: int | timedelta, grace: int | timedelta = 0) -> TimeWindows:
        s = to_ms(size)
        if s <= 0:
            raise ValueError("window size must be positive")
        g = to_ms(grace)
        if g < 0:
            raise ValueError("grace must not be negative")
        return TimeWindows(s, s, g)

    def advance_by(self, advance: int | timedelta) -> TimeWindows:
        a = to_ms(advance)
        if a <= 0 or a > self.size_ms:
            raise ValueError("advance must be positive and at most the window size")
        return TimeWindows(self.size_ms, a, self.grace_ms)

    def grace(self, grace: int | timedelta) -> TimeWindows:
        g = to_ms(grace)
        if g < 0:
            raise ValueError("grace must not be negative")
        return TimeWindows(self.size_ms, self.advance_ms, g)

    def windows_for(self, ts: int) -> list[Window]:
        """The windows a timestamp falls in, oldest first."""
        start = max(0, ts - self.size_ms + self.advance_ms) // self.advance_ms * self.advance_ms
        out = []
        while start <= ts:
            out.append(Window(start, start + self.size_ms))
            start += self.advance_ms
        return out


@dataclass(frozen=True, slots=True)
class SessionWindows:
    """Sessions per key: records at most ``gap_ms`` apart fall in one session.

    A session is ``[start, end]``, both ends inclusive (its first and last record's timestamps).
    With ``close = stream time - gap - grace``, a session is closed once ``end < close``.
    """

    gap_ms: int
    grace_ms: int = 0

    @staticmethod
    def with_inactivity_gap(gap: int | timedelta, grace: int | timedelta = 0) -> SessionWindows:
        g, gr = to_ms(gap), to_ms(grace)
        if g <= 0:
            raise ValueError("the inactivity gap must be positive")
        if gr < 0:
            raise ValueError("grace must not be negative")
        return SessionWindows(g, gr)


@dataclass(frozen=True, slots=True)
class SlidingWindows:
    """Windows of ``time_difference_ms`` that slide with the records (Kafka's SlidingWindows).

    A window is ``[start, start + time_difference]``, both ends inclusive; the windows that exist
    for a key are, for each of its records at ``t``, the one ending at ``t`` and, when it holds
    records, the one starting at ``t + 1``. Records earlier than the time difference share the
    window ``[0, time_difference]``. With ``close = stream time - grace`` a window with
    ``end < close`` is closed; a record with ``t + 1 + time_difference <= close`` is late.
    """

    time_difference_ms: int
    grace_ms: int = 0

    @staticmethod
    def of(time_difference: int | timedelta, grace: int | timedelta = 0) -> SlidingWindows:
        td, gr = to_ms(time_difference), to_ms(grace)
        if td <= 0:
            raise ValueError("the time difference must be positive")
        if gr < 0:
            raise ValueError("grace must not be negative")
        return SlidingWindows(td, gr)


@dataclass(frozen=True, slots=True)
class JoinWindows:
    """How far apart in time two records may be to join (Kafka's JoinWindows): a left record at
    ``t`` joins right records in ``[t - before, t + after]``; a record is late once
    ``t + after + grace < stream time`` (left side; ``before`` for the right side)."""

    before_ms: int
    after_ms: int
    grace_ms: int = 0

    @staticmethod
    def of(time_difference: int | timedelta, grace: int | timedelta = 0) -> JoinWindows:
        d, g = to_ms(time_difference), to_ms(grace)
        if d < 0 or g < 0:
            raise ValueError("the time difference and grace must not be negative")
        return JoinWindows(d, d, g)

    def before(self, time_difference: int | timedelta) -> JoinWindows:
        """Kafka's ``JoinWindows#before``: a left record at ``t`` joins right records from
        ``t - time_difference`` (may be negative); the end bound is kept."""
        return self._with(to_ms(time_difference), self.after_ms)

    def after(self, time_difference: int | timedelta) -> JoinWindows:
        """Kafka's ``JoinWindows#after``: a left record at ``t`` joins right records up to
        ``t + time_difference`` (may be negative); the start bound is kept."""
        return self._with(self.before_ms, to_ms(time_difference))

    def _with(self, before: int, after: int) -> JoinWindows:
        if before + after < 0:
            raise ValueError(f"the window interval (before + after = {before} + {after}) must not be negative")
        return JoinWindows(before, after, self.grace_ms)
