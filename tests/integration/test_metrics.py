"""The Prometheus endpoint of ``riverbed serve`` (docs/metrics.md), scraped over HTTP from a
broker process after real confluent-kafka produce and consume, parsed with prometheus_client's
own text parser."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from prometheus_client.parser import text_string_to_metric_families

from riverbed.testing import BrokerProcess, free_port

from .helpers import create_topics, stored_log_bytes

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DEADLINE = 60.0


def scrape(port: int, path: str = "/metrics") -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_for(port: int, check: Callable[[Samples], bool], what: str) -> Samples:
    """Scrape until ``check`` holds (the broker updates some figures asynchronously)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        samples = scrape(port)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"not within {DEADLINE:.0f} s: {what}"
        time.sleep(0.1)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[BrokerProcess, int]]:
    port = free_port()
    proc = BrokerProcess(tmp_path / "data", extra=["--metrics-listen", f"127.0.0.1:{port}"]).start()
    try:
        yield proc, port
    finally:
        proc.terminate()


def _segment_bytes(data: Path, topic: str, partition: int) -> int:
    return sum(f.stat().st_size for f in (data / f"{topic}-{partition}").glob("*.log"))


def test_produce_and_consume_figures_agree(served: tuple[BrokerProcess, int]) -> None:
    proc, port = served
    topic, group = "metered", "metered-group"
    create_topics(proc.bootstrap, NewTopic(topic, num_partitions=2, replication_factor=1))
    # 7 records to partition 0 and 5 to partition 1, several batches (acks=all: durable)
    producer = Producer({"bootstrap.servers": proc.bootstrap, "linger.ms": 0, "acks": "all", "enable.idempotence": True})
    sent = {0: 7, 1: 5}
    for partition, n in sent.items():
        for i in range(n):
            producer.produce(topic, key=f"k{i}".encode(), value=b"v" * (10 + i), partition=partition)
            if i % 3 == 2:
                producer.flush(10)
    assert producer.flush(30) == 0

    # consume everything once, then commit 3 on partition 0 and the end (5) on partition 1
    consumer = Consumer({"bootstrap.servers": proc.bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        _consume_and_check(proc, port, consumer, topic, group, sent)
    finally:
        consumer.close()
    wait_for(port, lambda s: value(s, "riverbed_group_members", group=group) == 0.0, "the member left")


def _consume_and_check(proc: BrokerProcess, port: int, consumer: Consumer, topic: str, group: str, sent: dict[int, int]) -> None:
    consumer.subscribe([topic])
    got = 0
    deadline = time.monotonic() + DEADLINE
    while got < 12:
        assert time.monotonic() < deadline, f"consumed {got} of 12"
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got += 1
    consumer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 5)], asynchronous=False)

    samples = wait_for(port, lambda s: value(s, "riverbed_group_members", group=group) == 1.0, "the group has its member")
    # records and bytes in: exactly what was produced, byte for byte what the segments hold
    assert value(samples, "riverbed_topic_records_in_total", topic=topic) == 12
    on_disk = _segment_bytes(proc.data_dir, topic, 0) + _segment_bytes(proc.data_dir, topic, 1)
    assert on_disk > 0
    assert value(samples, "riverbed_topic_bytes_in_total", topic=topic) == on_disk
    # every record went out to the consumer at least once
    out = value(samples, "riverbed_topic_bytes_out_total", topic=topic)
    assert out is not None and out >= on_disk
    # per partition: log end, log start, size, segments
    for partition, n in sent.items():
        labels = {"topic": topic, "partition": str(partition)}
        assert value(samples, "riverbed_log_end_offset", **labels) == n
        assert value(samples, "riverbed_log_high_watermark", **labels) == n
        assert value(samples, "riverbed_log_start_offset", **labels) == 0
        assert value(samples, "riverbed_log_segments", **labels) == 1
        assert value(samples, "riverbed_log_size_bytes", **labels) == _segment_bytes(proc.data_dir, topic, partition)
    # lag = end offset - committed offset
    assert value(samples, "riverbed_group_lag", group=group, topic=topic, partition="0") == 7 - 3
    assert value(samples, "riverbed_group_lag", group=group, topic=topic, partition="1") == 0
    # requests, errors, latency histograms per API
    produces = value(samples, "riverbed_requests_total", api="Produce")
    assert produces is not None and produces >= 4  # at least one per flushed batch
    assert value(samples, "riverbed_request_total_time_seconds_count", api="Produce") == produces
    assert value(samples, "riverbed_request_total_time_seconds_bucket", api="Produce", le="+Inf") == produces
    assert (value(samples, "riverbed_request_local_time_seconds_sum", api="Produce") or 0) > 0
    # acks=all produce waits for its fsync: answered later, so it has a remote time
    assert (value(samples, "riverbed_request_remote_time_seconds_count", api="Produce") or 0) >= 1
    assert (value(samples, "riverbed_requests_total", api="Fetch") or 0) >= 1
    assert (value(samples, "riverbed_request_errors_total", api="JoinGroup", error="MEMBER_ID_REQUIRED") or 0) >= 1
    assert value(samples, "riverbed_request_errors_total", api="Produce", error="NONE") is None
    # group commits: flush cycles ran and made at least the 12 records durable
    assert (value(samples, "riverbed_log_flush_seconds_count") or 0) >= 1
    assert (value(samples, "riverbed_log_flush_records_sum") or 0) >= 12
    # connections of the listener, process figures, event-loop lag
    assert (value(samples, "riverbed_connections", listener="PLAINTEXT") or 0) >= 2
    assert (value(samples, "riverbed_connections_accepted_total", listener="PLAINTEXT") or 0) >= 2
    assert value(samples, "riverbed_failed_authentication_total") == 0
    # the idempotent producer has state on both partitions (Kafka's ProducerIdCount sums them)
    assert value(samples, "riverbed_producer_ids") == 2
    assert (value(samples, "process_resident_memory_bytes") or 0) > 0
    assert (value(samples, "process_open_fds") or 0) > 0
    assert value(samples, "process_cpu_seconds_total") is not None
    wait_for(port, lambda s: (value(s, "riverbed_event_loop_lag_seconds_count") or 0) >= 1, "a loop-lag sample")


