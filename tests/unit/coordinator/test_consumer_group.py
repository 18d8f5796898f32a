"""ConsumerGroupHeartbeat: joining, assignment, revocation before reassignment, leaving,
timeouts, epochs, static members, validation, regex subscriptions and metadata changes."""

from __future__ import annotations

import pytest
from test_consumer_group_helpers import (
    REBALANCE,
    SESSION,
    Consumer,
    Harness,
    owned,
    settle,
)

from riverbed.coordinator.consumer_group import ConsumerGroupConfig
from riverbed.coordinator.consumer_group_types import INVALID_REGULAR_EXPRESSION
from riverbed.protocol.errors import ErrorCode


def assert_disjoint(*consumers: Consumer) -> None:
    seen: dict[tuple[object, int], str] = {}
    for c in consumers:
        for topic_id, partitions in c.owned.items():
            for p in partitions:
                assert (topic_id, p) not in seen, f"{topic_id}-{p}: {seen[(topic_id, p)]}, {c}"
                seen[(topic_id, p)] = c.member_id


# ----------------------------------------------------------------------------------------------
# Joining and assignment
# ----------------------------------------------------------------------------------------------


def test_first_member_gets_every_partition() -> None:
    h = Harness()
    resp = h.join("a")
    assert resp.error == ErrorCode.NONE
    assert resp.member_id == "a"
    assert resp.member_epoch == 1
    assert resp.heartbeat_interval_ms == 5000
    assert resp.assignment == [(h.topics.id("t"), [0, 1, 2, 3, 4, 5])]
    assert h.describe() == {"state": "Stable", "epoch": 1, "assignment": 1}


def test_three_members_six_partitions_revoke_before_reassign() -> None:
    h = Harness()
    a, b, c = h.consumer("a"), h.consumer("b"), h.consumer("c")
    a.poll()
    assert a.partitions() == [0, 1, 2, 3, 4, 5]

    # b joins: epoch 2. Everything it is due is still a's, so it gets nothing yet.
    rb = b.poll()
    assert (rb.member_epoch, rb.assignment) == (2, [])
    assert h.describe()["state"] == "Reconciling"

    # a is told to give up three partitions; it stays in epoch 1 until it has.
    ra = a.poll()
    assert ra.member_epoch == 1
    assert a.partitions() == [0, 1, 2]
    # b still gets nothing: a has not confirmed the revocation yet.
    assert b.poll().assignment is None
    assert b.partitions() == []

    # a confirms (its heartbeat no longer lists 3-5) and moves to epoch 2.
    ra = a.poll()
    assert ra.member_epoch == 2 and ra.assignment is None
    rb = b.poll()
    assert b.partitions() == [3, 4, 5]
    assert rb.member_epoch == 2
    assert h.describe() == {"state": "Stable", "epoch": 2, "assignment": 2}

    # c joins: both others give up one partition each, then c gets two.
    c.poll()
    assert c.epoch == 3 and c.partitions() == []
    for _ in range(2):
        for x in (a, b, c):
            x.poll()
            assert_disjoint(a, b, c)
    settle([a, b, c])
    assert sorted(len(x.partitions()) for x in (a, b, c)) == [2, 2, 2]
    assert sorted(a.partitions() + b.partitions() + c.partitions()) == list(range(6))
    assert {x.epoch for x in (a, b, c)} == {3}
    assert h.describe() == {"state": "Stable", "epoch": 3, "assignment": 3}


def test_member_waits_in_unreleased_partitions_with_the_new_epoch() -> None:
    h = Harness()
    a, b = h.consumer("a"), h.consumer("b")
    a.poll()
    b.poll()
    member_b = next(m for m in h.coord.describe(["g"])[0].members if m.member_id == "b")
    assert member_b.member_epoch == 2  # already in the target epoch ...
    assert member_b.assignment == []  # ... but waiting for a's partitions
    assert [tp.partitions for tp in member_b.target_assignment] == [[3, 4, 5]]


def test_assignment_is_only_sent_when_it_changed_or_on_a_full_request() -> None:
    h = Harness()
    a = h.consumer("a")
    a.poll()
    assert a.poll().assignment is None
    assert a.poll().assignment is None
    # A full request (timeout, subscription and ownership all set) always gets it.
    resp = h.hb(
        "a", a.epoch, owned=owned(a.owned), rebalance_timeout_ms=REBALANCE,
        subscribed_topic_names=["t"],
    )  # fmt: skip
    assert resp.assignment == [(h.topics.id("t"), [0, 1, 2, 3, 4, 5])]


