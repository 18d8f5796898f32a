"""One event-loop timer armed for the next deadline a pure coordinator reports (the group
and transaction services drive their coordinators' ``tick()`` with it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .broker import Broker


class DeadlineTimer:
    def __init__(self, broker: Broker, fire: Callable[[], None]) -> None:
        self._broker = broker
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._at: int | None = None

    def arm(self, deadline: int | None) -> None:
        """Fire at ``deadline`` (ms on the broker's clock; None: never). Re-arming for the
        deadline already armed is free."""
        loop = self._broker.loop
        if loop is None:
            return
        if deadline == self._at and (deadline is None or self._handle is not None):
            return
        self.cancel()
        self._at = deadline
        if deadline is not None:
            delay = max(0.0, (deadline - self._broker.now_ms()) / 1000)
            self._handle = loop.call_later(delay, self._on_time)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = None

    def _on_time(self) -> None:
        self._handle = None
        self._at = None
        self._fire()
