"""KTable filter / map_values (Kafka's semantics: a row that fails the filter is forwarded as a
deletion), materialized on request so the result can be joined."""

from __future__ import annotations

from typing import Any

from riverbed.streams import JSON, LONG, STRING, StreamsApp, TestDriver


def test_table_filter_and_map_values() -> None:
    app = StreamsApp("t")
    users = app.table("users", STRING, JSON, name="users")
    adults = users.filter(lambda _k, u: u["age"] >= 18, name="adults")
    adults.map_values(lambda u: u["name"].upper(), STRING).to_stream().to("adult-names", STRING, STRING)
    with TestDriver(app) as d:
        d.pipe("users", "u1", {"name": "ann", "age": 30}, 1)
        d.pipe("users", "u2", {"name": "bob", "age": 12}, 2)
        d.pipe("users", "u1", {"name": "ann", "age": 17}, 3)   # no longer passes: deleted downstream
        d.pipe("users", "u3", None, 4)                          # a deletion stays a deletion
        assert d.read("adult-names", STRING, STRING) == [("u1", "ANN"), ("u2", None), ("u1", None), ("u3", None)]
        assert d.store("adults").get("u1") is None and d.store("users").get("u1")["age"] == 17


def test_filtered_table_can_be_joined_when_materialized() -> None:
    app = StreamsApp("t")
    limits = app.table("limits", STRING, LONG, name="limits").filter(lambda _k, v: v > 0, name="positive-limits")
    app.stream("spend", STRING, LONG).join(limits, lambda s, lim: s <= lim, value_serde=JSON).to("ok", STRING, JSON)
    with TestDriver(app) as d:
        d.pipe("limits", "a", 100, 1)
        d.pipe("limits", "b", 0, 2)
        d.pipe("spend", "a", 50, 3)
        d.pipe("spend", "b", 50, 4)   # b's limit was filtered out: no match
        assert d.read("ok", STRING, JSON) == [("a", True)]


def test_table_with_timestamp_extractor_and_its_own_store_format() -> None:
    """app.table(timestamp_extractor=..., store_value_serde=...): the extractor sees each record
    (riverbed.sql adds the key to the row there) and the store keeps values in its own format."""
    app = StreamsApp("t")

    def extract(rec: Any, _partition_time: int) -> int:
        if rec.value is not None:
            rec.value = {"id": rec.key, "v": rec.value}
        return int(rec.timestamp) + 1

    app.table("raw", STRING, LONG, name="rows", timestamp_extractor=extract, store_value_serde=JSON)\
        .to_stream().to("rows-out", STRING, JSON)
    with TestDriver(app) as d:
        d.pipe("raw", "a", 7, 10)
        d.pipe("raw", "a", None, 20)
        assert d.read("rows-out", STRING, JSON, with_timestamp=True) == [("a", {"id": "a", "v": 7}, 11), ("a", None, 21)]
        d.pipe("raw", "b", 8, 30)
        assert d.store("rows").get("b") == {"id": "b", "v": 8}
