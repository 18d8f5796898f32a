"""The REST proxy's schema-registry formats over real HTTP, a real broker and the project's
registry: what the proxy writes, confluent-kafka's own deserializers read; what confluent-kafka's
serializers write, the proxy's v2 consumers read back as JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from riverbed.client import ensure_topics
from riverbed.registry.service import RegistryConfig, RegistryService
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

from .gateway_helpers import running_gateway

pytestmark = pytest.mark.integration

ORDER = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [
            {"name": "user", "type": "string"},
            {"name": "cents", "type": "long"},
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    }
)
KEY = json.dumps({"type": "string"})
ORDER_JSON = json.dumps(
    {
        "title": "Order",
        "type": "object",
        "properties": {"user": {"type": "string"}, "cents": {"type": "integer"}},
        "required": ["user", "cents"],
    }
)
ORDER_PROTO = 'syntax = "proto3";\npackage shop;\n\nmessage Order {\n  string user = 1;\n  int64 cents = 2;\n}\n'
V2 = "application/vnd.kafka.v2+json"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with EmbeddedBroker(tmp_path_factory.mktemp("gw-schemas"), **FIXTURE_DEFAULTS) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        ensure_topics(
            admin,
            {t: (1, {}) for t in ("avro", "jsons", "proto", "avro2", "jsons2", "proto2", "refs")},
        )
        cluster_id = admin.list_topics(timeout=10).cluster_id
        with RegistryService(
            RegistryConfig(bootstrap=broker.bootstrap, listen="127.0.0.1:0")
        ) as reg:
            doc = {"rest": {"enabled": True}, "cluster": {"schema.registry.url": reg.url}}
            with running_gateway(doc, broker.bootstrap) as (_, url):
                client = SchemaRegistryClient({"url": reg.url})
                try:
                    yield {
                        "bootstrap": broker.bootstrap,
                        "url": url,
                        "v3": f"{url}/v3/clusters/{cluster_id}/topics",
                        "client": client,
                    }
                finally:
                    client.close()


def records_at(bootstrap: str, topic: str, offset: int, n: int) -> list[Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "schema-check"})
    c.assign([TopicPartition(topic, 0, offset)])
    out: list[Any] = []
    deadline = time.monotonic() + 20
    while len(out) < n and time.monotonic() < deadline:
        out += [m for m in c.consume(n - len(out), 0.5) if m.error() is None]
    c.close()
    assert len(out) == n
    return out


def ctx(topic: str, key: bool = False) -> SerializationContext:
    return SerializationContext(topic, MessageField.KEY if key else MessageField.VALUE)


def order_class() -> Any:
    """shop.Order built from a hand-made descriptor (independent of the proxy's .proto parser)."""
    f = descriptor_pb2.FileDescriptorProto(name="order.proto", package="shop", syntax="proto3")
    m = f.message_type.add(name="Order")
    m.field.add(
        name="user",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        json_name="user",
    )
    m.field.add(
        name="cents",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        json_name="cents",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


def test_v3_avro_by_raw_schema_id_version_and_latest(env: dict[str, Any]) -> None:
    url = env["v3"] + "/avro/records"
    r = httpx.post(
        url,
        json={
            "key": {"type": "AVRO", "schema": KEY, "data": "ann"},
            "value": {
                "type": "AVRO",
                "schema": ORDER,
                "data": {"user": "ann", "cents": 500, "note": {"string": "gift"}},
            },
        },
    )
    assert r.status_code == 200, r.text
    rep = r.json()
    sid = rep["value"]["schema_id"]
    assert rep["value"] == {
        "type": "AVRO",
        "subject": "avro-value",
        "schema_id": sid,
        "schema_version": 1,
        "size": rep["value"]["size"],
    }
    assert rep["key"]["subject"] == "avro-key" and rep["key"]["schema_id"] != sid
    client = env["client"]
    assert client.get_latest_version("avro-value").schema_id == sid
    for part in ({"schema_id": sid}, {"schema_version": 1}, {"subject": "avro-value"}, {}):
        r = httpx.post(
            url,
            json={
                "value": {"type": "AVRO", **part, "data": {"user": "bob", "cents": 7, "note": None}}
            },
        )
        assert r.status_code == 200, (part, r.text)
        assert r.json()["value"]["schema_id"] == sid
    msgs = records_at(env["bootstrap"], "avro", rep["offset"], 5)
    de = AvroDeserializer(client)
    assert de(msgs[0].value(), ctx("avro")) == {"user": "ann", "cents": 500, "note": "gift"}
    assert AvroDeserializer(client)(msgs[0].key(), ctx("avro", True)) == "ann"
    assert [de(m.value(), ctx("avro")) for m in msgs[1:]] == [
        {"user": "bob", "cents": 7, "note": None}
    ] * 4
    assert msgs[0].value()[0] == 0 and int.from_bytes(msgs[0].value()[1:5], "big") == sid


def test_v3_avro_errors(env: dict[str, Any]) -> None:
    url = env["v3"] + "/avro/records"
    first = {
        "key": {"type": "AVRO", "schema": KEY, "data": "k"},
        "value": {"type": "AVRO", "schema": ORDER, "data": {"user": "x", "cents": 1, "note": None}},
    }
    httpx.post(url, json=first).raise_for_status()
    key_id = env["client"].get_latest_version("avro-key").schema_id
    # Confluent REST Proxy's answers (its SchemaManager): (status, error_code, words)
    cases = [
        (
            {"type": "AVRO", "data": {"user": "x"}},
            422,
            42203,
            "Conversion of JSON to Object failed",
        ),  # cents missing
        (
            {"type": "AVRO", "data": {"user": "x", "cents": 1, "note": "not wrapped"}},
            422,
            42203,
            "Conversion of JSON to Object failed",
        ),
        (
            {"type": "AVRO", "schema": "{not avro", "data": 1},
            422,
            42205,
            "Invalid schema: Error when parsing raw schema",
        ),
        (
            {"schema_id": 99999, "data": 1},
            422,
            42207,
            "Error when fetching schema by id. schemaId = 99999",
        ),
        (
            {"schema_id": key_id, "data": "k"},
            422,
            42207,
            "Error when fetching schema version. subject = avro-value",
        ),  # not under avro-value
        (
            {"schema_version": 42, "data": 1},
            400,
            400,
            "Schema does not exist for subject: avro-value, version: 42",
        ),
        (
            {"type": "AVRO", "subject": "nope-value", "data": 1},
            422,
            42207,
            "Error when fetching latest schema version. subject = nope-value",
        ),
        (
            {"type": "JSONSCHEMA", "schema_id": key_id, "subject": "avro-key", "data": 1},
            422,
            42207,
            "wrong type",
        ),
        ({"schema_id": 1, "schema_version": 1, "data": 1}, 400, 400, "at most one"),
        (
            {"type": "AVRO", "subject_name_strategy": "RECORD_NAME", "data": 1},
            400,
            400,
            "Cannot use schema_subject_strategy=RECORD_NAME",
        ),
        (
            {"type": "AVRO", "subject_name_strategy": "NOPE", "data": 1},
            400,
            400,
            "subject_name_strategy",
        ),
        ({"type": "JSON", "schema_id": 1, "data": 1}, 400, 400, "a schema goes with type"),
    ]
    for value, status, code, words in cases:
        r = httpx.post(url, json={"value": value})
        assert (
            r.status_code == status
            and r.json()["error_code"] == code
            and words in r.json()["message"]
        ), (value, r.text)
    # by id under another subject named outright: fine
    r = httpx.post(url, json={"value": {"schema_id": key_id, "subject": "avro-key", "data": "k"}})
    assert r.status_code == 200 and r.json()["value"]["subject"] == "avro-key", r.text


def test_v3_record_name_strategies(env: dict[str, Any]) -> None:
    url = env["v3"] + "/avro/records"
    r = httpx.post(
        url,
        json={
            "value": {
                "type": "AVRO",
                "schema": ORDER,
                "subject_name_strategy": "RECORD_NAME",
                "data": {"user": "r", "cents": 1, "note": None},
            }
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["value"]["subject"] == "shop.Order"
    r = httpx.post(
        url,
        json={
            "value": {
                "type": "AVRO",
                "schema": ORDER,
                "subject_name_strategy": "TOPIC_RECORD_NAME",
                "data": {"user": "r", "cents": 1, "note": None},
            }
        },
    )
    assert r.json()["value"]["subject"] == "avro-shop.Order"
    assert "shop.Order" in env["client"].get_subjects()


def test_v3_jsonschema_and_protobuf(env: dict[str, Any]) -> None:
    client = env["client"]
    r = httpx.post(
        env["v3"] + "/jsons/records",
        json={
            "value": {
                "type": "JSONSCHEMA",
                "schema": ORDER_JSON,
                "data": {"user": "ann", "cents": 5},
            }
        },
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["value"]["type"] == "JSONSCHEMA" and r.json()["value"]["subject"] == "jsons-value"
    )
    msg = records_at(env["bootstrap"], "jsons", r.json()["offset"], 1)[0]
    assert JSONDeserializer(None, schema_registry_client=client)(msg.value(), ctx("jsons")) == {
        "user": "ann",
        "cents": 5,
    }
    r = httpx.post(
        env["v3"] + "/jsons/records",
        json={"value": {"type": "JSONSCHEMA", "data": {"user": "ann", "cents": "five"}}},
    )
    assert (
        r.status_code == 422 and r.json()["error_code"] == 42203 and "cents" in r.json()["message"]
    )

    r = httpx.post(
        env["v3"] + "/proto/records",
        json={
            "value": {
                "type": "PROTOBUF",
                "schema": ORDER_PROTO,
                "data": {"user": "ann", "cents": "12"},
            }
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["value"]["subject"] == "proto-value"
    msg = records_at(env["bootstrap"], "proto", r.json()["offset"], 1)[0]
    order = ProtobufDeserializer(order_class(), {"use.deprecated.format": False})(
        msg.value(), ctx("proto")
    )
    assert (order.user, order.cents) == ("ann", 12)
    r = httpx.post(
        env["v3"] + "/proto/records",
        json={"value": {"type": "PROTOBUF", "data": {"user": "ann", "nope": 1}}},
    )
    assert (
        r.status_code == 422 and r.json()["error_code"] == 42203 and "nope" in r.json()["message"]
    )
    r = httpx.post(
        env["v3"] + "/proto/records",
        json={"value": {"type": "PROTOBUF", "schema": "message {", "data": {}}},
    )
    assert r.status_code == 422 and r.json()["error_code"] == 42205


def v2_consume(
    url: str, group: str, fmt: str, topic: str, n: int
) -> tuple[str, list[dict[str, Any]]]:
    inst = httpx.post(
        f"{url}/consumers/{group}",
        json={"name": "c", "format": fmt, "auto.offset.reset": "earliest"},
    ).json()["base_uri"]
    assert httpx.post(inst + "/subscription", json={"topics": [topic]}).status_code == 204
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        r = httpx.get(
            inst + "/records?timeout=300",
            headers={"Accept": f"application/vnd.kafka.{fmt}.v2+json"},
        )
        assert r.status_code == 200, r.text
        got += r.json()
    return inst, got


def test_v2_avro_produce_and_consume(env: dict[str, Any]) -> None:
    url, client = env["url"], env["client"]
    avro = "application/vnd.kafka.avro.v2+json"
    body = {
        "key_schema": KEY,
        "value_schema": ORDER,
        "records": [
            {"key": "ann", "value": {"user": "ann", "cents": 1, "note": {"string": "hi"}}},
            {"key": "bob", "value": {"user": "bob", "cents": 2, "note": None}},
        ],
    }
    r = httpx.post(url + "/topics/avro2", content=json.dumps(body), headers={"Content-Type": avro})
    assert r.status_code == 200, r.text
    ids = r.json()
    assert ids["key_schema_id"] == client.get_latest_version("avro2-key").schema_id
    assert ids["value_schema_id"] == client.get_latest_version("avro2-value").schema_id
    body = {
        "value_schema_id": ids["value_schema_id"],
        "records": [{"value": {"user": "cy", "cents": 3, "note": None}}],
    }
    r = httpx.post(
        url + "/topics/avro2/partitions/0", content=json.dumps(body), headers={"Content-Type": avro}
    )
    assert (
        r.status_code == 200
        and r.json()["value_schema_id"] == ids["value_schema_id"]
        and r.json()["key_schema_id"] is None
    )
    # written by confluent-kafka's own serializer, read by the proxy
    p = Producer({"bootstrap.servers": env["bootstrap"]})
    p.produce(
        "avro2",
        AvroSerializer(client, ORDER)({"user": "dee", "cents": 4, "note": "x"}, ctx("avro2")),
    )
    p.produce("avro2", b"not the wire format")
    p.produce(
        "avro2",
        AvroSerializer(client, ORDER)({"user": "eve", "cents": 5, "note": None}, ctx("avro2")),
    )
    assert p.flush(20) == 0

    inst, got = v2_consume(url, "avro-readers", "avro", "avro2", 4)
    assert [(g["key"], g["value"]) for g in got] == [
        ("ann", {"user": "ann", "cents": 1, "note": {"string": "hi"}}),
        ("bob", {"user": "bob", "cents": 2, "note": None}),
        (None, {"user": "cy", "cents": 3, "note": None}),
        (None, {"user": "dee", "cents": 4, "note": {"string": "x"}}),
    ]
    r = httpx.get(inst + "/records", headers={"Accept": avro})  # the bad record
    assert (
        r.status_code == 500
        and r.json()["error_code"] == 50002
        and "magic byte" in r.json()["message"]
    )
    assert r.headers["content-type"].startswith(V2)
    assert (
        httpx.post(
            inst + "/positions",
            json={"offsets": [{"topic": "avro2", "partition": 0, "offset": got[-1]["offset"] + 2}]},
        ).status_code
        == 204
    )
    deadline = time.monotonic() + 20
    rest: list[dict[str, Any]] = []
    while not rest and time.monotonic() < deadline:
        rest = httpx.get(inst + "/records?timeout=300", headers={"Accept": avro}).json()
    assert [g["value"]["user"] for g in rest] == ["eve"]
    assert (
        httpx.get(
            inst + "/records", headers={"Accept": "application/vnd.kafka.json.v2+json"}
        ).status_code
        == 406
    )
    httpx.delete(inst)

    for bad, code in (
        ({"records": [{"key": "k", "value": {}}], "value_schema": ORDER}, 42201),
        ({"records": [{"value": {}}]}, 42202),
        ({"records": [{"value": {"user": 1}}], "value_schema": ORDER}, 42203),
        ({"records": [{"value": 1}], "value_schema": "{nope"}, 42205),
    ):
        r = httpx.post(
            url + "/topics/avro2", content=json.dumps(bad), headers={"Content-Type": avro}
        )
        assert r.status_code == 422 and r.json()["error_code"] == code, (bad, r.text)
        assert r.headers["content-type"].startswith(V2)
    incompatible = json.dumps(
        {
            "type": "record",
            "name": "Order",
            "namespace": "shop",
            "fields": [{"name": "user", "type": "int"}],
        }
    )
    r = httpx.post(
        url + "/topics/avro2",
        content=json.dumps({"value_schema": incompatible, "records": [{"value": {"user": 1}}]}),
        headers={"Content-Type": avro},
    )
    assert (
        r.status_code == 422
        and r.json()["error_code"] == 42207
        and "Error when registering schema" in r.json()["message"]
    )


def test_v2_jsonschema_and_protobuf_roundtrip(env: dict[str, Any]) -> None:
    url = env["url"]
    r = httpx.post(
        url + "/topics/jsons2",
        content=json.dumps(
            {"value_schema": ORDER_JSON, "records": [{"value": {"user": "ann", "cents": 5}}]}
        ),
        headers={"Content-Type": "application/vnd.kafka.jsonschema.v2+json"},
    )
    assert r.status_code == 200 and r.json()["value_schema_id"] is not None, r.text
    r = httpx.post(
        url + "/topics/jsons2",
        content=json.dumps({"value_schema": ORDER_JSON, "records": [{"value": {"user": "ann"}}]}),
        headers={"Content-Type": "application/vnd.kafka.jsonschema.v2+json"},
    )
    assert r.status_code == 422 and r.json()["error_code"] == 42203
    inst, got = v2_consume(url, "json-readers", "jsonschema", "jsons2", 1)
    assert [g["value"] for g in got] == [{"user": "ann", "cents": 5}]
    httpx.delete(inst)

    proto = "application/vnd.kafka.protobuf.v2+json"
    r = httpx.post(
        url + "/topics/proto2",
        content=json.dumps(
            {"value_schema": ORDER_PROTO, "records": [{"value": {"user": "bob", "cents": 9}}]}
        ),
        headers={"Content-Type": proto},
    )
    assert r.status_code == 200, r.text
    pid = r.json()["value_schema_id"]
    r = httpx.post(
        url + "/topics/proto2",
        content=json.dumps({"value_schema_id": pid, "records": [{"value": {"user": "cy"}}]}),
        headers={"Content-Type": proto},
    )
    assert r.status_code == 200, r.text
    inst, got = v2_consume(url, "proto-readers", "protobuf", "proto2", 2)
    assert [g["value"] for g in got] == [
        {"user": "bob", "cents": "9"},
        {"user": "cy", "cents": "0"},
    ]
    httpx.delete(inst)


MONEY = json.dumps(
    {
        "type": "record",
        "name": "Money",
        "namespace": "shop",
        "fields": [{"name": "cents", "type": "long"}],
    }
)
PRICED = json.dumps(
    {
        "type": "record",
        "name": "Priced",
        "namespace": "shop",
        "fields": [{"name": "item", "type": "string"}, {"name": "price", "type": "shop.Money"}],
    }
)
MONEY_PROTO = 'syntax = "proto3";\npackage shop;\n\nmessage Money {\n  int64 cents = 1;\n}\n'
PRICED_PROTO = 'syntax = "proto3";\npackage shop;\n\nimport "money.proto";\n\nmessage Priced {\n  string item = 1;\n  Money price = 2;\n}\n'


def test_schemas_with_references(env: dict[str, Any]) -> None:
    """Schemas importing other subjects' schemas (registered with confluent-kafka's client):
    written by id and by latest version, read back by confluent-kafka and by a v2 consumer."""
    client = env["client"]
    money = client.register_schema("money", Schema(MONEY, "AVRO"))
    client.register_schema(
        "refs-value", Schema(PRICED, "AVRO", [SchemaReference("shop.Money", "money", 1)])
    )
    priced_id = client.get_latest_version("refs-value").schema_id
    assert priced_id != money
    url = env["v3"] + "/refs/records"
    for part in ({"schema_id": priced_id}, {}):
        r = httpx.post(
            url,
            json={
                "value": {"type": "AVRO", **part, "data": {"item": "tea", "price": {"cents": 250}}}
            },
        )
        assert r.status_code == 200, r.text
        assert (
            r.json()["value"]["schema_id"] == priced_id and r.json()["value"]["schema_version"] == 1
        )
    msgs = records_at(env["bootstrap"], "refs", r.json()["offset"] - 1, 2)
    assert [AvroDeserializer(client)(m.value(), ctx("refs")) for m in msgs] == [
        {"item": "tea", "price": {"cents": 250}}
    ] * 2

    client.register_schema("money-proto", Schema(MONEY_PROTO, "PROTOBUF"))
    client.register_schema(
        "priced-proto",
        Schema(PRICED_PROTO, "PROTOBUF", [SchemaReference("money.proto", "money-proto", 1)]),
    )
    proto_id = client.get_latest_version("priced-proto").schema_id
    r = httpx.post(
        url,
        json={
            "value": {
                "schema_id": proto_id,
                "subject": "priced-proto",
                "data": {"item": "cup", "price": {"cents": "7"}},
            }
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["value"]["type"] == "PROTOBUF"
    inst, got = v2_consume(env["url"], "refs-readers", "avro", "refs", 2)
    assert [g["value"] for g in got] == [{"item": "tea", "price": {"cents": 250}}] * 2
    r = httpx.get(inst + "/records", headers={"Accept": "application/vnd.kafka.avro.v2+json"})
    assert (
        r.status_code == 500 and "is PROTOBUF, not AVRO" in r.json()["message"]
    )  # an avro consumer
    httpx.delete(inst)
    inst = httpx.post(
        env["url"] + "/consumers/refs-proto", json={"name": "p", "format": "protobuf"}
    ).json()["base_uri"]
    httpx.post(
        inst + "/assignments", json={"partitions": [{"topic": "refs", "partition": 0}]}
    ).raise_for_status()
    httpx.post(
        inst + "/positions",
        json={"offsets": [{"topic": "refs", "partition": 0, "offset": msgs[1].offset() + 1}]},
    ).raise_for_status()
    deadline = time.monotonic() + 20
    got = []
    while not got and time.monotonic() < deadline:
        r = httpx.get(
            inst + "/records?timeout=300",
            headers={"Accept": "application/vnd.kafka.protobuf.v2+json"},
        )
        assert r.status_code == 200, r.text
        got = r.json()
    assert [g["value"] for g in got] == [{"item": "cup", "price": {"cents": "7"}}]
    httpx.delete(inst)


def test_json_schema_with_a_reference(env: dict[str, Any]) -> None:
    client = env["client"]
    address = json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    client.register_schema("address", Schema(address, "JSON"))
    person = json.dumps(
        {
            "title": "Person",
            "type": "object",
            "properties": {"name": {"type": "string"}, "home": {"$ref": "address.json"}},
            "required": ["home"],
        }
    )
    client.register_schema(
        "people-value", Schema(person, "JSON", [SchemaReference("address.json", "address", 1)])
    )
    url = env["v3"] + "/refs/records"
    r = httpx.post(
        url,
        json={
            "value": {
                "type": "JSONSCHEMA",
                "subject": "people-value",
                "data": {"name": "ann", "home": {"city": "Oslo"}},
            }
        },
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        url,
        json={
            "value": {
                "type": "JSONSCHEMA",
                "subject": "people-value",
                "data": {"name": "ann", "home": {"town": "Oslo"}},
            }
        },
    )
    assert (
        r.status_code == 422 and r.json()["error_code"] == 42203 and "city" in r.json()["message"]
    ), r.text
