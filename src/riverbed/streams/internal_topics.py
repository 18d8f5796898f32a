"""Check the source topics and create the internal ones (repartition, changelog) with the
partition counts the topology needs, as Kafka Streams' InternalTopicManager does."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from .records import StreamsError
from .topology import Topology

log = logging.getLogger("riverbed.streams")

# Kafka's windowstore.changelog.additional.retention.ms default: one day beyond the store's.
CHANGELOG_EXTRA_RETENTION_MS = 24 * 3600 * 1000


def plan(topology: Topology, partitions_of: dict[str, int]) -> dict[str, tuple[int, dict[str, str]]]:
    """Internal topic -> (partitions, configs), given the existing topics' partition counts."""
    missing = [t for t in [*topology.source_topics, *topology.global_topics] if t not in partitions_of]
    if missing:
        raise StreamsError(f"source topic(s) {', '.join(sorted(missing))} do not exist; create them first")
    counts: dict[str, int] = {t: partitions_of[t] for t in topology.source_topics}
    # a repartition topic gets as many partitions as the largest source of the sub-topology
    # that writes it; resolve in dependency order (chains of repartitions)
    pending = list(topology.repartition_topics)
    for _ in range(len(pending) + 1):
        for topic in list(pending):
            reader = topology.sub_for_topic[topic]
            if reader.sources[topic].sized_by_reader:
                ins = [counts.get(t) for t, s in reader.sources.items() if not s.sized_by_reader]
            else:
                sub = topology.producer_of(topic)
                assert sub is not None
                ins = [counts.get(t) for t in sub.sources]
            if all(n is not None for n in ins):
                counts[topic] = max(n for n in ins if n is not None)
                pending.remove(topic)
    if pending:
        raise StreamsError(f"cannot size repartition topics {pending} (a cycle in the topology?)")
    out: dict[str, tuple[int, dict[str, str]]] = {}
    for topic in topology.repartition_topics:
        out[topic] = (counts[topic], {"cleanup.policy": "delete"})
    for sub in topology.subtopologies:
        sizes = {t: counts[t] for t in sub.sources}
        if sub.stores and len(set(sizes.values())) > 1:
            raise StreamsError(f"sub-topology {sub.id} keeps state but its source topics are not co-partitioned "
                               f"(partition counts {sizes}); give them the same number of partitions")
        n = max(sizes.values())
        for spec in sub.stores:
            if spec.window_size_ms is None and not spec.session:
                cfg = {"cleanup.policy": "compact"}
            else:
                retention = (spec.retention_ms or 0) + CHANGELOG_EXTRA_RETENTION_MS
                cfg = {"cleanup.policy": "compact,delete", "retention.ms": str(retention)}
            out[topology.changelog_topic(spec.name)] = (n, cfg)
    return out


def ensure(topology: Topology, admin: AdminClient, replication: int = -1, timeout: float = 30.0) -> dict[str, int]:
    """Create what is missing; check what exists. Returns every topic's partition count."""
    md = admin.list_topics(timeout=timeout)
    existing = {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}
    wanted = plan(topology, existing)
    new: list[Any] = []
    for topic, (n, cfg) in wanted.items():
        if topic in existing:
            if existing[topic] != n:
                raise StreamsError(f"internal topic {topic} has {existing[topic]} partitions, the topology needs {n}")
            continue
        new.append(NewTopic(topic, num_partitions=n, replication_factor=replication, config=cfg))
    if new:
        for topic, fut in admin.create_topics(new, request_timeout=timeout).items():
            try:
                fut.result(timeout)
                log.info("created internal topic %s", topic)
            except Exception as e:
                if "TOPIC_ALREADY_EXISTS" not in str(e):  # another instance won the race
                    raise StreamsError(f"cannot create internal topic {topic}: {e}") from e
    return {**existing, **{t: n for t, (n, _c) in wanted.items()}}
