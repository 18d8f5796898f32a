"""confluent-kafka clients made from ClusterSettings, and idempotent topic creation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from .settings import ClusterSettings

# librdkafka 2.16 re-bootstraps when every broker it knows is down and then waits forever on
# the group coordinator it had cached, so a transactional producer that lived through a broker
# restart hangs in send_offsets_to_transaction (confluentinc/librdkafka#5511;
# docs/notes/txn-restart-hang.md). Without re-bootstrapping it carries on.
TRANSACTIONAL_DEFAULTS = {"metadata.recovery.strategy": "none"}


def producer(settings: ClusterSettings, **overrides: Any) -> Producer:
    """A producer with Kafka's safe defaults (acks=all, idempotence) unless overridden; a
    transactional one also gets TRANSACTIONAL_DEFAULTS."""
    conf = {"acks": "all", "enable.idempotence": True, **overrides}
    if "transactional.id" in conf:
        conf = {**TRANSACTIONAL_DEFAULTS, **conf}
    return Producer(settings.client_config(**conf))


def consumer(settings: ClusterSettings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer in `group_id`; auto commit off unless overridden (the toolkit commits itself)."""
    return Consumer(settings.client_config(**{"group.id": group_id, "enable.auto.commit": False, **overrides}))


def admin(settings: ClusterSettings, **overrides: Any) -> AdminClient:
    return AdminClient(settings.client_config(**overrides))


def ensure_topics(
    client: AdminClient,
    topics: Mapping[str, tuple[int, Mapping[str, str]]],
    replication: int = -1,
    timeout: float = 30.0,
) -> list[str]:
    """Create each missing topic {name: (partitions, configs)}; an existing topic is left as it
    is. Returns the names created. Raises KafkaException for any other error."""
    if not topics:
        return []
    new = [NewTopic(name, num_partitions=parts, replication_factor=replication, config=dict(cfg)) for name, (parts, cfg) in topics.items()]
    created = []
    for name, fut in client.create_topics(new, request_timeout=timeout).items():
        try:
            fut.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
