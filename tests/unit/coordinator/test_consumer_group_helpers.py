"""Test helpers for the KIP-848 coordinator (no tests here): a fake clock and topic view, a
harness, and a well-behaved simulated consumer."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from riverbed.coordinator.consumer_group import (
    ConsumerGroupConfig,
    ConsumerGroupCoordinator,
    ConsumerGroupEvent,
    HeartbeatInput,
    HeartbeatOutput,
)
from riverbed.protocol.errors import ErrorCode

START = 1_000_000
SESSION = 45_000
REBALANCE = 30_000
GROUP = "g"


class FakeClock:
    def __init__(self, now: int = START) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class FakeTopics:
    """A TopicView over a dict; a re-created topic gets a new id, as in Kafka."""

    def __init__(self, **topics: int) -> None:
        self._ids = itertools.count()
        self.topics: dict[str, tuple[uuid.UUID, int]] = {}
        for name, partitions in topics.items():
            self.create(name, partitions)

    def create(self, name: str, partitions: int) -> uuid.UUID:
        topic_id = uuid.UUID(int=(next(self._ids) + 1) << 64 | len(name))
        self.topics[name] = (topic_id, partitions)
        return topic_id

    def delete(self, name: str) -> None:
        del self.topics[name]

    def grow(self, name: str, partitions: int) -> None:
        self.topics[name] = (self.topics[name][0], partitions)

    def id(self, name: str) -> uuid.UUID:
        return self.topics[name][0]

    # TopicView
    def topic_id(self, name: str) -> uuid.UUID | None:
        entry = self.topics.get(name)
        return entry[0] if entry else None

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        for name, (tid, _) in self.topics.items():
            if tid == topic_id:
                return name
        return None

    def partitions(self, name: str) -> int | None:
        entry = self.topics.get(name)
        return entry[1] if entry else None

    def topic_names(self) -> list[str]:
        return list(self.topics)


Owned = list[tuple[uuid.UUID, list[int]]]


def owned(assignment: dict[uuid.UUID, set[int]]) -> Owned:
    return [(t, sorted(ps)) for t, ps in sorted(assignment.items()) if ps]


class Harness:
    def __init__(
        self,
        config: ConsumerGroupConfig | None = None,
        *,
        names: dict[str, int] | None = None,
        **topics: int,
    ) -> None:
        self.clock = FakeClock()
        self.topics = FakeTopics(**(names or topics or {"t": 6}))
        self.events: list[ConsumerGroupEvent] = []
        ids = itertools.count(1)
        self.coord = ConsumerGroupCoordinator(
            self.clock,
            self.topics,
            config,
            on_change=self.events.append,
            new_member_id=lambda: f"gen{next(ids)}",
        )

    def hb(
        self,
        member_id: str,
        epoch: int,
        *,
        owned: Owned | None = None,
        group: str = GROUP,
        **fields: Any,
    ) -> HeartbeatOutput:
        req = HeartbeatInput(group, member_id, epoch, topic_partitions=owned, **fields)
        return self.coord.heartbeat(req)

    def join(
        self,
        member_id: str,
        topics: Sequence[str] | None = ("t",),
        *,
        group: str = GROUP,
        **fields: Any,
    ) -> HeartbeatOutput:
        fields.setdefault("rebalance_timeout_ms", REBALANCE)
        if topics is not None:
            fields.setdefault("subscribed_topic_names", list(topics))
        return self.hb(member_id, 0, owned=[], group=group, **fields)

    def consumer(self, member_id: str, topics: Sequence[str] = ("t",), **kw: Any) -> Consumer:
        return Consumer(self, member_id, list(topics), **kw)

    def advance(self, ms: int) -> None:
        self.clock.now += ms
        self.coord.tick()

    def describe(self, group: str = GROUP) -> dict[str, object]:
        d = self.coord.describe([group])[0]
        return {"state": d.group_state, "epoch": d.group_epoch, "assignment": d.assignment_epoch}

    def members(self, group: str = GROUP) -> dict[str, dict[str, list[int]]]:
        """member id -> {topic name: partitions} of the current (server-side) assignment."""
        d = self.coord.describe([group])[0]
        return {
            m.member_id: {tp.topic_name: tp.partitions for tp in m.assignment} for m in d.members
        }


@dataclass
class Consumer:
    """A client that does what KIP-848 asks: it adopts every assignment it is sent at once
    (revoking what is gone), reports its ownership when it changed, and rejoins when fenced."""

    harness: Harness
    member_id: str
    topics: list[str]
    instance_id: str | None = None
    assignor: str | None = None
    regex: str | None = None
    epoch: int = 0
    joined: bool = False
    owned: dict[uuid.UUID, set[int]] = field(default_factory=dict)
    reported: Owned | None = None
    errors: list[int] = field(default_factory=list)
    last: HeartbeatOutput | None = None

    def poll(self, *, full: bool = False) -> HeartbeatOutput:
        """One heartbeat: a join when not in the group, else a regular one."""
        h = self.harness
        if not self.joined:
            resp = h.join(
                self.member_id,
                self.topics,
                instance_id=self.instance_id,
                server_assignor=self.assignor,
                subscribed_topic_regex=self.regex,
            )
            self.reported = []
        else:
            mine = owned(self.owned)
            send = full or mine != self.reported
            resp = h.hb(
                self.member_id,
                self.epoch,
                owned=mine if send else None,
                instance_id=self.instance_id,
            )
            if send:
                self.reported = mine
        self._apply(resp)
        return resp

    def _apply(self, resp: HeartbeatOutput) -> None:
        self.last = resp
        if resp.error:
            self.errors.append(resp.error)
            self.fenced()
            return
        assert resp.member_id == self.member_id
        self.joined = True
        self.epoch = resp.member_epoch
        if resp.assignment is not None:
            self.owned = {t: set(ps) for t, ps in resp.assignment}

    def fenced(self) -> None:
        """Drop everything and rejoin with the same member id (v1 behaviour)."""
        self.joined, self.epoch, self.owned, self.reported = False, 0, {}, None

    def leave(self, epoch: int = -1) -> HeartbeatOutput:
        resp = self.harness.hb(self.member_id, epoch, instance_id=self.instance_id)
        self.fenced()
        return resp

    def partitions(self, topic: str = "t") -> list[int]:
        return sorted(self.owned.get(self.harness.topics.id(topic), set()))


def settle(consumers: Iterable[Consumer], rounds: int = 10) -> None:
    """Heartbeat everyone until the group is Stable and nobody's assignment moves."""
    crowd = list(consumers)
    for _ in range(rounds):
        for c in crowd:
            c.poll()
        for c in crowd:
            c.poll()
        h = crowd[0].harness
        if h.describe()["state"] == "Stable" and all(
            c.last is not None and c.last.assignment is None and not c.last.error for c in crowd
        ):
            return
    raise AssertionError(f"group did not settle: {crowd[0].harness.describe()}")


NONE = ErrorCode.NONE
