"""riverbed.messaging inside a riverbed.streams app, end to end on a real broker: binary-mode
CloudEvents in and out, duplicates dropped through Redis, a poison event dead-lettered with
riverbed.errors.* headers, and the trace carried from the producer through the app to a
consumer of its output (SDK in-memory exporter)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from riverbed.messaging import CloudEvent, from_message, to_binary, tracing
from riverbed.messaging.deadletter import H_EXC_CLASS, H_GROUP, H_OFFSET, H_TOPIC, header
from riverbed.messaging.dedup import RedisStore
from riverbed.messaging.streams import (
    CloudEventSerde,
    TracingInterceptor,
    dead_letter_headers,
    deduplicate,
)
from riverbed.streams import STRING, StreamsApp
from riverbed.streams.runtime import Runtime
from riverbed.testing import EmbeddedBroker
from riverbed.testing.servers import RedisServer

from .messaging_helpers import create, producer, read_topic, wait_until

pytestmark = pytest.mark.integration


@contextmanager
def running(rt: Runtime) -> Iterator[Runtime]:
    errors: list[BaseException] = []

    def main() -> None:
        try:
            rt.run()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=main, daemon=True)
    t.start()
    try:
        yield rt
    finally:
        rt.stop()
        t.join(60)
        assert not t.is_alive(), "runtime did not stop"
    if errors:
        raise errors[0]


class PoisonOrder(ValueError):
    pass


def to_email(event: CloudEvent) -> CloudEvent:
    if event.data.get("poison"):
        raise PoisonOrder(f"order {event.data['orderId']} cannot be mailed")
    return CloudEvent(
        type="eu.company.email.requested.v1",
        source="/email-app",
        id=f"mail-{event.id}",
        data={"to": event.data["user"]},
    )


def test_cloudevents_dedup_dlq_and_tracing_through_a_streams_app(
    riverbed_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    import redis

    bs = riverbed_broker.bootstrap
    for topic in ("orders", "emails", "orders.DLQ"):
        create(bs, topic)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    with RedisServer() as server:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        app = StreamsApp(
            "email-app",
            bs,
            on_processing_error="dead_letter",
            dead_letter_topic="orders.DLQ",
            dead_letter_headers=dead_letter_headers("email-app"),
            interceptors=[TracingInterceptor("email-app", tracer=tracer)],
        )
        (
            app.stream("orders", STRING, CloudEventSerde())
            .process(deduplicate(RedisStore(client, window=600)))
            .map_values(to_email)
            .to("emails", STRING, CloudEventSerde())
        )
        events = [
            CloudEvent(
                type="eu.company.domain.order.created.v1",
                source="/shop",
                data={"orderId": f"A{i}", "user": f"u{i}@x", "poison": i == 3},
            )
            for i in range(6)
        ]
        p = producer(bs)
        with tracer.start_as_current_span("POST /checkout") as http:
            for event in [*events, events[1], events[4]]:  # two resent by the producer
                _key, value, headers = to_binary(event)
                tracing.produce(
                    p, "orders", value=value, key=b"user", headers=headers, tracer=tracer
                )
        assert p.flush(30) == 0
        rt = Runtime(app.topology(), bs, state_dir=tmp_path / "state", commit_interval_ms=200)
        with running(rt):
            emails = read_topic(bs, "emails", 5)
            dead = read_topic(bs, "orders.DLQ", 1)
            # every input record, the two duplicates included, went through the topology
            wait_until(
                lambda: (
                    [s.name for s in exporter.get_finished_spans()].count("process orders") == 8
                ),
                "all 8 records processed",
            )
        assert client.exists("riverbed:dedup:" + events[0].id)
        client.close()

    mails = [from_message(m) for m in emails]
    assert sorted(e.id for e in mails) == sorted(
        f"mail-{e.id}" for e in events if not e.data["poison"]
    )
    assert all(m.headers() and header(m.headers(), "ce_specversion") == "1.0" for m in emails)
    assert (
        len(read_topic(bs, "emails", 6, timeout=2)) == 5
    )  # the duplicates were dropped, not mailed

    (d,) = dead
    assert from_message(d).id == events[3].id  # the input record as it was
    assert header(d.headers(), H_TOPIC) == "orders" and header(d.headers(), H_OFFSET) == "3"
    assert header(d.headers(), H_GROUP) == "email-app"
    assert header(d.headers(), H_EXC_CLASS) == f"{__name__}.PoisonOrder"
    # the dlq CLI reads the streams app's dead letters and re-drives them to the original topic
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "riverbed",
            "dlq",
            "show",
            "orders.DLQ",
            "-b",
            bs,
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    (doc,) = [json.loads(line) for line in shown.stdout.splitlines()]
    assert (doc["original"], doc["exception"], doc["attempts"]) == (
        "orders[0]@3",
        f"{__name__}.PoisonOrder",
        "1",
    )
    replay = subprocess.run(
        [sys.executable, "-m", "riverbed", "dlq", "replay", "orders.DLQ", "-b", bs],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0 and "replayed 1 record(s)" in replay.stdout, replay.stderr
    *_, again = read_topic(bs, "orders", 9)
    assert from_message(again).id == events[3].id and header(again.headers(), H_TOPIC) is None

    # a consumer of the app's output continues the same trace
    for m in emails:
        with tracing.process_span(m, "mailer", tracer=tracer):
            pass
    spans = exporter.get_finished_spans()
    trace_id = http.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}
    names = [s.name for s in spans]
    assert names.count("send orders") == 8
    assert names.count("process orders") == 8  # one per input record, duplicates included
    assert names.count("process emails") == 5
    by_id = {s.context.span_id: s for s in spans}
    for s in spans:
        if s.name == "process emails":
            parent = by_id[s.parent.span_id]  # type: ignore[union-attr]
            assert parent.name == "process orders"
            assert by_id[parent.parent.span_id].name == "send orders"  # type: ignore[union-attr]
    poisoned = [
        s
        for s in spans
        if s.name == "process orders"
        and s.attributes
        and s.attributes.get("messaging.kafka.offset") == 3
    ]
    assert len(poisoned) == 1 and not poisoned[0].status.is_ok


def test_store_dedup_under_exactly_once(riverbed_broker: EmbeddedBroker, tmp_path: Path) -> None:
    """The dedup marks live in the app's changelogged store: under exactly_once a restarted app
    (state directory deleted, so the marks come back from the changelog) still drops repeats."""
    from riverbed.messaging.streams import store_deduplicate
    from riverbed.streams import LONG

    bs = riverbed_broker.bootstrap
    for topic in ("payments", "charges"):
        create(bs, topic)

    def app() -> StreamsApp:
        a = StreamsApp("charger", bs)
        a.add_state_store("seen", STRING, LONG)
        a.stream("payments", STRING, CloudEventSerde()).process(
            store_deduplicate("seen", 3_600_000), stores=["seen"]
        ).to("charges", STRING, CloudEventSerde())
        return a

    events = [CloudEvent(type="payment.v1", source="/pay", data={"n": i}) for i in range(4)]
    p = producer(bs)

    def send(batch: list[CloudEvent]) -> None:
        for e in batch:
            _key, value, headers = to_binary(e)
            p.produce("payments", value=value, key=b"acct", headers=headers)
        assert p.flush(30) == 0

    send([*events, events[0]])
    state = tmp_path / "state"

    def runtime() -> Runtime:
        return Runtime(
            app().topology(),
            bs,
            state_dir=state,
            commit_interval_ms=100,
            processing_guarantee="exactly_once",
        )

    with running(runtime()):
        first = read_topic(bs, "charges", 4)
    assert sorted(from_message(m).id for m in first) == sorted(e.id for e in events)
    import shutil

    shutil.rmtree(state)  # the marks must come back from the changelog
    send([events[1], events[2], CloudEvent(type="payment.v1", source="/pay", id="late", data={})])
    with running(runtime()):
        after = read_topic(bs, "charges", 5)  # in partition order: the resent two came before
    assert [from_message(m).id for m in after][4:] == ["late"]
    assert len(read_topic(bs, "charges", 6, timeout=2)) == 5  # the resent ones were dropped
