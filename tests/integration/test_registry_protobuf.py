"""Protobuf in the schema registry with real clients: confluent-kafka's ProtobufSerializer and
ProtobufDeserializer over HTTP, records over TCP through a real broker. The message classes
are built at run time from FileDescriptorProtos (no generated code): a file that imports
another (a schema reference) and holds two messages (the second one's message index is [1])."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from riverbed.registry.service import RegistryConfig, RegistryService
from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration

F = descriptor_pb2.FieldDescriptorProto


def files(parcel_type: int = F.TYPE_INT64, extra_field: bool = False) -> list[descriptor_pb2.FileDescriptorProto]:
    address = descriptor_pb2.FileDescriptorProto(name="shop/address.proto", package="shop", syntax="proto3")
    address.message_type.add(name="Address").field.add(name="city", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    order = descriptor_pb2.FileDescriptorProto(name="shop/order.proto", package="shop", syntax="proto3", dependency=["shop/address.proto"])
    order.message_type.add(name="Order").field.add(name="id", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    shipment = order.message_type.add(name="Shipment")
    shipment.field.add(name="order_id", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    shipment.field.add(name="to", number=2, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE, type_name=".shop.Address")
    shipment.field.add(name="parcels", number=3, label=F.LABEL_REPEATED, type=parcel_type)
    if extra_field:
        shipment.field.add(name="note", number=4, label=F.LABEL_OPTIONAL, type=F.TYPE_STRING)
    return [address, order]


def message_class(name: str, **kw: Any) -> Any:
    pool = descriptor_pool.DescriptorPool()
    for f in files(**kw):
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


@pytest.fixture
def sr() -> Iterator[list[SchemaRegistryClient]]:
    made: list[SchemaRegistryClient] = []
    yield made
    for c in made:
        c.close()


def client_for(made: list[SchemaRegistryClient], url: str) -> SchemaRegistryClient:
    c = SchemaRegistryClient({"url": url})
    made.append(c)
    return c


@pytest.fixture
def registry(broker: EmbeddedBroker) -> Iterator[RegistryService]:
    with RegistryService(RegistryConfig(bootstrap=broker.bootstrap, listen="127.0.0.1:0", max_body_bytes=64 * 1024)) as reg:
        yield reg


def test_protobuf_serializers_round_trip_with_a_reference_and_a_second_message(sr: list[SchemaRegistryClient], broker: EmbeddedBroker, registry: RegistryService, topic_name: str) -> None:
    shipment_cls = message_class("shop.Shipment")
    client = client_for(sr, registry.url)
    ser = ProtobufSerializer(shipment_cls, client)
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    sent = []
    for i in range(4):
        msg = shipment_cls(order_id=f"A{i}", to={"city": "Oslo"}, parcels=[i, 10 * i])
        sent.append(msg)
        producer.produce(topic_name, value=ser(msg, ctx))
    assert producer.flush(30) == 0

    # the serializer registered the import under its name, and the file with a reference to it
    assert client.get_latest_version("shop/address.proto").version == 1
    latest = client.get_latest_version(f"{topic_name}-value")
    assert [(r.name, r.subject, r.version) for r in latest.schema.references] == [("shop/address.proto", "shop/address.proto", 1)]
    stored = httpx.get(f"{registry.url}/schemas/ids/{latest.schema_id}").json()
    assert stored["schemaType"] == "PROTOBUF"
    assert 'import "shop/address.proto";' in stored["schema"] and "message Shipment {" in stored["schema"]
    serialized = httpx.get(f"{registry.url}/schemas/ids/{latest.schema_id}", params={"format": "serialized"}).json()["schema"]
    proto = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(serialized))
    assert [m.name for m in proto.message_type] == ["Order", "Shipment"] and list(proto.dependency) == ["shop/address.proto"]

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    de = ProtobufDeserializer(shipment_cls, schema_registry_client=client_for(sr, registry.url))  # fetches the writer schema by id
    got = []
    try:
        while len(got) < len(sent):
            rec = consumer.poll(10)
            assert rec is not None, "records did not arrive"
            value = rec.value()
            assert value[0] == 0 and int.from_bytes(value[1:5], "big") == latest.schema_id
            assert value[5:7] == b"\x02\x02"  # message indexes [1]: the file's second message
            got.append(de(value, ctx))
    finally:
        consumer.close()
    assert got == sent


def test_protobuf_compatibility_through_the_client(sr: list[SchemaRegistryClient], registry: RegistryService) -> None:
    client = client_for(sr, registry.url)
    shipment_cls = message_class("shop.Shipment")
    ProtobufSerializer(shipment_cls, client)(shipment_cls(order_id="x"), SerializationContext("ships", MessageField.VALUE))
    refs = [SchemaReference("shop/address.proto", "shop/address.proto", 1)]

    def schema(**kw: Any) -> Schema:
        proto = files(**kw)[1]
        return Schema(base64.b64encode(proto.SerializeToString()).decode(), "PROTOBUF", refs)

    # int64 -> string is not wire-compatible: refused with the difference named
    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema("ships-value", schema(parcel_type=F.TYPE_STRING))
    assert e.value.http_status_code == 409 and "FIELD_SCALAR_KIND_CHANGED" in e.value.error_message
    # int64 -> uint64 is, and a new field is compatible
    assert client.test_compatibility("ships-value", schema(parcel_type=F.TYPE_UINT64)) is True
    new_id = client.register_schema("ships-value", schema(extra_field=True))
    assert client.get_latest_version("ships-value").schema_id == new_id
    # use.latest.version: the serializer reads the latest version in the serialized format (a
    # fresh client: confluent-kafka's latest-version cache does not key on the format)
    newer_cls = message_class("shop.Shipment", extra_field=True)
    latest_ser = ProtobufSerializer(newer_cls, client_for(sr, registry.url), conf={"auto.register.schemas": False, "use.latest.version": True})
    data = latest_ser(newer_cls(order_id="y", note="n"), SerializationContext("ships", MessageField.VALUE))
    assert data is not None and int.from_bytes(data[1:5], "big") == new_id
    # the .proto text of the same file, with the same reference, is found by lookup once normalized
    text = httpx.get(f"{registry.url}/schemas/ids/{new_id}/schema").text
    assert client.lookup_schema("ships-value", Schema(text, "PROTOBUF", refs), normalize_schemas=True).schema_id == new_id
    assert httpx.get(f"{registry.url}/schemas/types").json() == ["AVRO", "JSON", "PROTOBUF"]
    bad = httpx.post(f"{registry.url}/subjects/x/versions", json={"schemaType": "PROTOBUF", "schema": 'syntax = "proto3"; import "nope.proto"; message A { int32 a = 1; }'})
    assert bad.status_code == 422 and bad.json()["error_code"] == 42201 and "nope.proto" in bad.json()["message"]


CARD = """syntax = "proto3";
package pay;
import "confluent/meta.proto";

