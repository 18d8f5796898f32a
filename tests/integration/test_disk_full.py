"""Disk full: with the data dir on a small tmpfs (mounted by the test; root only), a
confluent-kafka producer gets KAFKA_STORAGE_ERROR promptly once the disk is full (never a
request timeout), the broker logs the directory and its free space, DescribeLogDirs and
``riverbed topic describe`` report the state, writes stay refused until space returns,
then resume without a restart; every acknowledged record is readable, also after kill -9
and a restart."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.describe_log_dirs import (
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
)
from riverbed.testing import BrokerProcess, EmbeddedBroker

from .helpers import create_topics
from .wire import Wire

pytestmark = pytest.mark.integration

FS_BYTES = 24 << 20
VALUE = 20_000


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def produce(bootstrap: str, topic: str, values: list[bytes]) -> list[tuple[bytes, int, int]]:
    """(value, error code, offset) of each value; no retries, so a refused batch is
    reported at once, and the request timeout is long, so an unanswered request would
    show up as REQUEST_TIMED_OUT / _MSG_TIMED_OUT."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "retries": 0,
            "request.timeout.ms": 20_000,
            "message.timeout.ms": 120_000,
        }
    )
    out: dict[int, tuple[bytes, int, int]] = {}
    for i, v in enumerate(values):
        p.produce(topic, value=v, on_delivery=lambda err, msg, i=i, v=v: out.__setitem__(i, (v, err.code() if err else 0, msg.offset())))
        p.poll(0)
    assert p.flush(300) == 0
    return [out[i] for i in range(len(values))]


def log_dir_error(bootstrap: str) -> int:
    with Wire(bootstrap) as w:
        resp = w.request(DescribeLogDirsRequest(topics=None), 4)
    assert isinstance(resp, DescribeLogDirsResponse)
    return resp.results[0].error_code


def read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False, "fetch.max.bytes": 1 << 20})
    try:
        _, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 120
        while (not out or out[-1][0] < hi - 1) and time.monotonic() < deadline:
            msg = c.poll(1)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append((msg.offset(), msg.value()))
        return out
    finally:
        c.close()


def test_disk_full_refuses_promptly_and_recovers(small_fs: Path, tmp_path: Path) -> None:
    data = small_fs / "data"
    broker = BrokerProcess(data)
    broker.log_path = tmp_path / "broker.log"  # not on the full disk
    broker.start()
    try:
        topic = "full"
        create_topics(broker.bootstrap, NewTopic(topic, 1, 1, config={"segment.bytes": str(1 << 20)}))
        # most of the disk taken by something else: what the test frees later
        filler = small_fs / "filler"
        filler.write_bytes(b"\0" * (FS_BYTES - (6 << 20)))
        acked: dict[int, bytes] = {}
        refused = 0
        n = 0
        while not refused:
            assert n < 2_000, "the disk never filled up"
            values = [b"%08d" % (n + i) + b"x" * VALUE for i in range(50)]
            n += len(values)
            for v, code, offset in produce(broker.bootstrap, topic, values):
                # answered: stored, or refused as a storage error (never a timeout)
                assert code in (0, KafkaError.KAFKA_STORAGE_ERROR), KafkaError(code).str()
                if code == 0:
                    acked[offset] = v
                else:
                    refused += 1
        assert acked, "nothing was stored before the disk filled up"
        log = broker.log_path.read_text()
        assert "no space left" in log and str(data) in log and "bytes free" in log
        assert log_dir_error(broker.bootstrap) == ErrorCode.KAFKA_STORAGE_ERROR
        described = subprocess.run(
            [sys.executable, "-m", "riverbed", "topic", "describe", topic, "-b", broker.bootstrap], capture_output=True, text=True, timeout=60
        )
        assert described.returncode == 0, described.stderr
        assert "KAFKA_STORAGE_ERROR" in described.stdout
        # still full: a small record is refused too, before anything is written
        assert [code for _, code, _ in produce(broker.bootstrap, topic, [b"small"])] == [KafkaError.KAFKA_STORAGE_ERROR]

        filler.unlink()  # space returns: writes resume without a restart
        deadline = time.monotonic() + 120
        while True:
            [(v, code, offset)] = produce(broker.bootstrap, topic, [b"after"])
            if code == 0:
                acked[offset] = v
                break
            assert code == KafkaError.KAFKA_STORAGE_ERROR
            assert time.monotonic() < deadline, "writes did not resume"
            time.sleep(0.2)
        assert log_dir_error(broker.bootstrap) == 0
        for v, code, offset in produce(broker.bootstrap, topic, [b"more%d" % i for i in range(20)]):
            assert code == 0
            acked[offset] = v

        # every acknowledged record is there, in order, nothing else (no partial batch)
        assert dict(read_all(broker.bootstrap, topic)) == acked
        broker.kill()  # and after a crash
        broker.start()
        assert dict(read_all(broker.bootstrap, topic)) == acked
    finally:
        broker.kill()


def test_failed_fsync_answers_waiting_producers_at_once(broker: EmbeddedBroker, topic_name: str) -> None:
    # an acks=all produce waits for the fsync covering its batch; when that fsync fails
    # (ENOSPC on NFS, EIO) the log never becomes durable again, and the producer is told
    # KAFKA_STORAGE_ERROR at once instead of REQUEST_TIMED_OUT at the request timeout
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    assert produce(broker.bootstrap, topic_name, [b"before"])[0][1] == 0
    log = broker.call(broker.broker.partition, topic_name, 0)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    log._fsync = failing_fsync  # fault injection: the next fsync of this log fails
    [(_, code, _)] = produce(broker.bootstrap, topic_name, [b"lost"])
    assert code == KafkaError.KAFKA_STORAGE_ERROR
    assert log.failed is not None
    # refused from now on (until a restart recovers the log)
    assert produce(broker.bootstrap, topic_name, [b"refused"])[0][1] == KafkaError.KAFKA_STORAGE_ERROR
