"""Crash safety with a real broker process: kill -9 after acks=all, torn tails, restart.

kill -9 loses the process, not the page cache: these tests check recovery after a
process crash; power-cut durability (what fsync makes durable) is tested in
``tests/unit/storage/crash/``."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from riverbed.testing import BrokerProcess

from .helpers import create_topics

pytestmark = pytest.mark.integration

def read_values(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 20) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "d", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < deadline and (len(got) < expected or idle < 3):
            m = c.poll(0.3)
            if m is None:
                idle += 1
                continue
            idle = 0
            assert m.error() is None, m.error()
            got.append(m.value())
        return got
    finally:
        c.close()


def acked_produce(bootstrap: str, topic: str, values: list[bytes]) -> list[bytes]:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2, "batch.num.messages": 50})
    acked: list[bytes] = []

    def cb(err: KafkaError | None, msg: object) -> None:
        if err is None:
            acked.append(msg.value())  # type: ignore[attr-defined]

    for v in values:
        p.produce(topic, value=v, on_delivery=cb)
        p.poll(0)
    assert p.flush(30) == 0
    return acked


def test_kill_9_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = BrokerProcess(data).start()
    try:
        create_topics(proc.bootstrap, NewTopic("durable", 3, 1))
        values = [f"record-{i}".encode() for i in range(3000)]
        acked = acked_produce(proc.bootstrap, "durable", values)
        assert len(acked) == 3000
        # SIGKILL: no shutdown hook runs, but the kernel keeps the page cache, so this passes
        # even without any fsync; what only fsync makes durable is checked by the
        # crash-consistency tests in tests/unit/storage/crash/ (a simulated power cut)
        proc.kill()
        proc.start()
        got = read_values(proc.bootstrap, "durable", 3, len(acked))
        assert set(acked) <= set(got)
        assert len(got) == len(set(got)) == 3000
    finally:
        proc.kill()


def test_torn_tail_is_truncated_on_startup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = BrokerProcess(data).start()
    try:
        create_topics(proc.bootstrap, NewTopic("torn", 1, 1))
        values = [f"v{i}".encode() * 10 for i in range(500)]
        acked_produce(proc.bootstrap, "torn", values)
        proc.kill()
        segments = sorted((data / "torn-0").glob("*.log"))
        assert segments
        last = segments[-1]
        size = last.stat().st_size
        # a torn write: half a batch header of garbage at the end
        with open(last, "ab") as fh:
            fh.write(b"\x00\x00\x00\x00\x00\x00\x01\xf4\x00\x00\x10\x00\xff\xff\xff\xff\x02\xde\xad")
        proc.start()
        assert last.stat().st_size == size, "the torn tail was not truncated"
        got = read_values(proc.bootstrap, "torn", 1, 500)
        assert got == values
        # and the log keeps working after recovery
        acked_produce(proc.bootstrap, "torn", [b"after"])
        assert read_values(proc.bootstrap, "torn", 1, 501)[-1] == b"after"
    finally:
        proc.kill()


def test_graceful_shutdown_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = BrokerProcess(data).start()
    try:
        p = Producer({"bootstrap.servers": proc.bootstrap, "acks": "1"})
        for i in range(200):
            p.produce("graceful", value=str(i).encode())
        assert p.flush(20) == 0
        assert proc.terminate() == 0
        proc.start()
        assert len(read_values(proc.bootstrap, "graceful", 1, 200)) == 200
    finally:
        proc.kill()


def _log_bytes(directory: Path) -> int:
    """Bytes of the segment files in ``directory``."""
    total = 0
    for f in directory.glob("*.log"):
        with contextlib.suppress(FileNotFoundError):  # deleted while we look
            total += f.stat().st_size
    return total


def test_retention_by_time_and_size_moves_log_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = BrokerProcess(data, extra=["--set", "log.retention.check.interval.ms=200"]).start()
    try:
        a = AdminClient({"bootstrap.servers": proc.bootstrap})
        a.create_topics(
            [
                NewTopic("by-size", 1, 1, config={"segment.bytes": "2000", "retention.bytes": "5000"}),
                NewTopic("by-time", 1, 1, config={"segment.bytes": "2000", "retention.ms": "1000"}),
            ]
        )["by-size"].result(10)
        values = [b"x" * 200 for _ in range(100)]
        p = Producer({"bootstrap.servers": proc.bootstrap, "acks": "all", "linger.ms": 0})
        for v in values:
            p.produce("by-size", value=v)
            p.produce("by-time", value=v, timestamp=int(time.time() * 1000) - 60_000)
            p.flush(10)
        c = Consumer({"bootstrap.servers": proc.bootstrap, "group.id": "r"})
        try:
            # a retention pass may have run while the records were still arriving: wait
            # for one that ran after the last of them (log start moved AND the bytes left
            # within retention.bytes plus the active segment), not only for the first one
            deadline = time.monotonic() + 60
            lo_size = lo_time = size_bytes = 0
            while time.monotonic() < deadline:
                lo_size, hi_size = c.get_watermark_offsets(TopicPartition("by-size", 0), timeout=10)
                lo_time, hi_time = c.get_watermark_offsets(TopicPartition("by-time", 0), timeout=10)
                size_bytes = _log_bytes(data / "by-size-0")
                if lo_size > 0 and lo_time > 0 and size_bytes <= 5000 + 2500:
                    break
                time.sleep(0.2)
            assert hi_size == 100 and hi_time == 100
            assert lo_size > 0, "retention.bytes did not delete old segments"
            assert lo_time > 0, "retention.ms did not delete old segments"
            assert size_bytes <= 5000 + 2500
        finally:
            c.close()
    finally:
        proc.kill()
