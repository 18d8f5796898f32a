"""The broker's read-only index of `_schemas` and its produce-time checks (broker/schema_ids.py,
broker/schema_payloads.py), without a network: records in Confluent's `_schemas` layout are
appended to an in-memory log, payloads are written with fastavro (the reference encoder)."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from riverbed.broker.schema_ids import FieldRule, SchemaIndex, check_records, topic_rules
from riverbed.broker.schema_payloads import PayloadError, check_payload, read_message_indexes
from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.records.records import build_batch
from riverbed.protocol.records.validation import RecordValidationError
from riverbed.storage import MemoryLog

ORDER = {"type": "record", "name": "OrderEvent", "namespace": "shop", "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": ["null", "int"]}, {"name": "tags", "type": {"type": "array", "items": "string"}}]}
PROTO = """
syntax = "proto3";
package shop.v1;
// message Commented { }
import "other.proto";
message Order { string id = 1; message Line { int32 qty = 1; } enum Kind { A = 0; } Line line = 2; }
service S { rpc Get(Order) returns (Order); }
message Payment { option (x) = { a: 1 }; int64 id = 1; }
"""


def schema_record(subject: str, version: int, sid: int, schema: Any, schema_type: str | None = None, deleted: bool = False, references: list[dict[str, Any]] | None = None) -> tuple[bytes, bytes | None]:
    key = {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}
    value: dict[str, Any] = {"subject": subject, "version": version, "id": sid, "schema": schema if isinstance(schema, str) else json.dumps(schema), "deleted": deleted}
    if schema_type:
        value["schemaType"] = schema_type
    if references:
        value["references"] = references
    return json.dumps(key).encode(), json.dumps(value).encode()


def hard_delete(subject: str, version: int) -> tuple[bytes, None]:
    return json.dumps({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}).encode(), None


class Log:
    def __init__(self) -> None:
        self.log = MemoryLog("_schemas", 0)

    def append(self, *records: tuple[bytes, bytes | None]) -> None:
        self.log.append(bytearray(build_batch(list(records))), now_ms=0)


def avro(value: Any, schema: Any = ORDER) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return out.getvalue()


def framed(sid: int, payload: bytes) -> bytes:
    return b"\x00" + sid.to_bytes(4, "big") + payload


def refused(index: SchemaIndex, topic: str, rules: tuple[FieldRule, ...], *values: bytes | None) -> list[int]:
    try:
        check_records(index, topic, rules, bytearray(build_batch([(b"k", v) for v in values])))
    except RecordValidationError as exc:
        assert exc.code == ErrorCode.INVALID_RECORD
        return [i for i, _ in exc.record_errors]
    return []


VALUE = (FieldRule("value", "TopicNameStrategy", False),)


def test_index_follows_appends_deletes_and_replacement() -> None:
    log = Log()
    current: list[Any] = [log.log]
    index = SchemaIndex(lambda: current[0])
    assert refused(index, "t", VALUE, framed(1, b"")) == [0]
    log.append(schema_record("t-value", 1, 1, ORDER))
    assert refused(index, "t", VALUE, framed(1, avro({"id": "a", "n": None, "tags": []})), b"raw", None) == [1]  # tombstone passes
    log.append(schema_record("t-value", 1, 1, ORDER, deleted=True))  # soft delete
    assert refused(index, "t", VALUE, framed(1, b"")) == [0]
    assert 1 in index.ids  # the id is still known (GET /schemas/ids answers)
    log.append(hard_delete("t-value", 1))
    index.refresh()
    assert 1 not in index.ids
    # the topic deleted and created again: a new log, read from its start
    current[0] = MemoryLog("_schemas", 0)
    current[0].append(bytearray(build_batch([schema_record("t-value", 1, 5, ORDER)])), now_ms=0)
    assert refused(index, "t", VALUE, framed(5, b"")) == []
    current[0] = None
    assert refused(index, "t", VALUE, framed(5, b"")) == [0]


def test_delete_subject_records_and_junk_are_handled() -> None:
    log = Log()
    index = SchemaIndex(lambda: log.log)
    log.append((b"not json", b"{}"), (b'{"keytype":"NOOP","magic":0}', None), (None, b"x"), schema_record("t-value", 1, 3, ORDER), schema_record("t-value", 2, 4, {**ORDER, "name": "B"}))
    assert refused(index, "t", VALUE, framed(3, b""), framed(4, b"")) == []
    log.append((json.dumps({"keytype": "DELETE_SUBJECT", "subject": "t-value", "magic": 0}).encode(), json.dumps({"subject": "t-value", "version": 1}).encode()))
    assert refused(index, "t", VALUE, framed(3, b""), framed(4, b"")) == [0]


def test_record_names_for_the_strategies() -> None:
    log = Log()
    index = SchemaIndex(lambda: log.log)
    log.append(
        schema_record("shop.OrderEvent", 1, 1, ORDER),
        schema_record("t-Titled", 1, 2, {"title": "Titled", "type": "object"}, "JSON"),
        schema_record("shop.v1.Order.Line", 1, 3, PROTO, "PROTOBUF"),
        schema_record("shop.v1.Payment", 1, 3, PROTO, "PROTOBUF"),
        schema_record("anything", 1, 4, "string"),
    )
    by_record = (FieldRule("value", "RecordNameStrategy", False),)
    by_topic_record = (FieldRule("value", "TopicRecordNameStrategy", False),)
    assert refused(index, "t", by_record, framed(1, b""), framed(2, b"{}"), framed(4, b"")) == [1, 2]  # JSON's subject is t-Titled; a primitive has no name
    assert refused(index, "t", by_topic_record, framed(1, b""), framed(2, b"{}")) == [0]
    # Protobuf: message indexes after the id; [0, 0] = Order.Line, [1] = Payment, 0 alone = [0] = Order
    line = framed(3, b"\x04\x00\x00")
    payment = framed(3, b"\x02\x02")
    order = framed(3, b"\x00")
    assert refused(index, "t", by_record, line, payment, order) == [2]


def test_message_indexes() -> None:
    assert read_message_indexes(memoryview(b"\x00rest")) == ([0], 1)
    assert read_message_indexes(memoryview(b"\x04\x02\x06")) == ([1, 3], 3)
    with pytest.raises(PayloadError):
        read_message_indexes(memoryview(b"\x04\x02"))


def test_full_avro_walk_agrees_with_fastavro() -> None:
    log = Log()
    index = SchemaIndex(lambda: log.log)
    log.append(schema_record("t-value", 1, 1, ORDER))
    index.refresh()
    entry = index.ids[1]
    good = avro({"id": "é", "n": 7, "tags": ["a", "b"]})
    check_payload(index, entry, [], memoryview(good))
    bad = [good[:-1], good + b"\x00", b"\x02\xff" + good[2:], b"\x00\x04" + good[2:], b"\x00\x00\x01"]
    for payload in bad:
        with pytest.raises(PayloadError):
            check_payload(index, entry, [], memoryview(payload))
    # an array of nulls claiming 2**62 items in 10 bytes is refused, not walked
    nulls = {"type": "array", "items": "null"}
    log.append(schema_record("n-value", 1, 2, nulls))
    index.refresh()
    with pytest.raises(PayloadError, match="too many items"):
        check_payload(index, index.ids[2], [], memoryview(b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f\x00"))
    check_payload(index, index.ids[2], [], memoryview(avro([None] * 100, nulls)))


def test_full_avro_with_references() -> None:
    log = Log()
    index = SchemaIndex(lambda: log.log)
    money = {"type": "record", "name": "Money", "namespace": "shop", "fields": [{"name": "cents", "type": "long"}]}
    order = {"type": "record", "name": "Order", "namespace": "shop", "fields": [{"name": "total", "type": "shop.Money"}]}
    log.append(schema_record("money", 1, 1, money), schema_record("t-value", 1, 2, order, references=[{"name": "shop.Money", "subject": "money", "version": 1}]))
    rules = (FieldRule("value", "TopicNameStrategy", True),)
    good = avro({"total": {"cents": 5}}, fastavro.parse_schema([money, order])[1])
    assert refused(index, "t", rules, framed(2, good), framed(2, good[:0])) == [1]


def test_full_json_and_protobuf_wire() -> None:
    log = Log()
    index = SchemaIndex(lambda: log.log)
    simple = 'syntax = "proto3"; package shop.v1; message Order { int64 id = 1; string name = 2; }'
    log.append(schema_record("t-value", 1, 1, {"type": "object", "required": ["a"]}, "JSON"), schema_record("p-value", 1, 2, simple, "PROTOBUF"), schema_record("q-value", 1, 3, PROTO, "PROTOBUF"))
    rules = (FieldRule("value", "TopicNameStrategy", True),)
    assert refused(index, "t", rules, framed(1, b'{"a": 1}'), framed(1, b"{}"), framed(1, b"[" * 100_000)) == [1, 2]
    # Protobuf: field 1 (int64) varint 150 and field 2 (string) "ab" are fine; a truncated
    # length-delimited field, indexes naming no message, field 1 as a length-delimited field (a
    # wire type its declaration does not have), a field the message does not declare and a
    # string that is not UTF-8 are not
    ok = framed(2, b"\x00\x08\x96\x01\x12\x02ab")
    bad = [b"\x00\x12\x05ab", b"\x02\x0a", b"\x00\x0a\x01a", b"\x00\x18\x01", b"\x00\x12\x02\xff\xfe"]
    assert refused(index, "p", rules, ok, *(framed(2, b) for b in bad)) == [1, 2, 3, 4, 5]
    # a schema whose import is not in _schemas cannot be built: its records are refused
    assert refused(index, "q", rules, framed(3, b"\x00\x0a\x01a")) == [0]


def test_topic_rules() -> None:
    assert topic_rules({}) == ()
    assert topic_rules({"cleanup.policy": "compact", "confluent.value.schema.validation": "false"}) == ()
    assert topic_rules({"confluent.value.schema.validation": "true"}) == (FieldRule("value", "TopicNameStrategy", False),)
    assert topic_rules(
        {"confluent.key.schema.validation": "TRUE", "confluent.key.subject.name.strategy": "io.confluent.kafka.serializers.subject.RecordNameStrategy", "riverbed.value.schema.validation": "full"}
    ) == (FieldRule("key", "RecordNameStrategy", False), FieldRule("value", "TopicNameStrategy", True))


def test_fields_agree_with_the_record_decoder() -> None:
    """The scanner that locates keys and values (without decoding records) finds what the
    full decoder finds, for nulls, headers, long and varied sizes."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from riverbed.broker.schema_ids import _fields
    from riverbed.protocol.records.batch import BatchHeader
    from riverbed.protocol.records.records import decode_records, records_block

    blob = st.one_of(st.none(), st.binary(max_size=300))
    header = st.tuples(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=20)))
    record = st.tuples(blob, blob, st.lists(header, max_size=3), st.integers(0, 2**42))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(record, min_size=1, max_size=20))
    def check(records: list[Any]) -> None:
        buf = bytearray(build_batch(records))
        h = BatchHeader(buf, 0)
        block = records_block(buf, h)
        found = [(None if kl < 0 else block[kp : kp + kl], None if vl < 0 else block[vp : vp + vl]) for kp, kl, vp, vl in _fields(block, int(h.records_count))]
        assert found == [(r.key, r.value) for r in decode_records(buf)]

    check()


def test_full_avro_recursive_types_and_depth() -> None:
    log = Log()
    index = SchemaIndex(lambda: log.log)
    node = {"type": "record", "name": "Node", "fields": [{"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]}
    log.append(schema_record("l-value", 1, 1, node))
    index.refresh()

    def chain(n: int) -> dict[str, Any] | None:
        out = None
        for i in range(n):
            out = {"v": i, "next": out}
        return out

    check_payload(index, index.ids[1], [], memoryview(avro(chain(50), node)))
    with pytest.raises(PayloadError, match="nested too deep"):
        check_payload(index, index.ids[1], [], memoryview(b"\x00\x02" * 5000 + b"\x00\x00"))
