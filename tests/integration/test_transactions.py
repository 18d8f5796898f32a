"""Transactions with librdkafka (confluent-kafka): commit and abort, read_committed versus
read_uncommitted, zombie fencing, timeouts, offsets in transactions, and the coordinator's
state across a broker restart."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from riverbed.testing import BrokerProcess, EmbeddedBroker

from .helpers import create_topics
from .visibility import read_through_sentinel

pytestmark = pytest.mark.integration


@pytest.fixture
def txn_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "data", group_initial_rebalance_delay_ms=0) as b:
        yield b


def txn_producer(bootstrap: str, txn_id: str, **extra: object) -> Producer:
    conf: dict[str, object] = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5}
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(20)
    return p


def read_all(bootstrap: str, topic: str, partitions: int, isolation: str, expected: int | None = None, timeout: float = 15) -> list[bytes]:
    """Every value of the topic with the given isolation level; stops once ``expected``
    values arrived and nothing more came for a moment (or when nothing comes at all)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{isolation}", "enable.auto.commit": False, "isolation.level": isolation})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < deadline and idle < 4 and (expected is None or len(got) <= expected):
            m = c.poll(0.25)
            if m is None:
                idle += 1 if expected is None or len(got) >= expected else 0
                continue
            idle = 0
            assert m.error() is None, m.error()
            got.append(m.value())
        return got
    finally:
        c.close()


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def end_offsets(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    """(read_committed end = last stable offset, read_uncommitted end = high watermark)."""
    ends = []
    for isolation in ("read_committed", "read_uncommitted"):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm", "isolation.level": isolation})
        try:
            ends.append(c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
        finally:
            c.close()
    return ends[0], ends[1]


def test_commit_and_abort_seen_by_isolation_level(txn_broker: EmbeddedBroker, topic_name: str) -> None:
    b = txn_broker.bootstrap
    create_topics(b, NewTopic(topic_name, 2, 1))
    p = txn_producer(b, "tx-basic")
    p.begin_transaction()
    for i in range(10):
        p.produce(topic_name, key=f"k{i}".encode(), value=f"committed-{i}".encode())
    p.commit_transaction(20)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic_name, key=f"k{i}".encode(), value=f"aborted-{i}".encode())
    p.flush(10)  # the records reach the log before the abort
    p.abort_transaction(20)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic_name, key=f"k{i}".encode(), value=f"late-{i}".encode())
    p.commit_transaction(20)

    committed = read_all(b, topic_name, 2, "read_committed", expected=15)
    assert sorted(committed) == sorted([f"committed-{i}".encode() for i in range(10)] + [f"late-{i}".encode() for i in range(5)])
    everything = read_all(b, topic_name, 2, "read_uncommitted", expected=25)
    assert len(everything) == 25
    assert {v for v in everything if v.startswith(b"aborted")} == {f"aborted-{i}".encode() for i in range(10)}


def test_open_transaction_holds_back_read_committed(txn_broker: EmbeddedBroker, topic_name: str) -> None:
    b = txn_broker.bootstrap
    create_topics(b, NewTopic(topic_name, 1, 1))
    plain = Producer({"bootstrap.servers": b})
    plain.produce(topic_name, value=b"before")
    assert plain.flush(10) == 0
    p = txn_producer(b, "tx-open")
    p.begin_transaction()
    p.produce(topic_name, value=b"pending")
    p.flush(10)
    plain.produce(topic_name, value=b"after")  # not transactional, after the open transaction
    assert plain.flush(10) == 0
    lso, hw = end_offsets(b, topic_name, 0)
    assert (lso, hw) == (1, 3)
    assert read_all(b, topic_name, 1, "read_committed", expected=1, timeout=60) == [b"before"]
    p.commit_transaction(20)
    lso, hw = end_offsets(b, topic_name, 0)
    assert lso == hw == 4  # the COMMIT marker takes an offset too
    assert read_all(b, topic_name, 1, "read_committed", expected=3) == [b"before", b"pending", b"after"]