def test_subscription_change_bumps_the_epoch_and_moves_partitions() -> None:
    h = Harness(t=2, u=2)
    a = h.consumer("a")
    a.poll()
    resp = h.hb("a", a.epoch, subscribed_topic_names=["u"])
    assert resp.member_epoch == 1  # must first give up t
    assert resp.assignment == []
    a.owned = {}
    resp = h.hb("a", 1, owned=[])
    assert resp.member_epoch == 2
    assert resp.assignment == [(h.topics.id("u"), [0, 1])]


def test_range_assignor_on_request() -> None:
    h = Harness(t=4, u=4)
    a, b = h.consumer("a", ["t", "u"], assignor="range"), h.consumer("b", ["t", "u"])
    settle([a, b])
    assert h.coord.describe(["g"])[0].assignor_name == "range"
    assert a.partitions("t") == a.partitions("u") == [0, 1]
    assert b.partitions("t") == b.partitions("u") == [2, 3]


# ----------------------------------------------------------------------------------------------
# Leaving and timeouts
# ----------------------------------------------------------------------------------------------


def test_leave_removes_the_member_and_bumps_the_group_epoch() -> None:
    h = Harness()
    a, b, c = h.consumer("a"), h.consumer("b"), h.consumer("c")
    settle([a, b, c])
    resp = c.leave()
    assert (resp.error, resp.member_id, resp.member_epoch) == (ErrorCode.NONE, "c", -1)
    assert h.describe() == {"state": "Assigning", "epoch": 4, "assignment": 3}
    settle([a, b])
    assert sorted(a.partitions() + b.partitions()) == list(range(6))
    assert h.describe()["epoch"] == 4
    a.leave()
    b.leave()
    assert h.describe()["state"] == "Empty"
    assert h.hb("a", 4).error == ErrorCode.UNKNOWN_MEMBER_ID


def test_session_expiry_fences_a_silent_member() -> None:
    h = Harness()
    a, b = h.consumer("a"), h.consumer("b")
    settle([a, b])
    assert h.coord.next_deadline() == h.clock.now + SESSION
    for _ in range(9):
        h.advance(5_000)
        a.poll()
    h.advance(5_001)  # b has been silent for longer than the session timeout
    assert list(h.members()) == ["a"]
    assert h.describe()["epoch"] == 3
    a.poll()
    assert a.partitions() == [0, 1, 2, 3, 4, 5]
    # b's next heartbeat is refused; it rejoins with the same member id.
    assert b.poll().error == ErrorCode.UNKNOWN_MEMBER_ID
    settle([a, b])
    assert sorted(a.partitions() + b.partitions()) == list(range(6))


def test_rebalance_timeout_fences_a_member_that_does_not_revoke() -> None:
    h = Harness()
    a = h.consumer("a")
    a.poll()
    all_six = owned(a.owned)
    b = h.consumer("b")
    b.poll()
    assert h.hb("a", 1, owned=all_six).member_epoch == 1  # told to revoke 3-5
    for _ in range(5):  # keeps heartbeating, but never lets go
        h.advance(5_000)
        assert h.hb("a", 1, owned=all_six).error == ErrorCode.NONE
        b.poll()
    assert b.partitions() == []
    h.advance(REBALANCE - 25_000)
    assert list(h.members()) == ["b"]
    b.poll()
    assert b.partitions() == [0, 1, 2, 3, 4, 5]
    assert h.hb("a", 1, owned=all_six).error == ErrorCode.UNKNOWN_MEMBER_ID


# ----------------------------------------------------------------------------------------------
# Epochs and ids
# ----------------------------------------------------------------------------------------------


