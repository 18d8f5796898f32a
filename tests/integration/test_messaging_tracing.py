"""A trace started in an HTTP handler is one trace across the producer and two consumers
(real HTTP request through Starlette's ASGI stack, real broker, confluent-kafka clients,
OpenTelemetry's in-memory exporter)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from riverbed.messaging import tracing
from riverbed.messaging.deadletter import DeadLetterConsumer, RetryPolicy
from riverbed.testing import EmbeddedBroker

from .messaging_helpers import consumer, create, producer, wait_until

pytestmark = pytest.mark.integration


def test_one_trace_from_http_handler_through_two_consumers(riverbed_broker: EmbeddedBroker) -> None:
    bootstrap = riverbed_broker.bootstrap
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("checkout-test")
    checkout, payments = f"checkout-{uuid.uuid4().hex[:6]}", f"payments-{uuid.uuid4().hex[:6]}"
    create(bootstrap, checkout)
    create(bootstrap, payments)
    p = producer(bootstrap)

    async def post_checkout(request: Request) -> JSONResponse:
        with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as span:
            tracing.produce(p, checkout, value=b'{"orderId":"A100"}', key=b"user_id_bob", tracer=tracer)
            return JSONResponse({"trace": format(span.get_span_context().trace_id, "032x")})

    app = Starlette(routes=[Route("/checkout", post_checkout, methods=["POST"])])
    with TestClient(app) as client:
        trace_id = client.post("/checkout").json()["trace"]
    assert p.flush(30) == 0

    done: list[str] = []

    def pay(msg: Any) -> None:  # service 2: consumes checkout, produces payments
        tracing.produce(p, payments, value=msg.value(), key=msg.key(), tracer=tracer)
        assert p.flush(30) == 0
        done.append("payments")

    def email(msg: Any) -> None:  # service 3: consumes payments
        done.append("email")

    c1, c2 = consumer(bootstrap, "payments-svc"), consumer(bootstrap, "email-svc")
    s1 = DeadLetterConsumer(c1, p, tracing.traced(pay, "payments-svc", tracer=tracer), RetryPolicy(retry_delays=()), group="payments-svc")
    s2 = DeadLetterConsumer(c2, p, tracing.traced(email, "email-svc", tracer=tracer), RetryPolicy(retry_delays=()), group="email-svc")
    s1.subscribe([checkout])
    s2.subscribe([payments])
    try:
        wait_until(lambda: done.count("payments") == 1 and done.count("email") == 1, "both services", step=lambda: (s1.poll(0.1), s2.poll(0.1)))
    finally:
        c1.close()
        c2.close()

    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"POST /checkout", f"send {checkout}", f"process {checkout}", f"send {payments}", f"process {payments}"}
    assert {format(s.context.trace_id, "032x") for s in spans.values()} == {trace_id}  # one trace
    http, send1, proc1 = spans["POST /checkout"], spans[f"send {checkout}"], spans[f"process {checkout}"]
    send2, proc2 = spans[f"send {payments}"], spans[f"process {payments}"]
    assert send1.parent is not None and send1.parent.span_id == http.context.span_id
    assert proc1.parent is not None and proc1.parent.span_id == send1.context.span_id
    assert [link.context.span_id for link in proc1.links] == [send1.context.span_id]
    assert send2.parent is not None and send2.parent.span_id == proc1.context.span_id
    assert proc2.parent is not None and proc2.parent.span_id == send2.context.span_id
    assert send1.kind == SpanKind.PRODUCER and proc1.kind == SpanKind.CONSUMER
    assert send1.attributes is not None and proc1.attributes is not None and proc2.attributes is not None
    assert send1.attributes[tracing.SYSTEM] == "kafka" and send1.attributes[tracing.DESTINATION] == checkout
    assert proc1.attributes[tracing.DESTINATION] == checkout
    assert proc1.attributes[tracing.PARTITION] == "0"
    assert proc1.attributes[tracing.OFFSET] == 0
    assert proc1.attributes[tracing.GROUP] == "payments-svc"
    assert proc1.attributes[tracing.OPERATION_TYPE] == "process"
    assert proc2.attributes[tracing.GROUP] == "email-svc"
    assert trace.get_current_span().get_span_context().is_valid is False


def test_without_an_sdk_the_incoming_context_still_propagates(riverbed_broker: EmbeddedBroker) -> None:
    """No exporter, no SDK provider (OpenTelemetry's no-op tracer): no span is recorded, and the
    trace context a consumer received still travels on in what it produces."""
    from opentelemetry import context as otel_context

    from .messaging_helpers import read_topic

    bootstrap = riverbed_broker.bootstrap
    topic = f"relay-{uuid.uuid4().hex[:6]}"
    create(bootstrap, topic)
    p = producer(bootstrap)
    incoming = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    token = otel_context.attach(tracing.extract(incoming))
    try:
        tracing.produce(p, topic, value=b"x", tracer=trace.NoOpTracer())
        tracing.produce(p, topic, value=b"y")  # the global (unconfigured) tracer
    finally:
        otel_context.detach(token)
    tracing.produce(p, topic, value=b"z", headers=[("traceparent", b"garbage")])  # no context: no header
    assert p.flush(30) == 0
    x, y, z = read_topic(bootstrap, topic, 3)
    assert dict(x.headers())["traceparent"] == incoming[0][1]
    assert dict(y.headers())["traceparent"] == incoming[0][1]
    assert z.headers() == [("traceparent", b"garbage")]