def test_new_instance_fences_the_zombie_and_aborts_its_transaction(txn_broker: EmbeddedBroker, topic_name: str) -> None:
    b = txn_broker.bootstrap
    create_topics(b, NewTopic(topic_name, 3, 1))
    zombie = txn_producer(b, "tx-fence")
    zombie.begin_transaction()
    for i in range(6):
        zombie.produce(topic_name, key=f"k{i}".encode(), value=f"zombie-{i}".encode())
    zombie.flush(10)
    fresh = txn_producer(b, "tx-fence")  # same transactional.id: bumps the epoch, aborts
    fresh.begin_transaction()
    fresh.produce(topic_name, key=b"k", value=b"fresh")
    fresh.commit_transaction(20)
    with pytest.raises(KafkaException) as info:
        zombie.produce(topic_name, value=b"zombie-late")
        zombie.commit_transaction(10)
    assert info.value.args[0].fatal(), info.value  # librdkafka: "Producer fenced by newer instance"
    assert read_all(b, topic_name, 3, "read_committed", expected=1) == [b"fresh"]
    assert len(read_all(b, topic_name, 3, "read_uncommitted", expected=7)) == 7


def test_transactional_offsets_commit_with_the_transaction(txn_broker: EmbeddedBroker, topic_name: str) -> None:
    b = txn_broker.bootstrap
    source, sink = topic_name + "-in", topic_name + "-out"
    create_topics(b, NewTopic(source, 1, 1), NewTopic(sink, 1, 1))
    plain = Producer({"bootstrap.servers": b})
    for i in range(20):
        plain.produce(source, value=f"v{i}".encode())
    assert plain.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": b, "group.id": "etl", "enable.auto.commit": False, "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe([source])
    p = txn_producer(b, "tx-etl")
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < 10 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
        assert len(got) >= 10
        # aborted: neither the output nor the offsets count
        p.begin_transaction()
        for v in got[:10]:
            p.produce(sink, value=v.upper())
        p.send_offsets_to_transaction([TopicPartition(source, 0, 10)], consumer.consumer_group_metadata(), 20)
        p.abort_transaction(20)
        assert consumer.committed([TopicPartition(source, 0)], 10)[0].offset < 0
        # committed: both
        p.begin_transaction()
        for v in got[:10]:
            p.produce(sink, value=v.upper())
        p.send_offsets_to_transaction([TopicPartition(source, 0, 10)], consumer.consumer_group_metadata(), 20)
        p.commit_transaction(20)
        assert consumer.committed([TopicPartition(source, 0)], 10)[0].offset == 10
    finally:
        consumer.close()
    assert read_all(b, sink, 1, "read_committed", expected=10) == [f"V{i}".encode() for i in range(10)]


