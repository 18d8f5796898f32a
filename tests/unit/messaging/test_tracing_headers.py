"""Trace context in record headers: injected, extracted, and malformed headers ignored."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from riverbed.messaging.tracing import TraceContextFilter, extract, inject

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _tracer() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_inject_writes_traceparent_of_the_current_span() -> None:
    tracer, _ = _tracer()
    with tracer.start_as_current_span("http") as span:
        headers = inject([("other", b"x"), ("traceparent", b"stale")])
    ctx = span.get_span_context()
    values = dict(headers)
    assert values["other"] == b"x"
    assert [k for k, _ in headers].count("traceparent") == 1
    assert values["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}".encode()


def test_extract_reads_traceparent() -> None:
    ctx = trace.get_current_span(extract([("traceparent", TP.encode()), ("tracestate", b"vendor=1")])).get_span_context()
    assert ctx.is_valid and ctx.is_remote
    assert format(ctx.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert ctx.trace_state.get("vendor") == "1"


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("traceparent", b"garbage")],
        [("traceparent", b"\xff\xfe\x00")],
        [("traceparent", None)],
        [("traceparent", b"00-00000000000000000000000000000000-b7ad6b7169203331-01")],
        [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra-junk")],
    ],
)
def test_missing_or_malformed_context_is_ignored(headers: list[tuple[str, bytes]] | None) -> None:
    assert not trace.get_current_span(extract(headers)).get_span_context().is_valid  # type: ignore[arg-type]


def test_log_records_carry_the_trace_id(caplog: pytest.LogCaptureFixture) -> None:
    tracer, _ = _tracer()
    log = logging.getLogger("test.tracing.logs")
    log.addFilter(TraceContextFilter())
    with caplog.at_level(logging.INFO, logger="test.tracing.logs"):
        with tracer.start_as_current_span("work") as span:
            log.info("inside")
        log.info("outside")
    inside, outside = caplog.records
    assert inside.trace_id == format(span.get_span_context().trace_id, "032x")  # type: ignore[attr-defined]
    assert outside.trace_id == "0" * 32  # type: ignore[attr-defined]
