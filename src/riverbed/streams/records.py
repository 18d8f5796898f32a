"""The record that flows between processors, and small shared types."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol


class StreamsError(Exception):
    """A topology or runtime error with a message meant for the application's developer."""


class ProductionError(StreamsError):
    """An output record could not be serialized or sent, and the production error policy is
    ``fail`` (Kafka's ProductionExceptionHandler answering FAIL): stops the application."""


@dataclass(slots=True)
class Record:
    key: Any
    value: Any
    timestamp: int
    headers: list[tuple[str, bytes]] | None = None
    topic: str | None = None
    partition: int = -1
    offset: int = -1
    old: Any = None  # a table's previous value for the key (set by tables that need it)

    def with_kv(self, key: Any, value: Any) -> Record:
        return Record(key, value, self.timestamp, self.headers, self.topic, self.partition, self.offset)


@dataclass(slots=True)
class LateRecord:
    """A record that arrived after (some of) its windows had closed: the side output's value."""

    record: Record
    missed_windows: list[Any] = field(default_factory=list)
    stream_time: int = 0


class RecordInterceptor(Protocol):
    """A hook around each input record's walk through the topology and each record it sends
    (``StreamsApp(interceptors=[...])``): trace propagation uses it (a span per record,
    context injected into what ``to()`` and repartition topics receive).

    ``around(record, task_id)`` returns a context manager entered after the record is
    deserialized and left when the topology is done with it (an exception raised inside
    passes through it before the error policy sees it); ``on_send(topic, headers)`` returns
    the headers of an output record (changelog writes are not intercepted)."""

    def around(self, record: Record, task_id: str) -> AbstractContextManager[Any]: ...

    def on_send(self, topic: str, headers: list[tuple[str, bytes]] | None) -> list[tuple[str, bytes]] | None: ...