def test_transactions_survive_a_broker_restart(tmp_path: Path, topic_name: str) -> None:
    """kill -9 with one transaction committed and one open: after the restart the committed
    one stays visible, the open one is aborted by its timeout, and the transactional id
    carries on with a higher epoch."""
    proc = BrokerProcess(tmp_path / "data", extra=["--set", "transaction.max.timeout.ms=60000", "--set", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500"]).start()
    try:
        b = proc.bootstrap
        create_topics(b, NewTopic(topic_name, 2, 1))
        p = txn_producer(b, "tx-restart", **{"transaction.timeout.ms": 3000})
        p.begin_transaction()
        for i in range(8):
            p.produce(topic_name, key=f"k{i}".encode(), value=f"kept-{i}".encode())
        p.commit_transaction(20)
        p.begin_transaction()
        for i in range(8):
            p.produce(topic_name, key=f"k{i}".encode(), value=f"open-{i}".encode())
        p.flush(10)
        proc.kill()
        proc = BrokerProcess(tmp_path / "data", port=proc.port, extra=["--set", "transaction.max.timeout.ms=60000", "--set", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500"]).start()
        # the open transaction blocks read_committed until the coordinator aborts it
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lso, hw = end_offsets(b, topic_name, 0)
            lso1, hw1 = end_offsets(b, topic_name, 1)
            if lso == hw and lso1 == hw1:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the open transaction was not aborted after its timeout")
        assert sorted(read_all(b, topic_name, 2, "read_committed", expected=8)) == sorted(f"kept-{i}".encode() for i in range(8))
        again = txn_producer(b, "tx-restart")
        again.begin_transaction()
        again.produce(topic_name, key=b"k0", value=b"after-restart")
        again.commit_transaction(20)
        assert b"after-restart" in read_all(b, topic_name, 2, "read_committed", expected=9)
    finally:
        proc.kill()


def test_consume_transform_produce_is_exactly_once_under_kill_9(txn_broker: EmbeddedBroker, topic_name: str) -> None:
    """The processor (procs/eos_processor.py) is killed with SIGKILL five times and restarted;
    each kill is driven from a known state the processor reports: after its Nth committed
    transaction, or while it holds a transaction open whose records are already in the log
    (the next instance's InitProducerId must abort it). At the end the output holds every
    input record exactly once, the held-open records are in the log but aborted, and the
    group's committed offsets are the input's end offsets."""
    import contextlib
    import json
    import queue
    import subprocess
    import sys
    import threading

    b = txn_broker.bootstrap
    source, sink, group = topic_name + "-in", topic_name + "-out", "eos-" + topic_name
    create_topics(b, NewTopic(source, 3, 1), NewTopic(sink, 3, 1))
    n = 3000
    plain = Producer({"bootstrap.servers": b, "linger.ms": 5})
    for i in range(n):
        plain.produce(source, key=f"k{i}".encode(), value=f"v{i}".encode())
        if i % 500 == 0:
            plain.poll(0)
    assert plain.flush(20) == 0
    script = str(Path(__file__).parent / "procs" / "eos_processor.py")
    cmd = [sys.executable, script, b, source, sink, group, "eos-" + topic_name]
    # (kill after the Nth commit) or (kill while the Nth transaction is held open)
    plan = [("commit", 2), ("open", 2), ("commit", 1), ("open", 3), ("commit", 3)]
    victims: list[tuple[str, int, list[dict[str, int]]]] = []
    for mode, k in plan:
        proc = subprocess.Popen(cmd + ([str(k)] if mode == "open" else []), stdout=subprocess.PIPE, text=True)
        lines: queue.Queue[dict[str, int]] = queue.Queue()
        reader = threading.Thread(target=lambda p=proc, q=lines: [q.put(json.loads(ln)) for ln in p.stdout or [] if ln.startswith("{")], daemon=True)
        reader.start()
        seen: list[dict[str, int]] = []
        deadline = time.monotonic() + 120
        while not (mode == "commit" and sum("committed" in ln for ln in seen) >= k) and not (mode == "open" and any("open" in ln for ln in seen)):
            assert proc.poll() is None and time.monotonic() < deadline, f"victim {len(victims)} ({mode} {k}) got to {seen}"
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.5))
        proc.kill()
        proc.wait(10)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
        while not lines.empty():
            seen.append(lines.get())
        victims.append((mode, k, seen))
    # the state each victim was killed in: it had committed, and (held open) had records of
    # an open transaction in the log
    for mode, k, seen in victims:
        assert sum("committed" in ln for ln in seen) >= (k if mode == "commit" else k - 1) >= 1, (mode, k, seen)
        if mode == "open":
            assert "open" in seen[-1] and seen[-1]["open"] > 0, (mode, k, seen)
    held_open = sum(seen[-1]["open"] for mode, _, seen in victims if mode == "open")
    final = subprocess.run(cmd, timeout=120, stdout=subprocess.DEVNULL)
    assert final.returncode == 0
    out = read_all(b, sink, 3, "read_committed", expected=n, timeout=30)
    assert len(out) == n, f"{len(out)} records, {len(set(out))} distinct"
    assert sorted(out) == sorted(f"out:v{i}".encode() for i in range(n))
    # the held-open transactions' records were written, then aborted (not in the output)
    assert len(read_all(b, sink, 3, "read_uncommitted", expected=n + held_open, timeout=30)) >= n + held_open
    c = Consumer({"bootstrap.servers": b, "group.id": group})
    try:
        committed = c.committed([TopicPartition(source, p) for p in range(3)], 10)
        ends = [c.get_watermark_offsets(TopicPartition(source, p), timeout=10)[1] for p in range(3)]
    finally:
        c.close()
    assert [tp.offset for tp in committed] == ends


def test_idempotent_producer_writes_no_duplicates_when_responses_are_lost(tmp_path: Path, topic_name: str) -> None:
    """Produce through a proxy that drops the connection instead of forwarding some
    responses: librdkafka retries those requests, the broker recognises the retried batches
    (producer id, epoch, sequence) and the log holds every record exactly once, in order."""
    from riverbed.testing import free_port

    from .proxy import CuttingProxy

    proxy_port = free_port()
    with EmbeddedBroker(tmp_path / "data", advertised_port=proxy_port) as broker:
        proxy = CuttingProxy(proxy_port, ("127.0.0.1", broker.broker.bound_port), drop=0.0)
        try:
            b = f"127.0.0.1:{proxy_port}"
            create_topics(b, NewTopic(topic_name, 2, 1))
            proxy.drop = 0.08
            p = Producer({"bootstrap.servers": b, "enable.idempotence": True, "acks": "all", "linger.ms": 2, "batch.num.messages": 20, "retry.backoff.ms": 20, "message.timeout.ms": 60000})
            n = 4000
            errors: list[object] = []
            for i in range(n):
                p.produce(topic_name, key=f"k{i % 16}".encode(), value=f"{i}".encode(), on_delivery=lambda err, _m: errors.append(err) if err else None)
                if i % 100 == 0:
                    p.poll(0)
            assert p.flush(60) == 0
            assert errors == []
            assert proxy.cuts > 0
            proxy.drop = 0.0
            values = read_all(b, topic_name, 2, "read_uncommitted", expected=n, timeout=30)
        finally:
            proxy.close()
    assert len(values) == n, f"{len(values)} records for {n} produced ({len(values) - len(set(values))} duplicates)"
    assert sorted(int(v) for v in values) == list(range(n))


def test_abandoned_transaction_aborts_after_its_timeout(tmp_path: Path, topic_name: str) -> None:
    with EmbeddedBroker(tmp_path / "data", transaction_abort_interval_ms=100) as broker:
        b = broker.bootstrap
        create_topics(b, NewTopic(topic_name, 1, 1))
        # long enough that the open transaction is still open when looked at below
        p = txn_producer(b, "tx-abandoned", **{"transaction.timeout.ms": 3000})
        began = time.monotonic()
        p.begin_transaction()
        p.produce(topic_name, value=b"abandoned")
        p.flush(10)
        offsets = end_offsets(b, topic_name, 0)
        if time.monotonic() - began < 2.5:  # on a loaded machine the timeout may already have passed
            assert offsets == (0, 1)
        deadline = time.monotonic() + 60
        while end_offsets(b, topic_name, 0) != (2, 2):  # the ABORT marker at offset 1
            assert time.monotonic() < deadline, end_offsets(b, topic_name, 0)
            time.sleep(0.1)
        assert read_through_sentinel(b, topic_name, 1, "read_committed") == []
        assert read_through_sentinel(b, topic_name, 1, "read_uncommitted") == [b"abandoned"]
        (desc,) = broker.call(broker.broker.txns.coordinator.describe, ["tx-abandoned"])
        assert desc.state == "CompleteAbort"
        with pytest.raises(KafkaException):
            p.commit_transaction(10)  # the producer was fenced by the abort's epoch bump


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_restart_between_prepare_and_complete_finishes_the_outcome(tmp_path: Path, topic_name: str, commit: bool) -> None:
    """The broker stops after writing PrepareCommit/PrepareAbort but before any marker (the
    marker writer is switched off to stop it there): the client was told the outcome, and
    after the restart the coordinator writes the markers, on every partition."""
    data = tmp_path / "data"
    with EmbeddedBroker(data) as broker:
        b = broker.bootstrap
        create_topics(b, NewTopic(topic_name, 3, 1))
        p = txn_producer(b, "tx-prepare")
        p.begin_transaction()
        for i in range(9):
            p.produce(topic_name, value=f"v{i}".encode(), partition=i % 3)
        p.flush(10)
        async def no_markers(event: object, prepare: object) -> None:
            return None

        broker.broker.txns._complete = no_markers  # "crash" after the prepare record
        if commit:
            p.commit_transaction(20)
        else:
            p.abort_transaction(20)
        (desc,) = broker.call(broker.broker.txns.coordinator.describe, ["tx-prepare"])
        assert desc.state == ("PrepareCommit" if commit else "PrepareAbort")
        assert end_offsets(b, topic_name, 0)[0] == 0  # nothing stable yet
    with EmbeddedBroker(data) as broker:
        b = broker.bootstrap

        def state() -> str:
            (desc,) = broker.call(broker.broker.txns.coordinator.describe, ["tx-prepare"])
            return str(desc.state)

        # the markers are written again at start-up, once the Prepare record is durable
        assert wait_until(lambda: state() == ("CompleteCommit" if commit else "CompleteAbort"), 10), state()
        for partition in range(3):  # 3 records + the marker, once the marker is durable
            assert wait_until(lambda p=partition: end_offsets(b, topic_name, p) == (4, 4), 10), end_offsets(b, topic_name, partition)
        values = read_through_sentinel(b, topic_name, 3, "read_committed")
        assert sorted(values) == (sorted(f"v{i}".encode() for i in range(9)) if commit else [])
