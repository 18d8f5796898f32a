"""Helpers for the share-group tests: group configs through the admin client, producing, and
a consumer loop that drains a topic with confluent-kafka's ShareConsumer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaException, Message, Producer, ShareConsumer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)


def set_group_configs(bootstrap: str, group: str, configs: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entries = [
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()
    ]
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
    admin.incremental_alter_configs([res])[res].result(timeout=10)


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=10)


def produce(bootstrap: str, topic: str, n: int, prefix: str = "job") -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, key=str(i).encode(), value=f"{prefix}-{i}".encode())
        if i % 1000 == 999:
            p.poll(0)
    assert p.flush(30) == 0


def share_consumer(bootstrap: str, group: str, topic: str, **extra: str) -> ShareConsumer:
    c = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group, **extra})
    c.subscribe([topic])
    return c


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Worker(threading.Thread):
    """Polls a ShareConsumer until told to stop, recording (offset, delivery count) of each
    record; ``handle`` returns the acknowledge type (explicit mode) or None (implicit)."""

    def __init__(
        self, consumer: ShareConsumer, handle: Callable[[Message], object] | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.consumer = consumer
        self.handle = handle
        self.seen: list[tuple[int, int]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for m in self.consumer.poll(0.2):
                    if m.error():
                        self.errors.append(str(m.error()))
                        continue
                    self.seen.append((m.offset(), m.delivery_count()))
                    if self.handle is not None:
                        self.consumer.acknowledge(m, self.handle(m))
                if self.handle is not None:
                    self.consumer.commit_async()
        except KafkaException as exc:  # pragma: no cover - reported by the test
            self.errors.append(str(exc))
        finally:
            self.consumer.close()
