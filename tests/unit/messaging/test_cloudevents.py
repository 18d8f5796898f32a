"""CloudEvents over the Kafka binding: our encoding against the official `cloudevents` SDK,
both ways, in both content modes; validation; the lecture's envelope."""

from __future__ import annotations

import json

import pytest

sdk_kafka = pytest.importorskip("cloudevents.v1.kafka")
from cloudevents.v1.http import CloudEvent as SdkEvent  # noqa: E402

from riverbed.messaging import (  # noqa: E402
    CloudEvent,
    InvalidEvent,
    content_mode,
    from_binary,
    from_record,
    from_structured,
    to_binary,
    to_structured,
)


def _order() -> CloudEvent:
    return CloudEvent(
        type="eu.company.domain.order.created.v1",
        source="/checkout",
        id="evt-1",
        time="2026-12-07T02:00:00.000Z",
        subject="order/A100",
        datacontenttype="application/json",
        data={"orderId": "A100", "amount": 42},
        extensions={"partitionkey": "user_id_bob", "tenant": "eu1"},
    )


def test_binary_mode_headers_and_key() -> None:
    key, value, headers = to_binary(_order())
    h = dict(headers)
    assert key == b"user_id_bob"
    assert h["ce_specversion"] == b"1.0"
    assert h["ce_id"] == b"evt-1"
    assert h["ce_type"] == b"eu.company.domain.order.created.v1"
    assert h["ce_source"] == b"/checkout"
    assert h["ce_time"] == b"2026-12-07T02:00:00.000Z"
    assert h["ce_tenant"] == b"eu1"
    assert h["content-type"] == b"application/json"
    assert "ce_datacontenttype" not in h and "ce_partitionkey" not in h
    assert json.loads(value or b"") == {"orderId": "A100", "amount": 42}
    assert content_mode(headers) == "binary"


def test_binary_ours_to_sdk() -> None:
    key, value, headers = to_binary(_order())
    event = sdk_kafka.from_binary(sdk_kafka.KafkaMessage(dict(headers), key, value))
    assert event["id"] == "evt-1"
    assert event["type"] == "eu.company.domain.order.created.v1"
    assert event["source"] == "/checkout"
    assert event["subject"] == "order/A100"
    assert event["tenant"] == "eu1"
    assert event["partitionkey"] == b"user_id_bob"
    assert event.get_data() == {"orderId": "A100", "amount": 42}


def test_binary_sdk_to_ours() -> None:
    sdk_event = SdkEvent(
        {"type": "eu.company.domain.order.created.v1", "source": "/sdk", "id": "sdk-1", "partitionkey": "k1", "datacontenttype": "application/json"},
        {"orderId": "B7"},
    )
    msg = sdk_kafka.to_binary(sdk_event)
    headers = [(k, v) for k, v in msg.headers.items()]
    key = msg.key.encode() if isinstance(msg.key, str) else msg.key
    event = from_record(key, msg.value, headers)
    assert (event.id, event.type, event.source) == ("sdk-1", "eu.company.domain.order.created.v1", "/sdk")
    assert event.partitionkey == "k1"
    assert event.data == {"orderId": "B7"}
    assert event.time == sdk_event["time"]


