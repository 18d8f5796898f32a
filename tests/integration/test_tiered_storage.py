"""Tiered storage end to end: a broker with an object store (a local directory, or S3 via
moto's server started here), topics with remote.storage.enable=true and tiny local
retention; segments go to the store and leave the local disk, and confluent-kafka and
kcat still read every record from offset 0, also after a restart and while the store is
down (produce and local reads keep working; tiering catches up when it returns)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from riverbed.storage import OffsetOutOfRange
from riverbed.testing import EmbeddedBroker, free_port

from .helpers import create_topics, stored_log_bytes

pytestmark = pytest.mark.integration

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
T0 = 1_700_000_000_000
FAST = {"remote_task_interval_ms": 50, "remote_retry_backoff_ms": 100, "remote_retry_backoff_max_ms": 500}
TIERED = {
    "remote.storage.enable": "true",
    "segment.bytes": "8192",
    "local.retention.bytes": "1",
    "retention.ms": "-1",
}


def wait_for(cond: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def local_logs(data_dir: Path, topic: str) -> list[Path]:
    return sorted((data_dir / f"{topic}-0").glob("*.log"))


def produce(bootstrap: str, topic: str, start: int, count: int, max_ack_s: float | None = None) -> None:
    """``count`` records value-<i> (timestamp T0 + i), acks=all; with ``max_ack_s``, every
    batch of 100 must be acknowledged within that many seconds."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1, "batch.num.messages": 20})
    errors: list[Any] = []
    for chunk in range(start, start + count, 100):
        t = time.monotonic()
        for i in range(chunk, min(chunk + 100, start + count)):
            p.produce(topic, value=f"value-{i}".encode() + b"x" * 80, timestamp=T0 + i, on_delivery=lambda e, _m: errors.append(e) if e else None)
        assert p.flush(30) == 0
        if max_ack_s is not None:
            assert time.monotonic() - t < max_ack_s, "produce stalled"
    assert not errors


def consume(bootstrap: str, topic: str, count: int, offset: int = OFFSET_BEGINNING, **extra: Any) -> list[tuple[int, bytes]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "tiered", "enable.auto.commit": False, **extra})
    out: list[tuple[int, bytes]] = []
    try:
        c.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + 30
        while len(out) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            out.append((m.offset(), m.value()[: m.value().index(b"x")]))
    finally:
        c.close()
    return out


def expect_all(got: list[tuple[int, bytes]], start: int, end: int) -> None:
    assert [o for o, _ in got] == list(range(start, end))
    assert [v for _, v in got] == [f"value-{i}".encode() for i in range(start, end)]


