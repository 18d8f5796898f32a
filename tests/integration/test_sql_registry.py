"""VALUE_FORMAT AVRO and JSON_SR with riverbed's schema registry: columns inferred from the
registry, records written and read by confluent-kafka's Avro serializers, sink schemas
registered under `<topic>-value`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from riverbed.client import ClusterSettings
from riverbed.registry.service import RegistryConfig, RegistryService
from riverbed.sql.engine import Engine
from riverbed.sql.errors import SqlError
from riverbed.sql.parser import parse_one
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

pytestmark = pytest.mark.integration

ORDER = {"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "orderId", "type": "string"}, {"name": "amount", "type": "double"},
    {"name": "tags", "type": {"type": "array", "items": "string"}}]}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedBroker, RegistryService, Engine]]:
    broker = EmbeddedBroker(tmp_path_factory.mktemp("sqlreg"), **FIXTURE_DEFAULTS).start()
    reg = RegistryService(RegistryConfig(bootstrap=broker.bootstrap, listen="127.0.0.1:0")).start()
    engine = Engine(ClusterSettings(broker.bootstrap, registry_url=reg.url), service_id=f"reg{uuid.uuid4().hex[:4]}_",
                    state_dir=Path(tmp_path_factory.mktemp("sqlreg-state"))).start()
    yield broker, reg, engine
    engine.close()
    reg.stop()
    broker.stop()


def test_avro_columns_from_the_registry_and_an_avro_sink(env: tuple[EmbeddedBroker, RegistryService, Engine]) -> None:
    broker, reg, engine = env
    sr = SchemaRegistryClient({"url": reg.url})
    ser = AvroSerializer(sr, json.dumps(ORDER))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i, amount in enumerate([5.0, 25.0, 40.0]):
        p.produce("avro_orders", ser({"orderId": f"o{i}", "amount": amount, "tags": ["a"]},
                                     SerializationContext("avro_orders", MessageField.VALUE)), f"k{i}".encode())
    assert p.flush(10) == 0
    engine.execute("CREATE STREAM avro_orders (k STRING KEY) WITH (kafka_topic='avro_orders', value_format='AVRO');")
    fields = engine.execute("DESCRIBE avro_orders;")[0]["sourceDescription"]["fields"]
    assert [(f["name"], f["schema"]["type"]) for f in fields] == [("K", "STRING"), ("ORDERID", "STRING"),
                                                                 ("AMOUNT", "DOUBLE"), ("TAGS", "ARRAY")]
    engine.execute("CREATE STREAM big_orders AS SELECT k, orderid, amount * 2 AS twice FROM avro_orders "
                   "WHERE amount > 10 EMIT CHANGES;", {"auto.offset.reset": "earliest"})
    de = AvroDeserializer(sr)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "check", "auto.offset.reset": "earliest"})
    c.subscribe(["BIG_ORDERS"])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append((m.key(), de(m.value(), SerializationContext("BIG_ORDERS", MessageField.VALUE))))
    c.close()
    assert got == [(b"k1", {"ORDERID": "o1", "TWICE": 50.0}), (b"k2", {"ORDERID": "o2", "TWICE": 80.0})]
    assert json.loads(sr.get_latest_version("BIG_ORDERS-value").schema.schema_str)["name"] == "KsqlDataSourceSchema"
    sr.close()


def test_json_sr_round_trip_and_missing_schema(env: tuple[EmbeddedBroker, RegistryService, Engine]) -> None:
    broker, _reg, engine = env
    engine.execute("CREATE STREAM js (id STRING KEY, n INT, tags ARRAY<STRING>) WITH (kafka_topic='js', value_format='JSON_SR', partitions=1);"
                   "INSERT INTO js (id, n, tags) VALUES ('a', 1, ARRAY['x']);")
    _cols, rows = engine.pull(parse_one("SELECT * FROM js;").query)  # type: ignore[attr-defined]
    assert rows == [["a", 1, ["x"]]]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "raw", "auto.offset.reset": "earliest"})
    c.subscribe(["js"])
    m = None
    deadline = time.monotonic() + 10
    while m is None and time.monotonic() < deadline:
        m = c.poll(0.2)
    c.close()
    assert m is not None and (m.value() or b"")[:1] == b"\x00" and json.loads((m.value() or b"")[5:]) == {"N": 1, "TAGS": ["x"]}
    with pytest.raises(SqlError, match="does not exist in the Schema Registry"):
        engine.execute("CREATE STREAM nothing WITH (kafka_topic='js', value_format='AVRO', key_format='KAFKA');"
                       .replace("'js'", "'no_such_topic'"))
