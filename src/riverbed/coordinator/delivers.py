"""The entry-point decorator shared by the pure coordinators: each public call reads the
injected clock once (``self._now``), and whatever the call produced (replies, events) is
delivered after it returns (``self._flush()``), so callbacks never run mid-transition."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar


class Clocked(Protocol):
    _now: int
    _clock: Callable[[], int]

    def _flush(self) -> None: ...


_C = TypeVar("_C", bound=Clocked)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def delivers(method: Callable[Concatenate[_C, _P], _R]) -> Callable[Concatenate[_C, _P], _R]:
    """For public entry points: read the clock once, then deliver what the call produced."""

    @functools.wraps(method)
    def wrapper(self: _C, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        self._now = self._clock()
        try:
            return method(self, *args, **kwargs)
        finally:
            self._flush()

    return wrapper
