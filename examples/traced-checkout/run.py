"""The lecture's TraceID rule, in one command: a trace started by an HTTP request follows the
event through the producer and two consumers, and every service's log lines carry its id.

    .venv/bin/python examples/traced-checkout/run.py                    # starts its own broker
    .venv/bin/python examples/traced-checkout/run.py --bootstrap 127.0.0.1:9092

The checkout service (Starlette on uvicorn, a real HTTP request) produces an OrderCreated
CloudEvent; the payments service consumes it and produces PaymentCaptured; the email service
consumes that. OpenTelemetry's SDK records the spans in memory (swap in an OTLP exporter to see
them in Jaeger: docs/messaging.md); the span tree is printed at the end.
Needs opentelemetry-sdk (installed by `scripts/setup dev`).
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
import uvicorn
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from riverbed.messaging import CloudEvent, from_message, to_binary, tracing
from riverbed.testing import example_cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise SystemExit(f"nothing came up on port {port}") from None
            time.sleep(0.05)


def scenario(bootstrap: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("traced-checkout")
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(tracing.TraceContextFilter())
    handler.setFormatter(logging.Formatter("%(name)s trace=%(trace_id)s: %(message)s"))
    for name in ("checkout", "payments", "email"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)

    orders, payments = f"orders-{uuid.uuid4().hex[:6]}", f"payments-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(orders, num_partitions=1), NewTopic(payments, num_partitions=1)]).values():
        f.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})

    # service 1: checkout, an HTTP handler
    async def post_checkout(request: Request) -> JSONResponse:
        with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER):
            body = await request.json()
            key, value, headers = to_binary(CloudEvent(type="eu.company.domain.order.created.v1", source="/checkout", data=body, extensions={"partitionkey": body["userId"]}))
            tracing.produce(producer, orders, value=value, key=key, headers=headers, tracer=tracer)
            producer.flush(30)
            logging.getLogger("checkout").info("order %s accepted", body["orderId"])
            return JSONResponse({"accepted": body["orderId"]}, status_code=202)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/checkout", post_checkout, methods=["POST"])]), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_port(port)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/checkout", json={"orderId": "A100", "userId": "user_id_bob"}, timeout=30)
        print(f"POST /checkout -> {r.status_code} {r.json()}")
    finally:
        server.should_exit = True
        thread.join(30)

    # services 2 and 3: payments and email
    done: list[str] = []

    def pay(msg: Any) -> None:
        order = from_message(msg)
        logging.getLogger("payments").info("captured payment for %s", order.data["orderId"])
        key, value, headers = to_binary(CloudEvent(type="eu.company.domain.payment.captured.v1", source="/payments", data=order.data, extensions={"partitionkey": order.partitionkey or ""}))
        tracing.produce(producer, payments, value=value, key=key, headers=headers, tracer=tracer)
        producer.flush(30)
        done.append("payments")

    def email(msg: Any) -> None:
        logging.getLogger("email").info("sent receipt for %s", from_message(msg).data["orderId"])
        done.append("email")

    consumers = []
    for group, topic, handle in (("payments-service", orders, pay), ("email-service", payments, email)):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-{topic}", "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        consumers.append((c, tracing.traced(handle, group, tracer=tracer)))
    deadline = time.monotonic() + 60
    while len(done) < 2 and time.monotonic() < deadline:
        for c, handle in consumers:
            m = c.poll(0.1)
            if m is not None and not m.error():
                handle(m)
    for c, _ in consumers:
        c.close()
    if len(done) < 2:
        raise SystemExit("the event did not reach both services")

    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    by_id = {s.context.span_id: s for s in spans}

    def depth(span: Any) -> int:
        return 0 if span.parent is None or span.parent.span_id not in by_id else 1 + depth(by_id[span.parent.span_id])

    print("spans:")
    for s in spans:
        attrs = s.attributes or {}
        where = f" [{attrs.get(tracing.GROUP)}]" if attrs.get(tracing.GROUP) else ""
        print(f"  {'  ' * depth(s)}{s.name}{where}")
    trace_ids = {format(s.context.trace_id, "032x") for s in spans}
    print(f"one trace across {len(spans)} spans: {len(trace_ids) == 1}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--bootstrap", help="a running cluster (default: start riverbed serve)")
    args = ap.parse_args()
    with example_cluster(args.bootstrap, "traced-checkout") as bootstrap:
        scenario(bootstrap)


if __name__ == "__main__":
    main()
