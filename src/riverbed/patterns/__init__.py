"""Event sourcing, CQRS projections and sagas on any Kafka-compatible cluster.

- ``aggregate``: aggregates, commands and events as dataclasses (``TypeRegistry``, ``Aggregate``);
- ``envelope``: the stored event's envelope (event id, type+version, time, source, aggregate id+version);
- ``upcasting``: per (type, version) upcasters chained on read;
- ``store`` / ``owner``: topics, single-writer ownership of partitions, transactional appends
  (docs/adr/0010-event-sourcing-on-kafka.md), ``CommandBus``;
- ``repository``: load by snapshot + replay, time travel;
- ``snapshots``: SQLite, PostgreSQL and compacted-topic snapshot stores;
- ``projections``: read models in PostgreSQL (exactly once) and Redis (idempotent by version);
- ``sagas``: choreography helpers and a durable orchestrator;
- ``aio``: the asyncio API.

This package reaches a cluster only through a Kafka client, never through broker internals.
See docs/patterns.md.
"""

from __future__ import annotations

from .aggregate import Aggregate, TypeRegistry
from .envelope import Envelope
from .errors import (
    CommandRejected,
    Fenced,
    InvalidEnvelope,
    NotOwner,
    NoUpcastPath,
    PatternsError,
    UnknownEventType,
    WrongExpectedVersion,
)
from .owner import AggregateOwner, CommandBus, CommandResult
from .repository import Repository
from .snapshots import (
    EveryNEvents,
    KafkaSnapshotStore,
    PostgresSnapshotStore,
    Snapshot,
    SqliteSnapshotStore,
)
from .store import EventStore, PartitionReader
from .upcasting import Upcasters

__all__ = [
    "Aggregate",
    "AggregateOwner",
    "CommandBus",
    "CommandRejected",
    "CommandResult",
    "Envelope",
    "EventStore",
    "EveryNEvents",
    "Fenced",
    "InvalidEnvelope",
    "KafkaSnapshotStore",
    "NoUpcastPath",
    "NotOwner",
    "PartitionReader",
    "PatternsError",
    "PostgresSnapshotStore",
    "Repository",
    "Snapshot",
    "SqliteSnapshotStore",
    "TypeRegistry",
    "UnknownEventType",
    "Upcasters",
    "WrongExpectedVersion",
]
