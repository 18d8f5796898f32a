"""Serdes for the schema registry's wire format (magic byte, 4-byte schema id, payload), built
on confluent-kafka's own serializers, so records interoperate with every Confluent-compatible
producer and consumer: Avro, JSON Schema and Protobuf.

A registry serde is bound to the topic whose subject it registers under (TopicNameStrategy
unless the serializer's ``conf`` picks another strategy): ``topic`` and ``is_key`` give the
serializer its SerializationContext, as Kafka Streams' serdes are configured per topic. Reading
needs no subject: the id in front of each record names its schema, fetched once and cached.

    client = SchemaRegistryClient({"url": "http://127.0.0.1:8081"})
    orders = AvroSerde(client, "orders", schema=ORDER_AVSC)
    app.stream("orders", STRING, orders).filter(...).to("big-orders", STRING, AvroSerde(client, "big-orders", schema=ORDER_AVSC))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

__all__ = ["AvroSerde", "JsonSchemaSerde", "ProtobufSerde", "registry_client"]


def registry_client(url: str, **conf: Any) -> SchemaRegistryClient:
    """A confluent-kafka SchemaRegistryClient for `url` (basic auth etc. in `conf`)."""
    return SchemaRegistryClient({"url": url, **conf})


class _RegistrySerde:
    def __init__(self, topic: str, is_key: bool, serializer: Callable[[Any, SerializationContext], bytes | None] | None, deserializer: Callable[[bytes, SerializationContext], Any]) -> None:
        self.topic = topic
        self.ctx = SerializationContext(topic, MessageField.KEY if is_key else MessageField.VALUE)
        self._ser = serializer
        self._de = deserializer

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if self._ser is None:
            raise ValueError(f"this serde for {self.topic!r} reads only: give it a schema to write with")
        return self._ser(value, self.ctx)

    def deserialize(self, data: bytes | None) -> Any:
        return None if data is None else self._de(bytes(data), self.ctx)


class AvroSerde(_RegistrySerde):
    """Avro records as dicts. Without `schema`, reads any Avro record by its id (and writes with
    the subject's latest schema if ``conf={"use.latest.version": True, "auto.register.schemas":
    False}``)."""

    def __init__(self, client: SchemaRegistryClient, topic: str, schema: str | None = None, is_key: bool = False, conf: dict[str, Any] | None = None) -> None:
        writes = schema is not None or bool((conf or {}).get("use.latest.version"))
        ser = AvroSerializer(client, schema, conf=conf) if writes else None
        super().__init__(topic, is_key, ser, AvroDeserializer(client))


class JsonSchemaSerde(_RegistrySerde):
    """JSON documents checked against a JSON Schema on write (confluent-kafka validates them)."""

    def __init__(self, client: SchemaRegistryClient, topic: str, schema: str | None = None, is_key: bool = False, conf: dict[str, Any] | None = None) -> None:
        ser = JSONSerializer(schema, client, conf=conf) if schema is not None else None
        super().__init__(topic, is_key, ser, JSONDeserializer(None, schema_registry_client=client))


class ProtobufSerde(_RegistrySerde):
    """Protobuf messages of one generated class (`message_type`), Confluent's message indexes
    included."""

    def __init__(self, client: SchemaRegistryClient, topic: str, message_type: Any, is_key: bool = False, conf: dict[str, Any] | None = None) -> None:
        from confluent_kafka.schema_registry.protobuf import (
            ProtobufDeserializer,
            ProtobufSerializer,
        )

        ser = ProtobufSerializer(message_type, client, conf={"use.deprecated.format": False, **(conf or {})})
        super().__init__(topic, is_key, ser, ProtobufDeserializer(message_type, {"use.deprecated.format": False}))
