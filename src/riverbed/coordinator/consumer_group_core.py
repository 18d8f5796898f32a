"""Plumbing shared by the KIP-848 consumer-group coordinator's layers: the group registry,
the timer queue, the clock, and the report of changed groups.

The coordinator is split like the classic one, each layer a class on top of the previous one:
ConsumerCoordinatorCore (this module) <- ConsumerGroupAdmin (consumer_group_admin.py:
describe, list, delete, offsets checks, loading) <- ConsumerGroupCoordinator
(consumer_group.py: heartbeats, assignment, reconciliation, timers).
"""

from __future__ import annotations

import base64
import functools
import uuid
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from riverbed.coordinator.assignors import ASSIGNORS
from riverbed.coordinator.consumer_group_model import ConsumerGroup
from riverbed.coordinator.consumer_group_types import (
    ConsumerGroupChanged,
    ConsumerGroupConfig,
    ConsumerGroupDeleted,
    ConsumerGroupEvent,
    ConsumerGroupSnapshot,
    ConsumerGroupState,
    TopicView,
)
from riverbed.coordinator.group_timers import TimerQueue
from riverbed.protocol.errors import ErrorCode

SESSION_TIMER = "session"  # (kind, group id, member id): the member's heartbeat deadline
REVOKE_TIMER = "revoke"  # (kind, group id, member id): the member must revoke by then
GROUP_TYPE = "consumer"

_C = TypeVar("_C", bound="ConsumerCoordinatorCore")
_P = ParamSpec("_P")
_R = TypeVar("_R")


class Reject(Exception):
    """Ends a request with an error; raised before the request changed anything."""

    def __init__(self, error: ErrorCode | int, message: str) -> None:
        super().__init__(message)
        self.error = int(error)
        self.message = message


def entry(method: Callable[Concatenate[_C, _P], _R]) -> Callable[Concatenate[_C, _P], _R]:
    """For public entry points: read the clock once, then report the groups that changed."""

    @functools.wraps(method)
    def wrapper(self: _C, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        outermost = not self._busy
        if outermost:
            self._busy = True
            self._now = self._clock()
        try:
            return method(self, *args, **kwargs)
        finally:
            if outermost:
                self._busy = False
                self._flush()

    return wrapper


def kafka_uuid() -> str:
    """A member id as Kafka makes them (Uuid.toString: url-safe base64 without padding)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class ConsumerCoordinatorCore:
    """Registry, timers and change reports shared by the coordinator's layers."""

    def __init__(
        self,
        clock: Callable[[], int],
        topics: TopicView,
        config: ConsumerGroupConfig | None = None,
        *,
        on_change: Callable[[ConsumerGroupEvent], None] | None = None,
        new_member_id: Callable[[], str] | None = None,
    ) -> None:
        self.config = config or ConsumerGroupConfig()
        unknown = [name for name in self.config.assignors if name not in ASSIGNORS]
        if unknown or not self.config.assignors:
            raise ValueError(f"unsupported or missing server assignors: {unknown}")
        self._clock = clock
        self._topics = topics
        self._on_change = on_change
        self._new_member_id = new_member_id or kafka_uuid
        self._groups: dict[str, ConsumerGroup] = {}
        self._timers = TimerQueue()
        self._dirty: dict[str, None] = {}  # groups to report, in order of first change
        self._busy = False
        self._now = clock()

    def member_counts(self) -> dict[str, int]:
        """Members of every KIP-848 group (for the metrics endpoint)."""
        return {gid: len(g.members) for gid, g in self._groups.items()}

    @property
    def default_assignor(self) -> str:
        return self.config.assignors[0]

    def next_deadline(self) -> int | None:
        """The earliest time (clock ms) at which `tick()` has work, or None."""
        return self._timers.next_deadline()

    def has_group(self, group_id: str) -> bool:
        return group_id in self._groups

    def group_state(self, group_id: str) -> ConsumerGroupState | None:
        group = self._groups.get(group_id)
        return group.state if group is not None else None

    def snapshot(self, group_id: str) -> ConsumerGroupSnapshot | None:
        """The group as it would be persisted now (None for an unknown group)."""
        group = self._groups.get(group_id)
        return group.snapshot() if group is not None else None

    def _changed(self, group: ConsumerGroup) -> None:
        self._dirty[group.group_id] = None

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        sink = self._on_change
        if sink is None:
            return
        for group_id in dirty:
            group = self._groups.get(group_id)
            if group is None:
                sink(ConsumerGroupDeleted(group_id))
            else:
                sink(ConsumerGroupChanged(group_id, group.snapshot()))
