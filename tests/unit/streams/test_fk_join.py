"""Foreign-key table-table joins through the test driver, with Kafka Streams' semantics
(KTable#join(KTable, Function, ValueJoiner) and leftJoin): the result is keyed by the left
key; a change on either side re-emits; a foreign-key change retracts the old result (an inner
join emits a tombstone when the new key has no match); a None foreign key matches nothing;
answers for a left value that has changed since are discarded."""

from __future__ import annotations

from typing import Any

import pytest

from riverbed.streams import JSON, STRING, StreamsApp, StreamsError, TestDriver, TimeWindows
from riverbed.streams.fk_join import encode_response, value_hash
from riverbed.streams.internal_topics import plan


def _app(left: bool) -> StreamsApp:
    app = StreamsApp("shop")
    orders = app.table("orders", STRING, JSON, name="orders")
    products = app.table("products", STRING, JSON, name="products")
    join = orders.left_join if left else orders.join

    def joiner(o: dict[str, Any], p: dict[str, Any] | None) -> str:
        return f"{o['qty']}x{p['name'] if p else '-'}"

    join(products, lambda o: o["product"], joiner, name="order-product", value_serde=STRING) \
        .to_stream().to("order-details", STRING, STRING)
    return app


# (topic, key, value) -> (inner join output, left join output)
STEPS: list[tuple[str, str, Any, list[tuple[str, str | None]], list[tuple[str, str | None]]]] = [
    ("orders", "o1", {"product": "p1", "qty": 2}, [], [("o1", "2x-")]),             # no product yet
    ("products", "p1", {"name": "pen"}, [("o1", "2xpen")], [("o1", "2xpen")]),      # right insert
    ("orders", "o1", {"product": "p1", "qty": 3}, [("o1", "3xpen")], [("o1", "3xpen")]),  # left update
    ("orders", "o1", {"product": "p2", "qty": 3}, [("o1", None)], [("o1", "3x-")]),  # FK change, no match
    ("products", "p1", {"name": "pencil"}, [], []),                                  # o1 left p1
    ("products", "p2", {"name": "ink"}, [("o1", "3xink")], [("o1", "3xink")]),
    ("orders", "o2", {"product": "p2", "qty": 1}, [("o2", "1xink")], [("o2", "1xink")]),
    ("products", "p2", None, [("o1", None), ("o2", None)], [("o1", "3x-"), ("o2", "1x-")]),  # right delete
    ("products", "p2", {"name": "ink2"}, [("o1", "3xink2"), ("o2", "1xink2")], [("o1", "3xink2"), ("o2", "1xink2")]),
    ("orders", "o1", {"product": None, "qty": 3}, [("o1", None)], [("o1", "3x-")]),  # None FK: no match
    ("products", "p2", {"name": "ink3"}, [("o2", "1xink3")], [("o2", "1xink3")]),   # o1 unsubscribed
    ("orders", "o1", {"product": "p1", "qty": 4}, [("o1", "4xpencil")], [("o1", "4xpencil")]),
    ("orders", "o1", None, [("o1", None)], [("o1", None)]),                          # left delete
    ("products", "p1", {"name": "quill"}, [], []),                                   # nobody subscribed
    ("orders", "o3", {"product": "p9", "qty": 1}, [], [("o3", "1x-")]),
    ("orders", "o3", {"product": "p1", "qty": 1}, [("o3", "1xquill")], [("o3", "1xquill")]),  # FK change, match
]


@pytest.mark.parametrize("left", [False, True], ids=["inner", "left"])
def test_fk_join_semantics(left: bool) -> None:
    with TestDriver(_app(left)) as d:
        for i, (topic, key, value, inner_out, left_out) in enumerate(STEPS):
            d.pipe(topic, key, value, timestamp=100 + i)
            assert d.read("order-details", STRING, STRING) == (left_out if left else inner_out), f"step {i}: {topic} {key}={value}"
        # the subscription store holds one entry per left row with a foreign key: o2->p2, o3->p1
        assert len(d.store("order-product-subscription-store")) == 2


def test_fk_join_output_timestamps_are_the_triggering_records() -> None:
    with TestDriver(_app(False)) as d:
        d.pipe("products", "p1", {"name": "pen"}, timestamp=10)
        d.pipe("orders", "o1", {"product": "p1", "qty": 1}, timestamp=20)
        d.pipe("products", "p1", {"name": "ink"}, timestamp=30)
        assert d.read("order-details", STRING, STRING, with_timestamp=True) == [("o1", "1xpen", 20), ("o1", "1xink", 30)]


