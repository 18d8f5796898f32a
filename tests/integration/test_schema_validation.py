"""Schema ids checked at produce time (confluent.value.schema.validation and friends), with
real clients over TCP: confluent-kafka (with its AvroSerializer / JSONSerializer against a
riverbed registry), kcat and kafkajs. Refusals are INVALID_RECORD with KIP-467 per-record
errors; the broker reads the registry's `_schemas` log itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from riverbed.protocol.errors import ErrorCode
from riverbed.registry.service import RegistryConfig, RegistryService
from riverbed.testing import EmbeddedBroker

from .helpers import create_topics
from .test_record_errors import deliver, produce_batch

pytestmark = pytest.mark.integration

ORDER = {"type": "record", "name": "OrderEvent", "namespace": "shop", "fields": [{"name": "orderId", "type": "string"}, {"name": "amount", "type": "double"}]}
PAYMENT = {"type": "record", "name": "Payment", "namespace": "shop", "fields": [{"name": "id", "type": "long"}]}
ORDER_JSON = {"title": "OrderJson", "type": "object", "properties": {"orderId": {"type": "string"}}, "required": ["orderId"]}
RAW_JSON = b'{"orderId": "A1", "amount": 9.5}'
VALIDATE = {"confluent.value.schema.validation": "true"}
RECORD_NAME = "io.confluent.kafka.serializers.subject.RecordNameStrategy"
UNKNOWN_ID = 987_654


def framed(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


@pytest.fixture
def registry(broker: EmbeddedBroker) -> Iterator[RegistryService]:
    with RegistryService(RegistryConfig(bootstrap=broker.bootstrap, listen="127.0.0.1:0")) as reg:
        yield reg


@pytest.fixture
def client(registry: RegistryService) -> Iterator[SchemaRegistryClient]:
    c = SchemaRegistryClient({"url": registry.url})
    yield c
    c.close()


def avro_value(client: SchemaRegistryClient, topic: str, value: dict[str, Any], schema: dict[str, Any] = ORDER, conf: dict[str, Any] | None = None) -> bytes:
    ser = AvroSerializer(client, json.dumps(schema), conf=conf)
    out = ser(value, SerializationContext(topic, MessageField.VALUE))
    assert out is not None
    return out


OK = 0
INVALID = KafkaError.INVALID_RECORD


def test_raw_json_and_unknown_id_refused_serializer_records_accepted(broker: EmbeddedBroker, client: SchemaRegistryClient, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config=VALIDATE))
    good = avro_value(client, topic_name, {"orderId": "A1", "amount": 9.5})
    codes = [deliver(broker.bootstrap, topic_name, [{"key": b"k", "value": v}])[0] for v in (RAW_JSON, framed(UNKNOWN_ID, b"\x02x"), good, None)]
    assert codes == [INVALID, INVALID, OK, OK]  # a tombstone passes
    # the wire: record_errors name the record and say why (Produce v8+)
    part = produce_batch(broker.bootstrap, topic_name, [(b"k", good), (b"k", RAW_JSON), (b"k", framed(UNKNOWN_ID, b""))], 8)
    assert part.error_code == ErrorCode.INVALID_RECORD
    errors = {e.batch_index: e.batch_index_error_message or "" for e in part.record_errors}
    assert sorted(errors) == [1, 2]
    assert "no schema id" in errors[1]
    assert f"schema id {UNKNOWN_ID}, which is not registered" in errors[2]
    # nothing of the refused batch reached the log: 2 records (good + tombstone) before it
    assert produce_batch(broker.bootstrap, topic_name, [(b"k", good)], 8).base_offset == 2


def test_a_topic_without_validation_takes_anything(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    assert deliver(broker.bootstrap, topic_name, [{"value": RAW_JSON}, {"value": framed(UNKNOWN_ID, b"")}]) == [OK, OK]


def test_key_validation(broker: EmbeddedBroker, client: SchemaRegistryClient, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config={"confluent.key.schema.validation": "true"}))
    ser = AvroSerializer(client, json.dumps("string"))
    key = ser("order-1", SerializationContext(topic_name, MessageField.KEY))
    codes = [deliver(broker.bootstrap, topic_name, [m])[0] for m in ({"key": b"plain", "value": RAW_JSON}, {"key": key, "value": RAW_JSON}, {"value": RAW_JSON})]
    assert codes == [INVALID, OK, OK]  # the value is not checked; a null key passes


def test_schema_registered_after_the_index_was_built_is_accepted(broker: EmbeddedBroker, client: SchemaRegistryClient, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config=VALIDATE))
    assert deliver(broker.bootstrap, topic_name, [{"value": RAW_JSON}]) == [INVALID]  # the index has read `_schemas`
    fresh = {**PAYMENT, "name": f"Fresh{time.monotonic_ns()}"}
    sid = client.register_schema(f"{topic_name}-value", Schema(json.dumps(fresh), "AVRO"))
    assert deliver(broker.bootstrap, topic_name, [{"value": framed(sid, b"\x02")}]) == [OK]
    # hard delete: soft first, then permanent; the id is then refused again
    client.delete_subject(f"{topic_name}-value")
    assert deliver(broker.bootstrap, topic_name, [{"value": framed(sid, b"\x02")}]) == [INVALID]  # soft-deleted


def test_subject_name_strategies(broker: EmbeddedBroker, client: SchemaRegistryClient, topic_name: str) -> None:
    by_topic, by_record = f"{topic_name}-t", f"{topic_name}-r"
    create_topics(
        broker.bootstrap,
        NewTopic(by_topic, 1, 1, config=VALIDATE),
        NewTopic(by_record, 1, 1, config={**VALIDATE, "confluent.value.subject.name.strategy": RECORD_NAME}),
    )
    # registered under the record's name (shop.Payment), as RecordNameStrategy serializers do
    from confluent_kafka.schema_registry import record_subject_name_strategy

    record_named = avro_value(client, by_record, {"id": 7}, PAYMENT, {"subject.name.strategy": record_subject_name_strategy})
    # registered under <topic>-value of the TopicNameStrategy topic
    topic_named = avro_value(client, by_topic, {"orderId": "A", "amount": 1.0})
    assert deliver(broker.bootstrap, by_record, [{"value": record_named}]) == [OK]
    assert deliver(broker.bootstrap, by_topic, [{"value": record_named}]) == [INVALID]  # not under by_topic-value
    assert deliver(broker.bootstrap, by_topic, [{"value": topic_named}]) == [OK]
    assert deliver(broker.bootstrap, by_record, [{"value": topic_named}]) == [INVALID]  # not under shop.OrderEvent
    part = produce_batch(broker.bootstrap, by_topic, [(None, record_named)], 8)
    assert f"not registered under subject '{by_topic}-value'" in (part.record_errors[0].batch_index_error_message or "")


def test_topic_record_name_strategy_and_json_title(broker: EmbeddedBroker, client: SchemaRegistryClient, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config={**VALIDATE, "confluent.value.subject.name.strategy": "TopicRecordNameStrategy"}))
    sid = client.register_schema(f"{topic_name}-OrderJson", Schema(json.dumps(ORDER_JSON), "JSON"))
    other = client.register_schema(f"{topic_name}-value", Schema(json.dumps({**ORDER_JSON, "title": "Other"}), "JSON"))
    part = produce_batch(broker.bootstrap, topic_name, [(None, framed(sid, b'{"orderId":"x"}')), (None, framed(other, b"{}"))], 8)
    assert [(e.batch_index, e.batch_index_error_message) for e in part.record_errors] == [(1, f"value names schema id {other}, which is not registered under subject '{topic_name}-Other'")]
    assert deliver(broker.bootstrap, topic_name, [{"value": framed(sid, b'{"orderId":"x"}')}]) == [OK]


def test_full_validation_decodes_payloads(broker: EmbeddedBroker, client: SchemaRegistryClient, topic_name: str) -> None:
    full, ids_only = f"{topic_name}-full", f"{topic_name}-id"
    create_topics(
        broker.bootstrap,
        NewTopic(full, 1, 1, config={**VALIDATE, "riverbed.value.schema.validation": "full"}),
        NewTopic(ids_only, 1, 1, config=VALIDATE),
    )
    good = avro_value(client, full, {"orderId": "A1", "amount": 9.5})
    sid = int.from_bytes(good[1:5], "big")
    client.register_schema(f"{ids_only}-value", Schema(json.dumps(ORDER), "AVRO"))  # the same id under ids_only
    truncated = good[:-3]
    trailing = good + b"\x00"
    bad_utf8 = framed(sid, b"\x04\xff\xfe" + b"\x00" * 8)
    assert deliver(broker.bootstrap, full, [{"value": v} for v in (good,)]) == [OK]
    assert [deliver(broker.bootstrap, full, [{"value": v}])[0] for v in (truncated, trailing, bad_utf8)] == [INVALID] * 3
    # with ids only, the same payloads pass: their id is fine
    assert [deliver(broker.bootstrap, ids_only, [{"value": v}])[0] for v in (truncated, trailing, bad_utf8)] == [OK] * 3
    part = produce_batch(broker.bootstrap, full, [(None, truncated)], 8)
    assert f"does not decode with schema id {sid}" in (part.record_errors[0].batch_index_error_message or "")


def test_full_validation_json_schema(broker: EmbeddedBroker, client: SchemaRegistryClient, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config={"riverbed.value.schema.validation": "full"}))  # full alone turns it on
    ser = JSONSerializer(json.dumps(ORDER_JSON), client)
    good = ser({"orderId": "A"}, SerializationContext(topic_name, MessageField.VALUE))
    assert good is not None
    sid = int.from_bytes(good[1:5], "big")
    codes = [deliver(broker.bootstrap, topic_name, [{"value": v}])[0] for v in (good, framed(sid, b'{"amount": 1}'), framed(sid, b"not json"))]
    assert codes == [OK, INVALID, INVALID]


def test_configs_are_described_and_checked(broker: EmbeddedBroker, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config={**VALIDATE, "confluent.value.subject.name.strategy": RECORD_NAME}))
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["confluent.value.schema.validation"].value == "true"
    assert configs["confluent.value.subject.name.strategy"].value == RECORD_NAME
    assert configs["confluent.key.schema.validation"].value == "false"
    assert configs["confluent.key.subject.name.strategy"].value == "io.confluent.kafka.serializers.subject.TopicNameStrategy"
    assert configs["riverbed.value.schema.validation"].value == "id"
    bad = NewTopic(f"{topic_name}-bad", 1, 1, config={"confluent.value.subject.name.strategy": "com.example.MyStrategy"})
    with pytest.raises(Exception, match=r"INVALID_CONFIG|Invalid value"):
        create_topics(broker.bootstrap, bad)


# --------------------------------------------------------------------------- kcat, kafkajs

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
NODE_DIR = Path(__file__).parent / "node"
HAVE_KAFKAJS = shutil.which("node") is not None and (NODE_DIR / "node_modules" / "kafkajs").is_dir()


def high_watermark(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw"})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        c.close()


@pytest.mark.skipif(KCAT is None, reason="kcat not installed (scripts/setup dev installs it)")
def test_kcat_refused_and_accepted(broker: EmbeddedBroker, client: SchemaRegistryClient, topic_name: str) -> None:
    assert KCAT is not None
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config=VALIDATE))
    good = avro_value(client, topic_name, {"orderId": "A1", "amount": 9.5})
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, data in (("raw", RAW_JSON), ("unknown", framed(UNKNOWN_ID, b"\x02x")), ("good", good)):
            files[name] = os.path.join(tmp, name)
            Path(files[name]).write_bytes(data)
        outcomes = {}
        for name, path in files.items():
            # one file = one message (kcat -P with file arguments)
            out = subprocess.run([KCAT, "-b", broker.bootstrap, "-P", "-t", topic_name, "-X", "acks=all", "-X", "message.send.max.retries=0", path], capture_output=True, text=True, timeout=60)
            outcomes[name] = (out.returncode, out.stderr)
    for name in ("raw", "unknown"):
        code, err = outcomes[name]
        assert code != 0 and "Broker failed to validate record" in err, (name, code, err)  # librdkafka's text for INVALID_RECORD
    assert outcomes["good"][0] == 0, outcomes["good"]
    assert high_watermark(broker.bootstrap, topic_name) == 1


@pytest.mark.skipif(not HAVE_KAFKAJS, reason="node or kafkajs not installed (scripts/setup dev installs them)")
def test_kafkajs_refused_and_accepted(broker: EmbeddedBroker, client: SchemaRegistryClient, topic_name: str) -> None:
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config=VALIDATE))
    good = avro_value(client, topic_name, {"orderId": "A1", "amount": 9.5})
    env = {**os.environ, "BOOTSTRAP": broker.bootstrap}
    args = [RAW_JSON.hex(), framed(UNKNOWN_ID, b"\x02x").hex(), good.hex()]
    out = subprocess.run(["node", "schema_validation.js", topic_name, *args], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["INVALID_RECORD", "INVALID_RECORD", ""]
    assert high_watermark(broker.bootstrap, topic_name) == 1


def test_the_index_is_rebuilt_from_the_log_after_a_restart(tmp_path: Path) -> None:
    """`riverbed serve` restarted (same data dir, registry stopped meanwhile): the first produce
    to a validated topic reads `_schemas` from the broker's own log, so ids registered before
    the restart are accepted and unknown ones refused, with no registry running."""
    from riverbed.testing import BrokerProcess

    data = tmp_path / "data"
    with BrokerProcess(data) as broker:
        with RegistryService(RegistryConfig(bootstrap=broker.bootstrap, listen="127.0.0.1:0")) as reg:
            c = SchemaRegistryClient({"url": reg.url})
            try:
                good = avro_value(c, "orders", {"orderId": "A1", "amount": 9.5})
            finally:
                c.close()
        create_topics(broker.bootstrap, NewTopic("orders", 1, 1, config=VALIDATE))
        assert broker.terminate() == 0
        broker.start()
        codes = [deliver(broker.bootstrap, "orders", [{"value": v}])[0] for v in (good, framed(UNKNOWN_ID, b"\x02x"))]
        assert codes == [OK, INVALID]


HAVE_CSR_JS = HAVE_KAFKAJS and (NODE_DIR / "node_modules" / "@kafkajs" / "confluent-schema-registry").is_dir()


@pytest.mark.skipif(not HAVE_CSR_JS, reason="node or @kafkajs/confluent-schema-registry not installed (scripts/setup dev installs them)")
def test_kafkajs_confluent_schema_registry_client(broker: EmbeddedBroker, registry: RegistryService, topic_name: str) -> None:
    """The registry client kafkajs users have, for Avro, JSON Schema and Protobuf, through a topic
    that checks ids with RecordNameStrategy."""
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config={**VALIDATE, "confluent.value.subject.name.strategy": RECORD_NAME}), NewTopic(f"{topic_name}-plain", 1, 1))
    env = {**os.environ, "BOOTSTRAP": broker.bootstrap, "REGISTRY": registry.url}
    out = subprocess.run(["node", "confluent_schema_registry.js", topic_name], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    avro_id, json_id, proto_id = report["ids"]
    assert len({avro_id, json_id, proto_id}) == 3
    assert report["again"] == report["latest"] == report["bySchema"] == avro_id
    assert report["refused"] == "INVALID_RECORD"
    # its Protobuf records lack Confluent's message indexes: refused where ids are checked
    assert report["protoRefused"] == "INVALID_RECORD"
    decoded = sorted(report["decoded"], key=json.dumps)
    assert decoded == sorted([{"orderId": "A1", "amount": 12.5}, {"id": "P1", "cents": 1250}, {"id": "S1", "parcels": 2}], key=json.dumps)
    assert high_watermark(broker.bootstrap, topic_name) == 2


def test_ids_of_other_schema_contexts_do_not_count(broker: EmbeddedBroker, registry: RegistryService, topic_name: str) -> None:
    """A schema registered in context `.staging` gets id 1 of that context: a record naming id 1
    on a checked topic is judged against the default context only."""
    staging = SchemaRegistryClient({"url": f"{registry.url}/contexts/.staging"})
    default = SchemaRegistryClient({"url": registry.url})
    try:
        create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1, config={**VALIDATE, "riverbed.value.schema.validation": "full"}))
        staged = AvroSerializer(staging, json.dumps(ORDER))({"orderId": "S", "amount": 1.0}, SerializationContext(topic_name, MessageField.VALUE))
        assert staged is not None and staged[1:5] == (1).to_bytes(4, "big")
        # the staging registration is under ":.staging:<topic>-value", not the topic's subject
        assert deliver(broker.bootstrap, topic_name, [{"value": staged}]) == [INVALID]
        # now the default context's id 1: a different schema (PAYMENT), decoded against it
        good = avro_value(default, topic_name, {"id": 7}, schema=PAYMENT)
        assert good[1:5] == (1).to_bytes(4, "big")
        assert deliver(broker.bootstrap, topic_name, [{"value": good}]) == [OK]
        # the staging payload (an Order) does not decode as a Payment... nor the other way round
        assert deliver(broker.bootstrap, topic_name, [{"value": staged + b"\x00\x00"}]) == [INVALID]
    finally:
        staging.close()
        default.close()
