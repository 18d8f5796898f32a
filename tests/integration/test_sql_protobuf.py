"""PROTOBUF values and keys, AVRO / JSON_SR keys and the NONE key format with riverbed's schema
registry: columns inferred from a schema that confluent-kafka's ProtobufSerializer registered (a
file with a reference), records written by it and read back from a query's sink by its
ProtobufDeserializer; keys registered under `<topic>-key` and read by confluent-kafka's
AvroDeserializer."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from riverbed.client import ClusterSettings
from riverbed.registry.service import RegistryConfig, RegistryService
from riverbed.sql import protobuf as P
from riverbed.sql.engine import Engine
from riverbed.sql.errors import SqlError
from riverbed.sql.parser import parse_one
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

pytestmark = pytest.mark.integration

F = descriptor_pb2.FieldDescriptorProto


def order_class() -> Any:
    """shop.Order (first message of shop/order.proto, which imports shop/address.proto)."""
    address = descriptor_pb2.FileDescriptorProto(
        name="shop/address.proto", package="shop", syntax="proto3"
    )
    address.message_type.add(name="Address").field.add(
        name="city", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING
    )
    order = descriptor_pb2.FileDescriptorProto(
        name="shop/order.proto", package="shop", syntax="proto3", dependency=["shop/address.proto"]
    )
    status = order.enum_type.add(name="Status")
    status.value.add(name="NEW", number=0)
    status.value.add(name="PAID", number=1)
    m = order.message_type.add(name="Order")
    m.field.add(name="order_id", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    m.field.add(name="amount", number=2, label=F.LABEL_OPTIONAL, type=F.TYPE_DOUBLE)
    m.field.add(
        name="to", number=3, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE, type_name=".shop.Address"
    )
    m.field.add(name="parcels", number=4, label=F.LABEL_REPEATED, type=F.TYPE_SINT64)
    m.field.add(
        name="status", number=5, label=F.LABEL_OPTIONAL, type=F.TYPE_ENUM, type_name=".shop.Status"
    )
    order.message_type.add(name="Other").field.add(
        name="x", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(address)
    pool.Add(order)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedBroker, RegistryService, Engine]]:
    broker = EmbeddedBroker(tmp_path_factory.mktemp("sqlpb"), **FIXTURE_DEFAULTS).start()
    reg = RegistryService(RegistryConfig(bootstrap=broker.bootstrap, listen="127.0.0.1:0")).start()
    engine = Engine(
        ClusterSettings(broker.bootstrap, registry_url=reg.url),
        service_id=f"pb{uuid.uuid4().hex[:4]}_",
        state_dir=Path(tmp_path_factory.mktemp("sqlpb-state")),
    ).start()
    yield broker, reg, engine
    engine.close()
    reg.stop()
    broker.stop()


def read(bootstrap: str, topic: str, n: int, timeout: float = 20) -> list[Message]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m)
    c.close()
    return got


def test_protobuf_columns_from_the_registry_and_a_protobuf_sink(
    env: tuple[EmbeddedBroker, RegistryService, Engine],
) -> None:
    broker, reg, engine = env
    sr = SchemaRegistryClient({"url": reg.url})
    cls = order_class()
    ser = ProtobufSerializer(cls, sr, {"use.deprecated.format": False})
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i, amount in enumerate([5.0, 25.0, 40.0]):
        msg = cls(
            order_id=f"o{i}", amount=amount, to={"city": "Oslo"}, parcels=[i, -i], status=i % 2
        )
        p.produce(
            "pb_orders",
            ser(msg, SerializationContext("pb_orders", MessageField.VALUE)),
            f"k{i}".encode(),
        )
    assert p.flush(10) == 0
    engine.execute(
        "CREATE STREAM pb_orders (k STRING KEY) WITH (kafka_topic='pb_orders', value_format='PROTOBUF');"
    )
    fields = engine.execute("DESCRIBE pb_orders;")[0]["sourceDescription"]["fields"]
    assert [(f["name"], f["schema"]["type"]) for f in fields] == [
        ("K", "STRING"),
        ("ORDER_ID", "STRING"),
        ("AMOUNT", "DOUBLE"),
        ("TO", "STRUCT"),
        ("PARCELS", "ARRAY"),
        ("STATUS", "STRING"),
    ]
    _cols, rows = engine.pull(
        parse_one("SELECT k, order_id, to->city, parcels, status FROM pb_orders;").query
    )  # type: ignore[attr-defined]
    assert sorted(rows) == [
        ["k0", "o0", "Oslo", [0, 0], "NEW"],
        ["k1", "o1", "Oslo", [1, -1], "PAID"],
        ["k2", "o2", "Oslo", [2, -2], "NEW"],
    ]
    engine.execute(
        "CREATE STREAM pb_big AS SELECT k, order_id, amount * 2 AS twice, parcels FROM pb_orders "
        "WHERE amount > 10 EMIT CHANGES;",
        {"auto.offset.reset": "earliest"},
    )
    got = read(broker.bootstrap, "PB_BIG", 2)
    latest = sr.get_latest_version("PB_BIG-value")
    assert (
        latest.schema.schema_type == "PROTOBUF"
        and "message ConnectDefault1" in latest.schema.schema_str
    )
    schema, pool = P.build(latest.schema.schema_str)
    sink_cls = P.message_class(P.message_at(schema, pool, [0]))
    de = ProtobufDeserializer(sink_cls, {"use.deprecated.format": False})
    out = [
        (m.key(), de(m.value(), SerializationContext("PB_BIG", MessageField.VALUE))) for m in got
    ]
    assert [(k, v.ORDER_ID, v.TWICE, list(v.PARCELS)) for k, v in out] == [
        (b"k1", "o1", 50.0, [1, -1]),
        (b"k2", "o2", 80.0, [2, -2]),
    ]
    sr.close()


def test_protobuf_keys_and_values_round_trip(
    env: tuple[EmbeddedBroker, RegistryService, Engine],
) -> None:
    _broker, reg, engine = env
    engine.execute(
        "CREATE TABLE pb_t (id STRING PRIMARY KEY, n INT, d DECIMAL(6, 2), ts TIMESTAMP, m MAP<STRING, INT>) "
        "WITH (kafka_topic='pb_t', format='PROTOBUF', partitions=1);"
        "INSERT INTO pb_t (id, n, d, ts, m) VALUES ('a', 7, 12.34, FROM_UNIXTIME(1700000000123), MAP('x' := 1));"
    )
    _cols, rows = engine.pull(parse_one("SELECT * FROM pb_t;").query)  # type: ignore[attr-defined]
    assert rows == [["a", 7, 12.34, 1700000000123, {"x": 1}]]
    sr = SchemaRegistryClient({"url": reg.url})
    key_schema = sr.get_latest_version("pb_t-key").schema
    assert (
        key_schema.schema_type == "PROTOBUF" and "string ID = 1;" in key_schema.schema_str
    )  # keys are wrapped
    sr.close()
    # a stream over the same topic infers its key and value columns from the registry
    engine.execute("CREATE STREAM pb_t_again WITH (kafka_topic='pb_t', format='PROTOBUF');")
    fields = engine.execute("DESCRIBE pb_t_again;")[0]["sourceDescription"]["fields"]
    assert [(f["name"], f["schema"]["type"], f.get("type")) for f in fields][:2] == [
        ("ID", "STRING", "KEY"),
        ("N", "INTEGER", None),
    ]


def test_avro_key_is_unwrapped_and_inferred(
    env: tuple[EmbeddedBroker, RegistryService, Engine],
) -> None:
    broker, reg, engine = env
    engine.execute(
        "CREATE STREAM ak (id BIGINT KEY, v STRING) WITH (kafka_topic='ak', key_format='AVRO', "
        "value_format='JSON', partitions=1);"
        "INSERT INTO ak (id, v) VALUES (42, 'x');"
    )
    (m,) = read(broker.bootstrap, "ak", 1)
    sr = SchemaRegistryClient({"url": reg.url})
    assert AvroDeserializer(sr)(m.key(), SerializationContext("ak", MessageField.KEY)) == 42
    sr.close()
    engine.execute(
        "CREATE STREAM ak2 (v STRING) WITH (kafka_topic='ak', key_format='AVRO', value_format='JSON');"
    )
    _cols, rows = engine.pull(parse_one("SELECT * FROM ak2;").query)  # type: ignore[attr-defined]
    assert rows == [[42, "x"]]
    assert engine.execute("DESCRIBE ak2;")[0]["sourceDescription"]["fields"][0]["name"] == "ROWKEY"
    with pytest.raises(SqlError, match="Schema for message keys on topic 'js_none' does not exist"):
        engine.execute(
            "CREATE STREAM nokey (v STRING) WITH (kafka_topic='js_none', key_format='JSON_SR', "
            "value_format='JSON', partitions=1);"
        )


def test_none_key_format(env: tuple[EmbeddedBroker, RegistryService, Engine]) -> None:
    broker, _reg, engine = env
    with pytest.raises(
        SqlError, match="The 'NONE' format can only be used when no columns are defined"
    ):
        engine.execute(
            "CREATE STREAM nk_bad (id STRING KEY, v INT) WITH (kafka_topic='nk', key_format='NONE', "
            "value_format='JSON', partitions=1);"
        )
    with pytest.raises(SqlError, match="'NONE' format can only be used as a KEY_FORMAT"):
        engine.execute(
            "CREATE STREAM nk_bad (v INT) WITH (kafka_topic='nk', value_format='NONE', partitions=1);"
        )
    engine.execute(
        "CREATE STREAM nk (id STRING, v INT) WITH (kafka_topic='nk', key_format='NONE', value_format='JSON', "
        "partitions=1);"
    )
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(
        "nk", b'{"id": "a", "v": 1}', key=b"\xff not decodable as anything"
    )  # the key is ignored
    assert p.flush(10) == 0
    _cols, rows = engine.pull(parse_one("SELECT * FROM nk;").query)  # type: ignore[attr-defined]
    assert rows == [["a", 1]]
    # a query that gives the rows a key writes it with ksqlDB's default key format, KAFKA
    engine.execute(
        "CREATE STREAM nk_by_id AS SELECT * FROM nk PARTITION BY id EMIT CHANGES;",
        {"auto.offset.reset": "earliest"},
    )
    assert engine.catalog["NK_BY_ID"].key_format == "KAFKA"
    (m,) = read(broker.bootstrap, "NK_BY_ID", 1)
    assert m.key() == b"a"


def test_schema_full_names(env: tuple[EmbeddedBroker, RegistryService, Engine]) -> None:
    _broker, reg, engine = env
    sr = SchemaRegistryClient({"url": reg.url})
    cls = order_class()
    ser = ProtobufSerializer(cls, sr, {"use.deprecated.format": False})
    ser(
        cls(order_id="x"), SerializationContext("pb_named", MessageField.VALUE)
    )  # registers pb_named-value
    engine.execute(
        "CREATE STREAM pb_other WITH (kafka_topic='pb_named', value_format='PROTOBUF', "
        "value_schema_full_name='shop.Other', partitions=1);"
    )
    fields = engine.execute("DESCRIBE pb_other;")[0]["sourceDescription"]["fields"]
    assert [f["name"] for f in fields] == ["X"]
    with pytest.raises(SqlError, match=r"Schema does not contain the message 'shop\.Nope'"):
        engine.execute(
            "CREATE STREAM pb_nope WITH (kafka_topic='pb_named', value_format='PROTOBUF', "
            "value_schema_full_name='shop.Nope');"
        )
    engine.execute(
        "CREATE STREAM named_out WITH (value_format='PROTOBUF', value_schema_full_name='out.Big') AS "
        "SELECT * FROM pb_other EMIT CHANGES;"
        "CREATE STREAM named_avro WITH (value_format='AVRO', value_schema_full_name='out.BigAvro') AS "
        "SELECT * FROM pb_other EMIT CHANGES;"
        "INSERT INTO pb_other (x) VALUES ('y');"
    )
    deadline = time.monotonic() + 20
    subjects: list[str] = []
    while (
        not {"NAMED_OUT-value", "NAMED_AVRO-value"} <= set(subjects) and time.monotonic() < deadline
    ):
        subjects = sr.get_subjects()  # registered with the first record each query writes
        time.sleep(0.1)
    text = sr.get_latest_version("NAMED_OUT-value").schema.schema_str
    assert "package out;" in text and "message Big {" in text, text
    avro = json.loads(sr.get_latest_version("NAMED_AVRO-value").schema.schema_str)
    assert (avro["name"], avro.get("namespace")) in (("BigAvro", "out"), ("out.BigAvro", None)), (
        avro
    )
    # INSERT INTO a source whose columns came from the registry writes with that schema's message
    other_cls = message_factory.GetMessageClass(
        cls.DESCRIPTOR.file.pool.FindMessageTypeByName("shop.Other")
    )
    (m,) = [
        m for m in read(_broker.bootstrap, "pb_named", 1) if m.value() and m.value()[5:6] != b"\x00"
    ]
    assert (
        ProtobufDeserializer(other_cls, {"use.deprecated.format": False})(
            m.value(), SerializationContext("pb_named", MessageField.VALUE)
        ).x
        == "y"
    )
    with pytest.raises(SqlError, match="Invalid VALUE_SCHEMA_FULL_NAME"):
        engine.execute(
            "CREATE STREAM bad_name WITH (value_schema_full_name='a b') AS SELECT * FROM pb_other EMIT CHANGES;"
        )
    sr.close()


def test_value_schema_id_and_writing_with_an_inferred_avro_schema(
    env: tuple[EmbeddedBroker, RegistryService, Engine],
) -> None:
    broker, reg, engine = env
    sr = SchemaRegistryClient({"url": reg.url})
    schema = {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [{"name": "orderId", "type": "string"}, {"name": "amount", "type": "double"}],
    }
    sid = sr.register_schema("avro_ins-value", Schema(json.dumps(schema), "AVRO"))
    with pytest.raises(
        SqlError, match="Table elements and VALUE_SCHEMA_ID cannot both exist for create statement"
    ):
        engine.execute(
            f"CREATE STREAM avro_ins (k STRING KEY, a INT) WITH (kafka_topic='avro_ins', value_format='AVRO', "
            f"value_schema_id={sid}, partitions=1);"
        )
    with pytest.raises(SqlError, match=f"Schema id {sid} is AVRO, not a PROTOBUF schema"):
        engine.execute(
            f"CREATE STREAM avro_ins (k STRING KEY) WITH (kafka_topic='avro_ins', value_format='PROTOBUF', "
            f"value_schema_id={sid}, partitions=1);"
        )
    engine.execute(
        f"CREATE STREAM avro_ins (k STRING KEY) WITH (kafka_topic='avro_ins', value_format='AVRO', "
        f"value_schema_id={sid}, partitions=1);"
        "INSERT INTO avro_ins (k, orderid, amount) VALUES ('k1', 'o1', 2.5);"
    )
    # INSERT INTO ... SELECT writes the same way
    engine.execute(
        "CREATE STREAM avro_src (k STRING KEY, orderid STRING, amount DOUBLE) WITH (kafka_topic='avro_src', "
        "value_format='JSON', partitions=1);"
        "INSERT INTO avro_ins SELECT * FROM avro_src EMIT CHANGES;",
        {"auto.offset.reset": "earliest"},
    )
    engine.execute("INSERT INTO avro_src (k, orderid, amount) VALUES ('k2', 'o2', 4.0);")
    got = read(broker.bootstrap, "avro_ins", 2)
    de = AvroDeserializer(sr)
    assert [int.from_bytes((m.value() or b"")[1:5], "big") for m in got] == [
        sid,
        sid,
    ]  # the registered schema
    assert [de(m.value(), SerializationContext("avro_ins", MessageField.VALUE)) for m in got] == [
        {"orderId": "o1", "amount": 2.5},
        {"orderId": "o2", "amount": 4.0},
    ]
    sr.close()


def test_records_that_do_not_decode_are_skipped(
    env: tuple[EmbeddedBroker, RegistryService, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    broker, _reg, engine = env
    engine.execute(
        "CREATE STREAM pb_bad (id STRING KEY, n INT) WITH (kafka_topic='pb_bad', value_format='PROTOBUF', partitions=1);"
        "CREATE STREAM pb_bad_copy AS SELECT * FROM pb_bad EMIT CHANGES;"
        "INSERT INTO pb_bad (id, n) VALUES ('a', 1);",
        {"auto.offset.reset": "earliest"},
    )
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("pb_bad", b"not in the wire format", b"x")
    p.produce("pb_bad", b"\x00\x00\x00\x7f\x7f\x00", b"y")  # an unknown schema id
    p.produce("pb_bad", b"\x00\x00\x00\x00\x01\x7e\x7e\x7e", b"z")  # bad message indexes
    assert p.flush(10) == 0
    engine.execute("INSERT INTO pb_bad (id, n) VALUES ('b', 2);")
    _cols, rows = engine.pull(parse_one("SELECT * FROM pb_bad;").query)  # type: ignore[attr-defined]
    assert rows == [["a", 1], ["b", 2]]
    assert sum("does not decode" in r.getMessage() for r in caplog.records) == 3
    got = read(broker.bootstrap, "PB_BAD_COPY", 2)  # the persistent query skipped them and went on
    assert [m.key() for m in got] == [b"a", b"b"]


def test_protobuf_nullable_representation(
    env: tuple[EmbeddedBroker, RegistryService, Engine],
) -> None:
    _broker, reg, engine = env
    with pytest.raises(
        SqlError,
        match="VALUE_PROTOBUF_NULLABLE_REPRESENTATION can only be used with VALUE_FORMAT PROTOBUF",
    ):
        engine.execute(
            "CREATE STREAM pn_bad (id STRING KEY, n INT) WITH (kafka_topic='pn', value_format='JSON', "
            "value_protobuf_nullable_representation='WRAPPER', partitions=1);"
        )
    engine.execute(
        "CREATE STREAM pn (id STRING KEY, n INT) WITH (kafka_topic='pn', value_format='PROTOBUF', "
        "value_protobuf_nullable_representation='WRAPPER', partitions=1);"
        "INSERT INTO pn (id, n) VALUES ('a', 0); INSERT INTO pn (id, n) VALUES ('b', NULL);"
    )
    _cols, rows = engine.pull(parse_one("SELECT * FROM pn;").query)  # type: ignore[attr-defined]
    assert rows == [["a", 0], ["b", None]]
    sr = SchemaRegistryClient({"url": reg.url})
    assert (
        "google.protobuf.Int32Value N = 1;" in sr.get_latest_version("pn-value").schema.schema_str
    )
    sr.close()
