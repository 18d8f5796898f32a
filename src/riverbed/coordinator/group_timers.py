"""Deadlines by key, for a machine that is told the time instead of reading it.

Each key has at most one wanted deadline (`set` replaces it, `cancel` drops it). The heap may
hold older entries; they are skipped or re-queued lazily, so moving a deadline later (a
heartbeat does this for every member, every few seconds) costs a dict write and no heap push.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable


class TimerQueue:
    def __init__(self) -> None:
        self._wanted: dict[Hashable, int] = {}  # key -> deadline it should fire at
        self._live: dict[Hashable, tuple[int, int]] = {}  # key -> (seq, deadline) of its entry
        self._heap: list[tuple[int, int, Hashable]] = []  # (deadline, seq, key)
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._wanted)

    def get(self, key: Hashable) -> int | None:
        return self._wanted.get(key)

    def set(self, key: Hashable, deadline: int) -> None:
        self._wanted[key] = deadline
        live = self._live.get(key)
        # A live entry at or before the new deadline is enough: when it comes due it is moved.
        if live is None or live[1] > deadline:
            self._push(key, deadline)

    def cancel(self, key: Hashable) -> None:
        self._wanted.pop(key, None)

    def next_deadline(self) -> int | None:
        self._settle()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int) -> Hashable | None:
        """The key of a deadline at or before `now` (earliest first), now forgotten; else None."""
        self._settle()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, key = heapq.heappop(self._heap)
        del self._live[key]
        del self._wanted[key]
        return key

    def _push(self, key: Hashable, deadline: int) -> None:
        seq = next(self._seq)
        self._live[key] = (seq, deadline)
        heapq.heappush(self._heap, (deadline, seq, key))

    def _settle(self) -> None:
        """Make the heap's top entry a live one whose deadline is the wanted one."""
        heap = self._heap
        while heap:
            deadline, seq, key = heap[0]
            live = self._live.get(key)
            if live is None or live[0] != seq:  # superseded by an earlier entry
                heapq.heappop(heap)
                continue
            wanted = self._wanted.get(key)
            if wanted is None:  # cancelled
                heapq.heappop(heap)
                del self._live[key]
                continue
            if wanted != deadline:  # moved later: re-queue at the wanted time
                heapq.heappop(heap)
                self._push(key, wanted)
                continue
            return
