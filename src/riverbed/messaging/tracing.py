"""OpenTelemetry trace propagation through Kafka record headers (W3C ``traceparent`` and
``tracestate``), with send and process spans under the messaging semantic conventions.

Needs ``opentelemetry-api`` (``pip install riverbed[messaging]``). Without an SDK configured the
tracer is OpenTelemetry's no-op one: headers are still propagated from an incoming context, no
span is recorded. Malformed or missing headers are ignored (a new trace starts), never raised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
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


class _DictGetter(Getter[dict[str, list[str]]]):
    """Reads the lower-cased name -> values map :func:`extract` builds in one pass."""

    def get(self, carrier: dict[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key)

    def keys(self, carrier: dict[str, list[str]]) -> list[str]:
        return list(carrier)


class _HeaderSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k.lower() != key]
        carrier.append((key, value.encode("ascii")))


_DICT_GETTER = _DictGetter()
_extracted: dict[tuple[Any, ...], otel_context.Context] = {}
_fields: tuple[Any, frozenset[str]] | None = None


def _propagator_fields() -> frozenset[str]:
    """The header names the global propagator reads (cached per propagator)."""
    global _fields
    propagator = propagate.get_global_textmap()
    cached = _fields
    if cached is None or cached[0] is not propagator:
        cached = _fields = (propagator, frozenset(f.lower() for f in propagator.fields))
    return cached[1]


GETTER = _HeaderGetter()
SETTER = _HeaderSetter()


_cached: tuple[Any, Tracer] | None = None


def _tracer(tracer: Tracer | None) -> Tracer:
    """The given tracer, or the global provider's (cached per provider: ``get_tracer`` builds
    a new tracer object on every call)."""
    global _cached
    if tracer is not None:
        return tracer
    provider = trace.get_tracer_provider()
    cached = _cached
    if cached is None or cached[0] is not provider:
        cached = _cached = (provider, provider.get_tracer(_TRACER_NAME))
    return cached[1]


_sdk_seen = False
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def recording(tracer: Tracer | None = None) -> bool:
    """False when spans would be thrown away: no SDK installed (OpenTelemetry's proxy or no-op
    provider) or an explicit ``NoOpTracer``. Then the helpers skip span creation and only carry
    the context on."""
    global _sdk_seen
    if tracer is not None:
        return not isinstance(tracer, trace.NoOpTracer)
    if _sdk_seen:  # the global provider can be set only once
        return True
    # the module's own global, read without get_tracer_provider()'s environment lookup
    provider = getattr(trace, "_TRACER_PROVIDER", None)
    if provider is None:
        if not _PROVIDER_FROM_ENV:
            return False
        provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    _sdk_seen = True
    return True


def inject(headers: Headers | None = None, ctx: otel_context.Context | None = None) -> Headers:
    """Headers with the current (or given) context injected by the global propagator (W3C
    ``traceparent``/``tracestate`` and baggage by default); a new list, the input is kept."""
    out = list(headers or ())
    if ctx is None:
        ctx = otel_context.get_current()
        if not ctx:  # nothing current: the propagators would write nothing
            return out
    propagate.inject(out, context=ctx, setter=SETTER)
    return out


def inject_if_active(headers: Headers | None) -> Headers | None:
    """:func:`inject` when a context is current (a span, or one extracted from an input
    record); the headers unchanged otherwise (no copy)."""
    if not otel_context.get_current():
        return headers
    return inject(headers)


def extract(headers: Headers | None) -> otel_context.Context:
    """The context carried in ``headers``; an empty one when absent or malformed. Records
    without any header the propagator reads skip the propagator altogether."""
    if not headers:
        return otel_context.Context()
    fields = _propagator_fields()
    carrier: dict[str, list[str]] = {}
    for name, value in headers:
        lname = name.lower()
        if lname not in fields or not isinstance(value, bytes | bytearray):
            continue
        try:
            text = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            continue  # a garbled header is no context
        carrier.setdefault(lname, []).append(text)
    if not carrier:
        return otel_context.Context()
    propagator = propagate.get_global_textmap()
    # with nothing current, extraction depends on the headers only: remember recent results
    # (a batch often carries one trace; a Context is immutable)
    key = (
        None if otel_context.get_current() else (propagator, *((k, *v) for k, v in carrier.items()))
    )
    if key is not None:
        found = _extracted.get(key)
        if found is not None:
            return found
    try:
        ctx = propagator.extract(carrier, getter=_DICT_GETTER)
    except Exception:  # a propagator must not break consumption
        logging.getLogger("riverbed.messaging.tracing").debug(
            "ignoring unparsable trace headers", exc_info=True
        )
        return otel_context.Context()
    if key is not None:
        if len(_extracted) >= 256:
            _extracted.clear()
        _extracted[key] = ctx
    return ctx


def produce(
    producer: Any,
    topic: str,
    value: bytes | None = None,
    key: bytes | None = None,
    headers: Headers | None = None,
    *,
    tracer: Tracer | None = None,
    **kwargs: Any,
) -> None:
    """``producer.produce`` inside a PRODUCER span ``send <topic>`` whose context goes into
    the record's headers (no span without an SDK: the current context is injected as it is)."""
    if not recording(tracer):
        producer.produce(topic, value=value, key=key, headers=inject(headers), **kwargs)
        return
    attributes: dict[str, Any] = {
        SYSTEM: "kafka",
        DESTINATION: topic,
        OPERATION_TYPE: "send",
        OPERATION_NAME: "send",
    }
    if key is not None:
        attributes[MESSAGE_KEY] = (
            key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        )
    span = _tracer(tracer).start_span(
        f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes
    )
    with trace.use_span(span, end_on_exit=True):
        producer.produce(topic, value=value, key=key, headers=inject(headers), **kwargs)