def test_other_paths_are_404(served: tuple[BrokerProcess, int]) -> None:
    _, port = served
    for path in ("/", "/metricsx", "/metrics/extra", "/../etc/passwd", "/favicon.ico"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30)
        info.value.close()
        assert info.value.code == 404, path
    assert scrape(port, "/metrics?name[]=riverbed_requests_total")  # a query string is fine


def test_no_metrics_flag_serves_nothing(tmp_path: Path) -> None:
    port = free_port()
    proc = BrokerProcess(tmp_path / "data", extra=["--metrics-listen", f"127.0.0.1:{port}", "--no-metrics"]).start()
    try:
        producer = Producer({"bootstrap.servers": proc.bootstrap})
        producer.produce("off", value=b"x")
        assert producer.flush(30) == 0  # the broker works
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "something listens on the metrics port"
    finally:
        proc.terminate()


def test_metrics_port_in_use_stops_start_up(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = BrokerProcess(tmp_path / "data", extra=["--metrics-listen", f"127.0.0.1:{port}"])
        with pytest.raises(RuntimeError, match=re.escape(f"metrics endpoint on 127.0.0.1:{port}")):
            proc.start()


def test_transactions_per_state(served: tuple[BrokerProcess, int]) -> None:
    proc, port = served
    committed = Producer({"bootstrap.servers": proc.bootstrap, "transactional.id": "metrics-txn-a"})
    committed.init_transactions(30)
    committed.begin_transaction()
    committed.produce("txn-metrics", value=b"x")
    committed.commit_transaction(30)
    ongoing = Producer({"bootstrap.servers": proc.bootstrap, "transactional.id": "metrics-txn-b"})
    ongoing.init_transactions(30)
    ongoing.begin_transaction()
    ongoing.produce("txn-metrics", value=b"y")
    assert ongoing.flush(30) == 0
    samples = wait_for(port, lambda s: value(s, "riverbed_transactions", state="Ongoing") == 1, "an ongoing transaction")
    assert value(samples, "riverbed_transactions", state="CompleteCommit") == 1
    assert value(samples, "riverbed_producer_ids") == 2  # both producers wrote to the partition
    ongoing.abort_transaction(30)
    wait_for(port, lambda s: value(s, "riverbed_transactions", state="CompleteAbort") == 1, "the abort")


DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


def test_grafana_dashboard_names_only_shipped_metrics_and_labels(tmp_path: Path) -> None:
    """Every expression of docs/grafana-dashboard.json names metrics (and labels) that a
    running broker exposes: a transaction, a consumer group with a commit, a clean and
    tiered segments, then a scrape."""
    port = free_port()
    proc = BrokerProcess(tmp_path / "data", extra=_tiering_and_cleaning(port, tmp_path / "store")).start()
    try:
        _check_dashboard(proc, port)
    finally:
        proc.terminate()


def _check_dashboard(proc: BrokerProcess, port: int) -> None:
    _clean_and_tier(proc, port)
    producer = Producer({"bootstrap.servers": proc.bootstrap, "transactional.id": "dash-txn"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce("dash", value=b"x")
    producer.commit_transaction(30)
    consumer = Consumer({"bootstrap.servers": proc.bootstrap, "group.id": "dash-group", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe(["dash"])
        deadline = time.monotonic() + DEADLINE
        while True:
            assert time.monotonic() < deadline, "no record"
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                break
        consumer.commit(msg, asynchronous=False)
        samples = wait_for(port, lambda s: (value(s, "riverbed_event_loop_lag_seconds_count") or 0) >= 1 and value(s, "riverbed_group_lag", group="dash-group", topic="dash", partition="0") is not None, "loop lag and the group's lag")
    finally:
        consumer.close()
    labels: dict[str, set[str]] = {}
    for name, pairs in samples:
        labels.setdefault(name, set()).update(k for k, _ in pairs)

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert len(exprs) >= 20
    seen: set[str] = set()
    for expr in exprs:
        names = set(re.findall(r"\b((?:riverbed|process)_[a-z_]+)\b", expr))
        assert names, f"no metric in {expr!r}"
        for name in names:
            assert name in labels, f"{name} (in {expr!r}) is not exposed"
        allowed = set().union(*(labels[n] for n in names)) | {"instance", "job"}
        used = set(re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)\s*\"", expr))
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            used |= {label.strip() for label in group.split(",")}
        assert used <= allowed, f"labels {used - allowed} of {expr!r} are not on {names}"
        seen |= names
    # the dashboard covers each kind of metric the endpoint ships
    for prefix in ("riverbed_topic_", "riverbed_request", "riverbed_transactions", "riverbed_producer_ids", "riverbed_log_cleaner", "riverbed_log_remote", "riverbed_remote_", "riverbed_log_flush", "riverbed_log_size", "riverbed_group_lag", "riverbed_group_members", "riverbed_connections", "riverbed_failed_authentication", "riverbed_event_loop_lag", "process_"):
        assert any(n.startswith(prefix) for n in seen), f"no panel shows {prefix}*"


def test_failed_logins_are_counted(tmp_path: Path) -> None:
    """riverbed_failed_authentication_total counts each failed SASL login (a confluent-kafka
    client with a wrong password; read from the running broker's snapshot)."""
    from riverbed.app.metrics import take_snapshot
    from riverbed.broker import ListenerConfig
    from riverbed.cli.main import main as riverbed_main
    from riverbed.testing import EmbeddedBroker

    listeners = [ListenerConfig(n, n, "127.0.0.1", 0) for n in ("PLAINTEXT", "SASL_PLAINTEXT")]
    with EmbeddedBroker(tmp_path / "data", listeners=listeners) as broker:
        assert riverbed_main(["user", "add", "alice", "--password", "alice-secret", "-b", broker.bootstrap_for("PLAINTEXT")]) == 0
        app = broker._thread.app  # type: ignore[union-attr]
        assert broker.call(take_snapshot, app, None).failed_authentications == 0
        errors: list[str] = []
        producer = Producer({
            "bootstrap.servers": broker.bootstrap_for("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice", "sasl.password": "wrong",
            "reconnect.backoff.ms": 5000, "reconnect.backoff.max.ms": 10000, "error_cb": lambda err: errors.append(str(err)),
        })  # fmt: skip
        deadline = time.monotonic() + DEADLINE
        while broker.call(take_snapshot, app, None).failed_authentications < 1:
            assert time.monotonic() < deadline, f"no failed login counted; client errors: {errors}"
            producer.poll(0.1)
        snap = broker.call(take_snapshot, app, None)
        assert snap.connections["SASL_PLAINTEXT"] <= 1
        del producer


def _tiering_and_cleaning(port: int, store: Path) -> list[str]:
    """BrokerProcess arguments: metrics on ``port``, an object store in ``store``, a busy cleaner."""
    return ["--metrics-listen", f"127.0.0.1:{port}", "--set", f"remote.storage.path={store}", "--set", "remote.log.manager.task.interval.ms=50", "--set", "log.cleaner.backoff.ms=20"]


def _clean_and_tier(proc: BrokerProcess, port: int) -> Samples:
    """Fill a compacted topic and a tiered one; scrape once a clean and three copies are done."""
    compact = {"cleanup.policy": "compact", "segment.bytes": "2048", "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}
    tiered = {"remote.storage.enable": "true", "segment.bytes": "8192", "local.retention.bytes": "1", "retention.ms": "-1"}
    create_topics(proc.bootstrap, NewTopic("compacted", 1, 1, config=compact), NewTopic("tiered", 1, 1, config=tiered))
    producer = Producer({"bootstrap.servers": proc.bootstrap, "linger.ms": 2, "batch.num.messages": 10})
    for i in range(600):
        producer.produce("compacted", key=f"k{i % 20}".encode(), value=b"v" * 50)
        producer.produce("tiered", key=b"k", value=b"t" * 200)
        if i % 50 == 49:
            producer.flush(30)
    assert producer.flush(30) == 0
    labels = {"topic": "tiered", "partition": "0"}
    return wait_for(
        port,
        lambda s: (value(s, "riverbed_log_cleaner_clean_seconds_count") or 0) >= 1 and (value(s, "riverbed_remote_segments_copied_total", **labels) or 0) >= 3,
        "a clean and three tiered segments",
    )


def test_cleaner_and_tiering_progress(tmp_path: Path) -> None:
    """A compacted topic gets cleaned and a tiered topic's segments go to the object store (a
    local directory): the cleaner's bytes and clean times, and each partition's remote bytes
    and segments, appear on the endpoint; the remote bytes are the store's .log objects."""
    port, store = free_port(), tmp_path / "store"
    proc = BrokerProcess(tmp_path / "data", extra=_tiering_and_cleaning(port, store)).start()
    try:
        samples = _clean_and_tier(proc, port)
        labels = {"topic": "tiered", "partition": "0"}
        read, written = value(samples, "riverbed_log_cleaner_bytes_read_total"), value(samples, "riverbed_log_cleaner_bytes_written_total")
        assert read is not None and written is not None and 0 < written < read  # duplicates went
        assert value(samples, "riverbed_log_cleaner_uncleanable_partitions") == 0

        def remote_agrees(s: Samples) -> bool:
            on_store = stored_log_bytes(store)
            return value(s, "riverbed_log_remote_size_bytes", **labels) == on_store > 0 and value(s, "riverbed_log_remote_segments", **labels) == value(s, "riverbed_remote_segments_copied_total", **labels)

        wait_for(port, remote_agrees, "remote bytes equal to the store's .log objects")
    finally:
        proc.terminate()
