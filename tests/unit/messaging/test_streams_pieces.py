"""riverbed.messaging inside riverbed.streams topologies, through the streams test driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from riverbed.messaging import CloudEvent, from_record, to_binary, to_structured
from riverbed.messaging.claimcheck import HEADER, BlobMissing, ClaimCheck, DirectoryStore
from riverbed.messaging.deadletter import (
    H_ATTEMPTS,
    H_EXC_CLASS,
    H_GROUP,
    H_OFFSET,
    H_TOPIC,
    header,
)
from riverbed.messaging.dedup import MemoryStore
from riverbed.messaging.streams import (
    ClaimCheckSerde,
    CloudEventSerde,
    TracingInterceptor,
    dead_letter_headers,
    deduplicate,
)
from riverbed.streams import BYTES, JSON, STRING, StreamsApp, StreamsError, TestDriver

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _event(i: int, **kw: object) -> CloudEvent:
    kw.setdefault("data", {"orderId": f"A{i}"})
    return CloudEvent(
        type="eu.company.domain.order.created.v1",
        source="/checkout",
        id=f"e{i}",
        **kw,  # type: ignore[arg-type]
    )


def test_cloudevent_serde_reads_binary_and_structured_and_writes_binary() -> None:
    app = StreamsApp("ce")
    (
        app.stream("orders", STRING, CloudEventSerde())
        .map_values(
            lambda e: CloudEvent(
                type=e.type + ".seen",
                source="/streams",
                id=e.id + "-out",
                data=e.data,
                subject="copy",
            )
        )
        .to("seen")
    )
    with TestDriver(app) as d:
        _k, value, headers = to_binary(_event(1))
        d.pipe_raw("orders", b"u1", value, 1, [*headers, ("keep-me", b"1")])
        _k, value, headers = to_structured(_event(2))
        d.pipe_raw("orders", b"u2", value, 2, headers)
        out = d.outputs["seen"]
        assert len(out) == 2
        for rec, i in zip(out, (1, 2), strict=True):
            names = [k for k, _ in rec.headers or ()]
            assert (
                names.count("ce_id") == 1 and names.count("content-type") == 0
            )  # the input's replaced (no datacontenttype: no content-type)
            event = from_record(rec.key, rec.value, rec.headers)
            assert (event.id, event.type, event.subject) == (
                f"e{i}-out",
                "eu.company.domain.order.created.v1.seen",
                "copy",
            )
            assert event.data == {"orderId": f"A{i}"}
            assert json.loads(rec.value or b"") == {
                "orderId": f"A{i}"
            }  # binary mode: data is the value
        assert ("keep-me", b"1") in (out[0].headers or [])  # other headers travel on
        # the driver's read deserializes with the headers too
        assert [e.id for _k, e in d.read("seen", STRING, CloudEventSerde())] == ["e1-out", "e2-out"]


def test_cloudevent_serde_structured_output_and_pipe_through_driver() -> None:
    app = StreamsApp("ce2")
    app.stream("in", STRING, CloudEventSerde()).to(
        "out", STRING, CloudEventSerde(mode="structured")
    )
    with TestDriver(app) as d:
        d.pipe("in", "k", _event(7), timestamp=5)  # pipe serializes with the headers (binary mode)
        (rec,) = d.outputs["out"]
        assert dict(rec.headers or [])["content-type"].startswith(b"application/cloudevents+json")
        assert not any(k.startswith("ce_") for k, _ in rec.headers or [])
        assert json.loads(rec.value or b"")["id"] == "e7"


def test_undecodable_cloudevent_follows_the_source_error_policy() -> None:
    app = StreamsApp("ce3")
    app.stream("in", STRING, CloudEventSerde(), on_error="skip").to("out")
    with TestDriver(app) as d:
        d.pipe_raw("in", b"k", b"{}", 1, [("ce_specversion", b"1.0")])  # no id, source, type
        d.pipe_raw("in", b"k", b"not json", 2, [("content-type", b"application/cloudevents+json")])
        d.pipe_raw("in", b"k", b"x", 3, None)  # not a CloudEvent at all
        assert d.outputs.get("out") is None
        assert d.metrics()["deserialization_errors"] == 3


def test_cloudevent_serde_without_headers_is_the_structured_form() -> None:
    serde = CloudEventSerde()
    assert (
        serde.deserialize_with_headers(None, [("traceparent", TP.encode())]) is None
    )  # a tombstone
    empty = serde.deserialize_with_headers(
        None, to_binary(_event(4, data=None))[2]
    )  # an event without data
    assert empty is not None and empty.id == "e4" and empty.data is None
    raw = serde.serialize(_event(3, subject="s"))
    back = serde.deserialize(raw)
    assert back is not None and (back.id, back.subject, back.data) == ("e3", "s", {"orderId": "A3"})
    assert serde.serialize(None) is None and serde.deserialize(None) is None
    with pytest.raises(ValueError):
        serde.serialize_with_headers({"not": "an event"}, [])  # type: ignore[arg-type]


def test_claim_check_serde_stores_large_values_and_resolves_them(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    claim = ClaimCheck(store, threshold=64)
    app = StreamsApp("cc")
    app.stream("videos", STRING, ClaimCheckSerde(claim)).map_values(lambda b: b.upper()).to(
        "out", STRING, ClaimCheckSerde(claim)
    )
    big = b"v" * 1000
    with TestDriver(app) as d:
        d.pipe("videos", "k", big)  # stored by the pipe's serializer, resolved by the source
        d.pipe("videos", "k", b"small")
        big_out, small_out = d.outputs["out"]
        assert dict(big_out.headers or [])[HEADER] == b"sha256"
        ref = json.loads(big_out.value or b"")
        assert ref["size"] == 1000 and len(big_out.value or b"") < 600
        assert small_out.value == b"SMALL" and HEADER not in dict(small_out.headers or [])
        assert [v for _k, v in d.read("out", STRING, ClaimCheckSerde(claim))] == [
            b"V" * 1000,
            b"SMALL",
        ]


def test_claim_check_serde_around_cloudevents_and_a_missing_blob_dead_lettered(
    tmp_path: Path,
) -> None:
    claim = ClaimCheck(DirectoryStore(tmp_path), threshold=100)
    serde = ClaimCheckSerde(claim, CloudEventSerde())
    app = StreamsApp(
        "cc2",
        on_processing_error="dead_letter",
        dead_letter_topic="in.DLQ",
        dead_letter_headers=dead_letter_headers("cc2"),
    )
    app.stream("in", STRING, serde, on_error="dead_letter").to("out", STRING, serde)
    with TestDriver(app) as d:
        event = _event(1, data={"blob": "x" * 500})
        d.pipe("in", "k", event)
        (rec,) = d.outputs["out"]
        names = dict(rec.headers or [])
        assert (
            HEADER in names and names["ce_id"] == b"e1"
        )  # attributes in headers, data behind a reference
        (got,) = [v for _k, v in d.read("out", STRING, serde)]
        assert got.data == {"blob": "x" * 500}
        for blob in tmp_path.rglob("*"):
            if blob.is_file():
                blob.unlink()
        d.pipe_raw("in", rec.key, rec.value, 9, rec.headers)  # the reference now points at nothing
        (dead,) = d.outputs["in.DLQ"]
        assert header(dead.headers, H_EXC_CLASS) == f"{BlobMissing.__module__}.BlobMissing"
        assert header(dead.headers, H_TOPIC) == "in" and header(dead.headers, H_OFFSET) == "1"


def test_dead_letters_carry_riverbed_errors_headers() -> None:
    app = StreamsApp(
        "orders-app",
        on_processing_error="dead_letter",
        dead_letter_topic="orders.DLQ",
        dead_letter_headers=dead_letter_headers("orders-app"),
    )

    def check(v: dict[str, int]) -> dict[str, int]:
        if v["n"] < 0:
            raise ValueError(f"negative amount {v['n']}")
        return v

    app.stream("orders", STRING, JSON).map_values(check).to("ok")
    with TestDriver(app) as d:
        d.pipe("orders", "a", {"n": 1}, timestamp=10, headers=[("traceparent", TP.encode())])
        d.pipe("orders", "b", {"n": -1}, timestamp=11, headers=[("traceparent", TP.encode())])
        (dead,) = d.outputs["orders.DLQ"]
        assert dead.key == b"b" and json.loads(dead.value or b"") == {"n": -1}  # the input's bytes
        assert header(dead.headers, H_TOPIC) == "orders"
        assert header(dead.headers, H_OFFSET) == "1"
        assert header(dead.headers, H_GROUP) == "orders-app"
        assert header(dead.headers, H_ATTEMPTS) == "1"
        assert header(dead.headers, H_EXC_CLASS) == "builtins.ValueError"
        assert header(dead.headers, "riverbed.errors.exception.message") == "negative amount -1"
        assert "check" in (header(dead.headers, "riverbed.errors.exception.stacktrace") or "")
        assert header(dead.headers, "traceparent") == TP  # the input's own headers are kept
        assert not any(k.startswith("__streams.errors.") for k, _ in dead.headers or [])
        assert d.read("ok", STRING, JSON) == [("a", {"n": 1})]


def test_default_dead_letter_headers_are_still_kafka_streams_ones() -> None:
    app = StreamsApp("x", on_processing_error="dead_letter", dead_letter_topic="dlq")
    app.stream("in", STRING, JSON).map_values(lambda v: 1 / 0).to("out")
    with TestDriver(app) as d:
        d.pipe("in", "k", {})
        (dead,) = d.outputs["dlq"]
        assert header(dead.headers, "__streams.errors.topic") == "in"


def test_deduplicate_processor_forwards_each_event_id_once() -> None:
    store = MemoryStore()
    app = StreamsApp("dd")
    app.stream("in", STRING, CloudEventSerde()).process(deduplicate(store)).to(
        "out", STRING, CloudEventSerde()
    )
    with TestDriver(app) as d:
        for i in (1, 2, 1, 3, 2):
            d.pipe("in", f"k{i}", _event(i))
        assert [e.id for _k, e in d.read("out", STRING, CloudEventSerde())] == ["e1", "e2", "e3"]
        assert store.seen("e1") and store.seen("e3")


def test_deduplicate_forwards_records_without_an_id_and_reads_ce_id_header() -> None:
    store = MemoryStore()
    app = StreamsApp("dd2")
    app.stream("in", STRING, BYTES).process(deduplicate(store)).to("out")
    with TestDriver(app) as d:
        d.pipe("in", "a", b"1", headers=[("ce_id", b"x")])
        d.pipe("in", "a", b"2", headers=[("ce_id", b"x")])
        d.pipe("in", "a", b"3")
        d.pipe("in", "a", b"4")
        assert [v for _k, v in d.read("out", STRING, BYTES)] == [b"1", b"3", b"4"]


def test_deduplicate_does_not_mark_when_downstream_fails() -> None:
    store = MemoryStore()
    calls: list[str] = []

    def flaky(e: CloudEvent) -> CloudEvent:
        calls.append(e.id)
        if len(calls) == 1:
            raise RuntimeError("down")
        return e

    app = StreamsApp("dd3", on_processing_error="skip")
    app.stream("in", STRING, CloudEventSerde()).process(deduplicate(store)).map_values(flaky).to(
        "out", STRING, CloudEventSerde()
    )
    with TestDriver(app) as d:
        d.pipe("in", "k", _event(1))
        d.pipe("in", "k", _event(1))  # redelivery after the failure runs again
        d.pipe("in", "k", _event(1))  # now a duplicate
        assert calls == ["e1", "e1"]
        assert len(d.outputs["out"]) == 1


@pytest.fixture
def spans() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_tracing_interceptor_spans_each_record_and_injects_into_outputs(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    app = StreamsApp("traced", interceptors=[TracingInterceptor("traced", tracer=tracer)])
    (
        app.stream("in", STRING, JSON)
        .select_key(lambda _k, v: v["user"], STRING)
        .group_by_key()  # through a repartition topic: the trace carries on
        .count(name="per-user")
        .to_stream()
        .to("out", STRING, JSON)
    )
    with TestDriver(app) as d:
        d.pipe(
            "in",
            "k",
            {"user": "bob"},
            timestamp=1,
            headers=[("traceparent", TP.encode()), ("tracestate", b"v=1")],
        )
        d.pipe("in", "k", {"user": "amy"}, timestamp=2)  # no context: a new trace
        out = d.outputs["out"]
        assert len(out) == 2
    finished = exporter.get_finished_spans()
    process = [s for s in finished if s.name.startswith("process ")]
    # one span per record per sub-topology: in, then the repartition topic
    assert sorted(s.name for s in process) == [
        "process in",
        "process in",
        "process traced-per-user-repartition",
        "process traced-per-user-repartition",
    ]
    assert all(s.kind == SpanKind.CONSUMER for s in process)
    bob = [
        s
        for s in process
        if format(s.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    ]
    assert len(bob) == 2  # both hops of bob's record in the incoming trace
    first = next(s for s in bob if s.name == "process in")
    second = next(s for s in bob if s.name != "process in")
    assert first.parent is not None and format(first.parent.span_id, "016x") == "b7ad6b7169203331"
    assert second.parent is not None and second.parent.span_id == first.context.span_id
    assert first.attributes is not None and first.attributes["messaging.system"] == "kafka"
    assert first.attributes["messaging.destination.name"] == "in"
    assert first.attributes["messaging.consumer.group.name"] == "traced"
    assert first.attributes["messaging.kafka.message.key"] == "k"
    assert [link.context.span_id for link in first.links] == [0xB7AD6B7169203331]
    # the output carries the last process span's context (one traceparent, the stale one replaced)
    bob_out = next(r for r in out if r.key == b"bob")
    tps = [v for k, v in bob_out.headers or [] if k == "traceparent"]
    assert tps == [f"00-{second.context.trace_id:032x}-{second.context.span_id:016x}-01".encode()]
    assert dict(bob_out.headers or [])["tracestate"] == b"v=1"
    amy = [s for s in process if s.context.trace_id != first.context.trace_id]
    assert len(amy) == 2 and len({s.context.trace_id for s in amy}) == 1


def test_tracing_interceptor_marks_the_span_of_a_failing_record(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    app = StreamsApp(
        "traced2", on_processing_error="skip", interceptors=[TracingInterceptor(tracer=tracer)]
    )
    app.stream("in", STRING, JSON).map_values(lambda v: v["missing"]).to("out")
    with TestDriver(app) as d:
        d.pipe("in", "k", {}, headers=[("traceparent", b"garbage")])  # malformed context: ignored
    (span,) = exporter.get_finished_spans()
    assert not span.status.is_ok
    assert span.parent is None
    assert [e.name for e in span.events] == ["exception"]


def test_tracing_interceptor_without_sdk_carries_the_context_on() -> None:
    assert isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
    ), "a test installed a global SDK"
    app = StreamsApp("traced3", interceptors=[TracingInterceptor()])
    app.stream("in", STRING, JSON).to("out")
    with TestDriver(app) as d:
        d.pipe("in", "k", {}, headers=[("traceparent", TP.encode())])
        d.pipe("in", "k", {})
        with_ctx, without = d.outputs["out"]
        assert dict(with_ctx.headers or [])["traceparent"] == TP.encode()
        assert not any(k == "traceparent" for k, _ in without.headers or [])


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        CloudEventSerde(mode="batch")
    app = StreamsApp(
        "bad", on_processing_error="dead_letter", dead_letter_headers=dead_letter_headers("bad")
    )
    app.stream("in").to("out")
    with pytest.raises(StreamsError, match="dead_letter_topic"):
        app.topology()


def test_store_deduplicate_in_event_time_and_purges_old_marks() -> None:
    from riverbed.messaging.streams import store_deduplicate
    from riverbed.streams import LONG

    app = StreamsApp("sd")
    app.add_state_store("dedup", STRING, LONG)
    app.stream("in", STRING, CloudEventSerde()).process(
        store_deduplicate("dedup", 1_000), stores=["dedup"]
    ).to("out", STRING, CloudEventSerde())
    with TestDriver(app) as d:
        d.pipe("in", "k", _event(1), timestamp=100)
        d.pipe("in", "k", _event(1), timestamp=900)  # within the window: dropped
        d.pipe("in", "k", _event(2), timestamp=950)
        d.pipe(
            "in", "k", _event(1), timestamp=1_200
        )  # the window (from 100) has passed: handled again
        assert [e.id for _k, e in d.read("out", STRING, CloudEventSerde())] == ["e1", "e2", "e1"]
        store = d.store("dedup")
        assert store.get("e1") == 1_200 and store.get("e2") == 950
        d.pipe("in", "k", _event(3), timestamp=3_000)  # stream time moves: marks before 2,000 go
        assert store.get("e1") is None and store.get("e2") is None and store.get("e3") == 3_000
        # marks are changelogged with the app's state
        changelog = [(r.key, r.value) for r in d.outputs["sd-dedup-changelog"]]
        assert (b"e1", None) in changelog and (b"e3", LONG.serialize(3_000)) in changelog


def test_store_deduplicate_leaves_failed_records_unmarked() -> None:
    from riverbed.messaging.streams import store_deduplicate
    from riverbed.streams import LONG

    failures = [1]

    def flaky(e: CloudEvent) -> CloudEvent:
        if failures:
            failures.pop()
            raise RuntimeError("down")
        return e

    app = StreamsApp("sd2", on_processing_error="skip")
    app.add_state_store("dedup", STRING, LONG)
    app.stream("in", STRING, CloudEventSerde()).process(
        store_deduplicate("dedup", 60_000), stores=["dedup"]
    ).map_values(flaky).to("out", STRING, CloudEventSerde())
    with TestDriver(app) as d:
        for ts in (1, 2, 3):
            d.pipe("in", "k", _event(1), timestamp=ts)
        assert len(d.outputs["out"]) == 1
        with pytest.raises(ValueError):
            store_deduplicate("dedup", 0)()