def test_stale_response_is_discarded() -> None:
    """An answer carries the hash of the left value it was asked for; if the row has changed
    since, the answer is dropped (a newer one is on its way), as Kafka compares value hashes."""
    with TestDriver(_app(False)) as d:
        d.pipe("products", "p1", {"name": "pen"}, 1)
        d.pipe("orders", "o1", {"product": "p1", "qty": 1}, 2)
        d.pipe("orders", "o1", {"product": "p1", "qty": 5}, 3)
        assert d.read("order-details", STRING, STRING) == [("o1", "1xpen"), ("o1", "5xpen")]
        old = value_hash(JSON.serialize({"product": "p1", "qty": 1}))
        current = value_hash(JSON.serialize({"product": "p1", "qty": 5}))
        topic = "shop-order-product-subscription-response-topic"
        d.pipe_raw(topic, b"o1", encode_response(old, JSON.serialize({"name": "stale"})), 4)
        assert d.read("order-details", STRING, STRING) == []
        assert d.metrics()["fk_join_stale_responses"] == 1
        d.pipe_raw(topic, b"o1", encode_response(current, JSON.serialize({"name": "fresh"})), 5)
        assert d.read("order-details", STRING, STRING) == [("o1", "5xfresh")]


def test_fk_join_changelogs_its_subscription_store() -> None:
    with TestDriver(_app(False)) as d:
        d.pipe("orders", "o1", {"product": "p1", "qty": 1}, 1)
        d.pipe("orders", "o1", {"product": "p2", "qty": 1}, 2)
        log = d.outputs["shop-order-product-subscription-store-changelog"]
        assert [r.value is None for r in log] == [False, True, False]  # subscribe p1, unsubscribe p1, subscribe p2


def test_internal_topics_are_sized_by_the_table_they_serve() -> None:
    """The subscription topic is co-partitioned with the right table, the response topic with
    the left one: the two tables need not be co-partitioned."""
    topo = _app(False).topology()
    assert sorted(topo.repartition_topics) == ["shop-order-product-subscription-registration-topic",
                                               "shop-order-product-subscription-response-topic"]
    wanted = plan(topo, {"orders": 3, "products": 2})
    assert wanted["shop-order-product-subscription-registration-topic"][0] == 2
    assert wanted["shop-order-product-subscription-response-topic"][0] == 3
    assert wanted["shop-order-product-subscription-store-changelog"] == (2, {"cleanup.policy": "compact"})
    assert wanted["shop-orders-changelog"][0] == 3
    assert wanted["shop-products-changelog"][0] == 2


def test_fk_join_of_a_materialized_filtered_table() -> None:
    app = StreamsApp("shop")
    orders = app.table("orders", STRING, JSON, name="orders").filter(lambda _k, o: o["qty"] > 0, name="live-orders")
    products = app.table("products", STRING, STRING, name="products")
    orders.join(products, lambda o: o["product"], lambda o, p: f"{o['qty']}x{p}", name="j",
                value_serde=STRING).to_stream().to("out", STRING, STRING)
    with TestDriver(app) as d:
        d.pipe("products", "p1", "pen", 1)
        d.pipe("orders", "o1", {"product": "p1", "qty": 2}, 2)
        d.pipe("orders", "o1", {"product": "p1", "qty": 0}, 3)  # filtered out: a deletion
        assert d.read("out", STRING, STRING) == [("o1", "2xpen"), ("o1", None)]


def test_fk_join_needs_tables_with_stores() -> None:
    app = StreamsApp("shop")
    orders = app.table("orders", STRING, JSON, name="orders")
    products = app.table("products", STRING, STRING, name="products")
    with pytest.raises(StreamsError, match="foreign-key joins need"):
        orders.map_values(lambda o: o).join(products, lambda o: o["product"], lambda o, p: p)
    windowed = app.stream("clicks", STRING, STRING).group_by_key().windowed_by(TimeWindows.of(10)).count(name="w")
    with pytest.raises(StreamsError, match="foreign-key joins need"):
        windowed.join(products, lambda n: str(n), lambda n, p: p)


