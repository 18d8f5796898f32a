"""The schema registry with real clients: confluent-kafka's SchemaRegistryClient and Avro
serializers over HTTP, records over TCP through a real broker, state in `_schemas`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from riverbed.registry.service import RegistryConfig, RegistryService
from riverbed.testing import EmbeddedBroker

pytestmark = pytest.mark.integration

ORDER_V1 = {"type": "record", "name": "OrderEvent", "namespace": "shop", "fields": [{"name": "orderId", "type": "string"}, {"name": "userId", "type": "string"}]}
ORDER_V2 = {**ORDER_V1, "fields": [*ORDER_V1["fields"], {"name": "amount", "type": "double", "default": 0.0}]}
ORDER_V3 = {**ORDER_V1, "fields": [*ORDER_V1["fields"], {"name": "quantity", "type": "int"}]}


@pytest.fixture
def sr() -> Iterator[list[SchemaRegistryClient]]:
    """SchemaRegistryClients made by a test, closed at its end (they hold HTTP connections)."""
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


def test_avro_serializers_round_trip_through_the_broker(sr: list[SchemaRegistryClient], broker: EmbeddedBroker, registry: RegistryService, topic_name: str) -> None:
    client = client_for(sr, registry.url)
    ser = AvroSerializer(client, json.dumps(ORDER_V1))
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(5):
        value = ser({"orderId": f"A{i}", "userId": "bob"}, SerializationContext(topic_name, MessageField.VALUE))
        producer.produce(topic_name, value=value)
    assert producer.flush(30) == 0
    latest = client.get_latest_version(f"{topic_name}-value")
    assert latest.version == 1
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    de = AvroDeserializer(client_for(sr, registry.url))  # a fresh cache: fetches by id
    seen = []
    try:
        while len(seen) < 5:
            msg = consumer.poll(10)
            assert msg is not None, "records did not arrive"
            assert msg.value()[0] == 0 and int.from_bytes(msg.value()[1:5], "big") == latest.schema_id
            seen.append(de(msg.value(), SerializationContext(topic_name, MessageField.VALUE))["orderId"])
    finally:
        consumer.close()
    assert seen == [f"A{i}" for i in range(5)]


def test_lecture_evolution_v2_accepted_v3_refused(sr: list[SchemaRegistryClient], registry: RegistryService) -> None:
    client = client_for(sr, registry.url)
    id1 = client.register_schema("orders-value", Schema(json.dumps(ORDER_V1), "AVRO"))
    id2 = client.register_schema("orders-value", Schema(json.dumps(ORDER_V2), "AVRO"))
    assert id2 != id1
    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema("orders-value", Schema(json.dumps(ORDER_V3), "AVRO"))
    assert e.value.http_status_code == 409 and e.value.error_code == 409
    assert "quantity" in e.value.error_message
    assert client.get_versions("orders-value") == [1, 2]
    assert client.test_compatibility("orders-value", Schema(json.dumps(ORDER_V3), "AVRO")) is False
    client.set_compatibility("orders-value", "NONE")
    assert client.get_compatibility("orders-value") == "NONE"
    assert client.register_schema("orders-value", Schema(json.dumps(ORDER_V3), "AVRO")) > id2


def test_references_and_use_latest_version(sr: list[SchemaRegistryClient], broker: EmbeddedBroker, registry: RegistryService, topic_name: str) -> None:
    client = client_for(sr, registry.url)
    address = {"type": "record", "name": "Address", "namespace": "shop", "fields": [{"name": "city", "type": "string"}]}
    client.register_schema("shop.Address", Schema(json.dumps(address), "AVRO"))
    customer = {"type": "record", "name": "Customer", "namespace": "shop", "fields": [{"name": "name", "type": "string"}, {"name": "address", "type": "shop.Address"}]}
    ref = SchemaReference("shop.Address", "shop.Address", 1)
    cid = client.register_schema(f"{topic_name}-value", Schema(json.dumps(customer), "AVRO", [ref]))
    got = client.get_schema(cid)
    assert [r.name for r in got.references] == ["shop.Address"]
    assert json.loads(httpx.get(f"{registry.url}/subjects/shop.Address/versions/1/referencedby").text) == [cid]
    # a referenced version cannot be deleted while used
    r = httpx.delete(f"{registry.url}/subjects/shop.Address/versions/1")
    assert r.status_code == 422 and r.json()["error_code"] == 42206
    ser = AvroSerializer(client, None, conf={"auto.register.schemas": False, "use.latest.version": True})
    data = ser({"name": "bob", "address": {"city": "Oslo"}}, SerializationContext(topic_name, MessageField.VALUE))
    assert int.from_bytes(data[1:5], "big") == cid
    de = AvroDeserializer(client_for(sr, registry.url))
    assert de(data, SerializationContext(topic_name, MessageField.VALUE)) == {"name": "bob", "address": {"city": "Oslo"}}
    # an unknown reference is an invalid schema
    bad = httpx.post(f"{registry.url}/subjects/x/versions", json={"schema": json.dumps(customer), "references": [{"name": "shop.Address", "subject": "nope", "version": 1}]})
    assert bad.status_code == 422 and bad.json()["error_code"] == 42201


def test_error_bodies(registry: RegistryService) -> None:
    url = registry.url
    httpx.post(f"{url}/subjects/s/versions", json={"schema": json.dumps(ORDER_V1)}).raise_for_status()

    def err(method: str, path: str, **kw: object) -> tuple[int, int]:
        r = httpx.request(method, url + path, **kw)  # type: ignore[arg-type]
        assert r.headers["content-type"].startswith("application/vnd.schemaregistry.v1+json")
        body = r.json()
        assert set(body) == {"error_code", "message"} and body["message"]
        return r.status_code, body["error_code"]

    assert err("GET", "/subjects/nope/versions") == (404, 40401)
    assert err("GET", "/subjects/s/versions/9") == (404, 40402)
    assert err("GET", "/schemas/ids/999") == (404, 40403)
    assert err("GET", "/subjects/s/versions/0") == (422, 42202)
    assert err("GET", "/subjects/s/versions/abc") == (422, 42202)
    assert err("POST", "/subjects/s/versions", json={"schema": "{\"type\": \"nope\"}"}) == (422, 42201)
    assert err("POST", "/subjects/s/versions", json={"schema": "syntax = \"proto3\"; message {", "schemaType": "PROTOBUF"}) == (422, 42201)
    assert err("POST", "/subjects/s/versions", content=b"{not json") == (400, 400)
    assert err("POST", "/subjects/s/versions", content=b"x" * (65 * 1024)) == (413, 413)
    assert err("POST", "/subjects/s", json={"schema": json.dumps(ORDER_V2)}) == (404, 40403)
    assert err("PUT", "/config", json={"compatibility": "SIDEWAYS"}) == (422, 42203)
    assert err("PUT", "/mode", json={"mode": "WRITEONLY"}) == (422, 42204)
    assert err("GET", "/config/s") == (404, 40408)
    assert err("DELETE", "/subjects/s?permanent=true") == (404, 40405)
    assert err("GET", "/no/such/path") == (404, 404)
    assert httpx.delete(f"{url}/subjects/s").json() == [1]
    assert err("DELETE", "/subjects/s") == (404, 40404)
    assert httpx.delete(f"{url}/subjects/s?permanent=true").json() == [1]
    assert httpx.get(f"{url}/subjects?deleted=true").json() == []


def test_state_survives_a_restart_and_ids_continue(sr: list[SchemaRegistryClient], broker: EmbeddedBroker) -> None:
    config = RegistryConfig(bootstrap=broker.bootstrap, listen="127.0.0.1:0")
    with RegistryService(config) as reg:
        client = client_for(sr, reg.url)
        ids = [client.register_schema(f"s{i}", Schema(json.dumps({**ORDER_V1, "name": f"E{i}"}), "AVRO")) for i in range(5)]
        httpx.put(f"{reg.url}/config/s0", json={"compatibility": "FULL"}).raise_for_status()
        httpx.delete(f"{reg.url}/subjects/s1").raise_for_status()
    with RegistryService(config) as reg:
        client = client_for(sr, reg.url)
        assert [client.get_latest_version(f"s{i}").schema_id for i in (0, 2, 3, 4)] == [ids[0], *ids[2:]]
        assert client.get_compatibility("s0") == "FULL"
        assert httpx.get(f"{reg.url}/subjects").json() == ["s0", "s2", "s3", "s4"]
        new = client.register_schema("t", Schema(json.dumps({**ORDER_V1, "name": "New"}), "AVRO"))
        assert new == max(ids) + 1
    # the records are Confluent's layout
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "inspect", "enable.auto.commit": False})
    consumer.assign([TopicPartition("_schemas", 0, 0)])
    keys = []
    try:
        while True:
            msg = consumer.poll(5)
            if msg is None:
                break
            keys.append(json.loads(msg.key()))
    finally:
        consumer.close()
    assert {"keytype": "SCHEMA", "subject": "s0", "version": 1, "magic": 1} in keys
    assert {"keytype": "CONFIG", "subject": "s0", "magic": 0} in keys


def test_concurrent_registrations(sr: list[SchemaRegistryClient], registry: RegistryService) -> None:
    same: list[int] = []
    different: list[int] = []

    def worker(i: int) -> None:
        client = client_for(sr, registry.url)
        same.append(client.register_schema("same", Schema(json.dumps(ORDER_V1), "AVRO")))
        different.append(client.register_schema(f"diff{i}", Schema(json.dumps({**ORDER_V1, "name": f"D{i}"}), "AVRO")))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(same) == 8 and len(set(same)) == 1
    assert len(different) == 8 and len(set(different)) == 8 and not set(different) & set(same)
    assert httpx.get(f"{registry.url}/subjects/same/versions").json() == [1]


def test_data_contract_cel_rule_enforced_by_the_client(sr: list[SchemaRegistryClient], registry: RegistryService, topic_name: str) -> None:
    pytest.importorskip("celpy")
    from confluent_kafka.schema_registry import (
        Metadata,
        MetadataProperties,
        Rule,
        RuleKind,
        RuleMode,
        RuleSet,
    )
    from confluent_kafka.schema_registry.rules.cel.cel_executor import CelExecutor
    from confluent_kafka.serialization import SerializationError

    CelExecutor.register()
    client = client_for(sr, registry.url)
    rule = Rule("amountPositive", "", RuleKind.CONDITION, RuleMode.WRITE, "CEL", None, None, "message.amount > 0.0", None, None, False)
    schema = Schema(json.dumps(ORDER_V2), "AVRO", [], Metadata(None, MetadataProperties({"owner": "billing"}), None), RuleSet(None, [rule]))
    subject = f"{topic_name}-value"
    schema_id = client.register_schema(subject, schema)
    # stored and returned exactly
    got = httpx.get(f"{registry.url}/subjects/{subject}/versions/latest").json()
    assert got["metadata"] == {"properties": {"owner": "billing"}}
    assert got["ruleSet"]["domainRules"][0]["expr"] == "message.amount > 0.0"
    assert client.get_latest_with_metadata(subject, {"owner": "billing"}).schema_id == schema_id
    ser = AvroSerializer(client, None, conf={"auto.register.schemas": False, "use.latest.version": True})
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    assert ser({"orderId": "A1", "userId": "bob", "amount": 5.0}, ctx)[1:5] == schema_id.to_bytes(4, "big")
    with pytest.raises(SerializationError):
        ser({"orderId": "A2", "userId": "bob", "amount": -1.0}, ctx)
    # a later version without metadata inherits it (Confluent's rule)
    v3 = {**ORDER_V2, "fields": [*ORDER_V2["fields"], {"name": "note", "type": ["null", "string"], "default": None}]}
    client.register_schema(subject, Schema(json.dumps(v3), "AVRO"))
    latest = httpx.get(f"{registry.url}/subjects/{subject}/versions/latest").json()
    assert latest["version"] == 2 and latest["metadata"] == {"properties": {"owner": "billing"}} and "ruleSet" in latest


def test_config_default_and_override_metadata(sr: list[SchemaRegistryClient], registry: RegistryService) -> None:
    url = registry.url
    r = httpx.put(f"{url}/config/c", json={"compatibility": "BACKWARD", "defaultMetadata": {"properties": {"team": "a"}}, "overrideMetadata": {"properties": {"env": "prod"}}})
    assert r.status_code == 200, r.text
    cfg = httpx.get(f"{url}/config/c").json()
    assert cfg["compatibilityLevel"] == "BACKWARD" and cfg["defaultMetadata"] == {"properties": {"team": "a"}}
    httpx.post(f"{url}/subjects/c/versions", json={"schema": json.dumps(ORDER_V1)}).raise_for_status()
    assert httpx.get(f"{url}/subjects/c/versions/1").json()["metadata"] == {"properties": {"team": "a", "env": "prod"}}


def test_json_schema_serializers_and_compatibility(sr: list[SchemaRegistryClient], registry: RegistryService, topic_name: str) -> None:
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer

    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "OrderEvent", "type": "object", "properties": {"orderId": {"type": "string"}, "amount": {"type": "number"}}, "required": ["orderId"], "additionalProperties": False}
    client = client_for(sr, registry.url)
    ser = JSONSerializer(json.dumps(schema), client)
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    data = ser({"orderId": "A1", "amount": 3}, ctx)
    latest = client.get_latest_version(f"{topic_name}-value")
    assert latest.schema.schema_type == "JSON" and int.from_bytes(data[1:5], "big") == latest.schema_id
    assert JSONDeserializer(None, schema_registry_client=client_for(sr, registry.url))(data, ctx) == {"orderId": "A1", "amount": 3}
    # closed content model: an optional property may be added, a required one may not
    optional = {**schema, "properties": {**schema["properties"], "note": {"type": "string"}}}
    required = {**optional, "required": ["orderId", "note"]}
    subject = f"{topic_name}-value"
    assert client.test_compatibility(subject, Schema(json.dumps(optional), "JSON")) is True
    assert client.test_compatibility(subject, Schema(json.dumps(required), "JSON")) is False
    with pytest.raises(SchemaRegistryError) as e:
        client.register_schema(subject, Schema(json.dumps(required), "JSON"))
    assert e.value.http_status_code == 409 and "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL" in e.value.error_message
    assert httpx.get(f"{registry.url}/schemas/types").json() == ["AVRO", "JSON", "PROTOBUF"]


def test_schema_contexts_keep_their_own_ids_through_real_serializers(sr: list[SchemaRegistryClient], broker: EmbeddedBroker, registry: RegistryService, topic_name: str) -> None:
    """Two teams on one registry: the default context, and `.staging` reached through a base
    URL of /contexts/.staging (how Confluent's clients address a context)."""
    default = client_for(sr, registry.url)
    staging = client_for(sr, f"{registry.url}/contexts/.staging")
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    v_default = AvroSerializer(default, json.dumps(ORDER_V1))({"orderId": "D1", "userId": "ann"}, ctx)
    v_staging = AvroSerializer(staging, json.dumps(ORDER_V3))({"orderId": "S1", "userId": "bob", "quantity": 7}, ctx)
    assert v_default is not None and v_staging is not None
    # each context counts from 1: the same id names different schemas
    assert v_default[1:5] == v_staging[1:5] == (1).to_bytes(4, "big")
    assert AvroDeserializer(client_for(sr, registry.url))(v_default, ctx) == {"orderId": "D1", "userId": "ann"}
    assert AvroDeserializer(client_for(sr, f"{registry.url}/contexts/.staging"))(v_staging, ctx)["quantity"] == 7
    # the qualified names over the plain API
    subjects = httpx.get(f"{registry.url}/subjects").json()
    assert f":.staging:{topic_name}-value" in subjects and f"{topic_name}-value" in subjects
    assert httpx.get(f"{registry.url}/subjects", params={"subjectPrefix": ":.staging:"}).json() == [f":.staging:{topic_name}-value"]
    assert ".staging" in httpx.get(f"{registry.url}/contexts").json()
    by_qualified = httpx.get(f"{registry.url}/schemas/ids/1", params={"subject": f":.staging:{topic_name}-value"}).json()
    assert "quantity" in by_qualified["schema"]
    assert "quantity" not in httpx.get(f"{registry.url}/schemas/ids/1").json()["schema"]
    # V3 is incompatible with V1 (a field without default) but lives in another context: no clash
    assert httpx.get(f"{registry.url}/subjects/{topic_name}-value/versions").json() == [1]


def test_metrics_endpoint_counts_requests_per_endpoint(registry: RegistryService) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with httpx.Client(base_url=registry.url) as c:
        sid = c.post("/subjects/m-value/versions", json={"schema": json.dumps(ORDER_V1)}).json()["id"]
        for _ in range(3):
            assert c.get(f"/schemas/ids/{sid}").status_code == 200
        assert c.get("/schemas/ids/424242").status_code == 404
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(r.text) for s in f.samples}
    ok = samples[("riverbed_http_requests_total", (("endpoint", "by_id"), ("method", "GET"), ("service", "registry"), ("status", "200")))]
    missing = samples[("riverbed_http_requests_total", (("endpoint", "by_id"), ("method", "GET"), ("service", "registry"), ("status", "404")))]
    assert (ok, missing) == (3, 1)
    assert samples[("riverbed_http_request_duration_seconds_count", (("endpoint", "by_id"), ("service", "registry")))] == 4
    assert samples[("riverbed_registry_subjects", ())] >= 1
    assert ("process_resident_memory_bytes", ()) in samples
