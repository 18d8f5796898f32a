"""Share-group membership (ShareGroupHeartbeat), the simple assignor and share sessions."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.coordinator.share_group import ShareGroupCoordinator, ShareGroupSettings, assign
from riverbed.protocol.errors import ErrorCode

T1, T2 = uuid.UUID(int=1), uuid.UUID(int=2)


class Topics:
    def __init__(self, parts: dict[str, int]) -> None:
        self.parts = parts

    def topic_id(self, name: str) -> uuid.UUID | None:
        return {"t1": T1, "t2": T2}.get(name) if name in self.parts else None

    def partitions(self, name: str) -> int | None:
        return self.parts.get(name)


class Clock:
    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def coordinator(parts: dict[str, int] | None = None) -> tuple[ShareGroupCoordinator, Clock]:
    clock = Clock()
    cfg = ShareGroupSettings(session_timeout_ms=1000, heartbeat_interval_ms=100)
    return ShareGroupCoordinator(clock, Topics(parts or {"t1": 1, "t2": 4}), lambda g: cfg), clock


@settings(max_examples=50, deadline=None)
@given(members=st.integers(1, 8), partitions=st.integers(1, 8))
def test_assignor_covers_every_partition_and_every_member(members: int, partitions: int) -> None:
    out = assign({f"m{i}": ["t1"] for i in range(members)}, Topics({"t1": partitions}))
    covered = sorted({p for a in out.values() for p in a.get(T1, [])})
    assert covered == list(range(partitions))
    assert all(a.get(T1) for a in out.values())  # nobody idle: members may share a partition
    sizes = [len(a[T1]) for a in out.values()]
    assert max(sizes) - min(sizes) <= 1


def test_join_assign_leave_and_epochs() -> None:
    c, _ = coordinator()
    r, _ = c.heartbeat("g", "m1", 0, None, ["t1"])
    assert r.error == 0 and r.epoch > 0 and r.assignment == [(T1, [0])]
    first = r.epoch
    r2, _ = c.heartbeat("g", "m2", 0, None, ["t1"])
    assert r2.assignment == [(T1, [0])]  # one partition, shared
    r, _ = c.heartbeat("g", "m1", first, None, None)
    assert r.error == 0 and r.epoch == r2.epoch > first and r.assignment == [(T1, [0])]
    stale, _ = c.heartbeat("g", "m1", first, None, None)
    assert stale.error == ErrorCode.FENCED_MEMBER_EPOCH
    unknown, _ = c.heartbeat("g", "zz", 3, None, None)
    assert unknown.error == ErrorCode.UNKNOWN_MEMBER_ID
    left, gone = c.heartbeat("g", "m2", -1, None, None)
    assert left.error == 0 and left.epoch == -1 and gone == ["m2"]
    assert c.list_groups(None, {"Share"}) == [("g", "Stable")]
    assert c.list_groups(None, {"consumer"}) == []


def test_bad_heartbeats() -> None:
    c, _ = coordinator()
    assert c.heartbeat("", "m", 0, None, ["t1"])[0].error == ErrorCode.INVALID_REQUEST
    assert c.heartbeat("g", "", 0, None, ["t1"])[0].error == ErrorCode.INVALID_REQUEST
    assert (
        c.heartbeat("g", "m", 0, None, None)[0].error == ErrorCode.INVALID_REQUEST
    )  # no subscription


def test_session_timeout_removes_member() -> None:
    c, clock = coordinator()
    c.heartbeat("g", "m1", 0, None, ["t2"])
    assert c.next_deadline() == 1000
    clock.t = 1000
    gone, _ = c.tick()
    assert gone == [("g", "m1")]
    assert c.group("g").members == {}


def test_share_sessions() -> None:
    c, _ = coordinator()
    assert c.open_session("g", "m1", 0)[0] == ErrorCode.UNKNOWN_MEMBER_ID
    assert c.open_session("g", "m1", 1)[0] == ErrorCode.SHARE_SESSION_NOT_FOUND
    c.heartbeat("g", "m1", 0, None, ["t1"])
    err, s = c.open_session("g", "m1", 0)
    assert err == 0 and s is not None and s.epoch == 1
    assert c.open_session("g", "m1", 2)[0] == ErrorCode.INVALID_SHARE_SESSION_EPOCH
    assert c.open_session("g", "m1", 1)[0] == 0
    assert c.session_check("g", "m1", 2) == 0  # ShareAcknowledge moves the epoch too
    assert c.session_check("g", "m1", 2) == ErrorCode.INVALID_SHARE_SESSION_EPOCH
    assert c.session_check("g", "m1", 0) == ErrorCode.INVALID_SHARE_SESSION_EPOCH
    assert c.open_session("g", "m1", -1)[0] == 0
    assert c.session_check("g", "m1", 4) == ErrorCode.SHARE_SESSION_NOT_FOUND
