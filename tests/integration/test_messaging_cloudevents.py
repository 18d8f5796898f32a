"""CloudEvents through a real riverbed broker: produced with confluent-kafka in both content
modes by us and by the official SDK, consumed and decoded by the other."""

from __future__ import annotations

import uuid

import pytest

sdk_kafka = pytest.importorskip("cloudevents.v1.kafka")
from cloudevents.v1.http import CloudEvent as SdkEvent  # noqa: E402

from riverbed.messaging import CloudEvent, from_message, to_binary, to_structured  # noqa: E402
from riverbed.testing import EmbeddedBroker  # noqa: E402

from .messaging_helpers import create, producer, read_topic  # noqa: E402

pytestmark = pytest.mark.integration


def test_cloudevents_round_trip_through_the_broker(riverbed_broker: EmbeddedBroker) -> None:
    bootstrap = riverbed_broker.bootstrap
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    create(bootstrap, topic, partitions=3)
    p = producer(bootstrap)
    ours = [
        CloudEvent(type="eu.company.domain.order.created.v1", source="/checkout", data={"orderId": f"A{i}"}, extensions={"partitionkey": "user_id_bob"})
        for i in range(4)
    ]
    for i, event in enumerate(ours):
        key, value, headers = (to_binary if i % 2 == 0 else to_structured)(event)
        p.produce(topic, value=value, key=key, headers=headers)
    sdk_event = SdkEvent({"type": "eu.company.domain.order.paid.v1", "source": "/sdk", "partitionkey": "user_id_bob", "datacontenttype": "application/json"}, {"orderId": "A0"})
    m = sdk_kafka.to_binary(sdk_event)
    p.produce(topic, value=m.value, key=m.key, headers=list(m.headers.items()))
    assert p.flush(30) == 0

    got = read_topic(bootstrap, topic, 5, partitions=3)
    assert len(got) == 5
    assert len({msg.partition() for msg in got}) == 1  # partitionkey is the record key
    decoded = [from_message(msg) for msg in got]
    assert [e.id for e in decoded] == [e.id for e in ours] + [sdk_event["id"]]
    assert [e.data for e in decoded] == [{"orderId": f"A{i}"} for i in range(4)] + [{"orderId": "A0"}]
    assert all(e.partitionkey == "user_id_bob" for e in decoded)

    # and the SDK reads what we wrote, each in its mode
    for i, msg in enumerate(got[:4]):
        km = sdk_kafka.KafkaMessage(dict(msg.headers() or []), msg.key(), msg.value())
        event = (sdk_kafka.from_binary if i % 2 == 0 else sdk_kafka.from_structured)(km)
        assert event["id"] == ours[i].id and event.get_data() == {"orderId": f"A{i}"}


def test_cloudevent_with_avro_data_from_the_schema_registry(riverbed_broker: EmbeddedBroker) -> None:
    """Data in a schema-registry format: confluent-kafka's AvroSerializer writes the bytes,
    the event says `application/avro` and names the schema in `dataschema`."""
    import json

    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from riverbed.registry.service import RegistryConfig, RegistryService

    bootstrap = riverbed_broker.bootstrap
    topic = f"orders-avro-{uuid.uuid4().hex[:6]}"
    create(bootstrap, topic)
    schema = {"type": "record", "name": "OrderCreated", "namespace": "shop", "fields": [{"name": "orderId", "type": "string"}]}
    with RegistryService(RegistryConfig(bootstrap=bootstrap, listen="127.0.0.1:0")) as registry:
        client = SchemaRegistryClient({"url": registry.url})
        try:
            ctx = SerializationContext(topic, MessageField.VALUE)
            data = AvroSerializer(client, json.dumps(schema))({"orderId": "A100"}, ctx)
            schema_id = int.from_bytes(data[1:5], "big")
            event = CloudEvent(type="eu.company.domain.order.created.v1", source="/checkout", data=data,
                               datacontenttype="application/avro", dataschema=f"{registry.url}/schemas/ids/{schema_id}")
            p = producer(bootstrap)
            key, value, headers = to_binary(event)
            p.produce(topic, value=value, key=key, headers=headers)
            assert p.flush(30) == 0
            [msg] = read_topic(bootstrap, topic, 1)
            got = from_message(msg)
            assert got.datacontenttype == "application/avro" and got.dataschema == event.dataschema
            assert got.data == data  # bytes, untouched
            assert AvroDeserializer(client)(got.data, ctx) == {"orderId": "A100"}
        finally:
            client.close()