def _key_text(key: Any) -> str:
    return key.decode("utf-8", "replace") if isinstance(key, bytes | bytearray) else str(key)


@contextmanager
def record_span(
    topic: str | None,
    partition: int,
    offset: int,
    key: Any,
    headers: Headers | None,
    group: str | None = None,
    *,
    tracer: Tracer | None = None,
) -> Iterator[Span]:
    """A CONSUMER span ``process <topic>`` for a record's coordinates and headers: a child of
    the context in ``headers`` and linked to it. Without an SDK no span is made: the extracted
    context is made current, so what the handler produces carries it on."""
    parent = extract(headers)
    if not recording(tracer):
        if not parent:  # no context came with the record: nothing to carry on
            yield trace.INVALID_SPAN
            return
        token = otel_context.attach(parent)
        try:
            yield trace.get_current_span(parent)
        finally:
            otel_context.detach(token)
        return
    sender = trace.get_current_span(parent).get_span_context()
    attributes: dict[str, Any] = {
        SYSTEM: "kafka",
        DESTINATION: topic or "",
        PARTITION: str(partition),
        OFFSET: offset,
        OPERATION_TYPE: "process",
        OPERATION_NAME: "process",
    }
    if group:
        attributes[GROUP] = group
    if key is not None:
        attributes[MESSAGE_KEY] = _key_text(key)
    links = [Link(sender)] if sender.is_valid else []
    span = _tracer(tracer).start_span(
        f"process {topic}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=links,
        attributes=attributes,
    )
    with trace.use_span(
        span, end_on_exit=True
    ):  # one context manager less than start_as_current_span
        yield span


def process_span(
    msg: Any, group: str | None = None, *, tracer: Tracer | None = None
) -> AbstractContextManager[Span]:
    """A CONSUMER span ``process <topic>`` for a confluent-kafka message: a child of the
    producer's context (so one trace spans producer and consumers) and linked to it."""
    return record_span(
        msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.headers(), group, tracer=tracer
    )


def traced(
    handler: Callable[[Any], Any], group: str | None = None, *, tracer: Tracer | None = None
) -> Callable[[Any], Any]:
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
