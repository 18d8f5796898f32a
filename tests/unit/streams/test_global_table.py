"""Global tables and stream-global-table joins through the test driver, with Kafka Streams'
semantics (KStream#join(GlobalKTable, KeyValueMapper, ValueJoiner) and leftJoin): the stream
record joins the global table's value for the key the mapper computes; the result keeps the
stream's key; global-table updates emit nothing; no co-partitioning, no repartitioning."""

from __future__ import annotations

from typing import Any

import pytest

from riverbed.streams import JSON, STRING, StreamsApp, StreamsError, TestDriver
from riverbed.streams.internal_topics import plan


def _app(left: bool) -> StreamsApp:
    app = StreamsApp("g")
    products = app.global_table("products", STRING, JSON, name="products")
    orders = app.stream("orders", STRING, JSON)
    join = orders.left_join if left else orders.join

    def joiner(o: dict[str, Any], p: dict[str, Any] | None) -> str:
        return f"{o['qty']}x{p['name'] if p else '-'}"

    join(products, lambda _k, o: o.get("product"), joiner, value_serde=STRING).to("out", STRING, STRING)
    return app


# (topic, key, value) -> (inner join output, left join output)
STEPS: list[tuple[str, str, Any, list[tuple[str, str]], list[tuple[str, str]]]] = [
    ("orders", "o1", {"product": "p1", "qty": 1}, [], [("o1", "1x-")]),   # no product yet
    ("products", "p1", {"name": "pen"}, [], []),                          # table updates emit nothing
    ("orders", "o2", {"product": "p1", "qty": 2}, [("o2", "2xpen")], [("o2", "2xpen")]),
    ("products", "p1", {"name": "ink"}, [], []),
    ("orders", "o1", {"product": "p1", "qty": 3}, [("o1", "3xink")], [("o1", "3xink")]),
    ("orders", "o3", {"qty": 4}, [], [("o3", "4x-")]),                    # mapped key None: no match
    ("products", "p1", None, [], []),                                     # delete
    ("orders", "o1", {"product": "p1", "qty": 5}, [], [("o1", "5x-")]),
]


@pytest.mark.parametrize("left", [False, True], ids=["inner", "left"])
def test_stream_global_table_join(left: bool) -> None:
    with TestDriver(_app(left)) as d:
        for i, (topic, key, value, inner_out, left_out) in enumerate(STEPS):
            d.pipe(topic, key, value, timestamp=i)
            assert d.read("out", STRING, STRING) == (left_out if left else inner_out), f"step {i}"


def test_undecodable_global_record_fails_by_default() -> None:
    with TestDriver(_app(False)) as d, pytest.raises(StreamsError, match=r"products: record products-0@0 does not"):
        d.pipe_raw("products", b"p3", b"{not json", 3)
    app = StreamsApp("g")
    with pytest.raises(StreamsError, match="on_error"):
        app.global_table("products", STRING, JSON, on_error="dead_letter")


def test_global_table_is_queryable_and_skips_bad_records() -> None:
    app = StreamsApp("g")
    app.global_table("products", STRING, JSON, name="products", on_error="skip")
    with TestDriver(app) as d:
        d.pipe("products", "p1", {"name": "pen"}, 1)
        d.pipe("products", "p2", {"name": "ink"}, 2)
        d.pipe_raw("products", b"p3", b"{not json", 3)   # logged and counted, never stored
        d.pipe_raw("products", None, b'{"name": "x"}', 4)
        d.pipe("products", "p2", None, 5)
        store = d.store("products")
        assert store.get("p1") == {"name": "pen"}
        assert store.get("p2") is None
        assert dict(store.all()) == {"p1": {"name": "pen"}}
        assert d.metrics()["deserialization_errors"] == 1
        assert d.metrics()["skipped_records"] == 1


def test_record_without_value_is_skipped() -> None:
    with TestDriver(_app(True)) as d:
        d.pipe("orders", "o1", None, 1)
        assert d.read("out", STRING, STRING) == []
        assert d.metrics()["skipped_records"] == 1


def test_rekeyed_stream_joins_without_repartition_and_no_changelog() -> None:
    app = StreamsApp("g")
    users = app.global_table("users", STRING, STRING)
    (app.stream("clicks", STRING, JSON)
        .select_key(lambda _k, v: v["page"], STRING)
        .join(users, lambda _page, v: v["user"], lambda v, name: f"{name}@{v['page']}", value_serde=STRING)
        .to("out", STRING, STRING))
    topo = app.topology()
    assert topo.repartition_topics == []
    assert [s.stores for s in topo.subtopologies] == [[]]
    assert "Global store users-global <- users" in topo.describe()
    assert '"topic:users" -> "global:users-global"' in topo.describe_dot()
    # no internal topics: the global table's topic is its changelog; it must exist
    assert plan(topo, {"clicks": 4, "users": 1}) == {}
    with pytest.raises(StreamsError, match="users"):
        plan(topo, {"clicks": 4})
    with TestDriver(app) as d:
        d.pipe("users", "u1", "ann", 1)
        d.pipe("clicks", None, {"user": "u1", "page": "home"}, 2)
        assert d.read("out", STRING, STRING) == [("home", "ann@home")]


def test_global_table_misuse_is_refused() -> None:
    app = StreamsApp("g")
    products = app.global_table("products", STRING, JSON)
    with pytest.raises(StreamsError, match="twice"):
        app.global_table("products", STRING, JSON, name="other")
    with pytest.raises(StreamsError, match="key_mapper, joiner"):
        app.stream("orders", STRING, JSON).join(products, lambda _k, v: v)
    app.stream("products", STRING, JSON)
    with pytest.raises(StreamsError, match="global table"):
        app.topology()
