"""Reliable-messaging pieces on confluent-kafka, for any Kafka-compatible cluster:
CloudEvents 1.0 over the Kafka binding (``events``), dead-letter and retry topics
(``deadletter``), trace propagation (``tracing``, needs opentelemetry-api), claim-check for large
payloads (``claimcheck``), idempotent consumers (``dedup``) and the same pieces inside
``riverbed.streams`` apps (``streams``). See docs/messaging.md.

This package reaches a cluster only through a Kafka client, never through broker internals.
"""

from __future__ import annotations

from .events import (
    CloudEvent,
    InvalidEvent,
    batch_to_records,
    content_mode,
    from_batch,
    from_binary,
    from_message,
    from_record,
    from_structured,
    to_batch,
    to_binary,
    to_structured,
)

__all__ = [
    "CloudEvent",
    "InvalidEvent",
    "batch_to_records",
    "content_mode",
    "from_batch",
    "from_binary",
    "from_message",
    "from_record",
    "from_structured",
    "to_batch",
    "to_binary",
    "to_structured",
]
