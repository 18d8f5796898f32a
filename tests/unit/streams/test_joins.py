"""Stream-table joins through the test driver, with Kafka Streams' semantics: a stream record
is joined with the table's value at the time it is processed; table updates emit nothing."""

from __future__ import annotations

import pytest

from riverbed.streams import JSON, STRING, StreamsApp, StreamsError, TestDriver, TimeWindows


def _app(left: bool) -> StreamsApp:
    app = StreamsApp("j")
    users = app.table("users", STRING, JSON, name="users")
    clicks = app.stream("clicks", STRING, STRING)
    join = clicks.left_join if left else clicks.join
    join(users, lambda page, user: f"{page}:{user['name'] if user else '-'}", name="enrich", value_serde=STRING) \
        .to("enriched", STRING, STRING)
    return app


@pytest.mark.parametrize(("left", "expected"), [
    (False, [("u1", "home:ann"), ("u1", "cart:bob")]),
    (True, [("u2", "home:-"), ("u1", "home:ann"), ("u1", "cart:bob"), ("u1", "exit:-")]),
])
def test_stream_table_join(left: bool, expected: list[tuple[str, str]]) -> None:
    with TestDriver(_app(left)) as d:
        d.pipe("clicks", "u2", "home", 1)            # no user yet
        d.pipe("users", "u1", {"name": "ann"}, 2)
        d.pipe("clicks", "u1", "home", 3)
        d.pipe("users", "u1", {"name": "bob"}, 4)    # a table update: no output
        d.pipe("clicks", "u1", "cart", 5)
        d.pipe("users", "u1", None, 6)               # tombstone
        d.pipe("clicks", "u1", "exit", 7)
        assert d.read("enriched", STRING, STRING) == expected


def test_join_is_one_sub_topology_with_the_table() -> None:
    topo = _app(False).topology()
    assert len(topo.subtopologies) == 1
    assert sorted(topo.subtopologies[0].sources) == ["clicks", "users"]


def test_rekeyed_stream_is_repartitioned_before_the_join() -> None:
    app = StreamsApp("j")
    users = app.table("users", STRING, STRING, name="users")
    (app.stream("clicks", STRING, JSON)
        .select_key(lambda _k, v: v["user"], STRING)
        .join(users, lambda click, name: f"{name}:{click['page']}", name="by-user", value_serde=STRING)
        .to("out", STRING, STRING))
    topo = app.topology()
    assert topo.repartition_topics == ["j-by-user-repartition"]
    with TestDriver(app) as d:
        d.pipe("users", "u1", "ann", 1)
        d.pipe("clicks", None, {"user": "u1", "page": "home"}, 2)
        assert d.read("out", STRING, STRING) == [("u1", "ann:home")]


def test_join_with_a_windowed_table_is_refused() -> None:
    app = StreamsApp("j")
    s = app.stream("clicks", STRING, STRING)
    t = s.group_by_key().windowed_by(TimeWindows.of(10)).count(name="c")
    with pytest.raises(StreamsError, match="windowed"):
        s.join(t, lambda a, b: a)  # type: ignore[arg-type]


def test_co_partitioning_is_checked() -> None:
    from riverbed.streams.internal_topics import plan

    topo = _app(False).topology()
    with pytest.raises(StreamsError, match="co-partitioned"):
        plan(topo, {"clicks": 3, "users": 2})
    assert plan(topo, {"clicks": 2, "users": 2})["j-users-changelog"][0] == 2
