"""riverbed.messaging inside ``riverbed.streams`` applications.

```python
from riverbed.messaging.streams import CloudEventSerde, ClaimCheckSerde, TracingInterceptor, dead_letter_headers, deduplicate

app = StreamsApp("email", bs, on_processing_error="dead_letter", dead_letter_topic="orders.DLQ",
                 dead_letter_headers=dead_letter_headers("email"), interceptors=[TracingInterceptor("email")])
(app.stream("orders", STRING, CloudEventSerde())          # binary or structured CloudEvents in
    .process(deduplicate(RedisStore(redis.Redis())))      # drop events whose id was handled
    .map_values(to_email)
    .to("emails", STRING, CloudEventSerde()))             # binary-mode CloudEvents out
```

- :class:`CloudEventSerde` reads either content mode (it sees the record headers: streams calls
  a serde's ``deserialize_with_headers``/``serialize_with_headers`` when it has them) and
  writes binary (``ce_*`` headers) or structured mode, replacing CloudEvents headers the input
  record carried.
- :class:`ClaimCheckSerde` stores large values in a blob store and sends a reference (it wraps
  another serde, for example :class:`CloudEventSerde`).
- :class:`TracingInterceptor` extracts the trace context on consume, runs each record's walk
  through the topology in a ``process <topic>`` span and injects the context into what ``to()``
  (and repartition topics) receive.
- :func:`dead_letter_headers` gives the app's dead letters ``riverbed.errors.*`` headers, so
  ``riverbed dlq show|replay`` reads them like the consumer-side policy's.
- :func:`deduplicate` is a processor that forwards an event the first time its id is seen
  (marks in a ``dedup`` store: Redis, SQL, memory); :func:`store_deduplicate` keeps the marks
  in the app's own changelogged store (exactly-once with the outputs under
  ``processing_guarantee="exactly_once"``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from riverbed.streams import Processor, ProcessorContext, Record
from riverbed.streams.serdes import BYTES, Serde
from riverbed.streams.topology import DeadLetterContext

from .claimcheck import ClaimCheck
from .deadletter import error_headers
from .dedup import DedupStore
from .events import (
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    InvalidEvent,
    from_record,
    to_binary,
    to_structured,
)

log = logging.getLogger("riverbed.messaging.streams")

Headers = list[tuple[str, bytes]]


def _is_ce_header(name: str) -> bool:
    lname = name.lower()
    return lname.startswith("ce_") or lname == "content-type"


class CloudEventSerde:
    """A value serde for :class:`~riverbed.messaging.events.CloudEvent` over the Kafka binding.

    Reading takes either content mode (told apart by the headers). Writing uses ``mode``
    (``"binary"``, the default, or ``"structured"``) and drops the ``ce_*`` and
    ``content-type`` headers the record carried from its input. The ``partitionkey``
    attribute is not written: in a topology the record key is the stream's key (use
    ``select_key(lambda _k, e: e.partitionkey)`` to key by it). Without headers (a state
    store, ``serialize``/``deserialize`` called directly) the event is the structured JSON
    form, which carries every attribute."""

    def __init__(self, mode: str = "binary", decode_json: bool = True) -> None:
        if mode not in ("binary", "structured"):
            raise ValueError(f"mode must be 'binary' or 'structured', not {mode!r}")
        self.mode = mode
        self.decode_json = decode_json

    def serialize(self, value: CloudEvent | None) -> bytes | None:
        if value is None:
            return None
        return to_structured(value)[1]

    def deserialize(self, data: bytes | None) -> CloudEvent | None:
        if data is None:
            return None
        return from_record(None, data, [("content-type", STRUCTURED_CONTENT_TYPE.encode())])

    def serialize_with_headers(self, value: CloudEvent | None, headers: Headers) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, CloudEvent):
            raise InvalidEvent(
                f"CloudEventSerde serializes CloudEvent values, not {type(value).__name__}"
            )
        if self.mode == "binary":
            _key, out, ce_headers = to_binary(value)
        else:
            _key, out, ce_headers = to_structured(value)
        headers[:] = [(k, v) for k, v in headers if not _is_ce_header(k)]
        headers.extend(ce_headers)
        return out

    def deserialize_with_headers(
        self, data: bytes | None, headers: Headers | None
    ) -> CloudEvent | None:
        if data is None and not any(_is_ce_header(k) for k, _ in headers or ()):
            return None  # a tombstone
        if self.decode_json:
            return from_record(None, data, headers)
        from .events import content_mode, from_binary

        if content_mode(headers) == "binary":
            return from_binary(None, data, headers, decode_json=False)
        return from_record(None, data, headers)


class ClaimCheckSerde:
    """Values above the claim check's threshold go to its blob store; the record carries a
    reference (and the ``riverbed.claim-check`` header), resolved and hash-checked on read.
    ``inner`` turns values into bytes first (default: bytes as they are); a header-aware inner
    serde (such as :class:`CloudEventSerde`) gets the headers. Without headers (a state store)
    the inner serde's bytes are kept inline: no reference is made where no header could mark it."""

    def __init__(self, claim: ClaimCheck, inner: Serde[Any] = BYTES) -> None:
        self.claim = claim
        self.inner = inner
        self._inner_ser = getattr(inner, "serialize_with_headers", None)
        self._inner_de = getattr(inner, "deserialize_with_headers", None)

    def serialize(self, value: Any) -> bytes | None:
        return self.inner.serialize(value)

    def deserialize(self, data: bytes | None) -> Any:
        return self.inner.deserialize(data)

    def serialize_with_headers(self, value: Any, headers: Headers) -> bytes | None:
        raw = (
            self._inner_ser(value, headers)
            if self._inner_ser is not None
            else self.inner.serialize(value)
        )
        out, new_headers = self.claim.wrap(raw, headers)
        headers[:] = new_headers
        return out

    def deserialize_with_headers(self, data: bytes | None, headers: Headers | None) -> Any:
        raw = self.claim.unwrap(data, headers)
        return (
            self._inner_de(raw, headers)
            if self._inner_de is not None
            else self.inner.deserialize(raw)
        )


