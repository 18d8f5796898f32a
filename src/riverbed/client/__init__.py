"""Shared client plumbing for the toolkit: cluster settings read one way everywhere, and
confluent-kafka producer / consumer / admin factories built from them.

Every toolkit service (registry, streams, sql, connect, gateway, patterns, console) reaches a
cluster only through these clients, so it runs unchanged against Apache Kafka.
"""

from .factories import admin, consumer, ensure_topics, producer
from .settings import ClusterSettings, add_cluster_arguments

__all__ = ["ClusterSettings", "add_cluster_arguments", "admin", "consumer", "ensure_topics", "producer"]
