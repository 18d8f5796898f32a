"""KTable#groupBy + KGroupedTable count / reduce / aggregate with subtractors, through the
driver, against Kafka Streams' semantics: an update subtracts the row's old value from its old
group and adds the new value to its new group; a row whose group stays the same is one update
(KIP-904: subtractor then adder, one output)."""

from __future__ import annotations

import pytest

from riverbed.streams import JSON, LONG, STRING, StreamsApp, StreamsError, TestDriver
from riverbed.streams.table_agg import Change, ChangeSerde


def regions_app() -> StreamsApp:
    app = StreamsApp("regions")
    users = app.table("users", STRING, STRING, name="users")  # user -> region
    (users.group_by(lambda user, region: (region, user), key_serde=STRING)
        .count(name="users-per-region")
        .to_stream().to("region-counts", STRING, LONG))
    return app


# (user, region or None: deletion) piped -> region counts emitted, Kafka's KGroupedTable#count
COUNT_STEPS: list[tuple[str, str | None, list[tuple[str, int]]]] = [
    ("alice", "eu", [("eu", 1)]),
    ("bob", "eu", [("eu", 2)]),
    ("carol", "us", [("us", 1)]),
    ("alice", "us", [("eu", 1), ("us", 2)]),   # moved: subtracted from eu first, then added to us
    ("bob", "eu", [("eu", 1)]),                # same group: one record, subtract then add
    ("carol", None, [("us", 1)]),              # deleted: subtracted only
    ("dave", None, []),                        # deleting a row that never was: nothing
    ("bob", None, [("eu", 0)]),                # a group emptied counts 0 (Kafka keeps it)
]


def test_count_per_group_follows_updates_moves_and_deletions() -> None:
    with TestDriver(regions_app()) as d:
        for user, region, want in COUNT_STEPS:
            d.pipe("users", user, region, timestamp=1)
            assert d.read("region-counts", STRING, LONG) == want, (user, region)
        st = d.store("users-per-region")
        assert (st.get("eu"), st.get("us")) == (0, 1)
        # the repartition topic carried both values in one record for the same-group update
        rep = d.outputs["regions-users-per-region-repartition"]
        changes = [ChangeSerde(STRING).deserialize(r.value) for r in rep]
        assert Change("bob", "bob") in changes


def test_aggregate_and_reduce_with_subtractors() -> None:
    app = StreamsApp("totals")
    orders = app.table("orders", STRING, JSON, name="orders")  # order id -> {"customer", "amount"}
    grouped = orders.group_by(lambda _id, o: (o["customer"], o["amount"]), key_serde=STRING, value_serde=LONG,
                              name="by-customer")
    (grouped.aggregate(lambda: {"n": 0, "sum": 0},
                       lambda _c, amount, agg: {"n": agg["n"] + 1, "sum": agg["sum"] + amount},
                       lambda _c, amount, agg: {"n": agg["n"] - 1, "sum": agg["sum"] - amount},
                       JSON, name="totals")
        .to_stream().to("totals-out", STRING, JSON))
    (orders.group_by(lambda _id, o: (o["customer"], o["amount"]), key_serde=STRING, value_serde=LONG)
        .reduce(lambda a, b: a + b, lambda a, b: a - b, name="sums")
        .to_stream().to("sums-out", STRING, LONG))
    with TestDriver(app) as d:
        d.pipe("orders", "o1", {"customer": "ann", "amount": 10})
        d.pipe("orders", "o2", {"customer": "ann", "amount": 5})
        d.pipe("orders", "o1", {"customer": "ann", "amount": 7})     # amount changed
        d.pipe("orders", "o2", {"customer": "ben", "amount": 5})     # moved to another customer
        d.pipe("orders", "o1", None)                                  # deleted
        assert d.read("totals-out", STRING, JSON) == [
            ("ann", {"n": 1, "sum": 10}), ("ann", {"n": 2, "sum": 15}), ("ann", {"n": 2, "sum": 12}),
            ("ann", {"n": 1, "sum": 7}), ("ben", {"n": 1, "sum": 5}), ("ann", {"n": 0, "sum": 0})]
        assert d.read("sums-out", STRING, LONG) == [
            ("ann", 10), ("ann", 15), ("ann", 12), ("ann", 7), ("ben", 5), ("ann", 0)]
        assert d.store("totals").get("ben") == {"n": 1, "sum": 5}
        # the second group_by without a name repartitions through its store's topic
        assert "totals-sums-repartition" in d.outputs


def test_group_by_of_an_aggregation_and_null_groups() -> None:
    """A table from a stream aggregation re-grouped (its previous value is known), and a row
    mapped to no group: skipped with a log line and counted, as Kafka drops null keys."""
    app = StreamsApp("levels")
    scores = app.stream("points", STRING, LONG).group_by_key().reduce(lambda a, b: a + b, name="scores")
    (scores.group_by(lambda _player, score: (None if score < 0 else "high" if score >= 10 else "low", 1),
                     key_serde=STRING, value_serde=LONG)
        .count(name="per-level").to_stream().to("levels-out", STRING, LONG))
    with TestDriver(app) as d:
        d.pipe("points", "p1", 4)
        d.pipe("points", "p1", 7)   # low -> high
        d.pipe("points", "p2", -3)  # no group
        assert d.read("levels-out", STRING, LONG) == [("low", 1), ("low", 0), ("high", 1)]
        assert d.metrics()["skipped_records"] == 1


def test_group_by_needs_a_table_with_a_store() -> None:
    app = StreamsApp("x")
    t = app.table("t", STRING, STRING)
    with pytest.raises(StreamsError, match="needs a table with a store"):
        t.filter(lambda _k, _v: True).group_by(lambda k, v: (v, k))
    bad = app.table("u", STRING, STRING, name="u")
    bad.group_by(lambda k, v: v, key_serde=STRING).count(name="c").to_stream().to("o", STRING, LONG)
    with TestDriver(app) as d, pytest.raises(StreamsError, match=r"returns \(new key, new value\)"):
        d.pipe("u", "a", "b")


def test_change_serde_round_trip_and_bad_bytes() -> None:
    s = ChangeSerde(STRING)
    for c in (Change("n", "o"), Change(None, "o"), Change("n", None), Change("", "")):
        assert s.deserialize(s.serialize(c)) == c
    with pytest.raises(StreamsError):
        s.deserialize(b"\x03\x00\x00\x00\x09ab")
