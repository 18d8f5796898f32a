"""The server-side assignors: complete, exclusive, balanced, sticky, deterministic; range keeps
co-partitioned topics aligned."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.coordinator.assignors import (
    ASSIGNORS,
    AssignmentSpec,
    GroupAssignment,
    MemberSpec,
    RangeAssignor,
    UniformAssignor,
)

TOPICS = [uuid.UUID(int=i + 1) for i in range(4)]
T1, T2, T3, _ = TOPICS
uniform = UniformAssignor()
#: (member id -> subscribed topics, topic -> partition count)
Case = tuple[dict[str, frozenset[uuid.UUID]], dict[uuid.UUID, int]]
range_ = RangeAssignor()

partition_counts = st.dictionaries(st.sampled_from(TOPICS), st.integers(0, 12), min_size=1)
member_ids = st.lists(
    st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=7, unique=True
)


def spec_of(
    subscriptions: Mapping[str, frozenset[uuid.UUID]],
    partitions: Mapping[uuid.UUID, int],
    current: GroupAssignment | None = None,
) -> AssignmentSpec:
    previous = current or {}
    return AssignmentSpec(
        members={m: MemberSpec(subs, previous.get(m, {})) for m, subs in subscriptions.items()},
        partitions=partitions,
    )


def check_complete_and_exclusive(spec: AssignmentSpec, result: GroupAssignment) -> None:
    """Every partition of a subscribed topic goes to exactly one subscribed member."""
    assert set(result) == set(spec.members)
    seen: set[tuple[uuid.UUID, int]] = set()
    for member_id, assignment in result.items():
        for topic_id, partitions in assignment.items():
            assert topic_id in spec.members[member_id].subscribed_topic_ids
            for p in partitions:
                assert 0 <= p < spec.partitions[topic_id]
                assert (topic_id, p) not in seen
                seen.add((topic_id, p))
    wanted = {
        (t, p)
        for t, count in spec.partitions.items()
        if any(t in m.subscribed_topic_ids for m in spec.members.values())
        for p in range(count)
    }
    assert seen == wanted


def sizes(result: GroupAssignment) -> dict[str, int]:
    return {m: sum(len(ps) for ps in a.values()) for m, a in result.items()}


@st.composite
def homogeneous(draw: st.DrawFn) -> Case:
    partitions = draw(partition_counts)
    topics = frozenset(draw(st.sets(st.sampled_from(sorted(partitions)), min_size=1)))
    return {m: topics for m in draw(member_ids)}, partitions


@st.composite
def heterogeneous(draw: st.DrawFn) -> Case:
    partitions = draw(partition_counts)
    topic = st.sampled_from(sorted(partitions))
    return {m: frozenset(draw(st.sets(topic))) for m in draw(member_ids)}, partitions


# ----------------------------------------------------------------------------------------------
# uniform
# ----------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(homogeneous())
def test_uniform_is_complete_and_balanced_for_equal_subscriptions(case: Case) -> None:
    subscriptions, partitions = case
    spec = spec_of(subscriptions, partitions)
    result = uniform.assign(spec)
    check_complete_and_exclusive(spec, result)
    counts = sizes(result).values()
    assert max(counts) - min(counts) <= 1


@settings(max_examples=150, deadline=None)
@given(heterogeneous())
def test_uniform_is_complete_and_locally_balanced_for_any_subscriptions(case: Case) -> None:
    subscriptions, partitions = case
    spec = spec_of(subscriptions, partitions)
    result = uniform.assign(spec)
    check_complete_and_exclusive(spec, result)
    # No single move would improve it: every subscriber of a member's topic has at least
    # that member's count minus one.
    load = sizes(result)
    for member_id, assignment in result.items():
        for topic_id in assignment:
            for other, subs in subscriptions.items():
                if topic_id in subs:
                    assert load[other] >= load[member_id] - 1


@settings(max_examples=100, deadline=None)
@given(heterogeneous(), st.data())
def test_uniform_is_sticky_and_deterministic(case: Case, data: st.DataObject) -> None:
    subscriptions, partitions = case
    first = uniform.assign(spec_of(subscriptions, partitions))
    # Same input, same output; feeding the output back changes nothing.
    assert uniform.assign(spec_of(subscriptions, partitions)) == first
    assert uniform.assign(spec_of(subscriptions, partitions, first)) == first
    # A member leaving: nobody else loses a partition (equal subscriptions).
    if len(set(subscriptions.values())) == 1 and len(subscriptions) > 1:
        gone = data.draw(st.sampled_from(sorted(subscriptions)))
        rest = {m: s for m, s in subscriptions.items() if m != gone}
        after = uniform.assign(spec_of(rest, partitions, first))
        for member_id, assignment in after.items():
            for topic_id, kept in first[member_id].items():
                assert kept <= assignment.get(topic_id, frozenset())


@settings(max_examples=100, deadline=None)
@given(homogeneous())
def test_uniform_new_member_only_takes_from_others(case: Case) -> None:
    subscriptions, partitions = case
    first = uniform.assign(spec_of(subscriptions, partitions))
    topics = next(iter(subscriptions.values()))
    after = uniform.assign(spec_of({**subscriptions, "zzz-new": topics}, partitions, first))
    for member_id, assignment in after.items():
        if member_id == "zzz-new":
            continue
        for topic_id, partitions_now in assignment.items():
            # Existing members only lose partitions; nothing moves between them.
            assert partitions_now <= first[member_id].get(topic_id, frozenset())
    counts = sizes(after).values()
    assert max(counts) - min(counts) <= 1


def test_uniform_spreads_three_members_over_six_partitions() -> None:
    spec = spec_of({m: frozenset({T1}) for m in "abc"}, {T1: 6})
    assert uniform.assign(spec) == {
        "a": {T1: frozenset({0, 1})},
        "b": {T1: frozenset({2, 3})},
        "c": {T1: frozenset({4, 5})},
    }


def test_uniform_keeps_partitions_when_a_member_joins() -> None:
    before = {"a": {T1: frozenset({0, 1, 2})}, "b": {T1: frozenset({3, 4, 5})}}
    spec = spec_of({m: frozenset({T1}) for m in "abc"}, {T1: 6}, before)
    after = uniform.assign(spec)
    assert after["a"][T1] < before["a"][T1] and after["b"][T1] < before["b"][T1]
    assert len(after["c"][T1]) == 2


def test_uniform_ignores_missing_topics_and_empty_groups() -> None:
    assert uniform.assign(spec_of({}, {T1: 3})) == {}
    spec = spec_of({"a": frozenset({T1, T2})}, {T1: 2})
    assert uniform.assign(spec) == {"a": {T1: frozenset({0, 1})}}


# ----------------------------------------------------------------------------------------------
# range
# ----------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(heterogeneous())
def test_range_is_complete_and_balanced_per_topic(case: Case) -> None:
    subscriptions, partitions = case
    spec = spec_of(subscriptions, partitions)
    result = range_.assign(spec)
    check_complete_and_exclusive(spec, result)
    for topic_id in partitions:
        counts = [
            len(result[m].get(topic_id, ())) for m, s in subscriptions.items() if topic_id in s
        ]
        if counts:
            assert max(counts) - min(counts) <= 1
    assert range_.assign(spec) == result


@settings(max_examples=100, deadline=None)
@given(
    st.lists(member_ids, min_size=1, max_size=5),
    st.integers(1, 12),
)
def test_range_keeps_co_partitioned_topics_aligned(
    generations: list[list[str]], count: int
) -> None:
    """Topics with the same partition count and subscribers stay aligned, however members
    come and go (each round starts from the previous round's assignment)."""
    previous: GroupAssignment = {}
    for members in generations:
        spec = spec_of(
            {m: frozenset({T1, T2, T3}) for m in members},
            {T1: count, T2: count, T3: count},
            previous,
        )
        result = range_.assign(spec)
        check_complete_and_exclusive(spec, result)
        for assignment in result.values():
            assert assignment.get(T1) == assignment.get(T2) == assignment.get(T3)
        previous = result


def test_range_gives_contiguous_ranges_like_the_classic_assignor() -> None:
    spec = spec_of({m: frozenset({T1, T2}) for m in "abc"}, {T1: 7, T2: 7})
    result = range_.assign(spec)
    assert {m: sorted(result[m][T1]) for m in "abc"} == {"a": [0, 1, 2], "b": [3, 4], "c": [5, 6]}
    assert {m: sorted(result[m][T2]) for m in "abc"} == {"a": [0, 1, 2], "b": [3, 4], "c": [5, 6]}


def test_range_is_sticky() -> None:
    before = {"a": {T1: frozenset({0, 1, 2})}, "b": {T1: frozenset({3, 4, 5})}}
    spec = spec_of({m: frozenset({T1}) for m in "abc"}, {T1: 6}, before)
    after = range_.assign(spec)
    assert after["a"][T1] == {0, 1} and after["b"][T1] == {3, 4}
    assert after["c"][T1] == {2, 5}


def test_registry() -> None:
    assert sorted(ASSIGNORS) == ["range", "uniform"]
    assert all(name == a.name for name, a in ASSIGNORS.items())
