"""Upcasters: functions that turn an event's data at version N into its data at N+1.

Registered per (event type, from version) and chained on read (v1 -> v2 -> v3), so the stored
events are never rewritten. Each upcaster is a plain function, testable in isolation::

    upcasters = Upcasters()

    @upcasters.register("OrderPlaced", 1)
    def order_placed_v1_to_v2(data):
        return {**data, "currency": "USD"}

    upcasters.upcast("OrderPlaced", 1, {"amount": 5}, to_version=2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import NoUpcastPath

Data = dict[str, Any]
Upcaster = Callable[[Data], Data]


class Upcasters:
    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: ``fn(data at from_version) -> data at from_version + 1``."""

        def deco(fn: Upcaster) -> Upcaster:
            self.add(event_type, from_version, fn)
            return fn

        return deco

    def add(self, event_type: str, from_version: int, fn: Upcaster) -> None:
        key = (event_type, from_version)
        if key in self._steps:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        self._steps[key] = fn

    def upcast(self, event_type: str, version: int, data: Data, to_version: int) -> Data:
        """``data`` of ``event_type`` at ``version`` as it reads at ``to_version``. Raises
        NoUpcastPath when a step is missing or the stored version is newer than the code."""
        if version > to_version:
            raise NoUpcastPath(f"{event_type} v{version} is newer than the v{to_version} this code reads (deploy the newer code)")
        while version < to_version:
            step = self._steps.get((event_type, version))
            if step is None:
                raise NoUpcastPath(f"no upcaster from {event_type} v{version} towards v{to_version} (register one for ({event_type!r}, {version}))")
            data = step(dict(data))
            if not isinstance(data, dict):
                raise NoUpcastPath(f"the upcaster of {event_type} v{version} returned {type(data).__name__}, not a dict")
            version += 1
        return data
