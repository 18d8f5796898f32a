"""The topic registry: names, ids, partition counts and config overrides, kept durable in
``<data dir>/__cluster_metadata.json`` (written to a temp file, fsynced, renamed)."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from riverbed.protocol.errors import ErrorCode, KafkaError

from .configs import validate_topic_configs

MAX_TOPIC_NAME = 249
_LEGAL = re.compile(r"^[a-zA-Z0-9._-]+$")
METADATA_FILE = "__cluster_metadata.json"


def validate_topic_name(name: str) -> None:
    """Kafka's rules (Topic.validate): 1-249 chars of [a-zA-Z0-9._-], not '.' or '..'."""
    if not name:
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, "Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, "Topic name cannot be \".\" or \"..\"")
    if len(name) > MAX_TOPIC_NAME:
        raise KafkaError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME} characters",
        )
    if not _LEGAL.match(name):
        raise KafkaError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'",
        )


def is_internal(name: str) -> bool:
    return name in ("__consumer_offsets", "__transaction_state", "__share_group_state")


@dataclass(slots=True)
class Topic:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def internal(self) -> bool:
        return is_internal(self.name)


class TopicStore:
    """In-memory view of the topics, persisted on every change."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / METADATA_FILE
        self.cluster_id = ""
        self.next_producer_id_block = 0
        # changes saved so far: the offsets DescribeQuorum reports for __cluster_metadata
        self.metadata_offset = 0
        self._producer_ids: range = range(0)
        self._topics: dict[str, Topic] = {}
        self._by_id: dict[uuid.UUID, Topic] = {}

    def load(self) -> None:
        if self.path.exists():
            doc = json.loads(self.path.read_text())
            self.cluster_id = doc["cluster_id"]
            self.next_producer_id_block = int(doc.get("next_producer_id_block", 0))
            self.metadata_offset = int(doc.get("metadata_offset", 0))
            for t in doc["topics"]:
                topic = Topic(t["name"], uuid.UUID(t["id"]), int(t["partitions"]), dict(t.get("configs", {})))
                self._topics[topic.name] = topic
                self._by_id[topic.topic_id] = topic
        else:
            # 22 characters of URL-safe base64, like Kafka's cluster ids
            import base64

            self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            self._save()

    def _save(self) -> None:
        self.metadata_offset += 1
        doc = {
            "version": 1,
            "metadata_offset": self.metadata_offset,
            "cluster_id": self.cluster_id,
            "next_producer_id_block": self.next_producer_id_block,
            "topics": [
                {"name": t.name, "id": str(t.topic_id), "partitions": t.partitions, "configs": t.configs}
                for t in self._topics.values()
            ],
        }
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    PRODUCER_ID_BLOCK = 1000

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before, even across restarts: ids are reserved
        durably in blocks of 1000, so a restart skips the rest of the current block."""
        if not self._producer_ids:
            start = self.next_producer_id_block
            self.next_producer_id_block = start + self.PRODUCER_ID_BLOCK
            self._save()
            self._producer_ids = range(start, start + self.PRODUCER_ID_BLOCK)
        pid = self._producer_ids[0]
        self._producer_ids = self._producer_ids[1:]
        return pid

    def __iter__(self) -> Iterator[Topic]:
        return iter(list(self._topics.values()))

    def __len__(self) -> int:
        return len(self._topics)

    def get(self, name: str) -> Topic | None:
        return self._topics.get(name)

    def by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self._by_id.get(topic_id)

    def check_create(self, name: str, partitions: int, configs: Mapping[str, str | None]) -> dict[str, str]:
        """Validate a creation without doing it (CreateTopics validate_only uses this too)."""
        validate_topic_name(name)
        if name in self._topics:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        if partitions < 1:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
        if partitions > 100_000:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS, "Number of partitions is too large.")
        return validate_topic_configs(configs)

    def create(self, name: str, partitions: int, configs: Mapping[str, str | None]) -> Topic:
        clean = self.check_create(name, partitions, configs)
        topic = Topic(name, uuid.uuid4(), partitions, clean)
        self._topics[name] = topic
        self._by_id[topic.topic_id] = topic
        self._save()
        return topic

    def delete(self, name: str) -> Topic:
        topic = self._topics.pop(name, None)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.")
        self._by_id.pop(topic.topic_id, None)
        self._save()
        return topic

    def add_partitions(self, name: str, total: int, *, validate_only: bool = False) -> Topic:
        topic = self._topics.get(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.")
        if total <= topic.partitions:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                f"Topic currently has {topic.partitions} partitions, which is higher than the requested {total}.",
            )
        if total > 100_000:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS, "Number of partitions is too large.")
        if not validate_only:
            topic.partitions = total
            self._save()
        return topic

    def set_configs(self, name: str, configs: dict[str, str]) -> Topic:
        topic = self._topics[name]
        topic.configs = validate_topic_configs(configs)
        self._save()
        return topic