def kcat_all(bootstrap: str, topic: str) -> list[str]:
    assert KCAT is not None
    out = subprocess.run(
        [KCAT, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o %s\n"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def check_offsets(bootstrap: str, topic: str, end: int) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "tiered-offsets"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, end)
        found = c.offsets_for_times([TopicPartition(topic, 0, T0 + 517)], timeout=10)
        # a remote offset, found through the remote time index: the base offset of the
        # batch holding the first record at or after the timestamp (as for local data)
        assert 517 - 20 < found[0].offset <= 517
    finally:
        c.close()


def read_everything(bootstrap: str, topic: str, n: int) -> None:
    expect_all(consume(bootstrap, topic, n), 0, n)
    if KCAT is not None:
        lines = kcat_all(bootstrap, topic)
        assert [line.split(" ", 1)[0] for line in lines] == [str(i) for i in range(n)]
        assert all(line.split(" ", 1)[1].startswith(f"value-{i}x") for i, line in enumerate(lines))
    check_offsets(bootstrap, topic, n)


def tiered_away(broker: EmbeddedBroker, topic: str, remote_objects: Callable[[], list[str]]) -> Callable[[], bool]:
    """True once at least 5 segments are remote and only the newest ones are local."""

    def check() -> bool:
        logs = local_logs(broker.data_dir, topic)
        return sum(k.endswith(".log") for k in remote_objects()) >= 5 and len(logs) <= 2

    return check


# -- a local directory store -------------------------------------------------------------------


def test_local_dir_store_roundtrip_and_restart(tmp_path: Path) -> None:
    store_dir = tmp_path / "remote"
    settings = {"remote_storage_path": str(store_dir), **FAST}
    broker = EmbeddedBroker(tmp_path / "data", **settings).start()
    topic, n = "tiered-local", 2000

    def remote_objects() -> list[str]:
        return [str(p.relative_to(store_dir)) for p in store_dir.rglob("*") if p.is_file()]

    try:
        create_topics(broker.bootstrap, NewTopic(topic, 1, 1, config=TIERED))
        produce(broker.bootstrap, topic, 0, n)
        wait_for(tiered_away(broker, topic, remote_objects), what="segments tiered and deleted locally")
        # wait until tiering is quiet (only the active segment left locally), so that the
        # local log start cannot move between reading it here and `topic describe` below
        wait_for(lambda: len(local_logs(broker.data_dir, topic)) == 1, what="only the active segment local")
        first_local = int(local_logs(broker.data_dir, topic)[0].stem)
        assert first_local > 0  # offset 0 is now only in the object store
        assert (broker.data_dir / f"{topic}-0" / "remote-log-metadata.json").exists()
        read_everything(broker.bootstrap, topic, n)
        # riverbed topic describe shows where the partition's data is
        out = subprocess.run([sys.executable, "-m", "riverbed", "topic", "describe", topic, "-b", broker.bootstrap], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        (line,) = [ln for ln in out.stdout.splitlines() if "local:" in ln]
        remote_segments = int(line.split("remote: ")[1].split(" in ")[1].split()[0])
        assert remote_segments > 0 and f"from offset {first_local}" in line, line
        broker.stop()
        broker = EmbeddedBroker(tmp_path / "data", **settings).start()
        read_everything(broker.bootstrap, topic, n)
        produce(broker.bootstrap, topic, n, 200)  # still appendable after the restart
        expect_all(consume(broker.bootstrap, topic, n + 200), 0, n + 200)
    finally:
        broker.stop()


def test_remote_storage_refused_without_a_store(broker: EmbeddedBroker, topic_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fut = admin.create_topics([NewTopic(topic_name, 1, 1, config={"remote.storage.enable": "true"})])[topic_name]
    with pytest.raises(Exception) as err:
        fut.result(10)
    assert "remote storage is not configured" in str(err.value)
    create_topics(broker.bootstrap, NewTopic(topic_name, 1, 1))
    entry = ConfigEntry("remote.storage.enable", "true", incremental_operation=AlterConfigOpType.SET)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[entry])
    with pytest.raises(Exception) as err:
        admin.incremental_alter_configs([res])[res].result(10)
    assert "remote storage is not configured" in str(err.value)


def test_total_retention_deletes_remote_segments(tmp_path: Path) -> None:
    store_dir = tmp_path / "remote"
    broker = EmbeddedBroker(tmp_path / "data", remote_storage_path=str(store_dir), **FAST).start()
    topic, n = "tiered-retention", 2000
    try:
        config = {**TIERED, "retention.bytes": "40000"}
        create_topics(broker.bootstrap, NewTopic(topic, 1, 1, config=config))
        produce(broker.bootstrap, topic, 0, n)
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ret"})
        try:
            wait_for(lambda: c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[0] > 1000, what="log start to move")
            low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
        finally:
            c.close()
        assert high == n
        plog = broker.broker.partition(topic, 0)
        assert plog.log_start_offset >= low
        metadata = plog.remote_metadata
        wait_for(lambda: all(s.last_offset >= low for s in metadata.finished()), what="remote deletions")

        def remote_bytes() -> int:
            return stored_log_bytes(store_dir)

        # the objects left are (about) what retention.bytes allows: the log start moves
        # first, then the objects below it are deleted
        wait_for(lambda: 0 < remote_bytes() <= 40000, what="remote objects to be deleted")
        # retention may still be catching up with the last segments tiered: read once the log
        # start has stayed put for a while (on a loaded machine a pass can lag behind)
        seen = {"start": plog.log_start_offset, "since": time.monotonic()}

        def settled() -> bool:
            if plog.log_start_offset != seen["start"]:
                seen["start"], seen["since"] = plog.log_start_offset, time.monotonic()
            return time.monotonic() - seen["since"] > 1.0

        wait_for(settled, what="the log start to settle")
        low = plog.log_start_offset
        # below the log start: OFFSET_OUT_OF_RANGE (what Fetch answers), which the
        # consumer's auto.offset.reset=earliest resolves
        with pytest.raises(OffsetOutOfRange):
            broker.call(plog.read, 0, 1 << 20)
        got = consume(broker.bootstrap, topic, n - low, offset=0, **{"auto.offset.reset": "earliest"})
        # the reset lands on the log start of that moment (retention may have moved it on)
        assert got and got[0][0] >= low
        expect_all(got, got[0][0], n)
    finally:
        broker.stop()


# -- S3 (moto's server) ------------------------------------------------------------------------


class Moto:
    def __init__(self) -> None:
        self.port = free_port()
        self.server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        moto_server = pytest.importorskip("moto.server")
        self.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wait_for(self._listening, 10, "moto to listen")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def moto() -> Iterator[Moto]:
    pytest.importorskip("boto3")
    m = Moto()
    m.start()
    yield m
    m.stop()


def test_s3_store_down_and_back(tmp_path: Path, moto: Moto) -> None:
    from riverbed.storage.remote import S3Store

    store = S3Store("tiers", endpoint_url=moto.endpoint, access_key="testing", secret_key="testing", connect_timeout=1, read_timeout=3, max_attempts=1)
    store.create_bucket()
    broker = EmbeddedBroker(
        tmp_path / "data",
        remote_s3_bucket="tiers",
        remote_s3_endpoint=moto.endpoint,
        remote_s3_access_key="testing",
        remote_s3_secret_key="testing",
        **FAST,
    ).start()
    topic, n = "tiered-s3", 1500
    try:
        create_topics(broker.bootstrap, NewTopic(topic, 1, 1, config=TIERED))
        produce(broker.bootstrap, topic, 0, n)
        wait_for(tiered_away(broker, topic, lambda: store.list("")), what="segments tiered to S3")
        read_everything(broker.bootstrap, topic, n)

        moto.stop()  # the object store goes away
        before = len(local_logs(broker.data_dir, topic))
        produce(broker.bootstrap, topic, n, 1000, max_ack_s=15)
        wait_for(lambda: broker.broker.logs.remote.status(topic, 0).failures >= 2, what="tiering attempts to fail")
        during = local_logs(broker.data_dir, topic)
        assert len(during) > before + 3  # nothing is deleted locally while the store is down
        first_local = int(during[0].stem)
        expect_all(consume(broker.bootstrap, topic, n + 1000 - first_local, offset=first_local), first_local, n + 1000)
        status = broker.broker.logs.remote.status(topic, 0)
        assert status.failures > 0 and status.last_error

        moto.start()  # same port: the same in-process moto backend, with the objects
        wait_for(lambda: len(local_logs(broker.data_dir, topic)) <= 2, what="tiering to catch up")
        expect_all(consume(broker.bootstrap, topic, n + 1000), 0, n + 1000)
    finally:
        broker.stop()