class TracingInterceptor:
    """Trace propagation through a topology (``StreamsApp(interceptors=[TracingInterceptor()])``,
    needs ``opentelemetry-api``): each input record's walk runs in a CONSUMER span ``process
    <topic>``, a child of the context in its headers (and linked to it), with the messaging
    attributes (``group`` defaults to nothing; pass the application id); every record the
    topology sends gets the current context injected (``traceparent``/``tracestate``),
    replacing the copy inherited from the input. Without an SDK no span is made; the
    incoming context is still carried on to the outputs."""

    def __init__(self, group: str | None = None, tracer: Any = None) -> None:
        from . import tracing

        self._tracing = tracing
        self.group = group
        self.tracer = tracer

    def around(self, record: Record, task_id: str) -> AbstractContextManager[Any]:
        return self._tracing.record_span(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.headers,
            self.group,
            tracer=self.tracer,
        )

    def on_send(self, topic: str, headers: Headers | None) -> Headers | None:
        return self._tracing.inject_if_active(headers)


def dead_letter_headers(group: str) -> Callable[[DeadLetterContext], Headers]:
    """For ``StreamsApp(dead_letter_headers=...)``: the app's dead letters carry
    ``riverbed.errors.*`` headers (original topic, partition, offset, timestamp, ``group``,
    exception class, message, stack trace, attempts = 1) like the consumer-side DLQ policy's,
    so ``riverbed dlq show`` and ``replay`` work on them."""

    def build(ctx: DeadLetterContext) -> Headers:
        return error_headers(
            ctx.headers, ctx.topic, ctx.partition, ctx.offset, ctx.timestamp, group, ctx.error, 1
        )

    return build


def record_event_id(record: Record) -> str | None:
    """A record's CloudEvents id: the value's ``id`` when it is a CloudEvent (or a structured
    event as a dict), else the ``ce_id`` header; None when there is none."""
    value = record.value
    if isinstance(value, CloudEvent):
        return value.id
    if isinstance(value, dict) and "specversion" in value and value.get("id"):
        return str(value["id"])
    for name, raw in record.headers or ():
        if name.lower() == "ce_id" and raw:
            try:
                return bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