def test_stale_and_future_epochs_are_fenced() -> None:
    h = Harness()
    a, b = h.consumer("a"), h.consumer("b")
    settle([a, b])  # a went 1 -> 2, b is at 2
    assert a.epoch == 2
    future = h.hb("a", 3)
    assert future.error == ErrorCode.FENCED_MEMBER_EPOCH
    assert "greater member epoch (3)" in (future.error_message or "")
    # Its previous epoch (1) without reporting what it owns is not enough.
    assert h.hb("a", 1, owned=None).error == ErrorCode.FENCED_MEMBER_EPOCH
    # The previous epoch is fine if the member owns no more than its assignment (it may have
    # missed the answer that moved it on) ...
    assert h.hb("a", 1, owned=owned(a.owned)).error == ErrorCode.NONE
    # ... but not if it claims partitions it no longer has.
    every = [(h.topics.id("t"), list(range(6)))]
    assert h.hb("a", 1, owned=every).error == ErrorCode.FENCED_MEMBER_EPOCH


def test_unknown_group_and_member() -> None:
    h = Harness()
    resp = h.hb("x", 3)
    assert resp.error == ErrorCode.GROUP_ID_NOT_FOUND
    assert not h.coord.has_group("g")
    h.join("a")
    assert h.hb("x", 3).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.hb("x", -1).error == ErrorCode.UNKNOWN_MEMBER_ID


def test_v0_member_id_is_generated_and_v1_must_bring_one() -> None:
    h = Harness()
    resp = h.join("", api_version=0)
    assert resp.error == ErrorCode.NONE and resp.member_id == "gen1"
    resp = h.join("", api_version=1)
    assert (resp.error, resp.error_message) == (
        ErrorCode.INVALID_REQUEST,
        "MemberId can't be empty.",
    )


def test_rejoin_with_epoch_zero_keeps_the_member() -> None:
    h = Harness()
    a, b = h.consumer("a"), h.consumer("b")
    settle([a, b])
    a.fenced()  # e.g. after FENCED_MEMBER_EPOCH: drop everything, rejoin with the same id
    a.poll()
    assert a.epoch == 2 and a.last is not None and a.last.assignment is not None
    settle([a, b])
    assert sorted(a.partitions() + b.partitions()) == list(range(6))
    assert h.describe()["epoch"] == 2


def test_group_max_size() -> None:
    h = Harness(ConsumerGroupConfig(max_group_size=2))
    h.join("a")
    h.join("b")
    resp = h.join("c")
    assert resp.error == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert h.join("a").error == ErrorCode.NONE  # members already in may rejoin


# ----------------------------------------------------------------------------------------------
# Static membership
# ----------------------------------------------------------------------------------------------


def test_static_member_restart_keeps_its_partitions() -> None:
    h = Harness()
    a, b = h.consumer("a1", instance_id="i-a"), h.consumer("b", instance_id="i-b")
    settle([a, b])
    mine, epoch = a.partitions(), h.describe()["epoch"]
    resp = a.leave(-2)
    assert (resp.error, resp.member_epoch) == (ErrorCode.NONE, -2)
    assert h.describe()["epoch"] == epoch  # no rebalance
    for _ in range(3):
        b.poll()
    assert len(b.partitions()) == 3  # a's partitions wait for it
    # The restarted process has a new member id but the same instance id.
    a2 = h.consumer("a2", instance_id="i-a")
    resp = a2.poll()
    assert resp.error == ErrorCode.NONE
    assert a2.partitions() == mine
    assert h.describe()["epoch"] == epoch
    assert list(h.members()) == ["b", "a2"]
    # The old incarnation is fenced.
    assert h.hb("a1", 2, instance_id="i-a").error == ErrorCode.FENCED_INSTANCE_ID


def test_instance_id_in_use_is_unreleased() -> None:
    h = Harness()
    h.join("a1", instance_id="i-a")
    resp = h.join("a2", instance_id="i-a")
    assert resp.error == ErrorCode.UNRELEASED_INSTANCE_ID
    assert h.hb("a2", 1, instance_id="i-a").error == ErrorCode.FENCED_INSTANCE_ID
    assert h.hb("zz", 1, instance_id="i-zz").error == ErrorCode.UNKNOWN_MEMBER_ID


def test_static_member_that_does_not_come_back_expires() -> None:
    h = Harness()
    a, b = h.consumer("a", instance_id="i-a"), h.consumer("b")
    settle([a, b])
    a.leave(-2)
    for _ in range(10):
        h.advance(5_000)
        b.poll()
    assert list(h.members()) == ["b"]
    settle([b])
    assert b.partitions() == [0, 1, 2, 3, 4, 5]


