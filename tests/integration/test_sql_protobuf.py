"""PROTOBUF values and keys, AVRO / JSON_SR keys and the NONE key format with riverbed's schema
registry: columns inferred from a schema that confluent-kafka's ProtobufSerializer registered (a
file with a reference), records written by it and read back from a query's sink by its
ProtobufDeserializer; keys registered under `<topic>-key` and read by confluent-kafka's
AvroDeserializer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
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