def test_structured_ours_to_sdk_and_back() -> None:
    key, value, headers = to_structured(_order())
    assert headers == [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    assert content_mode(headers) == "structured"
    assert key == b"user_id_bob"
    event = sdk_kafka.from_structured(sdk_kafka.KafkaMessage(dict(headers), key, value))
    assert event["id"] == "evt-1" and event["tenant"] == "eu1"
    assert event.get_data() == {"orderId": "A100", "amount": 42}
    again = sdk_kafka.to_structured(event)
    ours = from_record(again.key, again.value, list(again.headers.items()))
    assert ours.id == "evt-1" and ours.data == {"orderId": "A100", "amount": 42}
    assert ours.partitionkey == "user_id_bob"


def test_structured_binary_data_is_base64() -> None:
    event = CloudEvent(type="t", source="/s", data=b"\x00\x01video", datacontenttype="application/octet-stream")
    _, value, headers = to_structured(event)
    doc = json.loads(value)
    assert doc["data_base64"] == "AAF2aWRlbw=="
    assert "data" not in doc
    assert from_record(None, value, headers).data == b"\x00\x01video"
    sdk = sdk_kafka.from_structured(sdk_kafka.KafkaMessage(dict(headers), None, value))
    assert sdk.get_data() == b"\x00\x01video"


def test_binary_non_json_data_is_bytes() -> None:
    event = CloudEvent(type="t", source="/s", data=b"\xff\xfe", datacontenttype="application/avro")
    key, value, headers = to_binary(event)
    assert key is None and value == b"\xff\xfe"
    assert from_binary(key, value, headers).data == b"\xff\xfe"


@pytest.mark.parametrize(
    "headers",
    [
        [("ce_specversion", b"1.0"), ("ce_source", b"/s"), ("ce_type", b"t")],  # no id
        [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_type", b"t")],  # no source
        [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s")],  # no type
        [("ce_specversion", b"0.3"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t")],
        [("ce_specversion", b"1.0"), ("ce_id", b""), ("ce_source", b"/s"), ("ce_type", b"t")],
        [("ce_specversion", b"1.0"), ("ce_id", b"\xff"), ("ce_source", b"/s"), ("ce_type", b"t")],
        [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"), ("ce_time", b"yesterday")],
        [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"), ("ce_Bad_Name", b"x")],
    ],
)
def test_binary_validation_rejects(headers: list[tuple[str, bytes]]) -> None:
    with pytest.raises(InvalidEvent):
        from_binary(None, None, headers)


@pytest.mark.parametrize(
    "value",
    [b"not json", b"[1]", b'{"specversion":"1.0","id":"1","source":"/s"}', b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"!!"}', None],
)
def test_structured_validation_rejects(value: bytes | None) -> None:
    with pytest.raises(InvalidEvent):
        from_structured(None, value)


def test_not_a_cloudevent() -> None:
    with pytest.raises(InvalidEvent):
        from_record(None, b"plain", [("x", b"y")])
    with pytest.raises(InvalidEvent):
        to_binary(CloudEvent(type="", source="/s"))
    with pytest.raises(InvalidEvent):
        to_binary(CloudEvent(type="t", source="/s", extensions={"UPPER": "x"}))
    with pytest.raises(InvalidEvent):  # declared JSON, is not
        from_binary(None, b"{oops", [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t")])


def test_lecture_envelope_maps_onto_cloudevents() -> None:
    envelope = {
        "eventId": "3f1c",
        "eventType": "eu.company.domain.order.created.v1",
        "timestamp": "2026-12-07T02:00:00Z",
        "source": "/shop",
        "data": {"orderId": "A100"},
    }
    event = CloudEvent.from_envelope(envelope)
    assert (event.id, event.type, event.time, event.source) == ("3f1c", envelope["eventType"], envelope["timestamp"], "/shop")
    key, value, headers = to_binary(event)
    assert from_record(key, value, headers).to_envelope() == envelope
    with pytest.raises(InvalidEvent):
        CloudEvent.from_envelope({"eventType": "x", "source": "/s"})


def test_defaults_make_a_valid_event() -> None:
    event = CloudEvent(type="t", source="/s", data={"a": 1})
    key, value, headers = to_binary(event)
    back = from_record(key, value, headers)
    assert back.id == event.id and back.time == event.time and back.data == {"a": 1}
    assert key is None


def test_deeply_nested_json_is_invalid_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(InvalidEvent):
        from_binary(None, deep, [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t")])
    with pytest.raises(InvalidEvent):
        from_structured(None, b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":' + deep + b"}")