message Card {
  string number = 1 [(confluent.field_meta).tags = "PII"];
  string holder = 2;
}
"""


def test_field_tags_in_proto_text_drive_a_cel_field_rule(sr: list[SchemaRegistryClient], registry: RegistryService, topic_name: str) -> None:
    """A CEL_FIELD transform on the tag PII, written with confluent-kafka's client, is applied
    by that client to the field tagged in the `.proto` text, and only to it: the tag reaches
    the client through `?format=serialized` as the `confluent.field_meta` extension."""
    pytest.importorskip("celpy")
    from confluent_kafka.schema_registry import Rule, RuleKind, RuleMode, RuleSet
    from confluent_kafka.schema_registry.rules.cel.cel_field_executor import CelFieldExecutor

    CelFieldExecutor.register()
    client = client_for(sr, registry.url)
    rule = Rule("maskPII", "", RuleKind.TRANSFORM, RuleMode.WRITE, "CEL_FIELD", ["PII"], None, "typeName == 'STRING' ; 'XXXX'", None, None, False)
    subject = f"{topic_name}-value"
    schema_id = client.register_schema(subject, Schema(CARD, "PROTOBUF", [], None, RuleSet(None, [rule])))
    # the message class is built from what the registry hands out
    blob = client.get_schema(schema_id, fmt="serialized").schema_str
    proto = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(blob))
    proto.name = "card.proto"
    from confluent_kafka.schema_registry.confluent import meta_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(descriptor_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(meta_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    card_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("pay.Card"))
    ser = ProtobufSerializer(card_cls, client, conf={"auto.register.schemas": False, "use.latest.version": True})
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    data = ser(card_cls(number="4111111111111111", holder="bob"), ctx)
    assert data is not None and int.from_bytes(data[1:5], "big") == schema_id
    got = card_cls.FromString(data[6:])  # after magic, id and the message index [0]
    assert (got.number, got.holder) == ("XXXX", "bob")


def test_full_validation_decodes_protobuf_payloads(sr: list[SchemaRegistryClient], broker: EmbeddedBroker, registry: RegistryService, topic_name: str) -> None:
    """`riverbed.value.schema.validation=full` on a Protobuf topic: the payload must parse as the
    message its indexes name (with an imported message inside), with no undeclared field."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from .test_record_errors import deliver

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for fut in admin.create_topics([NewTopic(topic_name, 1, 1, config={"confluent.value.schema.validation": "true", "riverbed.value.schema.validation": "full"})]).values():
        fut.result(30)
    shipment_cls = message_class("shop.Shipment")
    ser = ProtobufSerializer(shipment_cls, client_for(sr, registry.url))
    good = ser(shipment_cls(order_id="A1", to={"city": "Oslo"}, parcels=[1, 2]), SerializationContext(topic_name, MessageField.VALUE))
    assert good is not None
    head, body = good[:7], good[7:]  # magic, id, message indexes [1]
    # a string field (1) holding bytes that are not UTF-8; a nested Address whose city is not UTF-8
    bad_utf8 = head + b"\x0a\x02\xff\xfe"
    bad_nested = head + b"\x12\x04\x0a\x02\xff\xfe"
    undeclared = head + body + b"\x48\x01"  # field 9, varint: Shipment has no field 9
    wrong_wire = head + b"\x0d\x00\x00\x00\x00"  # field 1 (a string) sent as fixed32
    truncated = head + b"\x0a\x05ab"
    results = [deliver(broker.bootstrap, topic_name, [{"value": v}])[0] for v in (good, bad_utf8, bad_nested, undeclared, wrong_wire, truncated)]
    invalid = 87  # INVALID_RECORD
    assert results == [0, invalid, invalid, invalid, invalid, invalid]
