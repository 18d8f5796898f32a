"""A confluent-kafka consumer commits while the broker's data dir (a small tmpfs the test
mounts; root only) is full: the commit fails with NOT_COORDINATOR (Kafka's mapping of
KAFKA_STORAGE_ERROR for a coordinator write), the committed offset stays the previous one,
and once space returns the same commit succeeds, without a restart."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

from riverbed.testing import BrokerProcess

from .helpers import create_topics
from .test_disk_full import produce, small_fs  # noqa: F401 - the tmpfs fixture

pytestmark = pytest.mark.integration


def fill(path: Path) -> None:
    """Write ``path`` until the file system has no space left."""
    chunk = b"\0" * (256 << 10)
    with open(path, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def committed(c: Consumer, topic: str) -> int:
    [tp] = c.committed([TopicPartition(topic, 0)], timeout=60)
    return int(tp.offset)


def test_a_commit_on_a_full_disk_fails_and_succeeds_once_space_returns(small_fs: Path, tmp_path: Path) -> None:  # noqa: F811
    broker = BrokerProcess(small_fs / "data")
    broker.log_path = tmp_path / "broker.log"  # not on the full disk
    broker.start()
    c = None
    try:
        topic = "commits"
        create_topics(broker.bootstrap, NewTopic(topic, 1, 1))
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "full-disk", "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
        assert committed(c, topic) == 5
        filler = small_fs / "filler"
        fill(filler)
        # a write now fails with ENOSPC and the directory refuses writes from then on
        deadline = time.monotonic() + 120
        while produce(broker.bootstrap, topic, [b"x" * 100_000])[0][1] != KafkaError.KAFKA_STORAGE_ERROR:
            assert time.monotonic() < deadline, "the disk never filled up"

        with pytest.raises(KafkaException) as info:
            c.commit(offsets=[TopicPartition(topic, 0, 9)], asynchronous=False)
        assert info.value.args[0].code() == KafkaError.NOT_COORDINATOR, info.value
        assert committed(c, topic) == 5
        log = broker.log_path.read_text()
        assert "WARNING" in log and "group 'full-disk': could not write OffsetsCommitted" in log and "KAFKA_STORAGE_ERROR" in log

        filler.unlink()
        deadline = time.monotonic() + 120
        while True:
            try:
                c.commit(offsets=[TopicPartition(topic, 0, 9)], asynchronous=False)
                break
            except KafkaException as exc:
                assert exc.args[0].code() == KafkaError.NOT_COORDINATOR, exc
                assert time.monotonic() < deadline, "commits did not resume"
                time.sleep(0.2)
        assert committed(c, topic) == 9
    finally:
        if c is not None:
            c.close()
        broker.kill()
