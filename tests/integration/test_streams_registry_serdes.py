"""riverbed.streams with schema-registry serdes: Avro records written by confluent-kafka's own
serializer are read by a streams app, aggregated per key with the count kept in an Avro store,
and written out as JSON Schema records that confluent-kafka's JSONDeserializer reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from riverbed.registry.service import RegistryConfig, RegistryService
from riverbed.streams import STRING, StreamsApp
from riverbed.streams.registry_serdes import AvroSerde, JsonSchemaSerde
from riverbed.streams.runtime import Runtime
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_streams import Reader, running, wait_until

pytestmark = pytest.mark.integration

ORDER = json.dumps({"type": "record", "name": "Order", "namespace": "shop", "fields": [{"name": "user", "type": "string"}, {"name": "cents", "type": "long"}]})
TOTAL = json.dumps({"type": "record", "name": "Total", "namespace": "shop", "fields": [{"name": "orders", "type": "long"}, {"name": "cents", "type": "long"}]})
TOTAL_JSON = json.dumps({"title": "UserTotal", "type": "object", "properties": {"orders": {"type": "integer"}, "cents": {"type": "integer"}}, "required": ["orders", "cents"]})


@pytest.fixture
def client(riverbed_broker: EmbeddedBroker) -> Iterator[SchemaRegistryClient]:
    with RegistryService(RegistryConfig(bootstrap=riverbed_broker.bootstrap, listen="127.0.0.1:0")) as reg:
        c = SchemaRegistryClient({"url": reg.url})
        yield c
        c.close()


def test_avro_in_json_schema_out_with_an_avro_store(riverbed_broker: EmbeddedBroker, client: SchemaRegistryClient, tmp_path: Path) -> None:
    bs = riverbed_broker.bootstrap
    create_topics(bs, NewTopic("orders", 1, 1), NewTopic("totals", 1, 1))
    ser = AvroSerializer(client, ORDER)
    p = Producer({"bootstrap.servers": bs})
    for user, cents in (("ann", 500), ("bob", 100), ("ann", 250)):
        p.produce("orders", ser({"user": user, "cents": cents}, SerializationContext("orders", MessageField.VALUE)), user.encode())
    assert p.flush(30) == 0

    app = StreamsApp("totals-app")
    (app.stream("orders", STRING, AvroSerde(client, "orders"))
        .group_by_key()
        .aggregate(lambda: {"orders": 0, "cents": 0}, lambda _k, order, acc: {"orders": acc["orders"] + 1, "cents": acc["cents"] + order["cents"]},
                   name="totals", value_serde=AvroSerde(client, "totals-app-totals-changelog", schema=TOTAL))
        .to_stream()
        .to("totals", STRING, JsonSchemaSerde(client, "totals", schema=TOTAL_JSON)))
    out = Reader(bs, "totals")
    de = JSONDeserializer(None, schema_registry_client=client)
    latest: dict[str, dict[str, int]] = {}

    def seen() -> dict[str, dict[str, int]]:
        for k, v, _ts in out.poll():
            assert k is not None and v is not None and v[0] == 0  # the registry's wire format
            latest[k.decode()] = de(v, SerializationContext("totals", MessageField.VALUE))
        return latest

    with running(Runtime(app.topology(), bs, state_dir=tmp_path / "state", commit_interval_ms=200)):
        wait_until(lambda: seen() == {"ann": {"orders": 2, "cents": 750}, "bob": {"orders": 1, "cents": 100}}, "totals")
    out.close()
    # the subjects the serdes registered under: the output topic's and the store changelog's
    subjects = client.get_subjects()
    assert "totals-value" in subjects and "totals-app-totals-changelog-value" in subjects
    assert client.get_latest_version("totals-value").schema.schema_type == "JSON"


def _shipment_class() -> type:
    """A Protobuf message class made at run time (what protoc would generate for shop.Shipment)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="shipment_test.proto", package="shop", syntax="proto3")
    msg = fdp.message_type.add(name="Shipment")
    msg.field.add(name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    msg.field.add(name="parcels", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Shipment"))


def test_protobuf_serde_round_trip(client: SchemaRegistryClient) -> None:
    from riverbed.streams.registry_serdes import ProtobufSerde

    shipment = _shipment_class()
    serde = ProtobufSerde(client, "shipments", shipment)
    data = serde.serialize(shipment(id="S1", parcels=3))
    assert data is not None and data[0] == 0 and data[5] == 0  # magic byte, id, message index [0]
    back = serde.deserialize(data)
    assert (back.id, back.parcels) == ("S1", 3)
    assert client.get_latest_version("shipments-value").schema.schema_type == "PROTOBUF"
    assert serde.serialize(None) is None and serde.deserialize(None) is None