def test_fk_join_of_aggregated_tables() -> None:
    """Aggregations forward their previous value, so either side may be one: here each
    user's latest order (a reduce) joins its product, and products are counted per name."""
    app = StreamsApp("shop")
    latest = app.stream("orders", STRING, JSON).group_by_key().reduce(lambda _a, b: b, name="latest-order")
    products = app.stream("products", STRING, STRING).group_by_key().reduce(lambda _a, b: b, name="products")
    latest.join(products, lambda o: o["product"], lambda o, p: f"{o['qty']}x{p}", name="j",
                value_serde=STRING).to_stream().to("out", STRING, STRING)
    with TestDriver(app) as d:
        d.pipe("products", "p1", "pen", 1)
        d.pipe("products", "p2", "ink", 2)
        d.pipe("orders", "u1", {"product": "p1", "qty": 1}, 3)
        d.pipe("orders", "u1", {"product": "p2", "qty": 2}, 4)   # foreign key moves: p1 is unsubscribed
        d.pipe("products", "p1", "nib", 5)                       # nobody's latest order
        d.pipe("products", "p2", "quill", 6)
        assert d.read("out", STRING, STRING) == [("u1", "1xpen"), ("u1", "2xink"), ("u1", "2xquill")]


def test_extractor_error_follows_the_processing_error_policy() -> None:
    app = StreamsApp("shop", on_processing_error="skip")
    orders = app.table("orders", STRING, JSON, name="orders")
    products = app.table("products", STRING, STRING, name="products")
    orders.join(products, lambda o: o["product"], lambda o, p: p, name="j", value_serde=STRING) \
        .to_stream().to("out", STRING, STRING)
    with TestDriver(app) as d:
        d.pipe("products", "p1", "pen", 1)
        d.pipe("orders", "o1", {"no-product": 1}, 2)
        d.pipe("orders", "o2", {"product": "p1"}, 3)
        assert d.read("out", STRING, STRING) == [("o2", "pen")]
        assert d.metrics()["processing_errors"] == 1


def test_materialized_join_results_can_be_queried_and_joined_again() -> None:
    """``materialized=`` keeps a join's result in a store: queryable, and a table to join."""
    app = StreamsApp("shop")
    orders = app.table("orders", STRING, JSON, name="orders")
    products = app.table("products", STRING, STRING, name="products")
    shipments = app.table("shipments", STRING, STRING, name="shipments")
    details = orders.join(products, lambda o: o["product"], lambda o, p: {"qty": o["qty"], "name": p},
                          name="op", materialized="order-details")
    details.left_join(shipments, lambda d, s: f"{d['qty']}x{d['name']} {s or 'pending'}", value_serde=STRING,
                      materialized="order-status").to_stream().to("status", STRING, STRING)
    with TestDriver(app) as d:
        d.pipe("products", "p1", "pen", 1)
        d.pipe("orders", "o1", {"product": "p1", "qty": 2}, 2)
        d.pipe("shipments", "o1", "shipped", 3)
        d.pipe("products", "p1", "ink", 4)
        d.pipe("orders", "o1", {"product": "p2", "qty": 2}, 5)  # no p2: the inner result goes away
        assert d.read("status", STRING, STRING) == [
            ("o1", "2xpen pending"), ("o1", "2xpen shipped"), ("o1", "2xink shipped"), ("o1", None)]
        assert d.store("order-details").get("o1") is None
        d.pipe("products", "p2", "nib", 6)
        assert d.store("order-details").get("o1") == {"qty": 2, "name": "nib"}
        assert d.store("order-status").get("o1") == "2xnib shipped"
        assert "shop-order-details-changelog" in d.outputs


def test_self_join() -> None:
    """A table joined with itself (employee -> manager): one sub-topology, both roles."""
    app = StreamsApp("emp")
    e = app.table("employees", STRING, JSON, name="employees")
    e.left_join(e, lambda v: v.get("manager"), lambda v, m: f"{v['name']}<-{m['name'] if m else '-'}", name="mgr",
                value_serde=STRING).to_stream().to("out", STRING, STRING)
    assert len(app.topology().subtopologies) == 1
    with TestDriver(app) as d:
        d.pipe("employees", "e1", {"name": "ann", "manager": "e2"}, 1)
        d.pipe("employees", "e2", {"name": "bob"}, 2)
        d.pipe("employees", "e2", {"name": "bobby"}, 3)
        assert d.read("out", STRING, STRING) == [
            ("e1", "ann<--"), ("e2", "bob<--"), ("e1", "ann<-bob"), ("e2", "bobby<--"), ("e1", "ann<-bobby")]
