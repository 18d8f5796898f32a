"""ConsumerGroupDescribe, ListGroups, DeleteGroups, the OffsetCommit / OffsetFetch epoch
checks, change events and recovery of KIP-848 groups."""

from __future__ import annotations

from test_consumer_group_helpers import REBALANCE, SESSION, Harness, settle

from riverbed.coordinator.consumer_group import (
    ConsumerGroupChanged,
    ConsumerGroupCoordinator,
    ConsumerGroupDeleted,
    ConsumerGroupState,
)
from riverbed.coordinator.consumer_group_types import DescribedTopicPartitions
from riverbed.protocol.errors import ErrorCode


def test_describe_reports_everything_consumer_group_describe_needs() -> None:
    h = Harness()
    h.join("a", instance_id="i-a", rack_id="r1", client_id="cli", client_host="/10.0.0.1")
    [d] = h.coord.describe(["g"])
    assert (d.group_id, d.error, d.error_message) == ("g", ErrorCode.NONE, None)
    assert (d.group_state, d.group_epoch, d.assignment_epoch, d.assignor_name) == (
        "Stable",
        1,
        1,
        "uniform",
    )
    [m] = d.members
    assert (m.member_id, m.instance_id, m.rack_id, m.member_epoch) == ("a", "i-a", "r1", 1)
    assert (m.client_id, m.client_host) == ("cli", "/10.0.0.1")
    assert (m.subscribed_topic_names, m.subscribed_topic_regex) == (["t"], None)
    whole = [DescribedTopicPartitions(h.topics.id("t"), "t", [0, 1, 2, 3, 4, 5])]
    assert m.assignment == m.target_assignment == whole


def test_describe_unknown_and_invalid_groups() -> None:
    h = Harness()
    missing, blank = h.coord.describe(["nope", ""])
    assert (missing.error, missing.error_message) == (
        ErrorCode.GROUP_ID_NOT_FOUND,
        "Group nope not found.",
    )
    assert missing.group_state == "" and missing.members == []
    assert blank.error == ErrorCode.INVALID_GROUP_ID


def test_group_states() -> None:
    h = Harness()
    a, b = h.consumer("a"), h.consumer("b")
    a.poll()
    assert h.coord.group_state("g") is ConsumerGroupState.STABLE
    b.poll()
    assert h.coord.group_state("g") is ConsumerGroupState.RECONCILING
    settle([a, b])
    assert h.coord.group_state("g") is ConsumerGroupState.STABLE
    b.leave()
    assert h.coord.group_state("g") is ConsumerGroupState.ASSIGNING
    a.leave()
    assert h.coord.group_state("g") is ConsumerGroupState.EMPTY
    assert h.coord.group_state("other") is None


def test_list_groups_filters() -> None:
    h = Harness()
    h.join("a", group="g1")
    h.join("b", group="g2")
    h.hb("b", -1, group="g2")
    assert h.coord.list_groups() == [("g1", "consumer", "Stable"), ("g2", "consumer", "Empty")]
    assert h.coord.list_groups(states={"EMPTY"}) == [("g2", "consumer", "Empty")]
    assert h.coord.list_groups(types={"Consumer"}) == h.coord.list_groups()
    assert h.coord.list_groups(types={"classic"}) == []


def test_delete_group() -> None:
    h = Harness()
    h.join("a")
    assert h.coord.delete_group("g") == ErrorCode.NON_EMPTY_GROUP
    h.hb("a", -1)
    h.events.clear()
    assert h.coord.delete_group("g") == ErrorCode.NONE
    assert h.events == [ConsumerGroupDeleted("g")]
    assert h.coord.delete_group("g") == ErrorCode.GROUP_ID_NOT_FOUND


