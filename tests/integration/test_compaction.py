"""Log compaction with real clients: the latest value per key, tombstones that go after
delete.retention.ms, offsets that do not move, consumers in the middle of the log, aborted
transactions on a compacted topic, and kill -9 while the cleaner runs."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from riverbed.testing import BrokerProcess, EmbeddedBroker

from .helpers import create_topics

pytestmark = pytest.mark.integration

#: small segments so that most of the log is cleanable; clean as soon as anything is dirty
COMPACT = {
    "cleanup.policy": "compact",
    "segment.bytes": "2048",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "0",
}


@pytest.fixture
def cleaning_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "data", cleaner_backoff_ms=50) as b:
        yield b


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]], **conf: object) -> dict[bytes | None, list[int]]:
    """Produce (key, value) records to partition 0; returns the offsets written per key."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "batch.num.messages": 10, **conf})
    offsets: dict[bytes | None, list[int]] = {}

    def done(err: object, msg: object) -> None:
        assert err is None, err
        offsets.setdefault(msg.key(), []).append(msg.offset())  # type: ignore[attr-defined]

    for key, value in records:
        p.produce(topic, key=key, value=value, partition=0, on_delivery=done)
        p.poll(0)
    assert p.flush(20) == 0
    return offsets


def read_from(bootstrap: str, topic: str, offset: int = OFFSET_BEGINNING, isolation: str = "read_uncommitted") -> list[tuple[int, bytes | None, bytes | None]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False, "isolation.level": isolation, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, 0, offset)])
        out: list[tuple[int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == -191:  # _PARTITION_EOF
                    return out
                raise AssertionError(m.error())
            out.append((m.offset(), m.key(), m.value()))
        raise AssertionError("no end of partition within 20 s")
    finally:
        c.close()


def cleaned_once(broker: EmbeddedBroker, topic: str) -> Callable[[], bool]:
    """True once the cleaner has cleaned partition 0 of ``topic`` at least once."""

    def check() -> bool:
        info = broker.call(broker.broker.logs.cleaner_info, topic, 0)
        return info is not None and info.last_stats is not None

    return check


def cleaned_past(broker: EmbeddedBroker, topic: str, offset: int) -> Callable[[], bool]:
    """True once a clean of partition 0 of ``topic`` has covered ``offset`` (a clean stops at
    the active segment, so an early one may cover only part of what a test wrote)."""

    def check() -> bool:
        info = broker.call(broker.broker.logs.cleaner_info, topic, 0)
        return info is not None and info.last_stats is not None and info.first_dirty_offset > offset

    return check


def test_compacted_topic_keeps_the_latest_value_per_key(cleaning_broker: EmbeddedBroker, topic_name: str) -> None:
    b = cleaning_broker.bootstrap
    create_topics(b, NewTopic(topic_name, 1, 1, config=COMPACT))
    # the lecture's example, then many updates of 40 keys, then tombstones for 10 of them
    first = produce(b, topic_name, [(b"user-1", b'UpdateName="Alice"'), (b"user-1-email", b'UpdateEmail="alice@example.com"'), (b"user-1", b'UpdateName="Alice Smith"')])
    rounds = [(f"k{i}".encode(), f"round{r}-k{i}".encode()) for r in range(4) for i in range(40)]
    offsets = produce(b, topic_name, rounds)
    tombstones = produce(b, topic_name, [(f"k{i}".encode(), None) for i in range(10)])
    # a consumer that stopped in the middle of what is about to be cleaned
    middle = offsets[b"k5"][1]
    # filler with unique keys moves the active segment on, so the records above are cleanable
    produce(b, topic_name, [(f"filler-{i}".encode(), b"x" * 50) for i in range(120)])
    last_tombstone = max(o for offs in tombstones.values() for o in offs)
    assert wait_until(cleaned_past(cleaning_broker, topic_name, last_tombstone), 20), "the cleaner did not clean the updates"

    after = read_from(b, topic_name)
    by_key: dict[bytes | None, list[tuple[int, bytes | None]]] = {}
    for off, key, value in after:
        by_key.setdefault(key, []).append((off, value))
    assert by_key[b"user-1"] == [(first[b"user-1"][1], b'UpdateName="Alice Smith"')]
    assert by_key[b"user-1-email"] == [(first[b"user-1-email"][0], b'UpdateEmail="alice@example.com"')]
    for i in range(10, 40):  # the latest value, at the offset it was written at
        assert by_key[f"k{i}".encode()] == [(offsets[f"k{i}".encode()][3], f"round3-k{i}".encode())]
    for i in range(10):  # a tombstone replaced every value; it may still be there (horizon)
        assert by_key.get(f"k{i}".encode(), []) in ([], [(tombstones[f"k{i}".encode()][0], None)])
    offsets_seen = [off for off, _, _ in after]
    assert offsets_seen == sorted(offsets_seen) and len(after) < 3 + 160 + 10 + 120

    # riverbed topic describe shows the cleaner's view
    out = subprocess.run([sys.executable, "-m", "riverbed", "topic", "describe", topic_name, "-b", b], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (line,) = [ln for ln in out.stdout.splitlines() if "local:" in ln]
    assert "dirty ratio:" in line and "last clean: never" not in line, line

    # the consumer in the middle carries on from its offset (now a gap) without an error
    rest = read_from(b, topic_name, middle)
    assert rest and rest[0][0] >= middle and rest == [r for r in after if r[0] >= middle]

    # tombstones go once delete.retention.ms (0 here) has passed since the first clean
    produce(b, topic_name, [(f"filler-{i}".encode(), b"y" * 50) for i in range(120)])
    assert wait_until(lambda: not any(key in {f"k{i}".encode() for i in range(10)} for _, key, _ in read_from(b, topic_name)), 20)


def test_aborted_records_go_and_committed_ones_stay(cleaning_broker: EmbeddedBroker, topic_name: str) -> None:
    b = cleaning_broker.bootstrap
    create_topics(b, NewTopic(topic_name, 1, 1, config=COMPACT))
    p = Producer({"bootstrap.servers": b, "transactional.id": f"compact-{topic_name}", "linger.ms": 2})
    p.init_transactions(20)
    p.begin_transaction()
    for i in range(30):
        p.produce(topic_name, key=f"c{i}".encode(), value=f"committed-{i}".encode(), partition=0)
    p.commit_transaction(20)
    p.begin_transaction()
    for i in range(30):
        p.produce(topic_name, key=f"a{i}".encode(), value=f"aborted-{i}".encode(), partition=0)
    p.flush(10)
    p.abort_transaction(20)
    c = Consumer({"bootstrap.servers": b, "group.id": "hw"})
    try:
        abort_marker = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)[1] - 1
    finally:
        c.close()
    produce(b, topic_name, [(f"filler-{i}".encode(), b"x" * 50) for i in range(120)])
    before = read_from(b, topic_name, isolation="read_committed")
    assert wait_until(cleaned_past(cleaning_broker, topic_name, abort_marker), 20), "the cleaner did not clean the transactions"
    after_uncommitted = read_from(b, topic_name)
    assert not [r for r in after_uncommitted if r[2] is not None and r[2].startswith(b"aborted")]
    assert sorted(v for _, _, v in after_uncommitted if v and v.startswith(b"committed")) == sorted(f"committed-{i}".encode() for i in range(30))
    assert read_from(b, topic_name, isolation="read_committed") == before


def cleaner_files(partition_dir: Path) -> tuple[list[int], list[int], int]:
    """(base offsets of ``*.log.cleaned`` files, of ``*.swap`` manifests, first segment base):
    the traces a clean in progress leaves in a partition directory (``storage/swap.py``)."""
    names = [f.name for f in partition_dir.iterdir()]
    cleaned = sorted(int(n[:20]) for n in names if n.endswith(".log.cleaned"))
    swaps = sorted(int(n[:20]) for n in names if n.endswith(".swap"))
    logs = [int(n[:20]) for n in names if n.endswith(".log")]
    return cleaned, swaps, min(logs, default=0)


def cleaner_workers(broker_pid: int) -> list[int]:
    """Live cleaner worker processes of the broker ``broker_pid`` (storage/cleaner_worker.py:
    its command line names the module and ends with the broker's pid and a nice value)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and any(b"riverbed.storage.cleaner_worker" in a for a in args) and str(broker_pid).encode() in args:
            out.append(int(entry.name))
    return out


def test_kill_9_while_cleaning_reads_the_same_before_or_after(tmp_path: Path, topic_name: str) -> None:
    """The broker is killed with SIGKILL while its cleaner is in the middle of a clean, at
    two kinds of moment, and every restart reads the latest value of every key at the offset
    it was written at, and nothing else of those keys. The cleaner is throttled
    (log.cleaner.io.max.bytes.per.second) so that writing one cleaned group takes a while;
    the test kills the broker when the partition directory shows a cleaned segment being
    written: the first group (nothing of this clean swapped yet) or a later one (earlier
    groups already swapped in), and checks from the files the dead broker left that the kill
    landed there (a kill that came too late, the group already swapped, is retried; all four
    must land). Each round writes new values for half of the keys first, so there is always
    a clean to catch; keys written once, spread over the first segments, and the other half's
    latest values live in the segments being cleaned."""
    data = tmp_path / "data"
    extra = ["--set", "log.cleaner.backoff.ms=20", "--set", "log.cleaner.io.max.bytes.per.second=20000"]
    proc = BrokerProcess(data, extra=extra).start()
    b = proc.bootstrap
    keys = [f"k{i}".encode() for i in range(200)]
    offsets: dict[bytes | None, list[int]] = {}
    latest: dict[bytes, tuple[int, bytes]] = {}

    def write(records: list[tuple[bytes, bytes]]) -> None:
        written = produce(b, topic_name, records, acks="all")  # type: ignore[arg-type]
        value_of = dict(records)
        for k, offs in written.items():
            assert k is not None
            offsets.setdefault(k, []).extend(offs)
            latest[k] = (offs[-1], value_of[k])

    targets = ["first", "later", "first", "later"]
    hits: list[tuple[str, list[int], list[int]]] = []
    misses: list[tuple[str, list[int], list[int]]] = []
    try:
        create_topics(b, NewTopic(topic_name, 1, 1, config={**COMPACT, "segment.bytes": "4096"}))
        partition_dir = data / f"{topic_name}-0"
        for r in range(3):  # several updates of every key, with a key written once every 5
            updates = [(k, f"v{r}-{k.decode()}".encode() * 4) for k in keys]
            write([rec for i, u in enumerate(updates) for rec in ([u] if i % 5 else [u, (f"once-{r}-{i}".encode(), b"o" * 30)])])
        for round_ in range(8):  # a kill that comes too late (the group swapped) is a miss
            if len(hits) == len(targets):
                break
            target = targets[len(hits)]
            write([(k, f"r{round_}-{k.decode()}".encode() * 4) for i, k in enumerate(keys) if i % 2 == round_ % 2])
            write([(f"filler-{round_}-{i}".encode(), b"x" * 100) for i in range(60)])

            def at_target(target: str = target) -> bool:
                cleaned, _, first_base = cleaner_files(partition_dir)
                return any(base == first_base for base in cleaned) if target == "first" else any(base > first_base for base in cleaned)

            assert wait_until(at_target, 120), f"round {round_}: no clean reached the {target} group: {sorted(f.name for f in partition_dir.iterdir())}"
            assert proc.proc is not None
            broker_pid = proc.proc.pid
            assert cleaner_workers(broker_pid), "the clean runs in a worker process"
            proc.kill()
            # the worker dies with the broker: it must not write into the directory of the
            # broker restarted below
            assert wait_until(lambda pid=broker_pid: not cleaner_workers(pid), 5), "the cleaner worker outlived the broker"  # type: ignore[misc]
            cleaned, swaps, first_base = cleaner_files(partition_dir)  # what the dead broker left
            # the dead broker's files show where the kill landed: writing the first group, or
            # a later one (so the groups before it had been swapped in by this clean)
            hit = first_base in cleaned if target == "first" else any(base > first_base for base in cleaned)
            (hits if hit else misses).append((target, cleaned, swaps))
            proc = BrokerProcess(data, port=proc.port, extra=extra).start()
            rows = read_from(b, topic_name)
            seen: dict[bytes | None, list[tuple[int, bytes | None]]] = {}
            for off, key, value in rows:
                seen.setdefault(key, []).append((off, value))
            assert set(seen) == set(latest), "keys lost or invented"
            for key, (off, value) in latest.items():
                assert seen[key][-1] == (off, value), key  # the latest value, where it was written
                assert all(o in offsets[key] for o, _ in seen[key])  # nothing invented or moved
        assert len(hits) == len(targets), f"kills that landed mid-clean: {hits}; too late: {misses}"
    finally:
        proc.kill()


def test_a_compacted_topic_can_be_tiered(tmp_path: Path, topic_name: str) -> None:
    """Beyond Kafka (KIP-1272 is still a discussion): compaction and tiering on one topic.
    Segments are cleaned, then copied to the store and deleted locally; a read from offset 0
    returns the latest value of every key at its original offset."""
    store = tmp_path / "remote"
    settings = {"remote_storage_path": str(store), "remote_task_interval_ms": 50, "remote_retry_backoff_ms": 100, "remote_retry_backoff_max_ms": 500, "cleaner_backoff_ms": 50}
    with EmbeddedBroker(tmp_path / "data", **settings) as broker:
        b = broker.bootstrap
        create_topics(b, NewTopic(topic_name, 1, 1, config={**COMPACT, "remote.storage.enable": "true", "local.retention.bytes": "1", "retention.ms": "-1"}))
        offsets = produce(b, topic_name, [(f"k{i % 50}".encode(), f"r{r}-{i % 50}".encode() * 5) for r in range(6) for i in range(50)])
        produce(b, topic_name, [(f"filler-{i}".encode(), b"x" * 50) for i in range(200)])
        assert wait_until(cleaned_once(broker, topic_name), 20), "the cleaner did not run"

        def tiered() -> bool:
            stats = broker.call(broker.broker.logs.remote_stats, topic_name, 0)
            return stats is not None and stats[1] > 0 and broker.broker.partition(topic_name, 0).local_log_start_offset > 0

        assert wait_until(tiered, 20), broker.call(broker.broker.logs.remote_stats, topic_name, 0)
        rows = read_from(b, topic_name)
        seen: dict[bytes | None, list[tuple[int, bytes | None]]] = {}
        for off, key, value in rows:
            seen.setdefault(key, []).append((off, value))
        for i in range(50):
            key = f"k{i}".encode()
            assert seen[key][-1] == (offsets[key][-1], f"r5-{i}".encode() * 5)
            assert all(o in offsets[key] for o, _ in seen[key])
