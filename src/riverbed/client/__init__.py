"""Shared client plumbing for the toolkit: cluster settings read one way everywhere,
confluent-kafka producer / consumer / admin factories built from them, and (``wire``) a small
blocking client on riverbed's own codec for the requests the AdminClient lacks.

Every toolkit service (registry, streams, sql, connect, gateway, patterns, console) reaches a
cluster only through these clients, so it runs unchanged against Apache Kafka.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ClusterSettings, add_cluster_arguments

if TYPE_CHECKING:
    from .factories import admin, consumer, ensure_topics, producer

__all__ = ["ClusterSettings", "add_cluster_arguments", "admin", "consumer", "ensure_topics", "producer"]

_FACTORIES = {"admin", "consumer", "ensure_topics", "producer"}


def __getattr__(name: str) -> Any:
    # the factories import confluent-kafka: only when asked for, so that `riverbed.client.wire`
    # (the CLI's admin commands) does not load it
    if name in _FACTORIES:
        from . import factories

        return getattr(factories, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
