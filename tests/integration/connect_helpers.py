"""A Debezium change-event consumer written against Debezium's documented format (PostgreSQL
connector docs: "Data change events", "Data type mappings"; Kafka Connect JsonConverter), used
by the connect tests to decode what riverbed.connect writes. It checks the envelope's shape
and turns logical types back into Python values through the schema part."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

OPS = {"c", "u", "d", "r", "t"}
SOURCE_FIELDS = {"version", "connector", "name", "ts_ms", "snapshot", "db", "schema", "table", "txId", "lsn"}


@dataclass
class ChangeEvent:
    topic: str
    key: dict[str, Any] | None
    op: str | None  # None: a tombstone
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source: dict[str, Any]
    offset: int


def _logical(schema: dict[str, Any], value: Any) -> Any:
    if value is None:
        return None
    name = schema.get("name")
    t = schema["type"]
    if name == "org.apache.kafka.connect.data.Decimal":
        raw = base64.b64decode(value)
        return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-int(schema["parameters"]["scale"]))
    if name == "io.debezium.data.VariableScaleDecimal":
        raw = base64.b64decode(value["value"])
        return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-int(value["scale"]))
    if name == "io.debezium.time.Date":
        return date(1970, 1, 1) + timedelta(days=value)
    if name == "io.debezium.time.MicroTimestamp":
        return datetime(1970, 1, 1) + timedelta(microseconds=value)
    if name == "io.debezium.time.Timestamp":
        return datetime(1970, 1, 1) + timedelta(milliseconds=value)
    if name == "io.debezium.time.ZonedTimestamp":
        assert value.endswith("Z") or "+" in value, value
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    if name == "io.debezium.time.MicroTime":
        return timedelta(microseconds=value)
    if name == "io.debezium.time.MicroDuration":
        return timedelta(microseconds=value)
    if name == "io.debezium.data.Json":
        return json.loads(value)
    if t == "bytes":
        return base64.b64decode(value)
    if t == "array":
        return [_logical(schema["items"], v) for v in value]
    if t == "struct":
        return _struct(schema, value)
    return value


def _struct(schema: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    assert schema["type"] == "struct"
    names = [f["field"] for f in schema["fields"]]
    assert set(payload) == set(names), (sorted(payload), names)
    out = {}
    for f in schema["fields"]:
        v = payload[f["field"]]
        assert v is not None or f["optional"], f"non-optional field {f['field']} is null"
        out[f["field"]] = _logical(f, v)
    return out


def decode(topic: str, key: bytes | None, value: bytes | None, offset: int = -1) -> ChangeEvent:
    """One Kafka record of a Debezium PostgreSQL topic, JSON with or without schemas."""
    k = None
    if key is not None:
        kj = json.loads(key)
        k = _struct(kj["schema"], kj["payload"]) if isinstance(kj, dict) and set(kj) == {"schema", "payload"} else kj
    if value is None:
        return ChangeEvent(topic, k, None, None, None, {}, offset)
    vj = json.loads(value)
    if set(vj) == {"schema", "payload"}:
        schema, payload = vj["schema"], vj["payload"]
        assert schema["name"].endswith(".Envelope"), schema["name"]
        fields = {f["field"]: f for f in schema["fields"]}
        assert fields["source"]["name"] == "io.debezium.connector.postgresql.Source"
        env = {n: (_logical(fields[n], payload[n]) if n in ("before", "after") else payload[n]) for n in payload}
    else:
        env = vj
    assert env["op"] in OPS, env["op"]
    src = env["source"]
    assert set(src) >= SOURCE_FIELDS, set(src)
    assert src["connector"] == "postgresql"
    assert isinstance(env["ts_ms"], int)
    assert topic == f"{src['name']}.{src['schema']}.{src['table']}", (topic, src)
    if env["op"] in ("c", "r"):
        assert env["before"] is None and env["after"] is not None
    if env["op"] == "d":
        assert env["after"] is None and env["before"] is not None
    if env["op"] == "r":
        assert src["snapshot"] in ("true", "first", "last", "first_in_data_collection", "last_in_data_collection"), src["snapshot"]
    else:
        assert src["snapshot"] in ("false", None), src["snapshot"]
    return ChangeEvent(topic, k, env["op"], env["before"], env["after"], src, offset)


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[tuple[bytes | None, bytes | None, int, list[Any]]]:
    """Every record of partition 0 of `topic`, up to its end now."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "connect-test-reader", "enable.auto.commit": False})
    try:
        tp = TopicPartition(topic, 0)
        try:
            lo, hi = c.get_watermark_offsets(tp, timeout=timeout)
        except KafkaException:  # not created yet
            return []
        out: list[tuple[bytes | None, bytes | None, int, list[Any]]] = []
        if hi <= lo:
            return out
        c.assign([TopicPartition(topic, 0, lo)])
        deadline = time.monotonic() + timeout
        pos = lo
        while pos < hi:
            assert time.monotonic() < deadline, f"{topic}: read {pos} of {hi}"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            out.append((m.key(), m.value(), m.offset(), list(m.headers() or [])))
            pos = m.offset() + 1
        return out
    finally:
        c.close()


def events(bootstrap: str, topic: str) -> list[ChangeEvent]:
    return [decode(topic, k, v, off) for k, v, off, _h in read_topic(bootstrap, topic)]


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def position(e: ChangeEvent) -> tuple[int, int]:
    """Where an event is in the stream, comparable across events: (commit LSN of its
    transaction, LSN of the change) from ``source.sequence``; a snapshot record is placed just
    before its consistent point (the first streamed change may start exactly there)."""
    if e.op == "r":
        return (int(e.source["lsn"]) - 1, 0)
    commit, lsn = json.loads(e.source["sequence"])
    return (int(commit), int(lsn))


def replay(evts: list[ChangeEvent], key_field: str = "id") -> tuple[dict[Any, dict[str, Any]], int]:
    """The table a consumer rebuilds from change events, dropping at-least-once duplicates by
    stream position as docs/connect.md tells consumers to: (state by key, number of distinct
    changes applied)."""
    state: dict[Any, dict[str, Any]] = {}
    last: dict[Any, tuple[int, int]] = {}
    applied = 0
    for e in evts:
        if e.op is None:
            continue
        if e.op == "t":
            state.clear()
            continue
        row = e.after if e.after is not None else e.before
        assert row is not None
        k = row[key_field]
        pos = position(e)
        if e.op != "r":
            if pos <= last.get(k, (-1, -1)):
                continue  # a duplicate from the at-least-once window
            applied += 1
        last[k] = pos
        if e.op == "d":
            state.pop(k, None)
        else:
            state[k] = e.after  # type: ignore[assignment]
    return state, applied