class Deduplicate(Processor):
    """Forwards a record the first time its event id is seen within the store's window and
    drops later copies (with a log line). The id is marked after the record was forwarded,
    that is after the rest of the topology handled it. A record without an id is forwarded
    (with a log line)."""

    def __init__(
        self, store: DedupStore, key: Callable[[Record], str | None] = record_event_id
    ) -> None:
        self.store = store
        self.key = key
        self.dropped = 0
        self._ctx: ProcessorContext | None = None

    def init(self, ctx: ProcessorContext) -> None:
        self._ctx = ctx

    def process(self, record: Record) -> None:
        assert self._ctx is not None
        eid = self.key(record)
        if eid is None:
            log.warning(
                "%s[%d]@%d has no event id; forwarded without dedup",
                record.topic,
                record.partition,
                record.offset,
            )
        elif self.store.seen(eid):
            self.dropped += 1
            log.info(
                "dropped duplicate event %s (%s[%d]@%d)",
                eid,
                record.topic,
                record.partition,
                record.offset,
            )
            return
        self._ctx.forward(record.key, record.value, record.timestamp, record.headers)
        if eid is not None:
            self.store.mark(eid)


def deduplicate(
    store: DedupStore, key: Callable[[Record], str | None] = record_event_id
) -> Callable[[], Deduplicate]:
    """A factory for ``KStream.process``: ``stream.process(deduplicate(store))``. The store is
    shared by every task of the app (and, for Redis/SQL stores, by every instance)."""

    def factory() -> Deduplicate:
        return Deduplicate(store, key)

    return factory


class StoreDeduplicate(Processor):
    """Deduplication in the app's own key-value store (event id -> record timestamp), so the
    marks are changelogged with the app's state: under ``processing_guarantee="exactly_once"``
    a mark commits in the same transaction as the outputs and input offsets, and a crash can
    neither lose an output nor drop a record that was not handled. The window is event time:
    a repeat whose timestamp is less than ``window_ms`` after the first copy's is dropped;
    marks older than ``window_ms`` behind stream time are purged every ``purge_every_ms`` of
    stream time (a scan of the task's store). Records without an id are forwarded."""

    def __init__(
        self,
        store_name: str,
        window_ms: int,
        key: Callable[[Record], str | None] = record_event_id,
        purge_every_ms: int | None = None,
    ) -> None:
        if window_ms <= 0:
            raise ValueError("window_ms must be positive")
        self.store_name = store_name
        self.window_ms = window_ms
        self.key = key
        self.purge_every_ms = purge_every_ms or window_ms
        self.dropped = 0
        self._ctx: ProcessorContext | None = None
        self._store: Any = None

    def init(self, ctx: ProcessorContext) -> None:
        self._ctx = ctx
        self._store = ctx.get_store(self.store_name)
        ctx.schedule(self.purge_every_ms, "stream_time", self._purge)

    def process(self, record: Record) -> None:
        assert self._ctx is not None
        eid = self.key(record)
        if eid is not None:
            first = self._store.get(eid)
            if first is not None and 0 <= record.timestamp - first < self.window_ms:
                self.dropped += 1
                log.info(
                    "dropped duplicate event %s (%s[%d]@%d)",
                    eid,
                    record.topic,
                    record.partition,
                    record.offset,
                )
                return
        else:
            log.warning(
                "%s[%d]@%d has no event id; forwarded without dedup",
                record.topic,
                record.partition,
                record.offset,
            )
        self._ctx.forward(record.key, record.value, record.timestamp, record.headers)
        if eid is not None:
            self._store.put(eid, record.timestamp)

    def _purge(self, stream_time: int) -> None:
        horizon = stream_time - self.window_ms
        for eid, at in list(self._store.all()):
            if at < horizon:
                self._store.delete(eid)


def store_deduplicate(
    store_name: str, window_ms: int, key: Callable[[Record], str | None] = record_event_id
) -> Callable[[], StoreDeduplicate]:
    """A factory for ``KStream.process`` with the store the app declared:
    ``app.add_state_store("dedup", STRING, LONG)`` then
    ``stream.process(store_deduplicate("dedup", 3_600_000), stores=["dedup"])``."""

    def factory() -> StoreDeduplicate:
        return StoreDeduplicate(store_name, window_ms, key)

    return factory
