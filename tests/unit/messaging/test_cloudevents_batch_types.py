"""CloudEvents JSON batch format (the HTTP binding's batched mode; the Kafka binding has none),
``time`` as a datetime and typed extension attributes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

pytest.importorskip("cloudevents.core.formats.json")
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from riverbed.messaging import (
    CloudEvent,
    InvalidEvent,
    content_mode,
    from_record,
    to_binary,
    to_structured,
)
from riverbed.messaging.events import (
    BATCH_CONTENT_TYPE,
    batch_to_records,
    from_batch,
    parse_time,
    to_batch,
)


def _e(i: int, **kw: object) -> CloudEvent:
    kw.setdefault("data", {"n": i})
    return CloudEvent(type="t.v1", source="/s", id=f"e{i}", **kw)  # type: ignore[arg-type]


def test_batch_round_trip_and_spec_shape() -> None:
    events = [
        _e(1),
        _e(2, data=b"\x00raw", datacontenttype="application/octet-stream"),
        _e(3, extensions={"tenant": "eu1"}),
    ]
    ctype, body = to_batch(events)
    assert ctype == BATCH_CONTENT_TYPE and ctype.startswith("application/cloudevents-batch+json")
    docs = json.loads(body)
    assert isinstance(docs, list) and [d["id"] for d in docs] == ["e1", "e2", "e3"]
    assert docs[1]["data_base64"] == "AHJhdw==" and "data" not in docs[1]
    back = from_batch(body, ctype)
    assert [(e.id, e.data) for e in back] == [
        ("e1", {"n": 1}),
        ("e2", b"\x00raw"),
        ("e3", {"n": 3}),
    ]
    assert back[2].extensions == {"tenant": "eu1"}
    assert from_batch(b"[]") == [] and to_batch([])[1] == b"[]"


def test_batch_members_interoperate_with_the_sdk_json_format() -> None:
    fmt = JSONFormat()
    sdk = [
        SdkEvent(
            {
                "type": "sdk.t",
                "source": "/sdk",
                "id": f"s{i}",
                "specversion": "1.0",
                "datacontenttype": "application/json",
            },
            {"i": i},
        )
        for i in range(2)
    ]
    body = b"[" + b",".join(fmt.write(e) for e in sdk) + b"]"
    ours = from_batch(body, "application/cloudevents-batch+json")
    assert [(e.id, e.type, e.data) for e in ours] == [
        ("s0", "sdk.t", {"i": 0}),
        ("s1", "sdk.t", {"i": 1}),
    ]
    _ct, body = to_batch([_e(5)])
    (doc,) = json.loads(body)
    read = fmt.read(None, json.dumps(doc).encode())
    assert read.get_id() == "e5" and read.get_data() == {"n": 5}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{}", "JSON array"),
        (b"not json", "not JSON"),
        (b'[{"specversion":"1.0","id":"a","source":"/s","type":"t"}, {"id":"b"}]', "member 1"),
        (b"[1]", "member 0"),
    ],
)
def test_bad_batches_are_invalid(body: bytes, why: str) -> None:
    with pytest.raises(InvalidEvent, match=why):
        from_batch(body)


def test_batch_content_type_is_checked_and_kafka_records_refuse_batches() -> None:
    _ct, body = to_batch([_e(1)])
    with pytest.raises(InvalidEvent, match="not a CloudEvents batch"):
        from_batch(body, "application/json")
    headers = [("content-type", BATCH_CONTENT_TYPE.encode())]
    assert content_mode(headers) == "batch"
    with pytest.raises(InvalidEvent, match="no batch mode"):
        from_record(None, body, headers)


def test_batch_to_records_gives_one_record_per_event() -> None:
    _ct, body = to_batch([_e(1, extensions={"partitionkey": "k1"}), _e(2)])
    binary = batch_to_records(body)
    assert [k for k, _v, _h in binary] == [b"k1", None]
    assert [from_record(k, v, h).id for k, v, h in binary] == ["e1", "e2"]
    structured = batch_to_records(body, structured=True)
    assert all(content_mode(h) == "structured" for _k, _v, h in structured)


def test_time_as_datetime() -> None:
    when = datetime(2026, 12, 7, 14, 30, 5, 123456, tzinfo=UTC)
    event = CloudEvent(type="t", source="/s", time=when)  # type: ignore[arg-type]
    assert event.time == "2026-12-07T14:30:05.123456Z"
    assert event.timestamp == when
    assert _e(1).timestamp is not None and _e(1).timestamp.tzinfo is not None  # type: ignore[union-attr]
    plus2 = parse_time("2026-12-07T16:30:05.123456789+02:00")  # nanoseconds cut to micro
    assert plus2 == when.astimezone(
        timezone(timedelta(hours=2))
    ) and plus2.utcoffset() == timedelta(hours=2)
    assert parse_time("2026-12-07t14:30:05z") == when.replace(microsecond=0)
    with pytest.raises(InvalidEvent):
        CloudEvent(type="t", source="/s", time=datetime(2026, 1, 1))  # type: ignore[arg-type]  # naive
    with pytest.raises(InvalidEvent):
        parse_time("yesterday")
    back = from_record(*to_binary(CloudEvent(type="t", source="/s", time=when)))  # type: ignore[arg-type]
    assert back.timestamp == when


def test_typed_extensions() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ext = {"flag": True, "count": -7, "blob": b"\x01\x02", "seen": when, "name": "x"}
    event = CloudEvent(type="t", source="/s", extensions=ext)  # type: ignore[arg-type]
    _k, _v, headers = to_binary(event)
    h = dict(headers)
    assert (h["ce_flag"], h["ce_count"], h["ce_blob"], h["ce_seen"], h["ce_name"]) == (
        b"true",
        b"-7",
        b"AQI=",
        b"2026-01-02T03:04:05Z",
        b"x",
    )
    # binary mode carries no types: strings come back
    assert from_record(None, _v, headers).extensions["count"] == "-7"
    # the JSON format keeps Boolean and Integer as JSON values
    _k, value, headers = to_structured(event)
    doc = json.loads(value)
    assert (doc["flag"], doc["count"], doc["blob"], doc["seen"]) == (
        True,
        -7,
        "AQI=",
        "2026-01-02T03:04:05Z",
    )
    back = from_record(None, value, headers)
    assert back.extensions["flag"] is True and back.extensions["count"] == -7
    for bad in ({"big": 2**31}, {"f": 1.5}, {"naive": datetime(2026, 1, 1)}):
        with pytest.raises(InvalidEvent):
            to_binary(CloudEvent(type="t", source="/s", extensions=bad))  # type: ignore[arg-type]