def test_static_member_leaving_for_good() -> None:
    h = Harness()
    a = h.consumer("a", instance_id="i-a")
    a.poll()
    assert a.leave(-1).member_epoch == -1
    assert h.describe()["state"] == "Empty"


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def test_unsupported_assignor() -> None:
    h = Harness()
    resp = h.join("a", server_assignor="sticky")
    assert resp.error == ErrorCode.UNSUPPORTED_ASSIGNOR
    assert resp.error_message == (
        "ServerAssignor sticky is not supported. Supported assignors: uniform, range."
    )
    assert not h.coord.has_group("g")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"group": " "}, "GroupId can't be empty."),
        ({"instance_id": ""}, "InstanceId can't be empty."),
        ({"rack_id": "\t"}, "RackId can't be empty."),
        ({"rebalance_timeout_ms": -1}, "RebalanceTimeoutMs must be provided in first request."),
        ({"owned": None}, "TopicPartitions must be empty when (re-)joining."),
        ({"topics": None}, "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null "
         "when (re-)joining."),
    ],
)  # fmt: skip
def test_invalid_joins(fields: dict[str, object], message: str) -> None:
    h = Harness()
    topics = fields.pop("topics", ["t"])
    if "owned" in fields:
        resp = h.hb("a", 0, rebalance_timeout_ms=REBALANCE, subscribed_topic_names=["t"],
                    owned=None)  # fmt: skip
    else:
        resp = h.join("a", topics, **fields)  # type: ignore[arg-type]
    assert (resp.error, resp.error_message) == (ErrorCode.INVALID_REQUEST, message)
    assert resp.member_id is None and resp.assignment is None


def test_invalid_epochs() -> None:
    h = Harness()
    h.join("a")
    assert h.hb("a", -3).error_message == "MemberEpoch is invalid."
    assert h.hb("a", -2).error_message == "InstanceId can't be null."


# ----------------------------------------------------------------------------------------------
# Regex subscriptions and topic metadata
# ----------------------------------------------------------------------------------------------


def test_regex_subscription_follows_new_topics() -> None:
    h = Harness(names={"orders-1": 2, "orders-2": 1, "payments": 3, "__consumer_offsets": 50})
    a = h.consumer("a", [], regex="orders-.*")
    a.poll()
    assert sorted(a.owned) == sorted([h.topics.id("orders-1"), h.topics.id("orders-2")])
    members = h.coord.describe(["g"])[0].members
    assert members[0].subscribed_topic_regex == "orders-.*"
    assert members[0].subscribed_topic_names == []

    h.topics.create("orders-3", 2)
    h.topics.create("orders", 1)  # full match only: "orders" does not match "orders-.*"
    h.coord.on_metadata_change()
    assert h.describe()["state"] == "Assigning"
    a.poll()
    assert a.partitions("orders-3") == [0, 1]
    assert h.topics.id("orders") not in a.owned


def test_match_all_regex_skips_internal_topics() -> None:
    h = Harness(names={"t": 1, "__consumer_offsets": 50})
    resp = h.join("a", None, subscribed_topic_regex=".*")
    assert resp.assignment == [(h.topics.id("t"), [0])]


def test_invalid_regex() -> None:
    h = Harness()
    resp = h.join("a", None, subscribed_topic_regex="orders-(")
    assert resp.error == INVALID_REGULAR_EXPRESSION


def test_partitions_added_bump_the_epoch() -> None:
    h = Harness(t=2)
    a, b = h.consumer("a"), h.consumer("b")
    settle([a, b])
    epoch = h.describe()["epoch"]
    h.topics.grow("t", 4)
    h.coord.on_metadata_change()
    assert h.describe()["epoch"] == epoch + 1  # type: ignore[operator]
    settle([a, b])
    assert sorted(a.partitions() + b.partitions()) == [0, 1, 2, 3]


def test_metadata_change_is_noticed_on_heartbeat_too() -> None:
    h = Harness(t=2)
    a = h.consumer("a")
    a.poll()
    h.topics.grow("t", 3)
    a.poll()
    assert a.partitions() == [0, 1, 2]


def test_deleted_topic_is_revoked() -> None:
    h = Harness(t=2, u=2)
    a = h.consumer("a", ["t", "u"])
    a.poll()
    h.topics.delete("u")
    h.coord.on_metadata_change()
    a.poll()
    a.poll()
    assert list(a.owned) == [h.topics.id("t")]
    assert h.members() == {"a": {"t": [0, 1]}}