def test_commit_allowed_uses_the_member_epoch_as_generation() -> None:
    h = Harness()
    a, b = h.consumer("a"), h.consumer("b")
    settle([a, b])
    c = h.coord
    assert c.commit_allowed("g", "a", a.epoch) == ErrorCode.NONE
    assert c.commit_allowed("g", "a", a.epoch - 1) == ErrorCode.STALE_MEMBER_EPOCH
    assert c.commit_allowed("g", "a", a.epoch + 1) == ErrorCode.STALE_MEMBER_EPOCH
    assert c.commit_allowed("g", "zz", 1) == ErrorCode.UNKNOWN_MEMBER_ID
    assert c.commit_allowed("g", "", -1) == ErrorCode.UNKNOWN_MEMBER_ID  # group not empty
    assert c.commit_allowed("g", "a", a.epoch, api_version=8) == ErrorCode.UNSUPPORTED_VERSION
    assert c.commit_allowed("other", "a", 1) == ErrorCode.GROUP_ID_NOT_FOUND
    a.leave()
    b.leave()
    assert c.commit_allowed("g", "", -1) == ErrorCode.NONE  # admin commit to an empty group


def test_fetch_allowed() -> None:
    h = Harness()
    a = h.consumer("a")
    a.poll()
    c = h.coord
    assert c.fetch_allowed("g", None, -1) == ErrorCode.NONE
    assert c.fetch_allowed("g", "a", a.epoch) == ErrorCode.NONE
    assert c.fetch_allowed("g", "a", a.epoch + 1) == ErrorCode.STALE_MEMBER_EPOCH
    assert c.fetch_allowed("g", "b", 1) == ErrorCode.UNKNOWN_MEMBER_ID


def test_events_only_when_something_changed() -> None:
    h = Harness()
    a = h.consumer("a")
    a.poll()
    assert len(h.events) == 1
    event = h.events[0]
    assert isinstance(event, ConsumerGroupChanged) and event.group_id == "g"
    assert event.snapshot == h.coord.snapshot("g")
    h.events.clear()
    for _ in range(3):
        a.poll()
    assert h.events == []
    h.hb("a", a.epoch, rack_id="r9")
    assert len(h.events) == 1
    h.events.clear()
    assert h.join("a", server_assignor="sticky").error  # rejected: nothing changes
    assert h.events == []


def test_load_restores_groups_and_members_carry_on() -> None:
    h = Harness()
    a, b, c = h.consumer("a"), h.consumer("b"), h.consumer("c", instance_id="i-c")
    settle([a, b, c])
    c.poll()
    snapshot = h.coord.snapshot("g")
    assert snapshot is not None

    # A new coordinator (a restart) replays the last snapshot.
    h.clock.now += 1_000
    fresh = ConsumerGroupCoordinator(h.clock, h.topics, on_change=h.events.append)
    h.events.clear()
    fresh.load("g", snapshot)
    assert h.events == []
    assert fresh.describe(["g"]) == h.coord.describe(["g"])
    assert fresh.next_deadline() == h.clock.now + SESSION
    h.coord = fresh
    for x in (a, b, c):
        assert x.poll().error == ErrorCode.NONE
    assert h.events == []  # nothing moved
    settle([a, b, c])

    fresh.load("g", None)
    assert not fresh.has_group("g")
    assert fresh.next_deadline() is None


def test_load_mid_revocation_restarts_the_rebalance_timeout() -> None:
    h = Harness()
    a = h.consumer("a")
    a.poll()
    h.consumer("b").poll()
    h.hb("a", 1, owned=[(h.topics.id("t"), list(range(6)))])  # asked to revoke 3-5
    snapshot = h.coord.snapshot("g")
    assert snapshot is not None
    fresh = ConsumerGroupCoordinator(h.clock, h.topics)
    fresh.load("g", snapshot)
    assert fresh.next_deadline() == h.clock.now + REBALANCE
    h.clock.now += REBALANCE
    fresh.tick()
    assert [m.member_id for m in fresh.describe(["g"])[0].members] == ["b"]
