"""Test helpers for the classic group coordinator: a fake clock, reply boxes, a harness."""

from __future__ import annotations

import itertools
import struct
from typing import Generic, TypeVar

from riverbed.coordinator.group import (
    GroupConfig,
    GroupCoordinator,
    GroupEvent,
    JoinResult,
    SyncResult,
)
from riverbed.protocol.errors import ErrorCode

T = TypeVar("T")

START = 1_000_000
SESSION = 10_000
REBALANCE = 30_000
# No initial delay unless a test asks for one: joins complete as soon as everyone is in.
CONFIG = GroupConfig(initial_rebalance_delay_ms=0)


class FakeClock:
    def __init__(self, now: int = START) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Box(Generic[T]):
    """Receives the answer to one parked call; answering twice fails the test."""

    def __init__(self) -> None:
        self.results: list[T] = []

    def __call__(self, result: T) -> None:
        assert not self.results, f"answered twice: {self.results[0]!r} then {result!r}"
        self.results.append(result)

    @property
    def done(self) -> bool:
        return bool(self.results)

    @property
    def value(self) -> T:
        assert self.results, "not answered yet"
        return self.results[0]


def subscription(*topics: str, version: int = 0) -> bytes:
    """A ConsumerProtocolSubscription v0 (topics, null user data)."""
    out = struct.pack(">hi", version, len(topics))
    for topic in topics:
        raw = topic.encode()
        out += struct.pack(">h", len(raw)) + raw
    return out + struct.pack(">i", -1)


def protocols(*topics: str, names: tuple[str, ...] = ("range",)) -> list[tuple[str, bytes]]:
    meta = subscription(*(topics or ("t",)))
    return [(name, meta) for name in names]


class Harness:
    def __init__(self, config: GroupConfig = CONFIG) -> None:
        self.clock = FakeClock()
        self.events: list[GroupEvent] = []
        ids = itertools.count(1)
        self.coord = GroupCoordinator(
            self.clock, config, on_change=self.events.append, new_uuid=lambda: f"u{next(ids)}"
        )

    def join(
        self,
        member_id: str = "",
        *,
        group: str = "g",
        instance: str | None = None,
        client_id: str = "client",
        session: int = SESSION,
        rebalance: int = REBALANCE,
        protocol_type: str = "consumer",
        protos: list[tuple[str, bytes]] | None = None,
        require_known: bool = False,
        skip: bool = False,
    ) -> Box[JoinResult]:
        box: Box[JoinResult] = Box()
        self.coord.join_group(
            group,
            member_id,
            instance,
            client_id,
            "/127.0.0.1",
            session,
            rebalance,
            protocol_type,
            protocols() if protos is None else protos,
            require_known_member_id=require_known,
            reason=None,
            reply=box,
            supports_skip_assignment=skip,
        )
        return box

    def sync(
        self,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes] | None = None,
        *,
        group: str = "g",
        instance: str | None = None,
        protocol_type: str | None = "consumer",
        protocol_name: str | None = None,
    ) -> Box[SyncResult]:
        box: Box[SyncResult] = Box()
        self.coord.sync_group(
            group,
            generation,
            member_id,
            instance,
            protocol_type,
            protocol_name,
            assignments or {},
            reply=box,
        )
        return box

    def heartbeat(
        self, member_id: str, generation: int, *, group: str = "g", instance: str | None = None
    ) -> int:
        return self.coord.heartbeat(group, generation, member_id, instance)

    def advance(self, ms: int) -> None:
        """Move the clock, running every deadline on the way at its own time."""
        target = self.clock.now + ms
        while (deadline := self.coord.next_deadline()) is not None and deadline <= target:
            self.clock.now = max(self.clock.now, deadline)
            self.coord.tick()
        self.clock.now = target
        self.coord.tick()

    def state(self, group: str = "g") -> str | None:
        state = self.coord.group_state(group)
        return state.value if state is not None else None

    def stable_group(self, n: int, *, group: str = "g") -> list[JoinResult]:
        """n dynamic members join one generation, the leader assigns b"<member id>" to each,
        everyone syncs. Returns the join results in joining order (leader first)."""
        boxes = [self.join(group=group, client_id=f"c{i}") for i in range(n)]
        # With no initial delay the first join completes alone; the others rejoin.
        first = boxes[0].value
        if n > 1:
            boxes[0] = self.join(first.member_id, group=group, client_id="c0")
        results = [box.value for box in boxes]
        generation = results[0].generation_id
        assert all(r.error == ErrorCode.NONE and r.generation_id == generation for r in results)
        leader = results[0].leader
        assignments = {r.member_id: r.member_id.encode() for r in results}
        syncs = [
            self.sync(
                r.member_id, generation, assignments if r.member_id == leader else None, group=group
            )
            for r in results
        ]
        assert all(s.value.error == ErrorCode.NONE for s in syncs)
        assert self.state(group) == "Stable"
        return results
