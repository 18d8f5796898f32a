"""Stream-table joins through the test driver, with Kafka Streams' semantics: a stream record
is joined with the table's value at the time it is processed; table updates emit nothing."""

from __future__ import annotations

import pytest

from riverbed.streams import JSON, LONG, STRING, StreamsApp, StreamsError, TestDriver, TimeWindows


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


def _tt_app(how: str) -> StreamsApp:
    app = StreamsApp("tt")
    users = app.table("users", STRING, STRING, name="users")
    scores = app.table("scores", STRING, LONG, name="scores")
    users.join(scores, lambda u, s: f"{u or '-'}:{'-' if s is None else s}", how=how) \
        .to_stream().to("joined", STRING, STRING)
    return app


STEPS = [("users", "u1", "ann"), ("scores", "u1", 10), ("scores", "u2", 5), ("users", "u1", None), ("scores", "u1", None)]


@pytest.mark.parametrize(("how", "expected"), [
    ("inner", [[], [("u1", "ann:10")], [], [("u1", None)], []]),
    ("left", [[("u1", "ann:-")], [("u1", "ann:10")], [], [("u1", None)], []]),
    ("outer", [[("u1", "ann:-")], [("u1", "ann:10")], [("u2", "-:5")], [("u1", "-:10")], [("u1", None)]]),
])
def test_table_table_join(how: str, expected: list[list[tuple[str, str | None]]]) -> None:
    with TestDriver(_tt_app(how)) as d:
        got = []
        for i, (topic, key, value) in enumerate(STEPS):
            d.pipe(topic, key, value, i + 1)
            got.append(d.read("joined", STRING, STRING))
    assert got == expected


def test_table_table_join_checks() -> None:
    app = StreamsApp("tt")
    a = app.table("a", STRING, STRING, name="a")
    b = app.table("b", STRING, STRING, name="b")
    with pytest.raises(StreamsError, match="how must be"):
        a.join(b, lambda x, y: x, how="cross")
    joined = a.join(b, lambda x, y: x)
    with pytest.raises(StreamsError, match="materialized"):
        joined.join(b, lambda x, y: x)
    with pytest.raises(StreamsError, match="not materialized"):
        app.stream("s", STRING, STRING).join(joined, lambda x, y: x)
    topo = app.topology()
    assert topo.sub_for_topic["a"] is topo.sub_for_topic["b"]  # both tables and the join: one task per partition
