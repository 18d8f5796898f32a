"""OpenTelemetry trace propagation through Kafka record headers (W3C ``traceparent`` and
``tracestate``), with send and process spans under the messaging semantic conventions.

Needs ``opentelemetry-api`` (``pip install riverbed[messaging]``). Without an SDK configured the
tracer is OpenTelemetry's no-op one: headers are still propagated from an incoming context, no
span is recorded. Malformed or missing headers are ignored (a new trace starts), never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Link, Span, SpanKind, Tracer

Headers = list[tuple[str, bytes]]

# messaging semantic conventions (attribute names as OpenTelemetry spells them)
SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
PARTITION = "messaging.destination.partition.id"
OFFSET = "messaging.kafka.offset"
MESSAGE_KEY = "messaging.kafka.message.key"
GROUP = "messaging.consumer.group.name"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"

_TRACER_NAME = "riverbed.messaging"


class _HeaderGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        out = []
        for name, value in carrier or ():
            if name.lower() != key or not isinstance(value, bytes | bytearray):
                continue
            try:
                out.append(bytes(value).decode("ascii"))
            except UnicodeDecodeError:
                continue  # a garbled header is no context
        return out or None

    def keys(self, carrier: Headers) -> list[str]:
        return [name for name, _ in carrier or ()]


class _HeaderSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k.lower() != key]
        carrier.append((key, value.encode("ascii")))


GETTER = _HeaderGetter()
SETTER = _HeaderSetter()


def _tracer(tracer: Tracer | None) -> Tracer:
    return tracer if tracer is not None else trace.get_tracer(_TRACER_NAME)


def inject(headers: Headers | None = None, ctx: otel_context.Context | None = None) -> Headers:
    """Headers with the current (or given) context injected by the global propagator (W3C
    ``traceparent``/``tracestate`` and baggage by default); a new list, the input is kept."""
    out = list(headers or ())
    propagate.inject(out, context=ctx, setter=SETTER)
    return out


def extract(headers: Headers | None) -> otel_context.Context:
    """The context carried in ``headers``; an empty one when absent or malformed."""
    try:
        return propagate.extract(list(headers or ()), getter=GETTER)
    except Exception:  # a propagator must not break consumption
        logging.getLogger("riverbed.messaging.tracing").debug("ignoring unparsable trace headers", exc_info=True)
        return otel_context.Context()


def produce(producer: Any, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Headers | None = None, *, tracer: Tracer | None = None, **kwargs: Any) -> None:
    """``producer.produce`` inside a PRODUCER span ``send <topic>`` whose context goes into
    the record's headers."""
    attributes: dict[str, Any] = {SYSTEM: "kafka", DESTINATION: topic, OPERATION_TYPE: "send", OPERATION_NAME: "send"}
    if key is not None:
        attributes[MESSAGE_KEY] = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    with _tracer(tracer).start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes):
        producer.produce(topic, value=value, key=key, headers=inject(headers), **kwargs)


@contextmanager
def process_span(msg: Any, group: str | None = None, *, tracer: Tracer | None = None) -> Iterator[Span]:
    """A CONSUMER span ``process <topic>`` for a confluent-kafka message: a child of the
    producer's context (so one trace spans producer and consumers) and linked to it."""
    parent = extract(msg.headers())
    sender = trace.get_current_span(parent).get_span_context()
    attributes: dict[str, Any] = {
        SYSTEM: "kafka",
        DESTINATION: msg.topic(),
        PARTITION: str(msg.partition()),
        OFFSET: msg.offset(),
        OPERATION_TYPE: "process",
        OPERATION_NAME: "process",
    }
    if group:
        attributes[GROUP] = group
    key = msg.key()
    if key is not None:
        attributes[MESSAGE_KEY] = key.decode("utf-8", "replace")
    links = [Link(sender)] if sender.is_valid else []
    with _tracer(tracer).start_as_current_span(f"process {msg.topic()}", context=parent, kind=SpanKind.CONSUMER, links=links, attributes=attributes) as span:
        yield span


def traced(handler: Callable[[Any], Any], group: str | None = None, *, tracer: Tracer | None = None) -> Callable[[Any], Any]:
    """``handler(msg)`` run inside :func:`process_span` (for example under a
    ``DeadLetterConsumer``); an exception marks the span as an error and propagates."""

    def run(msg: Any) -> Any:
        with process_span(msg, group, tracer=tracer):
            return handler(msg)

    return run


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex; zeros outside a span) to every log record, for
    format strings such as ``%(trace_id)s``. Attach to a handler or a logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x")
        record.span_id = format(ctx.span_id, "016x")
        return True
